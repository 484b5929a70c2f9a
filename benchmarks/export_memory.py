"""Peak memory and time of the exports on a large store: bounded, not growing with the store.

Builds (once, under ``--work``) synthetic tree stores of ``--sizes`` nodes (default
100,000 and 1,000,000) and a trajectory file of as many steps whose state keys meet the
trees, then runs each export as a user would, in a fresh process:

* ``export-dpo`` (rule agentq) and ``export-prm-data`` over the store;
* ``export-rewards`` with grpo, gigpo, loop, turn, gae and mcts_q (tree values joined
  from the store) over the trajectory file.

For each run it prints the wall time and the peak resident memory of that process
(``os.wait4``'s ``ru_maxrss``), and the output rows. Bounded memory shows as a peak that
stays nearly flat from the small store to the large one (ten times the rows), while a
whole-store reader would grow with it: the DPO and PRM exports read 64 task shards per
query, export-rewards reads its file a batch at a time and aggregates the tree values
into a DuckDB file on disk, its memory capped (``EXPORT_MEMORY``, 512MB by default,
``TREEQ_EXPORT_MEMORY`` to change it).

The synthetic trees: ``--nodes-per-tree`` nodes each (default 1,000), every node a
child of a random earlier node of depth < 6, four-number Game-of-24-like texts, random
visits (1-20) and Q in [0, 1], terminals at depth >= 3 with reward 0 or 1, proven.
Seeded (``numpy`` Generator, ``--seed``): the same store every time.

    python benchmarks/export_memory.py
    python benchmarks/export_memory.py --sizes 1000000 --work /tmp/treeq-bench
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from treeq.data.store import TreeStore


def build_store(root: Path, nodes: int, per_tree: int, seed: int) -> None:
    """A store of ``nodes`` nodes in trees of ``per_tree`` (skipped when ``root`` is complete)."""
    done = root / "DONE"
    if done.exists():
        return
    rng = np.random.default_rng(seed)
    store = TreeStore(root)
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    store.write("runs", "bench", {"run_id": ["bench"], "config": [json.dumps({"search": {"gamma": 1.0}})],
                                  "versions": ["{}"], "seed": [seed], "started_at": [now], "ended_at": [now]})
    for t in range(nodes // per_tree):
        task = f"task-{t:07d}"
        parent = np.full(per_tree, -1, dtype=np.int64)
        depth = np.zeros(per_tree, dtype=np.int64)
        for i in range(1, per_tree):
            while True:
                p = int(rng.integers(0, i))
                if depth[p] < 6:
                    break
            parent[i], depth[i] = p, depth[p] + 1
        terminal = (depth >= 3) & (rng.random(per_tree) < 0.3)
        reward = np.where(terminal, (rng.random(per_tree) < 0.4).astype(float), 0.0)
        visits = rng.integers(1, 21, per_tree)
        q = np.where(terminal, reward, rng.random(per_tree))
        keys = [f"{task} s{i}" for i in range(per_tree)]
        store.write("nodes", "bench", {
            "run_id": ["bench"] * per_tree, "task_id": [task] * per_tree, "node_id": list(range(per_tree)),
            "parent_id": parent.tolist(), "depth": depth.tolist(),
            "action": [None] + [f"{i % 13} + {i % 7} = {i % 13 + i % 7} (left: {i % 11} {i % 5} {i})"
                                for i in range(1, per_tree)],
            "state_key": keys, "observation": [f"Use 4 numbers to make 24. Left: {i % 11} {i % 5} {i}" for i in range(per_tree)],
            "prior": [0.25] * per_tree, "visits": visits.tolist(), "value_sum": (q * visits).tolist(), "q": q.tolist(),
            "reward": reward.tolist(), "terminal": terminal.tolist(),
            "proven": [float(r) if term else None for r, term in zip(reward, terminal)], "feedback": [None] * per_tree,
        }, task)
        store.write("trees", "bench", {"run_id": ["bench"], "task_id": [task], "env": ["game24"],
                                       "simulations": [per_tree], "nodes": [per_tree], "root_value": [0.5],
                                       "best_action": [None], "solved": [True], "seconds": [0.0], "backup": ["mean"],
                                       "status": ["ok"], "error": [None]}, task)
    done.write_text("ok\n")


def build_steps(path: Path, store: Path, steps: int, seed: int) -> None:
    """Groups of 8 trajectories of 4 steps (``steps`` rows), each step an edge of the store.

    A step's state is a node's parent, its action the node's text, its next state the
    node, so ``mcts_q`` and ``gae`` find them in the trees (edges of the first 100
    trees); in one trajectory of ten the last step is a state the trees lack.
    """
    import duckdb

    if path.exists():
        return
    rng = np.random.default_rng(seed + 1)
    edges = duckdb.sql(
        f"SELECT p.state_key, c.action, c.state_key FROM read_parquet('{store}/nodes/**/*.parquet') c "
        f"JOIN read_parquet('{store}/nodes/**/*.parquet') p ON p.task_id = c.task_id AND p.node_id = c.parent_id "
        f"WHERE c.task_id < 'task-0000100' ORDER BY c.task_id, c.node_id").fetchall()
    schema = pa.schema([
        ("trajectory_id", pa.string()), ("group_id", pa.string()), ("step", pa.int64()), ("state_key", pa.string()),
        ("next_state_key", pa.string()), ("action", pa.string()), ("reward", pa.float64()),
        ("terminated", pa.bool_())])
    writer = pq.ParquetWriter(path, schema)
    cols: dict[str, list] = {name: [] for name in schema.names}
    n_traj = steps // 4
    for j in range(n_traj):
        group = j // 8
        for s in range(4):
            if s == 3 and j % 10 == 0:
                key, action, nxt = f"elsewhere {j}", "1 + 1 = 2 (left: 2)", f"elsewhere {j} end"
            else:
                key, action, nxt = edges[int(rng.integers(len(edges)))]
            for name, value in (("trajectory_id", f"g{group}/{j}"), ("group_id", f"g{group}"), ("step", s),
                                ("state_key", key), ("next_state_key", nxt), ("action", action),
                                ("reward", float(s == 3 and rng.random() < 0.4)), ("terminated", s == 3)):
                cols[name].append(value)
        if len(cols["step"]) >= 200_000 or j == n_traj - 1:
            writer.write_table(pa.table(cols, schema=schema))
            cols = {name: [] for name in schema.names}
    writer.close()


def run(argv: list[str]) -> tuple[float, float, str]:
    """Run ``treeq <argv>`` in a fresh process: (seconds, peak RSS in MiB, last output line)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "treeq.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    out_text = proc.stdout.read()
    err_text = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"treeq {' '.join(argv)} failed: {err_text.strip().splitlines()[-1:]}")
    return seconds, usage.ru_maxrss / 1024, (out_text.strip().splitlines() or [""])[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000,1000000", help="Comma-separated store sizes in nodes.")
    ap.add_argument("--nodes-per-tree", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="/tmp/treeq-export-bench", help="Where the stores and outputs go.")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; one fresh process per export")
    print(f"{'nodes':>9}  {'export':<16} {'seconds':>8} {'peak MiB':>9}  output")
    for size in (int(s) for s in args.sizes.split(",")):
        store, steps = work / f"store-{size}", work / f"steps-{size}.parquet"
        t0 = time.perf_counter()
        build_store(store, size, args.nodes_per_tree, args.seed)
        build_steps(steps, store, size, args.seed)
        print(f"{size:>9,}  (built in {time.perf_counter() - t0:.0f} s: {size:,} nodes, {size:,} trajectory steps)")
        jobs = {
            "export-dpo": ["export-dpo", str(store), "--out", str(work / f"dpo-{size}.parquet"), "--no-progress"],
            "export-prm-data": ["export-prm-data", str(store), "--out", str(work / f"prm-{size}.parquet"),
                                "--no-progress"],
            "export-rewards": ["export-rewards", str(steps), "--out", str(work / f"rw-{size}.parquet"),
                               "--estimators", "grpo,gigpo,loop,turn,gae,mcts_q", "--trees", str(store),
                               "--no-progress"],
        }
        for name, argv in jobs.items():
            seconds, peak, line = run(argv)
            print(f"{size:>9,}  {name:<16} {seconds:>8.1f} {peak:>9.0f}  {line}", flush=True)


if __name__ == "__main__":
    main()
