"""Simulations per second on Game of 24, one process: with and without the solver, random rollouts vs the zero evaluator.

The zero evaluator measures the tree alone (selection, expansion, backup); the gap to
rollouts is the cost of the default evaluator. With the solver, a search stops once the
root is proven (``exhausted``), so it runs fewer simulations: compare ms per puzzle too. Hooks come from the registry
(``make_hooks``) and each puzzle's generator from ``task_rng``, as in the batch job.
Every configuration runs on the same puzzles in one process, so the ratios are
meaningful on any machine.

    python benchmarks/search_speed.py --puzzles 20 --simulations 2000
"""

from __future__ import annotations

import argparse
import time

from treeq.envs.countdown import Game24Env
from treeq.mcts import SearchConfig, resolve_defaults, search
from treeq.pipelines.policies import make_hooks
from treeq.pipelines.search import task_rng


def run(env, tasks, cfg: SearchConfig, evaluator: str, seed: int) -> tuple[int, float, int, int]:
    """Search every task; return simulations, seconds (search only), rows and tasks solved."""
    cfg = resolve_defaults(cfg, env)
    sims = nodes = solved = 0
    secs = 0.0
    for task in tasks:
        rng = task_rng(seed, task.task_id)
        propose, evaluate = make_hooks(env, cfg, rng, evaluator=evaluator)
        root = env.reset(task, rng)
        t0 = time.perf_counter()
        r = search(env, root, cfg, rng, propose=propose, evaluate=evaluate)
        secs += time.perf_counter() - t0
        sims += r.simulations
        nodes += r.tree.size
        solved += r.solved
    return sims, secs, nodes, solved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--puzzles", type=int, default=20, help="how many puzzles")
    ap.add_argument("--simulations", type=int, default=2000, help="simulations per puzzle")
    ap.add_argument("--start", type=int, default=900, help="first puzzle row (ToT's test rows are 900-999)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each configuration; the fastest is reported")
    ap.add_argument("--seed", type=int, default=0, help="the job's root seed (task generators derive from it)")
    args = ap.parse_args()
    env = Game24Env()
    tasks = env.load_tasks(None)[args.start : args.start + args.puzzles]
    run(env, tasks[:2], SearchConfig(simulations=200, solver=False), "rollout", args.seed)  # warm caches
    print(f"Game of 24, {len(tasks)} puzzles from row {args.start}, {args.simulations} simulations each, "
          f"one process, tree mode (the env's default), fastest of {args.repeats} runs")
    print(f"{'evaluator':<10} {'solver':<7} {'simulations':>12} {'seconds':>8} {'sim/s':>9} {'nodes':>10} {'ms/puzzle':>9} {'solved':>7}")
    rates = {}
    for solver in (False, True):
        for evaluator in ("rollout", "zero"):
            cfg = SearchConfig(simulations=args.simulations, solver=solver)
            runs = [run(env, tasks, cfg, evaluator, args.seed) for _ in range(args.repeats)]
            sims, secs, nodes, solved = min(runs, key=lambda r: r[1])  # same seed: same tree each time
            rates[(evaluator, solver)] = sims / secs
            print(f"{evaluator:<10} {'on' if solver else 'off':<7} {sims:>12,} {secs:>8.2f} {sims / secs:>9,.0f} "
                  f"{nodes:>10,} {1000 * secs / len(tasks):>9.1f} {f'{solved}/{len(tasks)}':>7}", flush=True)
    for solver in (False, True):
        ratio = rates[("zero", solver)] / rates[("rollout", solver)]
        print(f"solver {'on' if solver else 'off'}: tree alone (zero evaluator) is {ratio:.2f}x the rate with rollouts")
    for evaluator in ("rollout", "zero"):
        ratio = rates[(evaluator, True)] / rates[(evaluator, False)]
        print(f"{evaluator}: solver on is {ratio:.2f}x the rate with the solver off")


if __name__ == "__main__":
    main()
