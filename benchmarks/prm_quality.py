"""How well a trained PRM judges Game of 24 steps written as a model writes them.

Held-out puzzles (give ``--tasks``, never puzzles the PRM was trained on); per puzzle
``--trajectories`` random complete trajectories, each step a random pair of the numbers
left, in random order, with a random operation: subtraction may go negative, division
may leave fractions, and the ``left`` list comes in random order. This is text the env's
canonical action set never produces; the PRM scores it as written (``score-steps``).

Each step's exact label: can 24 still be reached from the numbers left (an exact solver
over all four operations in both orders, negatives and fractions included). Reported:

* AUROC within each depth (the depth of a step alone predicts much of the pooled
  label, so the pooled figure is not the one that counts), and the mean over the
  intermediate depths (the last step is checkable by arithmetic alone).
* Best-of-N: per puzzle the PRM picks one trajectory by its lowest step score (and by
  the product of its scores); success rate beside a random pick and the oracle, and
  the share of the random-to-oracle gap the PRM closes.
* With ``--trees`` (the search output the PRM was trained on): per intermediate depth,
  the share of held-out steps whose resulting numbers were already labelled in the
  training split of those trees (the default split, seed 0), the PRM's AUROC on those
  and on the rest, and the AUROC of the trees' own labels where they have one (the
  PRM's score elsewhere): what fitting the training data alone would give.

    python benchmarks/prm_quality.py MODEL_DIR --tasks heldout.csv --trajectories 8 --seed 1
"""

from __future__ import annotations

import argparse
import sys
import time
from fractions import Fraction
from functools import cache

import numpy as np

from treeq.envs.countdown import Game24Env, format_number, parse_step
from treeq.errors import TreeqError
from treeq.pipelines.prm import score_steps
from treeq.prm.metrics import auroc, auroc_by_depth

TARGET = Fraction(24)


@cache
def _reachable(numbers: tuple[Fraction, ...]) -> bool:
    if len(numbers) == 1:
        return numbers[0] == TARGET
    for i in range(len(numbers)):
        for j in range(len(numbers)):
            if i == j:
                continue
            a, b = numbers[i], numbers[j]
            rest = [numbers[k] for k in range(len(numbers)) if k not in (i, j)]
            for value in (a + b, a - b, a * b, a / b if b else None):
                if value is not None and _reachable(tuple(sorted(rest + [value]))):
                    return True
    return False


def reachable(numbers) -> bool:
    """Exact: can the numbers (each used once, + - * / in any order) make 24?"""
    return _reachable(tuple(sorted(Fraction(x) for x in numbers)))


