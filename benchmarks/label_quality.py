"""Label quality of Game of 24 trees: solve rate and per-depth AUROC against the exact solver.

Searches a random sample of the shipped puzzles (a fresh sample each run unless
``--sample-seed`` is given) twice, with and without the MCTS-Solver, through the same
job as ``cli.py search``; then reads the Parquet trees with DuckDB and scores each
node's label (``proven`` where the solver proved it, else ``q``) against whether the
target is still reachable from the node's state.

    python benchmarks/label_quality.py --puzzles 100 --simulations 2000
"""

from __future__ import annotations

import argparse
import os
import tempfile
from fractions import Fraction
from pathlib import Path

import duckdb
import numpy as np

from treeq.envs.base import Task
from treeq.envs.countdown import Game24Env, exact_q, optimal_value, solvable
from treeq.mcts.search import SearchConfig
from treeq.pipelines.search import SearchJobConfig, run_search
from treeq.prm.metrics import auroc


def _numbers(state_key: str) -> tuple[list[Fraction], Fraction]:
    target, left = state_key.split(" left=")
    return [Fraction(x) for x in left.split()], Fraction(target.removeprefix("target="))


def evaluate(out: Path, min_visits: int) -> dict:
    con = duckdb.connect()
    nodes = con.sql(
        f"SELECT n.task_id, n.node_id, n.depth, n.visits, n.q, n.proven, n.state_key, p.state_key AS parent_key, n.action "
        f"FROM read_parquet('{out}/nodes/**/*.parquet') n "
        f"LEFT JOIN read_parquet('{out}/nodes/**/*.parquet') p ON p.task_id = n.task_id AND p.node_id = n.parent_id"
    ).fetchall()
    trees = con.execute(f"SELECT count(*), sum(solved::int) FROM read_parquet('{out}/trees/**/*.parquet')").fetchone()
    per_depth: dict[int, tuple[list, list]] = {}
    proven_checked = proven_wrong = 0
    env = Game24Env()
    for _task_id, _node_id, depth, visits, q, proven, key, parent_key, action in nodes:
        nums, target = _numbers(key)
        if proven is not None:
            proven_checked += 1
            if parent_key is None:
                exact = optimal_value(env.reset(_task(nums)))
            else:
                pnums, _ = _numbers(parent_key)
                exact = exact_q(env.reset(_task(pnums)), action)
            proven_wrong += exact != proven
        if visits < min_visits:
            continue
        label = proven if proven is not None else q
        scores, labels = per_depth.setdefault(depth, ([], []))
        scores.append(label)
        labels.append(solvable(nums, target))
    aurocs = {d: (auroc(s, y), len(s), int(np.sum(y))) for d, (s, y) in sorted(per_depth.items())}
    return {"tasks": trees[0], "solved": trees[1], "auroc": aurocs, "proven": proven_checked, "proven_wrong": proven_wrong}


def _task(nums):
    return Task("x", {"numbers": [str(x) for x in nums], "target": "24"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--puzzles", type=int, default=100)
    ap.add_argument("--simulations", type=int, default=2000)
    ap.add_argument("--min-visits", type=int, default=5)
    ap.add_argument("--sample-seed", type=int, default=None, help="default: drawn from os.urandom")
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()
    sample_seed = args.sample_seed if args.sample_seed is not None else int.from_bytes(os.urandom(4), "little")
    tasks = Game24Env().load_tasks(None)
    pick = np.random.default_rng(sample_seed).choice(len(tasks), size=args.puzzles, replace=False)
    print(f"sample seed {sample_seed}: {args.puzzles} of {len(tasks)} puzzles, {args.simulations} simulations each", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        task_file = Path(tmp) / "sample.jsonl"
        task_file.write_text(
            "".join(
                f'{{"task_id": "{tasks[i].task_id}", "numbers": [{", ".join(tasks[i].payload["numbers"])}], "target": 24}}\n'
                for i in sorted(pick)
            )
        )
        for solver in (True, False):
            out = Path(tmp) / f"out-{solver}"
            cfg = SearchJobConfig(
                env="game24", tasks=str(task_file), out=str(out), workers=args.workers, progress=False,
                search=SearchConfig(simulations=args.simulations, solver=solver),
            )
            summary = run_search(cfg)
            res = evaluate(out, args.min_visits)
            name = "solver (default)" if solver else "--no-solver"
            print(f"\n{name}: solved {res['solved']}/{res['tasks']} ({100 * res['solved'] / res['tasks']:.1f}%), "
                  f"{summary.simulations:,} simulations, {summary.sims_per_second:,.0f} sim/s")
            print(f"  proven values checked against the exact solver: {res['proven']:,}, disagreeing: {res['proven_wrong']}")
            print(f"  AUROC of label (proven, else q) vs 'target reachable', nodes with >= {args.min_visits} visits:")
            for depth, (a, n, pos) in res["auroc"].items():
                shown = "n/a (one class)" if np.isnan(a) else f"{a:.4f}"
                print(f"    depth {depth}: {shown}  ({n:,} nodes, {pos:,} reachable)")


if __name__ == "__main__":
    main()
