"""Search Q against exact values on gymnasium toy-text and Blocksworld (issue 3's checks).

Every run goes through the same job as ``cli.py search`` and is read back from Parquet
with DuckDB. Gym: for each root action visited at least ``--min-visits`` times, |Q -
Q*| against value iteration (FrozenLake: absolute, tolerance 0.05; others: percent of
the Q* value range, tolerance 5%), and whether the most-visited root action is optimal
(or within 0.02 of optimal). Each gym config runs with the env's default search
(transpositions on) and with plain tree search (``--no-transpositions``) side by side.
Blocksworld: on the 3-block set, whether the best path in the tree is an optimal plan
and whether the root action with the highest label is an optimal first action.

    python benchmarks/exactness_envs.py                  # everything, a few minutes
    python benchmarks/exactness_envs.py --only gym --simulations 30000
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import duckdb
import numpy as np

from treeq.envs.registry import make_env
from treeq.mcts.search import SearchConfig
from treeq.pipelines.search import SearchJobConfig, run_search

GYM_CASES = [
    ("gym:FrozenLake-v1", {"is_slippery": False}, "abs"),
    ("gym:CliffWalking-v1", {}, "range"),
    ("gym:FrozenLake-v1", {}, "abs"),
    ("gym:Taxi-v4", {}, "range"),
]


def _rows(out: Path, sql: str) -> list[tuple]:
    con = duckdb.connect()
    con.execute(f"CREATE VIEW nodes AS SELECT * FROM read_parquet('{out}/nodes/**/*.parquet')")
    con.execute(f"CREATE VIEW trees AS SELECT * FROM read_parquet('{out}/trees/**/*.parquet')")
    return con.execute(sql).fetchall()


def gym_case(env_name: str, kwargs: dict, tol_kind: str, simulations: int, seeds: str, min_visits: int,
             transpositions: bool | None, tmp: Path) -> list[str]:
    out = tmp / f"{env_name.replace(':', '_')}-{json.dumps(kwargs, sort_keys=True)}-{transpositions}"
    cfg = SearchJobConfig(env=env_name, env_kwargs=kwargs, tasks=seeds, progress=False, workers=1, out=str(out),
                          search=SearchConfig(simulations=simulations, gamma=0.95, transpositions=transpositions))
    summary = run_search(cfg)
    env = make_env(env_name, **kwargs)
    q_star = env.q_star(0.95)
    value_range = float(q_star.max() - q_star.min())
    tol = 0.05 if tol_kind == "abs" else 0.05 * value_range
    lines = []
    for (task_id,) in _rows(out, "SELECT DISTINCT task_id FROM trees ORDER BY 1"):
        root_state = env.reset(next(t for t in env.load_tasks(seeds) if t.task_id == task_id))
        per_action = _rows(out, f"SELECT action, sum(visits), any_value(q) FROM nodes WHERE task_id = '{task_id}' "
                                f"AND parent_id = 0 GROUP BY action")
        qs = q_star[root_state.s]
        best = qs.max()
        worst_err, checked = 0.0, 0
        for action, visits, q in per_action:
            if visits >= min_visits:
                checked += 1
                worst_err = max(worst_err, abs(q - qs[env.actions.index(action)]))
        top = max(per_action, key=lambda r: r[1])
        top_gap = best - qs[env.actions.index(top[0])]
        ok_q = worst_err <= tol
        ok_top = top_gap <= 0.02 if tol_kind == "abs" else top_gap <= 1e-9 or top_gap <= 0.02
        err_text = f"{worst_err:.4f}" if tol_kind == "abs" else f"{100 * worst_err / value_range:.2f}% of range"
        mode = "graph (default)" if transpositions is None else "plain tree"
        lines.append(
            f"{env_name:<20} {json.dumps(kwargs):<24} {task_id:<8} {mode:<16} actions>={min_visits}: {checked}  "
            f"worst |Q-Q*| {err_text:<18} {'ok' if ok_q else 'FAIL':<4}  most visited {top[0]:<7} "
            f"(Q* gap {top_gap:.4f}) {'ok' if ok_top else 'FAIL'}  [{summary.seconds:.1f} s]"
        )
    return lines


def blocksworld(simulations: int, tmp: Path) -> str:
    from treeq.envs.blocksworld import exact_q, optimal_plan_length, optimal_value

    out = tmp / "bw"
    cfg = SearchJobConfig(env="blocksworld", progress=False, out=str(out), search=SearchConfig(simulations=simulations))
    run_search(cfg)
    env = make_env("blocksworld")
    tasks = {t.task_id: t for t in env.load_tasks(None)}
    rows = _rows(out, "SELECT task_id, node_id, parent_id, action, visits, coalesce(proven, q) AS label, terminal, reward "
                      "FROM nodes ORDER BY task_id, node_id")
    by_task: dict[str, list] = {}
    for r in rows:
        by_task.setdefault(r[0], []).append(r)
    plan_ok = first_ok = 0
    for task_id, nodes in by_task.items():
        children: dict[int, list] = {}
        for r in nodes:
            children.setdefault(r[2], []).append(r)
        root = env.reset(tasks[task_id])
        d_star = optimal_plan_length(root)
        # best path: follow the highest label (ties: more visits) from the root
        node, length, state = 0, 0, root
        while children.get(node):
            best = max(children[node], key=lambda r: (-1 if r[5] is None else r[5], r[4]))
            state = env.step(state, best[3]).state
            node, length = best[1], length + 1
            if best[6]:
                break
        plan_ok += length == d_star and best[7] == 1.0
        kids = [r for r in children[0] if r[5] is not None]
        top = max(kids, key=lambda r: (r[5], r[4]))
        first_ok += abs(exact_q(root, top[3], 0.95) - optimal_value(root, 0.95)) < 1e-12
    n = len(by_task)
    return (f"blocksworld 3-block: {n} instances, {simulations} simulations: best path optimal in {plan_ok}/{n} "
            f"({100 * plan_ok / n:.1f}%), top-labelled root action optimal in {first_ok}/{n} ({100 * first_ok / n:.1f}%)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["gym", "blocksworld"], default=None)
    ap.add_argument("--simulations", type=int, default=30000)
    ap.add_argument("--seeds", default="0", help="gym start seeds, e.g. 0:3")
    ap.add_argument("--min-visits", type=int, default=1000)
    ap.add_argument("--bw-simulations", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "gym"):
            print(f"gym toy-text, gamma 0.95, {args.simulations} simulations, seeds {args.seeds}", flush=True)
            for env_name, kwargs, kind in GYM_CASES:
                for trans in (None, False):
                    for line in gym_case(env_name, kwargs, kind, args.simulations, args.seeds, args.min_visits, trans, Path(tmp)):
                        print(line, flush=True)
        if args.only in (None, "blocksworld"):
            print(blocksworld(args.bw_simulations, Path(tmp)), flush=True)


if __name__ == "__main__":
    main()