def written_trajectory(numbers: list[Fraction], rng: np.random.Generator) -> tuple[list[str], list[bool], bool]:
    """One random trajectory as a model might write it: (steps, exact label per step, success)."""
    left = list(numbers)
    steps, labels = [], []
    while len(left) > 1:
        i, j = rng.choice(len(left), size=2, replace=False)
        a, b = left[i], left[j]
        ops = ["+", "-", "*"] + (["/"] if b != 0 else [])
        op = ops[int(rng.integers(len(ops)))]
        value = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else None}[op]
        left = [x for k, x in enumerate(left) if k not in (i, j)] + [value]
        left = [left[k] for k in rng.permutation(len(left))]
        steps.append(f"{format_number(a)} {op} {format_number(b)} = {format_number(value)} "
                     f"(left: {' '.join(format_number(x) for x in left)})")
        labels.append(reachable(left))
    return steps, labels, left[0] == TARGET


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--tasks", required=True, help="Held-out Game of 24 puzzles (CSV or JSONL), not trained on.")
    ap.add_argument("--limit", type=int, default=None, help="Use the first N puzzles only.")
    ap.add_argument("--trajectories", type=int, default=8, help="Trajectories per puzzle (N of best-of-N).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trees", nargs="+", default=None, help="The search output(s) the PRM was trained on: "
                    "also report how much of the held-out set the training trees already label.")
    args = ap.parse_args()
    known = None
    if args.trees:
        try:
            known = known_labels(args.trees)
        except TreeqError as exc:
            print(f"prm_quality: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    env = Game24Env()
    tasks = env.load_tasks(args.tasks)[: args.limit]
    rng = np.random.default_rng(args.seed)
    rows, labels, success = [], [], []
    for task in tasks:
        numbers = [Fraction(x) for x in task.payload["numbers"]]
        for _ in range(args.trajectories):
            steps, lab, ok = written_trajectory(numbers, rng)
            rows.append({"env": "game24", "task": " ".join(task.payload["numbers"]), "steps": steps})
            labels.append(lab)
            success.append(ok)
    t0 = time.perf_counter()
    scored = score_steps(args.model_dir, rows)
    seconds = time.perf_counter() - t0
    scores = [r["scores"] for r in scored]
    flat_s = np.array([s for row in scores for s in row])
    flat_y = np.array([y for row in labels for y in row])
    depth = np.array([d for row in labels for d in range(len(row))])
    by_depth = auroc_by_depth(flat_s, flat_y, depth)
    last = max(by_depth) if by_depth else 0
    inter = [v for d, v in by_depth.items() if d < last]
    print(f"{len(tasks)} held-out puzzles x {args.trajectories} written trajectories, "
          f"{flat_s.size} steps scored in {seconds:.1f} s")
    print("positive share by depth: " + ", ".join(f"{d}: {flat_y[depth == d].mean():.3f}" for d in sorted(set(depth))))
    print("AUROC within depth: " + ", ".join(f"{d}: {v:.4f}" for d, v in sorted(by_depth.items())))
    print(f"pooled AUROC (depth carries much of it): {auroc(flat_s, flat_y):.4f}")

    n = args.trajectories
    succ = np.array(success, dtype=np.float64).reshape(len(tasks), n)
    lowest = np.array([min(s) for s in scores]).reshape(len(tasks), n)
    product = np.array([float(np.prod(s)) for s in scores]).reshape(len(tasks), n)
    pick = lambda key: float(np.mean(succ[np.arange(len(tasks)), key.argmax(axis=1)]))  # noqa: E731
    random_pick, oracle = float(succ.mean()), float(succ.max(axis=1).mean())
    gap = oracle - random_pick
    for name, key in (("min", lowest), ("product", product)):
        value = pick(key)
        closed = (value - random_pick) / gap if gap > 0 else float("nan")
        print(f"best-of-{n} by PRM ({name} of step scores): {value:.3f}  random pick: {random_pick:.3f}  "
              f"oracle: {oracle:.3f}  gap closed: {closed:.2f}")
    print(f"mean within-depth AUROC over intermediate steps: {float(np.mean(inter)) if inter else float('nan'):.4f}")
    if known is not None:
        coverage(known, rows, scores, labels, last)


def known_labels(trees: list[str]) -> dict[int, dict[tuple, bool]]:
    """Per depth, the hard label of every set of numbers left by a step of the trees' training split."""
    from treeq.prm.dataset import build_step_dataset

    known: dict[int, dict[tuple, bool]] = {}
    for ex in build_step_dataset(trees).train:
        for d, (step, value) in enumerate(zip(ex.steps, ex.labels)):
            key = parse_step(step).left
            if key is not None:
                known.setdefault(d, {})[key] = value > 0.5
    return known


def coverage(known: dict[int, dict[tuple, bool]], rows: list[dict], scores: list[list[float]],
             labels: list[list[bool]], last: int) -> None:
    """How many held-out states the training trees label, and what their labels alone would score."""
    for d in range(last):
        s = np.array([row[d] for row in scores])
        y = np.array([lab[d] for lab in labels])
        keys = [parse_step(r["steps"][d]).left for r in rows]
        seen = np.array([k in known.get(d, {}) for k in keys])
        lookup = np.array([float(known[d][k]) if m else v for k, m, v in zip(keys, seen, s)])
        print(f"depth {d}: {seen.mean():.0%} of held-out states labelled in the training trees; "
              f"PRM AUROC there {auroc(s[seen], y[seen]):.4f}, elsewhere {auroc(s[~seen], y[~seen]):.4f}; "
              f"the trees' labels there (PRM elsewhere): {auroc(lookup, y):.4f}")


if __name__ == "__main__":
    main()
