"""Scoring a path of T steps costs one forward pass: whole-path scoring vs one pass per prefix.

A path is written as ONE string with a separator token after each step, and the PRM is
causal, so the logit at the t-th separator sees the prompt and steps 1..t only: one
forward pass over the whole path (``score_batch``) scores all T steps. A verifier
without step tokens has to score each prefix separately instead: T forward sequences
per path, the prefix with t steps giving the score of step t (its last score).

What is measured, on ``--paths N`` synthetic Game of 24 style paths of ``--steps T``
steps (seeded ``numpy`` Generator):

* A, whole path: ``score_batch`` on the N paths -> N forward sequences, N x T scores.
* B, per prefix: ``score_batch`` on the N x T prefixes (path i cut after t steps, t in
  1..T), keeping the last score of each -> N x T forward sequences, N x T scores.

Both go through the same ``score_batch`` with the same ``--batch-size`` (it sorts by
step count, so prefixes of one length share a batch), so tokenization, padding and the
forward passes are timed alike. The two must agree: the max absolute difference of the
N x T scores is printed and must be <= 1e-5 (the script fails otherwise).

Timing: ``time.perf_counter`` under ``torch.inference_mode()``; one warm-up of each
method, then ``--repeats R`` rounds, each running A then B (interleaved, so both see the
same machine state); the best round of each is reported. ``torch.set_num_threads`` is
left unchanged by default (torch's default, printed), so the ratio is that of the machine
as it is configured; ``--threads K`` sets it. On a CPU shared with another busy process,
torch's worker threads wait on each other at every operation and a forward call then
costs a near-fixed time whatever its length (the ratio tends to the ratio of forward
calls, not of tokens); ``--threads 1`` measures the compute itself there.

The last line reads ``speedup T=<T>: <time_B / time_A>``. The expected ratio is about
the ratio of tokens processed (printed), above (T + 1) / 2 since each prefix repeats the
prompt.

Without ``--model-dir`` the model is the default tiny Llama (``tiny_model``, untrained,
fixed seed) with a byte-level BPE tokenizer trained on the spot on synthetic step texts;
with it, a PRM saved by ``train-prm`` (``load_prm``), on the CPU.

    python benchmarks/prm_scoring.py
    python benchmarks/prm_scoring.py --steps 4
    python benchmarks/prm_scoring.py --model-dir runs/prm --paths 32 --steps 6
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np
import torch

from treeq.prm.config import TinyModelConfig
from treeq.prm.model import encode_paths, load_prm, path_text, score_batch, tiny_model, train_tokenizer

PROMPT = "Use each number once with + - * / to reach 24.\nInput: {numbers}\nSteps:"
TOLERANCE = 1e-5

Path = tuple[str, list[str]]


def synthetic_path(rng: np.random.Generator, steps: int) -> Path:
    """A Game of 24 style path of ``steps`` steps (text only, not checked for sense).

    Each step combines two of the numbers left; when one number is left, the next step
    starts again from the input numbers (a retry), so the numbers stay puzzle-sized.
    """
    numbers = [int(x) for x in rng.integers(1, 14, size=4)]
    prompt = PROMPT.format(numbers=" ".join(map(str, numbers)))
    left: list[int] = []
    out = []
    for _ in range(steps):
        if len(left) < 2:
            left = list(numbers)
        i, j = (int(k) for k in rng.choice(len(left), size=2, replace=False))
        a, b = left[i], left[j]
        ops = ["+", "-", "*"] + (["/"] if b != 0 and a % b == 0 else [])
        op = ops[int(rng.integers(len(ops)))]
        value = {"+": a + b, "-": a - b, "*": a * b, "/": a // b if b else 0}[op]
        left = [x for k, x in enumerate(left) if k not in (i, j)] + [value]
        out.append(f"{a} {op} {b} = {value} (left: {' '.join(map(str, left))})")
    return prompt, out


def default_model(seed: int, steps: int):
    """The default tiny model and a tokenizer trained on synthetic paths (not the benchmarked ones)."""
    cfg = TinyModelConfig()
    rng = np.random.default_rng([seed, 1])
    texts = [path_text(*synthetic_path(rng, steps)) for _ in range(256)]
    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    model = tiny_model(tokenizer, cfg, seed)
    model.eval()
    return tokenizer, model, cfg.max_length


def token_counts(tokenizer, paths: Sequence[Path], max_length: int, batch_size: int) -> tuple[int, int]:
    """(real tokens, padded tokens) of ``paths`` batched as ``score_batch`` batches them."""
    ids = encode_paths(tokenizer, paths, max_length)
    order = sorted(range(len(paths)), key=lambda i: len(paths[i][1]))
    padded = 0
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        padded += len(chunk) * max(len(ids[i]) for i in chunk)
    return sum(len(r) for r in ids), padded


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", default=None, help="A PRM saved by train-prm (default: the untrained tiny model).")
    ap.add_argument("--steps", type=int, default=8, help="Steps per path, T (>= 4).")
    ap.add_argument("--paths", type=int, default=64, help="Paths scored, N.")
    ap.add_argument("--repeats", type=int, default=5, help="Timed rounds after one warm-up; the best is reported.")
    ap.add_argument("--batch-size", type=int, default=32, help="Sequences per forward pass (both methods).")
    ap.add_argument("--seed", type=int, default=0, help="Seed of the paths (and of the default model).")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch.set_num_threads(K) before timing; 0 (default): leave torch's setting unchanged.")
    args = ap.parse_args(argv)
    if args.steps < 4:
        ap.error(f"--steps must be >= 4, got {args.steps}")
    if args.paths < 1 or args.repeats < 1 or args.batch_size < 1:
        ap.error("--paths, --repeats and --batch-size must be >= 1")
    if args.threads < 0:
        ap.error(f"--threads must be >= 0, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.model_dir:
        tokenizer, model, meta = load_prm(args.model_dir, device="cpu")
        max_length, source = meta.max_length, args.model_dir
    else:
        tokenizer, model, max_length = default_model(args.seed, args.steps)
        source = "default tiny model (untrained), tokenizer trained on synthetic steps"
    model.eval()

    rng = np.random.default_rng(args.seed)
    paths = [synthetic_path(rng, args.steps) for _ in range(args.paths)]
    prefixes = [(prompt, steps[:t]) for prompt, steps in paths for t in range(1, args.steps + 1)]

    def whole() -> list[list[float]]:
        return score_batch(model, tokenizer, paths, max_length, args.batch_size)

    def per_prefix() -> list[float]:
        return [s[-1] for s in score_batch(model, tokenizer, prefixes, max_length, args.batch_size)]

    tok_a, pad_a = token_counts(tokenizer, paths, max_length, args.batch_size)
    tok_b, pad_b = token_counts(tokenizer, prefixes, max_length, args.batch_size)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {source} ({n_params / 1e6:.2f}M parameters), torch threads: {torch.get_num_threads()} "
          f"({'set by --threads' if args.threads else 'unchanged'})")
    print(f"paths N={args.paths}, steps T={args.steps}, batch size {args.batch_size}, repeats {args.repeats}, "
          f"seed {args.seed}")
    print(f"A whole path: {len(paths)} forward sequences, {tok_a} tokens ({pad_a} padded)")
    print(f"B per prefix: {len(prefixes)} forward sequences, {tok_b} tokens ({pad_b} padded), "
          f"token ratio B/A {tok_b / tok_a:.2f}")

    with torch.inference_mode():
        scores_a = whole()  # warm-up, and the scores compared
        scores_b = per_prefix()
        if any(len(s) != args.steps for s in scores_a):
            raise SystemExit("whole-path scoring did not return one score per step")
        flat_a = np.array([x for s in scores_a for x in s])
        diff = float(np.max(np.abs(flat_a - np.array(scores_b))))
        print(f"max abs difference A vs B: {diff:.3e} (tolerance {TOLERANCE:g})")
        if not diff <= TOLERANCE:
            raise SystemExit(f"whole-path and per-prefix scores differ by {diff:.3e} > {TOLERANCE:g}")

        best_a = best_b = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            whole()
            t1 = time.perf_counter()
            per_prefix()
            t2 = time.perf_counter()
            best_a, best_b = min(best_a, t1 - t0), min(best_b, t2 - t1)

    n_scores = args.paths * args.steps
    print(f"A whole path: {best_a * 1e3:.1f} ms, {n_scores / best_a:.0f} steps/s")
    print(f"B per prefix: {best_b * 1e3:.1f} ms, {n_scores / best_b:.0f} steps/s")
    print(f"speedup T={args.steps}: {best_b / best_a:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
