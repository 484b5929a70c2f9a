"""How far a Blocksworld PRM generalises past renamed copies of its training instances.

The 501 shipped 4-5-block instances fall into 240 classes up to a renaming of the blocks
(a permutation of the colours), so most held-out instances of a task split are a training
instance with its blocks renamed. A PRM's held-out figure then mixes two questions: does it
see through a renaming (what ``train-prm``'s renaming of Blocksworld paths teaches,
``Env.rename``), and does it judge structures it never saw? This script scores a trained
PRM's validation paths (the split ``train-prm`` drew from the same trees, ``--seed`` and
``--val-fraction``) and reports the within-depth AUROC against BFS-exact labels on every
held-out instance, on those that are a renaming of a training instance, and on the rest.

    python benchmarks/prm_renamings.py PRM_DIR --trees TREES --seed 0 --val-fraction 0.2 \\
        --labels optimal --min-visits 3

The dataset options must be the ones the PRM was trained with (the split and the paths
are rebuilt from them). The last line reads
``within-depth AUROC: all X (N instances), renamings Y (M), new structures Z (K)``.
"""

from __future__ import annotations

import argparse
import itertools
import sys

import numpy as np

from treeq.envs.blocksworld.rules import BlocksworldState
from treeq.errors import TreeqError
from treeq.pipelines.prm_eval import TaskSource, exact_step_labels
from treeq.prm.config import StepDatasetConfig
from treeq.prm.dataset import build_step_dataset
from treeq.prm.metrics import auroc_by_depth, depth_mean
from treeq.prm.model import load_prm, score_batch


def structure(state: BlocksworldState) -> tuple:
    """The instance up to a renaming of its blocks: the least (start, goal) over every permutation."""
    n, best = len(state.blocks), None
    index = {b: i for i, b in enumerate(state.blocks)}
    for perm in itertools.permutations(range(n)):
        start = [0] * n
        for i, support in enumerate(state.start):
            start[perm[i]] = support if support < 0 else perm[support]
        goal = sorted((g.split()[0], *(perm[index[x]] for x in g.split()[1:])) for g in state.goal)
        key = (n, tuple(start), tuple(goal))
        best = key if best is None or key < best else best
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("prm", help="a train-prm output directory")
    ap.add_argument("--trees", required=True, nargs="+", help="the search output(s) it was trained on")
    ap.add_argument("--seed", type=int, default=0, help="train-prm's --seed (the task split)")
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--labels", default="value")
    ap.add_argument("--min-visits", type=int, default=1)
    ap.add_argument("--proven-steps", action="store_true")
    args = ap.parse_args(argv)
    try:
        cfg = StepDatasetConfig(min_visits=args.min_visits, val_fraction=args.val_fraction, seed=args.seed,
                                labels=args.labels, proven_steps=args.proven_steps)
        ds = build_step_dataset(args.trees, cfg)
        source = TaskSource(ds.runs)
        shapes: dict[str, tuple] = {}  # task -> its structure, each computed once
        for ex in ds.train + ds.val:
            if ex.task_id not in shapes:
                env, tasks, _ = source.get(ex.run_id)
                if env.name != "blocksworld":
                    raise TreeqError(f"task {ex.task_id} is a {env.name} task: this script reads Blocksworld trees")
                shapes[ex.task_id] = structure(env.reset(tasks[ex.task_id]))
        seen = {shapes[ex.task_id] for ex in ds.train}
        tokenizer, model, meta = load_prm(args.prm)
        scores = score_batch(model, tokenizer, [(ex.prompt, ex.steps) for ex in ds.val], meta.max_length,
                             skip_long=True)
        val = [(ex, s) for ex, s in zip(ds.val, scores) if s is not None]
        exact, why = exact_step_labels(source, [ex for ex, _ in val], step_format=ds.step_format)
        if exact is None:
            raise TreeqError(why)
    except TreeqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    renamed = {ex.task_id: shapes[ex.task_id] in seen for ex, _ in val}  # held-out task -> a renamed training one
    rows = np.array([(renamed[ex.task_id], d, x, g) for (ex, s), good in zip(val, exact)
                     for d, (x, g, own) in enumerate(zip(s, good, ex.owned)) if own], dtype=float)
    figures = {}
    for name, keep in (("all", None), ("renamings", True), ("new structures", False)):
        mask = np.ones(len(rows), bool) if keep is None else (rows[:, 0] == 1) == keep
        n = sum(1 for r in renamed.values() if keep is None or r == keep)
        figures[name] = (depth_mean(auroc_by_depth(rows[mask, 2], rows[mask, 3] == 1, rows[mask, 1])), n,
                         int(mask.sum()))
    print(f"{len(ds.val)} validation paths of {len(renamed)} held-out instances ({len(ds.train)} training paths)")
    for name, (value, n, steps) in figures.items():
        print(f"  {name:15s} {n:4d} instances {steps:6d} steps  within-depth AUROC {value:.3f}")
    print("within-depth AUROC: " + ", ".join(f"{name} {v:.3f} ({n} instances)" for name, (v, n, _) in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
