"""Run a job's calls in this process or in worker processes, so that Ctrl-C ends a run at once.

Both runners yield ``(index, result)`` as calls finish and say which calls are still
in flight (and in which process), so that the job can remove what an ended call had
staged. Why not ``ProcessPoolExecutor`` or ``multiprocessing.Pool``: on Ctrl-C the
first keeps running the calls already queued to its workers and has no public way to
end them (``shutdown(cancel_futures=True)`` waits for them), and the second hangs
forever when a worker dies. Here every worker is a spawned process with its own pipe:
it gets one call, sends back its result and gets the next, so nothing is queued that
would have to be cancelled, a dead worker is seen at once (its sentinel), and
:meth:`Workers.close` ends every worker on the spot.

Workers ignore SIGINT (a terminal's Ctrl-C reaches the whole process group): only the
parent decides what an interrupt does. They are started with SIGINT held back
(:func:`sigint_deferred`), not ignored: a Ctrl-C while they start is then neither a
traceback in a worker nor lost in the parent.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from multiprocessing import get_context
from multiprocessing.connection import Connection, wait
from typing import Any

__all__ = ["Inline", "Workers", "WorkerDied", "sigint_ignored", "sigint_deferred"]


class WorkerDied(RuntimeError):
    """A worker process ended while it ran a call (killed, out of memory, a crash in native code)."""

    def __init__(self, index: int, exitcode: int | None) -> None:
        super().__init__(f"a worker process died (exit code {exitcode}) while running call {index}")
        self.index, self.exitcode = index, exitcode


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT inside the block (main thread only: signals are delivered there)."""
    if not _main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold SIGINT back inside the block; one that came meanwhile is raised right after it.

    A handler records it: blocking SIGINT in this thread alone does not hold it back, since
    the kernel hands a process's signal to any thread that does not block it (tqdm, pyarrow
    and duckdb keep threads). It is blocked here too, for the processes started inside:
    they inherit the mask, so a Ctrl-C during their start-up waits until they decide
    (workers ignore it, :func:`_serve`).
    """
    if not _main_thread():
        yield
        return
    got: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    masked = hasattr(signal, "pthread_sigmask")
    if masked:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        if masked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # one pending is recorded now
        signal.signal(signal.SIGINT, previous)
    if got and callable(previous):
        previous(signal.SIGINT, None)  # Python's default handler raises KeyboardInterrupt


def _serve(conn: Connection, fn: Callable[..., Any]) -> None:
    """A worker's loop: receive a call, send back ``(ok, result or exception)``, until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # drops one that came while it started (held back till now)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    while True:
        try:
            args = conn.recv()
        except EOFError:  # the parent is gone
            return
        if args is None:
            return
        try:
            reply = (True, fn(*args))
        except Exception as exc:  # noqa: BLE001 - the parent decides what a failed call means
            reply = (False, exc)
        try:
            conn.send(reply)
        except Exception as exc:  # noqa: BLE001 - an exception or result that does not pickle
            conn.send((False, RuntimeError(f"{type(exc).__name__}: {exc}")))


class Inline:
    """Runs the calls one after another in this process."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = fn
        self._current: int | None = None

    def map_unordered(self, calls: Sequence[tuple]) -> Iterator[tuple[int, Any]]:
        """Yield ``(index, fn(*calls[index]))`` in order; an exception ends the iteration."""
        for i, args in enumerate(calls):
            self._current = i
            yield i, self._fn(*args)
            self._current = None

    def in_flight(self) -> list[tuple[int, int]]:
        """``(pid, index)`` of the call started and not yet taken (empty or one)."""
        return [] if self._current is None else [(os.getpid(), self._current)]

    def close(self) -> None:
        """Nothing to end."""

    def __enter__(self) -> Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Workers:
    """``n`` spawned worker processes, each serving one call at a time over its own pipe.

    Use it from one thread: :meth:`close` from another would race the iteration's own
    joins (``multiprocessing`` processes are joined by the thread that started them).
    """

    def __init__(self, fn: Callable[..., Any], n: int) -> None:
        ctx = get_context("spawn")
        self._conns: list[Connection] = []
        self._procs = []
        self._busy: dict[Connection, int] = {}  # pipe -> index of the call it runs
        try:
            with sigint_deferred():  # a Ctrl-C meanwhile: raised once they are started, then they are ended
                for _ in range(n):
                    parent, child = ctx.Pipe()
                    proc = ctx.Process(target=_serve, args=(child, fn), daemon=True)
                    proc.start()
                    child.close()
                    self._conns.append(parent)
                    self._procs.append(proc)
        except BaseException:
            self.close()
            raise

    def map_unordered(self, calls: Sequence[tuple]) -> Iterator[tuple[int, Any]]:
        """Yield ``(index, result)`` as calls finish.

        Raises:
            Exception: the first exception a call raised (the others keep running until
                :meth:`close`).
            WorkerDied: a worker ended while it ran a call.
        """
        todo = iter(enumerate(calls))
        owner = dict(zip(self._conns, self._procs))
        idle = list(self._conns)
        while True:
            while idle and (nxt := next(todo, None)) is not None:
                conn = idle.pop()
                self._busy[conn] = nxt[0]
                try:
                    conn.send(nxt[1])
                except OSError:  # the worker ended between two calls
                    raise WorkerDied(nxt[0], owner[conn].exitcode) from None
            if not self._busy:
                return
            by_sentinel = {owner[c].sentinel: c for c in self._busy}
            ready = wait([*self._busy, *by_sentinel])
            for r in ready:
                conn = by_sentinel.get(r, r)  # type: ignore[arg-type]
                if conn not in self._busy:
                    continue
                try:  # a result may wait even if the worker ended after sending it
                    if not conn.poll():
                        raise EOFError
                    ok, value = conn.recv()
                except (EOFError, OSError):
                    owner[conn].join(timeout=1)  # its sentinel is ready: reap it, for the exit code
                    raise WorkerDied(self._busy[conn], owner[conn].exitcode) from None
                if not ok:
                    raise value
                yield self._busy[conn], value
                del self._busy[conn]  # only once the consumer took the result
                idle.append(conn)

    def in_flight(self) -> list[tuple[int, int]]:
        """``(pid, index)`` of every call started and not yet taken."""
        pid = {conn: proc.pid for conn, proc in zip(self._conns, self._procs)}
        return [(pid[c], i) for c, i in self._busy.items()]

    def close(self) -> None:
        """End every worker now (a call in flight is abandoned) and wait until they are gone."""
        for proc in self._procs:
            if proc.is_alive():
                proc.kill()
        for proc in self._procs:
            proc.join(timeout=5)
        for conn in self._conns:
            conn.close()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
