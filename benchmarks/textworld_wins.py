"""TextWorld: are games the search has never seen won within a few thousand simulations?

Generates games with TextWorld's own ``tw-make`` for seeds drawn at random (printed, so
a run can be repeated with ``--seeds``), quest lengths 3 to 5, then searches each with
the default TextWorld search (graph search, optimistic leaf values) and
``--stop-on-solve``, so ``trees.simulations`` is the number of simulations to the
first win. The job's root seed is drawn at random too (printed; ``--search-seed``).
Also checks restore-after-divergence on every game with the env checker.

    python benchmarks/textworld_wins.py --games-per-length 4 --simulations 3000
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import duckdb
import numpy as np

from treeq.envs.checker import check_env
from treeq.envs.registry import make_env
from treeq.mcts import SearchConfig
from treeq.pipelines.search import SearchJobConfig, run_search
from treeq.pipelines.textworld_games import make_games


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--games-per-length", type=int, default=4, help="games for each quest length 3, 4 and 5")
    ap.add_argument("--simulations", type=int, default=3000, help="simulations per game (the search stops at a win)")
    ap.add_argument("--world-size", type=int, default=5, help="rooms per game (tw-make --world-size)")
    ap.add_argument("--nb-objects", type=int, default=8, help="objects per game (tw-make --nb-objects)")
    ap.add_argument("--seeds", default=None,
                    help="comma-separated game seeds, 3 x games-per-length (default: drawn from os.urandom)")
    ap.add_argument("--search-seed", type=int, default=None, help="the job's root seed (default: drawn from os.urandom)")
    ap.add_argument("--workers", type=int, default=1, help="worker processes of the search job")
    args = ap.parse_args()
    n = args.games_per_length
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else \
        [int.from_bytes(os.urandom(3), "little") for _ in range(3 * n)]
    if len(seeds) != 3 * n:
        ap.error(f"--seeds needs 3 x {n} = {3 * n} seeds, got {len(seeds)}")
    search_seed = args.search_seed if args.search_seed is not None else int.from_bytes(os.urandom(4), "little")
    print(f"game seeds {','.join(map(str, seeds))}; search seed {search_seed}; world size {args.world_size}, "
          f"{args.nb_objects} objects, {args.simulations} simulations", flush=True)
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
                                       seed=search_seed, workers=args.workers,
                                       search=SearchConfig(simulations=args.simulations, stop_on_solve=True)))
            res = duckdb.sql(f"SELECT task_id, solved, simulations, nodes, seconds, status, error FROM "
                             f"read_parquet('{out}/trees/**/*.parquet') ORDER BY task_id").fetchall()
            for task_id, solved, sims, nodes, secs, status, error in res:
                walk = env.walkthrough_length(next(t for t in env.load_tasks(games_dir) if t.task_id == task_id))
                rows.append((quest_length, task_id, walk, solved, sims, nodes, secs, status, error))
        print(f"{'quest':>5} {'game':<14} {'walkthrough':>11} {'won':>5} {'sims to win':>11} {'nodes':>7} "
              f"{'seconds':>8} {'status':>7}")
        for q, task_id, walk, solved, sims, nodes, secs, status, error in rows:
            print(f"{q:>5} {task_id:<14} {walk:>11} {solved!s:>5} {sims if solved else '-':>11} {nodes:>7} "
                  f"{secs:>8.1f} {status:>7}" + (f"  {error}" if error else ""))
        wins = [r[4] for r in rows if r[3]]
        print(f"won {len(wins)}/{len(rows)}"
              + (f"; simulations to win: median {np.median(wins):.0f}, mean {np.mean(wins):.0f}, max {max(wins)}"
                 if wins else "")
              + "; restore-after-divergence checked on every game (env checker): ok")


if __name__ == "__main__":
    main()
