"""Can the default PRM learn to look a block up in a Blocksworld path? A learnability probe.

The Blocksworld PRM separates the kinds of step (pick up, put down, stack, unstack) but
ranks steps of one kind, such as the children of one state, hardly better than chance
(docs/prm.md). This script asks whether the model can learn any within-kind feature at
all: it relabels every step of the trees with a synthetic label that a rule reads off the
text, trains the default model (``train-prm``'s own model, tokenizer, packing and loss,
no renaming, no extra passes) for ``--steps`` optimisation steps, and reports the AUROC of
its scores against that label on held-out tasks, overall and within each kind of step.

Labels (``--label``):

* ``kind``: the step is a pick-up (its kind shows in the observation next to the score).
* ``red``: the step moves the red block (named in the action, and in the observation as
  ``holding red block`` after a pick-up or an unstack).
* ``goal-subject``: the block the step moves is the subject of a goal atom (``the X block
  is on top of ...`` in the prompt's goal): a one-step lookup into the prompt. A pick-up
  of any other block is never optimal.

``--window W`` gives the model a sliding attention window of W tokens (``train-prm
--window``); 0 is full attention, the default for Blocksworld.

    python benchmarks/prm_lookup_probe.py TREES --label red --steps 300 [--window 64]

The last line reads ``label L, window W, S steps: AUROC X (pick A, put B, stack C, unstack D)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from treeq.errors import TreeqError
from treeq.prm.config import StepDatasetConfig, TinyModelConfig, TrainConfig
from treeq.prm.dataset import build_step_dataset
from treeq.prm.format import step_action
from treeq.prm.metrics import auroc
from treeq.prm.model import score_batch, tiny_model, train_tokenizer
from treeq.prm.train import PackedDataset, fit

LABELS = ("kind", "red", "goal-subject")
_BLOCK = re.compile(r"the (\w+) block")
_SUBJECT = re.compile(r"the (\w+) block is on top of")


def relabel(ex, label: str, step_format: str):
    """``ex`` with every step labelled by the rule ``label`` (1.0 or 0.0)."""
    goal = ex.prompt.split("My goal is to have that", 1)[-1].split("\n", 1)[0]
    subjects = set(_SUBJECT.findall(goal))
    out = []
    for text in ex.steps:
        action = step_action(text, step_format)
        moved = _BLOCK.findall(action)[0]
        out.append(float(action.startswith("pick up") if label == "kind"
                         else moved == "red" if label == "red" else moved in subjects))
    return dataclasses.replace(ex, labels=out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trees", nargs="+", help="search output(s) of Blocksworld")
    ap.add_argument("--label", choices=LABELS, default="red")
    ap.add_argument("--steps", type=int, default=300, help="optimisation steps (batches of --batch-size rows)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--window", type=int, default=0, help="attention window in tokens (0: full attention)")
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--val-paths", type=int, default=600, help="held-out paths scored")
    ap.add_argument("--seed", type=int, default=67, help="seed of the task split and of the model")
    args = ap.parse_args(argv)
    try:
        ds = build_step_dataset(args.trees, StepDatasetConfig(min_visits=3, val_fraction=0.2, seed=args.seed,
                                                              labels="optimal"))
        if args.val_paths < 1:
            raise TreeqError(f"--val-paths must be >= 1, got {args.val_paths}")
        if {ex.env for ex in ds.train + ds.val} != {"blocksworld"}:
            raise TreeqError("this script reads Blocksworld trees only")
        cfg = TrainConfig(max_steps=args.steps, batch_size=args.batch_size, rewrite=0.0, first_passes=0,
                          positive_passes=0, seed=args.seed)
        shape = TinyModelConfig(max_length=args.max_length, window=args.window)
    except TreeqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    train = [relabel(ex, args.label, ds.step_format) for ex in ds.train]
    val = [relabel(ex, args.label, ds.step_format) for ex in ds.val][:args.val_paths]
    tok = train_tokenizer(sorted({t for ex in train for t in (ex.prompt, *ex.steps)}), 1024)
    model = tiny_model(tok, shape, args.seed, args.window)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as ckpt:
        fit(model, tok, PackedDataset(train, tok, args.max_length), None, cfg, Path(ckpt),
            cfg.learning_rate(pretrained=False), False, False)
    seconds = time.perf_counter() - started
    scores = score_batch(model, tok, [(ex.prompt, ex.steps) for ex in val], args.max_length, skip_long=True)
    kind, label, score = [], [], []
    for ex, row in zip(val, scores):
        for text, own, y, s in zip(ex.steps, ex.owned, ex.labels, row or []):
            if own:
                kind.append(step_action(text, ds.step_format).split()[0])
                label.append(y > 0.5)
                score.append(s)
    kind, label, score = np.array(kind), np.array(label), np.array(score)
    by_kind = {k: auroc(score[kind == k], label[kind == k]) for k in sorted(set(kind))}
    print(f"{len(train):,} training paths, {len(val)} held-out paths ({label.size:,} steps, {label.mean():.1%} "
          f"labelled 1); trained {args.steps} steps in {seconds:.0f} s")
    print(f"label {args.label}, window {args.window}, {args.steps} steps: AUROC {auroc(score, label):.3f} ("
          + ", ".join(f"{k} {v:.3f}" for k, v in by_kind.items()) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
