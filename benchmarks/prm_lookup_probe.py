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

``--oracle`` trains nothing. It asks the converse: how far would the real labels be ranked
by a verifier that knew a few features of a step perfectly? Each feature is read off the
text (the goal in the prompt, the state before the step: the prompt's initial conditions
or the previous step's observation):

* ``kind``: pick up, put down, stack or unstack;
* ``goal subject``: the moved block is the subject of a goal atom (``--label goal-subject``);
* ``target placed``: the block stacked on or unstacked from is in its final place before
  the step (it rests where the goal wants it, on a block in its final place, down to the
  table; a block without a goal atom anywhere on one in its final place; the table always);
* ``goal atom``: the step builds a goal atom (stacks X on Y, with ``X on Y`` in the goal) or
  breaks one (unstacks it);
* ``moved placed``: the moved block is in its final place after a stack or put-down, or was
  before a pick-up or unstack.

For each cumulative set of features, every step scores the share of optimal steps among
the training steps with the same features (the same task split as ``train-prm --seed``),
and that score is ranked against the exact labels of the held-out steps, within each depth
and among each state's children. The last line reads ``oracle: kind alone X, all features
Y (within-depth AUROC on N held-out steps)``.
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
from treeq.prm.dataset import build_step_dataset, label_arrays, owned_values
from treeq.prm.format import step_action
from treeq.prm.metrics import auroc
from treeq.prm.model import score_batch, tiny_model, train_tokenizer
from treeq.prm.train import PackedDataset, fit

LABELS = ("kind", "red", "goal-subject")
_BLOCK = re.compile(r"the (\w+) block")
_ON = re.compile(r"the (\w+) block is on top of the (\w+) block")
_TABLE = re.compile(r"the (\w+) block is on the table")
_HELD = re.compile(r"holding (\w+) block")
FEATURES = ("kind", "goal subject", "target placed", "goal atom", "moved placed")
TABLE = "table"
_GOAL = "My goal is to have that"  # PlanBench: the initial conditions come before it, the goal after


def relabel(ex, label: str, step_format: str):
    """``ex`` with every step labelled by the rule ``label`` (1.0 or 0.0)."""
    subjects = set(_goal(ex.prompt))
    out = []
    for text in ex.steps:
        action = step_action(text, step_format)
        moved = _BLOCK.findall(action)[0]
        out.append(float(action.startswith("pick up") if label == "kind"
                         else moved == "red" if label == "red" else moved in subjects))
    return dataclasses.replace(ex, labels=out)


def _goal(prompt: str) -> dict[str, str]:
    """The goal's ``on`` atoms of a PlanBench prompt: block -> the block it must rest on."""
    return dict(_ON.findall(prompt.split(_GOAL, 1)[-1].split("\n", 1)[0]))


def _state(text: str) -> dict[str, str]:
    """What each block rests on in a PlanBench state description: a block, ``table`` or ``hand``."""
    state = dict(_ON.findall(text))
    state.update({x: TABLE for x in _TABLE.findall(text)})
    state.update({x: "hand" for x in _HELD.findall(text)})
    return state


def _placed(state: dict[str, str], goal: dict[str, str], block: str) -> bool:
    """``block`` is in its final place: on what the goal wants (anything if no goal atom names
    it as subject), and that support is in its final place too, down to the table."""
    seen = set()
    while block != TABLE:
        under = state.get(block)
        if under in (None, "hand") or block in seen or goal.get(block, under) != under:
            return False
        seen.add(block)
        block = under
    return True


def step_features(ex, step_format: str) -> list[tuple]:
    """Per step of ``ex``: the :data:`FEATURES` values, each read off the text."""
    goal = _goal(ex.prompt)
    before = _state(ex.prompt.split(_GOAL, 1)[0])
    out = []
    for text in ex.steps:
        action = step_action(text, step_format)
        after = _state(text[len(action):])
        kind = action.split()[0]
        blocks = _BLOCK.findall(action)
        moved, target = blocks[0], blocks[1] if len(blocks) > 1 else TABLE
        placing = kind in ("stack", "put")
        out.append((kind, moved in goal, _placed(before, goal, target),
                    goal.get(moved) == target and kind in ("stack", "unstack"),
                    _placed(after if placing else before, goal, moved)))
        before = after
    return out


def oracle(ds) -> tuple[list[tuple[str, float, float]], int]:
    """Rows (features, within-depth AUROC, within-parent AUROC) of the feature-table scores on
    ``ds.val`` against exact labels, and the number of held-out steps scored."""
    from treeq.pipelines.prm_eval import TaskSource, exact_step_labels
    from treeq.prm.metrics import auroc_by_depth, depth_mean, within_group_mean

    def owned(examples):
        return [f for ex in examples for f, own in zip(step_features(ex, ds.step_format), ex.owned) if own]

    train_features = owned(ds.train)
    train_good = label_arrays(ds.train, 0.5)["hard"]
    val_features = owned(ds.val)
    exact, why = exact_step_labels(TaskSource(ds.runs), ds.val, step_format=ds.step_format)
    if exact is None:
        raise TreeqError(f"no exact labels for the held-out steps: {why}")
    good = owned_values(ds.val, exact)
    arrays = label_arrays(ds.val, 0.5)
    prior = float(np.mean(train_good))
    rows = []
    for n in range(1, len(FEATURES) + 1):
        cells: dict[tuple, list[int]] = {}
        for f, y in zip(train_features, train_good):
            cell = cells.setdefault(f[:n], [0, 0])
            cell[0] += y
            cell[1] += 1
        score = np.array([cells[f[:n]][0] / cells[f[:n]][1] if f[:n] in cells else prior for f in val_features])
        rows.append((" + ".join(FEATURES[:n]), depth_mean(auroc_by_depth(score, good, arrays["depth"])),
                     within_group_mean(score, good, arrays["parent"])))
    return rows, len(good)


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
    ap.add_argument("--oracle", action="store_true", help="train nothing: rank the exact labels by features read "
                                                          "off the text (see the module docstring)")
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
        if args.oracle:
            rows, n = oracle(ds)
    except TreeqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.oracle:
        print(f"{'features':<64} {'within-depth':>12} {'within-parent':>13}")
        for name, depth, parent in rows:
            print(f"{name:<64} {depth:>12.3f} {parent:>13.3f}")
        print(f"oracle: kind alone {rows[0][1]:.3f}, all features {rows[-1][1]:.3f} (within-depth AUROC on {n:,} "
              "held-out steps)")
        return 0
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
