"""Simulations per second on Game of 24, one process: random rollouts vs a zero evaluator.

The zero evaluator measures the tree alone (selection, expansion, backup); the gap to
rollouts is the cost of the default evaluator. Both run side by side on the same
puzzles in one process, so the ratio is meaningful on any machine.

    python benchmarks/search_speed.py --puzzles 20 --simulations 2000
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from treeq.envs.countdown import Game24Env
from treeq.mcts.hooks import zero_evaluate
from treeq.mcts.search import SearchConfig, search


def run(env, states, cfg: SearchConfig, evaluate) -> tuple[int, float, int]:
    sims = nodes = 0
    t0 = time.perf_counter()
    for i, s in enumerate(states):
        r = search(env, s, cfg, np.random.default_rng(i), evaluate=evaluate)
        sims += r.simulations
        nodes += r.tree.size
    return sims, time.perf_counter() - t0, nodes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--puzzles", type=int, default=20)
    ap.add_argument("--simulations", type=int, default=2000)
    ap.add_argument("--start", type=int, default=900, help="first puzzle row (ToT's test rows are 900-999)")
    args = ap.parse_args()
    env = Game24Env()
    tasks = env.load_tasks(None)[args.start : args.start + args.puzzles]
    states = [env.reset(t) for t in tasks]
    run(env, states[:2], SearchConfig(simulations=200, solver=False), None)  # warm caches
    print(f"Game of 24, {len(states)} puzzles from row {args.start}, {args.simulations} simulations each, one process")
    print(f"{'evaluator':<12} {'solver':<7} {'simulations':>12} {'seconds':>8} {'sim/s':>9} {'nodes':>10}")
    rates = {}
    for solver in (False, True):
        for name, ev in (("rollout", None), ("zero", zero_evaluate)):
            cfg = SearchConfig(simulations=args.simulations, solver=solver)
            sims, secs, nodes = run(env, states, cfg, ev)
            rates[(name, solver)] = sims / secs
            print(f"{name:<12} {'on' if solver else 'off':<7} {sims:>12,} {secs:>8.2f} {sims / secs:>9,.0f} {nodes:>10,}")
    for solver in (False, True):
        ratio = rates[("zero", solver)] / rates[("rollout", solver)]
        print(f"solver {'on' if solver else 'off'}: tree alone is {ratio:.2f}x the rate with rollouts")


if __name__ == "__main__":
    main()
