"""Writing millions of nodes, and scanning them after ``compact``.

Writes ``--nodes`` rows (default 10,000,000) as ``--tasks`` task shards through
``TreeStore.write`` — the same call, schema check and atomic write as a search job's
commits — from ``--writers`` processes (a job's workers stage their shards in parallel),
then reports:

* write rate: nodes per second over the whole write (wall clock, all writers);
* a DuckDB aggregate over every node — visits-weighted mean Q by depth — on the
  per-task shards, then ``compact`` and the same query on the compacted files (each
  the best of three runs, through ``treeq.data.store.connect`` as ``query`` reads).

The rows are synthetic but shaped like Game of 24 trees (strings of the same lengths,
depths 0-3): generating them is outside the timed write (one template task per writer,
its ids and numbers changed per task).

    python benchmarks/store_scale.py                     # 10M nodes, 1,000 tasks, 2 writers
    python benchmarks/store_scale.py --nodes 1000000 --tasks 200
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def _template(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    i = np.arange(n)
    return {
        "node_id": i.astype(np.int32), "parent_id": np.maximum(i // 8 - 1, -1).astype(np.int32),
        "depth": np.minimum(np.log2(i + 1).astype(np.int32) // 3, 3).astype(np.int32),
        "action": [None] + [f"{k % 13} + {k % 7} = {k % 13 + k % 7} (left: {k % 11} {k % 5} {k % 9})" for k in range(1, n)],
        "state_key": [f"target=24 left={k % 11} {k % 5} {k}" for k in range(n)],
        "observation": [f"Use each number once with + - * / to reach 24.\nInput: {k % 11} {k % 5} {k}\nSteps:"
                        for k in range(n)],
        "prior": rng.random(n), "visits": rng.integers(0, 40, n), "value_sum": rng.random(n) * 10, "q": rng.random(n),
        "reward": np.zeros(n), "terminal": rng.random(n) < 0.2, "proven": [None] * n, "feedback": [None] * n,
    }


def _write(args: tuple[str, list[int], int]) -> int:
    from treeq.data.store import TreeStore

    root, task_ids, n = args
    store = TreeStore(root)
    cols = _template(n, task_ids[0] if task_ids else 0)
    for t in task_ids:
        task = f"task-{t:06d}"
        store.write("nodes", "bench", cols | {"run_id": ["bench"] * n, "task_id": [task] * n}, task)
    return len(task_ids) * n


def _query_seconds(root: Path) -> tuple[float, list]:
    from treeq.data.store import connect

    best, result = float("inf"), None
    for _ in range(3):
        t0 = time.perf_counter()
        con = connect(root)
        result = con.execute("SELECT depth, sum(q * visits) / sum(visits) AS q FROM nodes GROUP BY depth "
                             "ORDER BY depth").fetchall()
        con.close()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--nodes", type=int, default=10_000_000)
    ap.add_argument("--tasks", type=int, default=1_000)
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--work", default=None, help="folder for the store (default: a temporary one, removed)")
    args = ap.parse_args()

    from treeq.data.compact import compact
    from treeq.data.store import TreeStore

    work = Path(args.work or tempfile.mkdtemp(prefix="treeq-scale-"))
    root = work / "store"
    shutil.rmtree(root, ignore_errors=True)
    store = TreeStore(root)
    now = dt.datetime.now(dt.UTC)
    store.write("runs", "bench", {"run_id": ["bench"], "config": [json.dumps({})], "versions": ["{}"], "seed": [0],
                                  "started_at": [now], "ended_at": [now]})
    per_task = args.nodes // args.tasks
    chunks = [list(range(w, args.tasks, args.writers)) for w in range(args.writers)]
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.writers) as pool:
        pool.map(_write, [(str(root), [], per_task)] * args.writers)  # start the workers (imports) untimed
        t0 = time.perf_counter()
        written = sum(pool.map(_write, [(str(root), c, per_task) for c in chunks]))
        seconds = time.perf_counter() - t0
    print(f"wrote {written:,} nodes in {args.tasks:,} task shards with {args.writers} writers in {seconds:.1f} s: "
          f"{written / seconds:,.0f} nodes/s")
    before, result = _query_seconds(root)
    print(f"visits-weighted mean Q by depth over {written:,} nodes, {args.tasks:,} files: {before:.2f} s")
    t0 = time.perf_counter()
    counts = compact(root)
    print(f"compact: {counts['nodes'][0]:,} files -> {counts['nodes'][1]:,} in {time.perf_counter() - t0:.1f} s")
    after, result2 = _query_seconds(root)
    assert [r[0] for r in result] == [r[0] for r in result2]
    assert all(abs(a[1] - b[1]) < 1e-9 for a, b in zip(result, result2))
    print(f"the same query after compact: {after:.2f} s ({before / after:.1f}x faster)")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
