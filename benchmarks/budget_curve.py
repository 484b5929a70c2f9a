"""Does searching more ever hurt? Held-out solved share against the budget, per selection rule.

Reads a finished ``self-train`` directory: its held-out tasks (the same split, from its
``self_train.json``), round R's policy as the prior (``--policy hf``) and round R's PRM as
the value (``--evaluator prm``). Searches every held-out task at each budget with each
selection rule (``--stop-on-solve``, one leaf a wave as self-train's evaluation does) and
prints one row per rule and value mix: the tasks solved at each budget, then whether the
curve ever drops by more than ``--noise`` tasks between neighbouring budgets, and, per
budget, how far each rule falls below the first one (PUCT by default). Searches land in
``RUN/budget-curve/`` and a rerun reads the finished ones back.

    python benchmarks/budget_curve.py --run runs/st24
    python benchmarks/budget_curve.py --run runs/st24 --selections puct --value-mix 0,0.5,1 --budgets 16
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a finished self-train output directory")
    ap.add_argument("--round", type=int, default=None, help="the round whose policy and PRM search (default: the last)")
    ap.add_argument("--selections", default="puct,gumbel", help="selection rules, the first one the baseline")
    ap.add_argument("--budgets", default="4,8,16,32,64,128,256")
    ap.add_argument("--value-mix", default="1.0", help="values of --value-mix (comma-separated)")
    ap.add_argument("--gumbel-scale", default="0", help="values of --gumbel-scale for gumbel (comma-separated)")
    ap.add_argument("--noise", type=int, default=1, help="tasks of noise allowed between neighbouring budgets")
    ap.add_argument("--limit", type=int, default=None, help="only the first N held-out tasks")
    ap.add_argument("--tag", default="", help="a name for this measurement's searches (RUN/budget-curve/TAG...)")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args(argv)

    from treeq.envs.registry import make_env
    from treeq.errors import TreeqError
    from treeq.mcts.config import SearchConfig
    from treeq.pipelines.command_config import number_list
    from treeq.pipelines.config import SearchJobConfig, SelfTrainConfig
    from treeq.pipelines.policies.lm import LMConfig
    from treeq.pipelines.search import run_search
    from treeq.pipelines.self_train import sims_to_solve, split_tasks

    run = Path(args.run)
    try:
        settings = json.loads((run / "self_train.json").read_text())["settings"]
        settings["eval_budgets"] = tuple(settings["eval_budgets"])
        cfg = SelfTrainConfig(**settings, progress=args.progress)
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"error: {run} is not a finished self-train directory (its self_train.json: {e})", file=sys.stderr)
        return 2
    last = args.round if args.round is not None else cfg.rounds
    policy, prm = run / f"round-{last}" / "policy", run / f"round-{last}" / "prm"
    if last < 0 or not policy.is_dir() or not prm.is_dir():
        print(f"error: {run} has no round-{last} policy and PRM (a self-train run that reached round {last})",
              file=sys.stderr)
        return 2
    try:  # every setting checked before the first search
        if args.noise < 0 or (args.limit is not None and args.limit < 1):
            raise ValueError(f"--noise must be >= 0 and --limit >= 1, got {args.noise} and {args.limit}")
        budgets = number_list(args.budgets, "--budgets")
        selections = args.selections.split(",")
        mixes = number_list(args.value_mix, "--value-mix", float)
        scales = number_list(args.gumbel_scale, "--gumbel-scale", float)
        variants = [(sel, mix, scale) for sel in selections for mix in mixes
                    for scale in (scales if sel == "gumbel" else [1.0])]
        searches = {(v, b): SearchConfig(simulations=b, selection=v[0], stop_on_solve=True, gumbel_scale=v[2])
                    for v in variants for b in budgets}
        lms = {mix: LMConfig(model=str(policy), prm=str(prm), value_mix=mix) for mix in mixes}
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    env = make_env(cfg.env, **cfg.env_kwargs)
    _, held = split_tasks(env, cfg)
    held = held[: args.limit]
    print(f"{env.name}: {len(held)} held-out tasks of {run} (split seed {cfg.split_seed}); round {last}'s policy "
          f"and PRM; --stop-on-solve")

    def name(v: tuple[str, float, float]) -> str:
        return v[0] + (f" scale {v[2]:g}" if v[0] == "gumbel" else "")

    solved: dict[tuple[str, float, float], list[int]] = {}
    for sel, mix, scale in variants:
        counts = []
        for b in budgets:
            out = run / "budget-curve" / f"{args.tag}{sel}-mix{mix:g}-scale{scale:g}-{b}"
            t0 = time.perf_counter()
            job = SearchJobConfig(env=cfg.env, env_kwargs=cfg.env_kwargs, tasks=cfg.tasks,
                                  search=searches[(sel, mix, scale), b], evaluator="prm", proposer="hf",
                                  lm=lms[mix], seed=cfg.seed, out=str(out), workers=1, progress=args.progress)
            try:
                summary = run_search(job, tasks=held)
            except TreeqError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            counts.append(summary.solved)
            print(f"  {name((sel, mix, scale))}, value mix {mix:g} @{b}: {summary.solved}/{summary.tasks} solved, "
                  f"{sims_to_solve(str(out), summary.run_id):.1f} simulations to solve "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
        solved[(sel, mix, scale)] = counts

    print("\n| selection | value mix | " + " | ".join(f"@{b}" for b in budgets) + " | never drops |")
    print("|---|---|" + "---|" * len(budgets) + "---|")
    for v, counts in solved.items():
        ok = all(b >= a - args.noise for a, b in zip(counts, counts[1:], strict=False))
        print(f"| {name(v)} | {v[1]:g} | " + " | ".join(f"{c}/{len(held)}" for c in counts)
              + f" | {'yes' if ok else 'NO'} |")
    for v in variants:  # each against the first rule at the same value mix
        base = next(x for x in variants if x[0] == selections[0] and x[1] == v[1])
        if v[0] != selections[0]:
            gap = [b - a for a, b in zip(solved[base], solved[v], strict=True)]
            print(f"{name(v)} minus {selections[0]} (value mix {v[1]:g}), tasks per budget: {gap}; worst {min(gap)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
