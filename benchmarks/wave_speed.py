"""Wave search keeps the model's batching gain: search speedup at batch 16 (X) against the model's own (Y).

A wave of ``--wave-size W`` leaves reaches the ``hf`` policy as one call: every state of
the wave is prompted and all its actions are scored in padded batches. What the search
can gain from waves is what the model gains from batching the *states* of a call, so:

* **Y**, the model's per-item speedup at batch 16 over batch 1: the policy hook
  (``lm_propose``, the same model) timed on 16 Game of 24 states in one call against
  16 calls of one state. The raw forward speedup of 16 single sequences at once over
  one at a time is printed too, for reference (scoring a state's ~30 actions is already
  a batch, so a state call gains less than a bare sequence does).
* **X**, the search's speedup: simulations per second of PUCT searches with the policy
  at ``--wave-size 16`` over ``--wave-size 1``, same puzzles, same budget, the
  rollout evaluator of the job.

``wave efficiency: X/Y = Z`` ends the output: Z near 1 means the search wastes none of
what batching the model offers (waves that find fewer new leaves than W, virtual-loss
collisions and tree work are what would lower it). Timings: ``time.perf_counter``, the
best of ``--repeats`` rounds, each round running both settings (interleaved). The model
is a tiny Llama built by ``make-tiny-model`` (``--layers``, ``--hidden``) on the CPU with
torch's default threads (printed), or ``--model DIR``; ``--device cuda`` on a GPU.

    python benchmarks/wave_speed.py
    python benchmarks/wave_speed.py --layers 4 --hidden 128 --puzzles 8
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--model", default=None, help="a model directory; default: a tiny Llama made here")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--puzzles", type=int, default=6, help="Game of 24 puzzles searched per setting")
    ap.add_argument("--simulations", type=int, default=160, help="simulations per puzzle")
    ap.add_argument("--batch", type=int, default=16, help="the wave size compared with 1")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()

    import torch

    from treeq.envs.countdown import Game24Env
    from treeq.mcts import SearchConfig, resolve_defaults, search
    from treeq.pipelines.config import TinyLMConfig
    from treeq.pipelines.policies import make_hooks
    from treeq.pipelines.policies.lm import LMConfig, get_backend
    from treeq.pipelines.search import task_rng
    from treeq.pipelines.tiny_lm import make_tiny_model

    work = tempfile.mkdtemp(prefix="treeq-wave-")
    model = args.model or str(make_tiny_model(TinyLMConfig(env="game24", layers=args.layers, hidden_size=args.hidden,
                                                           heads=2, out=f"{work}/model")))
    lm = LMConfig(model=model, device=args.device)
    env = Game24Env()
    tasks = env.load_tasks(None)[900 : 900 + args.puzzles]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {get_backend(lm).device}; "
          f"model {f'a tiny Llama, {args.layers} layers, {args.hidden} wide' if not args.model else model}")

    # ---- Y: the policy on 16 states at once vs one at a time
    rng = np.random.default_rng(0)
    states = []
    for task in env.load_tasks(None)[: args.batch * 2]:
        s = env.reset(task)
        if rng.random() < 0.5:  # some states one step in, as a search meets them
            acts = env.legal_actions(s)
            s = env.step(s, acts[int(rng.integers(len(acts)))]).state
        states.append(s)
    states = states[: args.batch]
    propose, _ = make_hooks(env, resolve_defaults(SearchConfig(), env), np.random.default_rng(0), proposer="hf", lm=lm)
    backend = get_backend(lm)
    texts = [backend.format_prompt(env.policy_prompt(s)) for s in states]
    propose(states, 8)  # warm up
    best_one = best_all = best_raw1 = best_raw16 = float("inf")
    for _ in range(args.repeats + 1):
        t0 = time.perf_counter()
        for s in states:
            propose([s], 8)
        best_one = min(best_one, time.perf_counter() - t0)
        t0 = time.perf_counter()
        propose(states, 8)
        best_all = min(best_all, time.perf_counter() - t0)
        t0 = time.perf_counter()
        for t in texts:
            backend.token_logprobs([t])
        best_raw1 = min(best_raw1, time.perf_counter() - t0)
        t0 = time.perf_counter()
        backend.token_logprobs(texts)
        best_raw16 = min(best_raw16, time.perf_counter() - t0)
    y = best_one / best_all
    print(f"model: {args.batch} states one call at a time {best_one * 1e3:.1f} ms, in one call "
          f"{best_all * 1e3:.1f} ms -> Y = {y:.2f}x per item "
          f"(bare forward of {args.batch} prompts: {best_raw1 / best_raw16:.2f}x)")

    # ---- X: the search at batch 16 vs 1
    def run(batch: int) -> tuple[float, int, int]:
        cfg = resolve_defaults(SearchConfig(simulations=args.simulations, selection="puct", wave_size=batch), env)
        sims = solved = 0
        secs = 0.0
        for task in tasks:
            trng = task_rng(0, task.task_id)
            prop, evaluate = make_hooks(env, cfg, trng, proposer="hf", lm=lm)
            root = env.reset(task, trng)
            t0 = time.perf_counter()
            r = search(env, root, cfg, trng, propose=prop, evaluate=evaluate)
            secs += time.perf_counter() - t0
            sims += r.simulations
            solved += r.solved
        return sims / secs, sims, solved

    rates: dict[int, float] = {1: 0.0, args.batch: 0.0}
    info = {}
    for _ in range(args.repeats):
        for batch in rates:
            rate, sims, solved = run(batch)
            rates[batch] = max(rates[batch], rate)
            info[batch] = (sims, solved)
    for batch, rate in rates.items():
        print(f"search --wave-size {batch:>2}: {rate:8.1f} sim/s ({info[batch][0]} simulations, "
              f"{info[batch][1]}/{len(tasks)} solved)")
    x = rates[args.batch] / rates[1]
    print(f"search speedup X = {x:.2f}x")
    print(f"wave efficiency: X/Y = {x:.2f}/{y:.2f} = {x / y:.2f}")


if __name__ == "__main__":
    main()
