"""What a tree store says about its runs: the recorded runs, and the tasks of a run already on disk.

A run's settings are recorded once, as JSON, in ``runs/run_id=R/run.parquet``
(``runs.config``: the job's effective settings, the env's defaults resolved); every
later reader (resume, plots, exports, PRM evaluation) takes them from there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import StoreError
from .store import PART_PREFIX, TreeStore

__all__ = ["recorded_runs", "finished_tasks"]


def recorded_runs(out: str | os.PathLike) -> list[tuple[str, dict, Any]]:
    """``(run_id, recorded config, started_at)`` of every run in the store at ``out``, oldest first."""
    import pyarrow.parquet as pq

    rows = []
    folder = Path(out) / "runs"
    for f in sorted(folder.glob("run_id=*/run.parquet")) if folder.is_dir() else []:
        try:
            t = pq.read_table(f).to_pylist()
        except Exception as exc:  # pyarrow's errors: a foreign or broken file
            raise StoreError(f"{f}: not a readable runs file ({' '.join(str(exc).split())[:200]})") from None
        try:
            rows += [(r["run_id"], json.loads(r["config"]), r["started_at"]) for r in t]
        except (KeyError, TypeError, ValueError):
            raise StoreError(f"{f}: not a treeq runs file (run_id, config as JSON, started_at)") from None
    return sorted(rows, key=lambda r: r[2])


def finished_tasks(store: TreeStore, run_id: str) -> dict[str, tuple[bool, int, int, bool]]:
    """Tasks of the run already on disk: task id -> (solved, nodes, simulations, timed out).

    A task counts once its ``trees`` shard says ``ok`` or ``timeout`` (the job commits a
    task's nodes before its trees row, so the row's presence means the task is whole);
    an ``error`` row is redone.
    """
    import duckdb

    folder = store.root / "trees" / f"run_id={run_id}"
    files = sorted(str(f) for f in folder.glob("*.parquet")) if folder.is_dir() else []
    if not files:
        return {}
    rows = duckdb.sql("SELECT task_id, status, solved, nodes, simulations, filename "
                      "FROM read_parquet($files, union_by_name = true, filename = true)",
                      params={"files": files}).fetchall()

    def whole(task_id: str, trees_file: str) -> bool:  # a compacted task's nodes are in the nodes part files
        return Path(trees_file).name.startswith(PART_PREFIX) or store.path("nodes", run_id, task_id).is_file()

    return {t: (bool(sv), int(n), int(sims), st == "timeout") for t, st, sv, n, sims, f in rows
            if st in ("ok", "timeout") and whole(t, f)}
