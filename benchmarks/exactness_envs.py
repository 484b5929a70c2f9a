"""Search values against exact ones on gymnasium toy-text and Blocksworld (issue 6's acceptance).

Every search is set up as the batch job sets it up (``treeq.pipelines.search``): the
env's defaults resolved by ``resolve_defaults``, the task's generator from
``task_rng(search seed, task id)``, both hooks from the registry (``make_hooks``, so
the env's default evaluator), then ``treeq.mcts.search``; the tree is read directly.

Gym (gamma 0.95, 30,000 simulations, default settings = graph search): per run, the
distinct state keys in the tree against the env's state count (``len(unwrapped.P)``),
whether the most visited root action is optimal by Q* (value iteration over
``unwrapped.P``), and the worst |Q - Q*| over root actions with >= 1,000 visits against
the tolerance (0.01; slippery FrozenLake 0.03). Each run at ``--wave-sizes`` (1 and
16); ``--with-tree`` adds plain tree search (``transpositions=False``) for comparison.

Blocksworld (1,000 simulations): the 3-block set and the 111 four/five-block
instances, graph mode (the env's default) and tree mode: tasks solved, best path
(``Tree.best_path``) an optimal plan (reaches the goal in ``optimal_plan_length``
actions), and every proven value against the BFS-exact Q* / V*.

Search seeds are drawn fresh from ``os.urandom`` unless ``--seeds`` is given and are
printed, so a run can be repeated; the start seed of each gym task (only Taxi's start
depends on it) is the search seed unless ``--start-seeds`` says otherwise.

    python benchmarks/exactness_envs.py                          # everything, a few minutes
    python benchmarks/exactness_envs.py --only gym --seeds 1,2,3 --with-tree
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from treeq.envs.base import Task, parse_seed_spec
from treeq.envs.blocksworld import is_goal
from treeq.envs.blocksworld.exact import exact_q, optimal_plan_length, optimal_value
from treeq.envs.registry import make_env
from treeq.mcts import ROOT, SearchConfig, resolve_defaults, search
from treeq.pipelines.policies import make_hooks
from treeq.pipelines.search import task_rng

TASKS = Path(__file__).resolve().parent.parent / "envs" / "tasks" / "blocksworld"
# (label, env name, env kwargs, |Q - Q*| tolerance)
GYM_CASES = [
    ("FrozenLake 4x4", "gym:FrozenLake-v1", {"is_slippery": False}, 0.01),
    ("FrozenLake 8x8", "gym:FrozenLake-v1", {"is_slippery": False, "map_name": "8x8"}, 0.01),
    ("CliffWalking", "gym:CliffWalking-v1", {}, 0.01),
    ("Taxi", "gym:Taxi-v4", {}, 0.01),
    ("FrozenLake slippery", "gym:FrozenLake-v1", {}, 0.03),
]
BW_SETS = [("3 blocks", str(TASKS / "3")), ("4-5 blocks", str(TASKS / "4-5" / "instance-1*.pddl"))]
OPTIMAL_GAP = 1e-9  # an action is optimal when its Q* is this close to the best Q*
PROVEN_TOL = 1e-9

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
ap.add_argument("--only", choices=["gym", "blocksworld"], default=None, help="run one part only")
ap.add_argument("--seeds", default=None,
                help="search seeds, 'A,B,C' or 'A:B'; default: --n-seeds drawn from os.urandom")
ap.add_argument("--n-seeds", type=int, default=3, help="how many seeds to draw when --seeds is not given")
ap.add_argument("--start-seeds", default=None,
                help="gym start seeds, 'A,B,C' or 'A:B', one per search seed; default: the search seeds")
ap.add_argument("--simulations", type=int, default=30_000, help="gym: simulations per search")
ap.add_argument("--gamma", type=float, default=0.95, help="gym: discount")
ap.add_argument("--wave-sizes", default="1,16", help="gym: comma-separated wave sizes (leaves per wave)")
ap.add_argument("--min-visits", type=int, default=1000, help="gym: root actions checked against Q* need this many visits")
ap.add_argument("--with-tree", action="store_true", help="gym: also run plain tree search (transpositions=False)")
ap.add_argument("--bw-simulations", type=int, default=1000, help="blocksworld: simulations per search")
ap.add_argument("--bw-modes", default="graph,tree", help="blocksworld: 'graph' (the default), 'tree' or both")
args = ap.parse_args()

if args.seeds:
    seeds = parse_seed_spec(args.seeds) or ap.error(f"--seeds: 'A,B,C' or 'A:B', got {args.seeds!r}")
else:
    seeds = [int.from_bytes(os.urandom(4), "little") for _ in range(args.n_seeds)]
if args.start_seeds:
    start_seeds = parse_seed_spec(args.start_seeds) or ap.error(f"--start-seeds: 'A,B,C' or 'A:B', got {args.start_seeds!r}")
else:
    start_seeds = list(seeds)
if len(start_seeds) != len(seeds):
    ap.error(f"--start-seeds needs one seed per search seed ({len(seeds)}), got {len(start_seeds)}")
batch_sizes = [int(b) for b in args.wave_sizes.split(",")]
bw_modes = [m.strip() for m in args.bw_modes.split(",") if m.strip()]
if not bw_modes or set(bw_modes) - {"graph", "tree"}:
    ap.error(f"--bw-modes: 'graph', 'tree' or 'graph,tree', got {args.bw_modes!r}")
print(f"search seeds {','.join(map(str, seeds))}; gym start seeds {','.join(map(str, start_seeds))}", flush=True)


def run_job_search(env, task: Task, cfg: SearchConfig, seed: int):
    """One task searched as the job would: resolved defaults, task generator, registry hooks."""
    cfg = resolve_defaults(cfg, env)
    rng = task_rng(seed, task.task_id)
    propose, evaluate = make_hooks(env, cfg, rng)
    root = env.reset(task, rng)
    t0 = time.perf_counter()
    result = search(env, root, cfg, rng, propose=propose, evaluate=evaluate)
    return cfg, root, result, time.perf_counter() - t0


misses: list[str] = []

# ------------------------------------------------------------------------------------------ gym
if args.only in (None, "gym"):
    modes = [("graph", None)] + ([("tree", False)] if args.with_tree else [])
    print(f"\ngym toy-text: gamma {args.gamma}, {args.simulations:,} simulations, env defaults otherwise; "
          f"Q checked on root actions with >= {args.min_visits:,} visits")
    print(f"{'env':<20} {'mode':<5} {'batch':>5} {'seed':>10} {'start':>10} {'keys/states':>11} "
          f"{'most visited':<16} {'Q* gap':>7} {'opt':>4} {'checked':>7} {'max|Q-Q*|':>9} {'tol':>5} {'ok':>4} {'s':>5}")
    for label, env_name, kwargs, tol in GYM_CASES:
        env = make_env(env_name, **kwargs)
        q_star = env.q_star(args.gamma)
        n_states = len(env._u.P)
        for mode, transpositions in modes:
            for batch in batch_sizes:
                for seed, start in zip(seeds, start_seeds):
                    task = Task(f"seed-{start}", {"seed": start})
                    cfg = SearchConfig(simulations=args.simulations, gamma=args.gamma, wave_size=batch,
                                       transpositions=transpositions)
                    cfg, root, result, secs = run_job_search(env, task, cfg, seed)
                    tree = result.tree
                    n_keys = len(set(tree.state_keys))
                    # root actions: a stochastic action has one row per sampled outcome
                    visits: dict[str, int] = {}
                    value_sum: dict[str, float] = {}
                    for row in tree.children(tree.listing_row(ROOT)):
                        a = tree.action_text(row)
                        visits[a] = visits.get(a, 0) + int(tree.visits[row])
                        value_sum[a] = value_sum.get(a, 0.0) + float(tree.value_sum[row])
                    qs = q_star[root.s]
                    best_q = float(qs.max())
                    top_visits = max(visits.values())
                    tops = [a for a, v in visits.items() if v == top_visits]
                    top_gap = max(best_q - float(qs[env.actions.index(a)]) for a in tops)
                    top_ok = top_gap <= OPTIMAL_GAP
                    errors = [abs(value_sum[a] / visits[a] - float(qs[env.actions.index(a)]))
                              for a in visits if visits[a] >= args.min_visits]
                    worst = max(errors) if errors else float("nan")
                    q_ok = bool(errors) and worst <= tol
                    keys_ok = n_keys <= n_states
                    ok = keys_ok and top_ok and q_ok
                    print(f"{label:<20} {mode:<5} {batch:>5} {seed:>10} {start:>10} {f'{n_keys}/{n_states}':>11} "
                          f"{'/'.join(tops) + f' {top_visits}':<16} {top_gap:>7.4f} {'yes' if top_ok else 'NO':>4} "
                          f"{len(errors):>7} {f'{worst:.4f}' if errors else '-':>9} {tol:>5} {'ok' if ok else 'MISS':>4} {secs:>5.1f}",
                          flush=True)
                    if not ok and mode == "graph":
                        misses.append(f"{label} batch {batch} seed {seed} start {start}: keys {n_keys}/{n_states}, "
                                      f"most visited {'/'.join(tops)} (Q* gap {top_gap:.4f}), "
                                      f"max|Q-Q*| {f'{worst:.4f}' if errors else 'unchecked'} (tol {tol})")

# ----------------------------------------------------------------------------------- blocksworld
if args.only in (None, "blocksworld"):
    env = make_env("blocksworld")
    print(f"\nblocksworld: {args.bw_simulations:,} simulations, env defaults otherwise (gamma {env.default_gamma}, "
          f"{env.default_evaluator} evaluator, solver on)")
    print(f"{'set':<11} {'mode':<5} {'seed':>10} {'solved':>9} {'best path optimal':>17} "
          f"{'proven checked':>14} {'wrong':>5} {'s':>6}")
    for set_label, pattern in BW_SETS:
        tasks = env.load_tasks(pattern)
        for mode in bw_modes:
            for seed in seeds:
                solved = plan_ok = checked = wrong = 0
                total_secs = 0.0
                for task in tasks:
                    cfg = SearchConfig(simulations=args.bw_simulations, transpositions=(mode == "graph"))
                    cfg, root, result, secs = run_job_search(env, task, cfg, seed)
                    tree = result.tree
                    total_secs += secs
                    solved += result.solved
                    # best path: Tree.best_path follows the label through shared states
                    path = tree.best_path()
                    last = path[-1]
                    reaches_goal = bool(tree.terminal[last]) and is_goal(tree.states[last])
                    plan_ok += reaches_goal and len(path) - 1 == optimal_plan_length(root)
                    # every proven value against the BFS-exact one
                    proven = tree.proven()
                    for row in np.nonzero(~np.isnan(proven))[0].tolist():
                        if row == ROOT:
                            exact = optimal_value(root, cfg.gamma)
                        else:
                            exact = exact_q(tree.states[int(tree.parent[row])], tree.action_text(row), cfg.gamma)
                        checked += 1
                        if abs(float(proven[row]) - exact) > PROVEN_TOL:
                            wrong += 1
                            if wrong <= 3:
                                print(f"  wrong proven value: {task.task_id} row {row} {tree.action_text(row)!r}: "
                                      f"{proven[row]:.6f} vs exact {exact:.6f}")
                n = len(tasks)
                print(f"{set_label:<11} {mode:<5} {seed:>10} {f'{solved}/{n}':>9} {f'{plan_ok}/{n}':>17} "
                      f"{checked:>14,} {wrong:>5} {total_secs:>6.1f}", flush=True)
                if mode == "graph" and (solved < n or plan_ok < n or wrong):
                    misses.append(f"blocksworld {set_label} graph seed {seed}: solved {solved}/{n}, "
                                  f"best path optimal {plan_ok}/{n}, proven wrong {wrong}/{checked}")

print("\nacceptance (graph mode, the default): " + ("all met" if not misses else f"{len(misses)} miss(es)"))
for line in misses:
    print(f"  MISS {line}")
