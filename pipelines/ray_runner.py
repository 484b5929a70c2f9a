"""Run a search job's tasks as Ray tasks (``--executor ray``): one machine or a cluster.

The same interface as :class:`treeq.pipelines.workers.Workers` (``map_unordered``,
``in_flight``, ``close``), so the job does everything else as with local workers: each
Ray task searches one task and stages its shards (temporary files) in the output
folder, the driver commits them. On a cluster the output folder must therefore be one
path every node sees (a shared filesystem: NFS, Lustre, a FUSE mount of an object
store). ``ray`` is an optional extra (``pip install treeq[ray]``); it is imported only
here.

Same seed, same rows: a task's randomness comes from ``(seed, task_id)``, never from
where it ran.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..errors import ConfigError

__all__ = ["RayRunner"]


class RayRunner:
    """Submits every call as a Ray task (``num_cpus=1`` each) and yields results as they finish.

    Args:
        fn: The function each task runs (picklable, importable on the workers).
        address: A running cluster (``ray://host:10001`` or ``auto``); None starts a local
            Ray with ``num_cpus`` CPUs (or joins the one this process already started).
        num_cpus: CPUs of a local Ray (None: all of this machine's).
    """

    def __init__(self, fn: Callable[..., Any], address: str | None = None, num_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install 'treeq[ray]' (or pip install ray)") from None
        self._ray = ray
        if not ray.is_initialized():
            try:
                ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
                         log_to_driver=False, configure_logging=False)
            except Exception as exc:  # ConnectionError, RuntimeError, ValueError from ray.init
                raise ConfigError(f"cannot start or reach Ray at {address or 'a local instance'}: "
                                  f"{' '.join(str(exc).split())[:200]}") from None
        self._remote = ray.remote(num_cpus=1, max_retries=0)(fn)
        self._pending: dict[Any, int] = {}

    def map_unordered(self, calls: Sequence[tuple]) -> Iterator[tuple[int, Any]]:
        """Yield ``(index, result)`` as Ray tasks finish; a task's exception is raised here."""
        ray = self._ray
        self._pending = {self._remote.remote(*args): i for i, args in enumerate(calls)}
        while self._pending:
            ready, _ = ray.wait(list(self._pending), num_returns=1)
            i = self._pending.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayTaskError as exc:
                raise exc.as_instanceof_cause() from None
            yield i, result

    def in_flight(self) -> list[tuple[int, int]]:
        """Calls not yet taken; their processes are Ray's (a resumed run removes what they staged)."""
        return []

    def close(self) -> None:
        """Cancel what has not finished (the Ray instance stays up for the process)."""
        for ref in list(self._pending):
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already finished or gone
                pass
        self._pending = {}
