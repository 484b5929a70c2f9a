"""TextWorld: are games the search has never seen won within a few thousand simulations?

Generates games with TextWorld's own ``tw-make`` for seeds drawn at random (printed, so
a run can be repeated with ``--seeds``), quest lengths 3 to 5, then searches each with
the default TextWorld search (graph search, optimistic leaf values) and
``--stop-on-solve``, so ``trees.simulations`` is the number of simulations to the
first win. Also checks restore-after-divergence on every game with the env checker.

    python benchmarks/textworld_wins.py --games-per-length 4 --simulations 3000
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import duckdb

from treeq.envs.checker import check_env
from treeq.envs.registry import make_env
from treeq.mcts.search import SearchConfig
from treeq.pipelines.search import SearchJobConfig, run_search
from treeq.pipelines.textworld_games import make_games


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--games-per-length", type=int, default=4)
    ap.add_argument("--simulations", type=int, default=3000)
    ap.add_argument("--world-size", type=int, default=5)
    ap.add_argument("--nb-objects", type=int, default=8)
    ap.add_argument("--seeds", default=None, help="comma-separated seeds (default: drawn from os.urandom)")
    args = ap.parse_args()
    n = args.games_per_length
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else \
        [int.from_bytes(os.urandom(3), "little") for _ in range(3 * n)]
    print(f"seeds {','.join(map(str, seeds))}; world size {args.world_size}, {args.nb_objects} objects, "
          f"{args.simulations} simulations", flush=True)
    env = make_env("textworld")
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for i, quest_length in enumerate((3, 4, 5)):
            games_dir = Path(tmp) / f"q{quest_length}"
            make_games(games_dir, seeds[i * n:(i + 1) * n], quest_length=quest_length,
                       world_size=args.world_size, nb_objects=args.nb_objects)
            for task in env.load_tasks(games_dir):
                check_env(env, task, steps=15)
            out = Path(tmp) / f"out{quest_length}"
            run_search(SearchJobConfig(env="textworld", tasks=str(games_dir), out=str(out), progress=False,
                                       search=SearchConfig(simulations=args.simulations, stop_on_solve=True)))
            res = duckdb.sql(f"SELECT task_id, solved, simulations, nodes, seconds FROM "
                             f"read_parquet('{out}/trees/**/*.parquet') ORDER BY task_id").fetchall()
            for task_id, solved, sims, nodes, secs in res:
                walk = env.walkthrough_length(next(t for t in env.load_tasks(games_dir) if t.task_id == task_id))
                rows.append((quest_length, task_id, walk, solved, sims, nodes, secs))
        print(f"{'quest':>5} {'game':<14} {'walkthrough':>11} {'won':>5} {'sims to win':>11} {'nodes':>7} {'seconds':>8}")
        for q, task_id, walk, solved, sims, nodes, secs in rows:
            print(f"{q:>5} {task_id:<14} {walk:>11} {str(solved):>5} {sims if solved else '-':>11} {nodes:>7} {secs:>8.1f}")
        won = sum(r[3] for r in rows)
        print(f"won {won}/{len(rows)}; restore-after-divergence checked on every game (env checker): ok")


if __name__ == "__main__":
    main()
