"""Step labels from treeq's search trees vs Monte Carlo completion labels, each against exact labels, at equal cost.

Per env (``--envs``; default Game of 24 on its shipped puzzles and Blocksworld on its shipped
4-5 block instances) a seeded sample of ``--tasks-per-env`` tasks is labelled and
``--heldout-per-env`` other tasks are held out. A ``prm-bench`` set is written in-process on
all of them (:func:`treeq.pipelines.prm_bench.write_bench`, ``--per-task`` samples a task, half
flawed), so every step ``(s_t, a_t)`` of every row has its exact label (``step_is_good(q*, v*)``:
the step keeps the optimal value) and every row its exact first error (``row["label"]``).

The steps of the labelled tasks' rows are then labelled by each source:

* **tree** at ``--budgets`` simulations: one :func:`treeq.mcts.search` per task from its start,
  in tree mode (``transpositions`` off), MCTS-Solver on, with the env's default evaluator run
  through the counted step: Game of 24's ``rollout`` as a plain-function evaluator doing one
  uniformly random playout per leaf with ``env.step``; Blocksworld's ``bound`` (no env step).
  A bench step's label is the value of the node its path reaches, ``coalesce(proven, q)``
  (``Tree.label``) scaled by the env's ``value_range`` as ``train-prm`` scales it; a step the
  tree never reached (or stepped without a visit or a proof) is **missing**: label 0.5,
  ``coverage`` is the labelled share. A step's text maps to the tree's action with
  ``env.canonical_action(state, step_action(text, step_format))`` (Game of 24 steps are
  reworded: operands swapped, ``left`` shuffled).
  Hard label (first-error F1): the tree saw a success after the step: a successful terminal
  node in the step's subtree, or a playout from one that succeeded. A missing step is not
  flagged (its 0.5 is not under ``prm-eval``'s threshold either).
* **mc** at ``--mc-k`` completions (Math-Shepherd, OmegaPRM's Monte Carlo estimate): from the
  state after the step, K uniformly random completions (``env.step``, at most
  ``--mc-max-steps`` steps each); soft label = the share that succeed (``is_success`` of the
  last step), hard label = any did (Math-Shepherd's hard estimate). A terminal step is its own
  label (its success), at no cost. A step shared by several rows of a task (the same actions
  from the start) is labelled once. K values are run in increasing order; a K whose cost,
  extrapolated from K=1, would pass ``--mc-cost-cap`` times the largest tree's is skipped (said).
* **exact** (the reference): the exact labels themselves (cost: an exact solver, not counted).

Cost = calls of ``env.step`` made by the source (a counter wrapped around the env instance's
``step``): every step of the search (expansions, Game of 24 expands a node's children at once,
and playouts) for the tree, every completion step for MC. Walking the bench's own steps to
find their states is not counted (the sample is given).

Per (source, budget): AUROC of the soft labels against the exact step labels, pooled and the
mean within depth (``auroc_by_depth``: depth alone predicts much of a pooled label); the
first-error F1 of the labels themselves (ProcessBench's F1, ``prm_bench._f1``, the predicted
error being the first step whose hard label is 0); env steps. Then a PRM trained on each
source's labels: the default small model shape (``tiny_model``: Llama, or Mistral with a local
window where the env's steps hold their state; ``--hidden-size``, ``--layers``) with a BPE
tokenizer trained on the labelled rows' texts (the same tokenizer and initialisation for every
source), bce on the soft labels (MC: on its hard labels, as Math-Shepherd trains; ``--mc-train-labels``), ``--prm-steps`` optimisation steps of ``--prm-batch`` rows for
every source (equal training cost; ``0`` skips the PRM columns), then scored on the held-out
rows with ``prm-eval``'s metric code (``prm_bench._bench_metrics``: first-error F1, and the
within-depth AUROC of its scores).

Deterministic for a seed. The last line compares the tree at its largest budget with MC at
the K whose cost is closest, per env.

    python benchmarks/label_sources.py
    python benchmarks/label_sources.py --envs game24 --tasks-per-env 40 --budgets 100,1000 --mc-k 4,64,256
"""

from __future__ import annotations

import argparse
import math
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_TASKS = {"game24": None, "blocksworld": "4-5"}  # None: the env's shipped set; else under its tasks dir
HEADER = ("env", "source", "budget", "env steps", "label AUROC vs exact", "within-depth AUROC",
          "first-error F1 (labels)", "PRM F1 (trained on them)", "coverage", "PRM within-depth AUROC")


def _ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return sorted(set(values))


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--envs", default="game24,blocksworld", help="Comma-separated: game24, blocksworld.")
    ap.add_argument("--tasks-per-env", type=int, default=50, help="Tasks labelled by each source per env.")
    ap.add_argument("--heldout-per-env", type=int, default=20, help="Other tasks the PRMs are scored on.")
    ap.add_argument("--per-task", type=int, default=4, help="Bench samples per task (even: half flawed).")
    ap.add_argument("--max-steps", type=int, default=12, help="Longest bench sample (a longer one is cut).")
    ap.add_argument("--budgets", type=_ints, default=[50, 200, 1000], help="Tree: simulations per task.")
    ap.add_argument("--mc-k", type=_ints, default=[1, 4, 16, 64, 256], help="MC: completions per step.")
    ap.add_argument("--mc-max-steps", type=int, default=200, help="MC: longest completion (the rollout's).")
    ap.add_argument("--mc-cost-cap", type=float, default=10.0,
                    help="Skip an MC K whose cost, extrapolated from K=1, passes this many times the largest "
                         "tree's (0: never skip).")
    ap.add_argument("--no-solver", action="store_true", help="Tree: search without the MCTS-Solver.")
    ap.add_argument("--prm-steps", type=int, default=200, help="PRM optimisation steps per source (0: no PRM).")
    ap.add_argument("--prm-batch", type=int, default=8, help="PRM rows per optimisation step.")
    ap.add_argument("--prm-for", choices=("headline", "all"), default="headline",
                    help="Train a PRM on: headline (exact, the tree at its largest budget, MC at the K of the "
                         "closest cost) or all (every row).")
    ap.add_argument("--mc-train-labels", choices=("hard", "soft"), default="hard",
                    help="Labels a PRM of MC labels trains on: hard (any completion succeeded, Math-Shepherd's "
                         "hard estimate) or soft (the success share; far under 0.5 on good early steps of Game of "
                         "24, so such a PRM flags every first step).")
    ap.add_argument("--hidden-size", type=int, default=64, help="PRM width.")
    ap.add_argument("--layers", type=int, default=2, help="PRM layers.")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: the same figures on any machine, and fastest beside another job).")
    ap.add_argument("--seed", type=int, default=0, help="Task sample, bench, searches, completions, PRM.")
    return ap


# ----------------------------------------------------------------------------- the steps to label
@dataclass
class Step:
    """One distinct step of a task: the actions from the start up to and including it."""

    task: str
    depth: int
    state: Any  # the state before the step
    action: str  # canonical
    after: Any  # the state after it
    terminated: bool
    success: bool


@dataclass
class EnvData:
    name: str
    env_kwargs: dict
    step_format: str
    tasks: dict[str, Any]  # task id -> Task (labelled and held-out)
    label_rows: list[dict]
    heldout_rows: list[dict]
    row_keys: list[list[tuple]] = field(default_factory=list)  # per label row, per step: its key in ``steps``
    steps: dict[tuple, Step] = field(default_factory=dict)


@dataclass
class Result:
    source: str
    budget: str
    cost: int | None
    soft: dict[tuple, float]
    hard: dict[tuple, bool]
    coverage: float = 1.0
    auroc: float = math.nan
    within: float = math.nan
    f1: float = math.nan
    prm_f1: float | None = None
    prm_within: float | None = None
    completions: int = 0  # mc: completions run


def _task_rng(seed: int, task_id: str, *salt: int):
    import numpy as np

    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(task_id.encode("utf-8")), *salt]))


def _sample_tasks(name: str, n: int, seed: int, tmp: Path) -> tuple[str, list[str]]:
    """A task file (or directory) of ``n`` tasks sampled (seeded) from the env's shipped set, and their ids."""
    import json
    import shutil

    import numpy as np

    from treeq.envs.registry import make_env

    env = make_env(name)
    where = DEFAULT_TASKS.get(name)
    tasks = list(env.load_tasks(None if where is None else str(Path(env.default_tasks).parent / where)))
    if n > len(tasks):
        raise SystemExit(f"{name}: {n} tasks asked, {len(tasks)} shipped")
    pick = sorted(np.random.default_rng(seed).choice(len(tasks), size=n, replace=False).tolist())
    chosen = [tasks[i] for i in pick]
    if name == "blocksworld":
        d = tmp / f"{name}-tasks"
        d.mkdir()
        for t in chosen:
            shutil.copy(t.payload["path"], d / f"{t.task_id}.pddl")
        return str(d), [t.task_id for t in chosen]
    path = tmp / f"{name}-tasks.jsonl"
    path.write_text("".join(json.dumps({"task_id": t.task_id, "numbers": t.payload["numbers"],
                                        "target": t.payload["target"]}) + "\n" for t in chosen))
    return str(path), [t.task_id for t in chosen]


def _build(name: str, args, tmp: Path) -> EnvData:
    from treeq.envs.base import is_success
    from treeq.envs.registry import make_env
    from treeq.pipelines.prm_bench import BenchConfig, read_bench, write_bench
    from treeq.prm.format import step_action

    n = args.tasks_per_env + args.heldout_per_env
    tasks_path, ids = _sample_tasks(name, n, args.seed, tmp)
    out = tmp / f"{name}-bench"
    write_bench(BenchConfig(env=name, tasks=tasks_path, per_task=args.per_task, max_steps=args.max_steps,
                            seed=args.seed, out=str(out), progress=False))
    rows, meta = read_bench(out)
    env = make_env(name, **meta["env_kwargs"])
    tasks = {t.task_id: t for t in env.load_tasks(tasks_path)}
    used = [t for t in ids if any(r["task"] == t for r in rows)]
    labelled = set(used[: args.tasks_per_env])
    data = EnvData(name, meta["env_kwargs"], meta["step_format"], tasks,
                   [r for r in rows if r["task"] in labelled], [r for r in rows if r["task"] not in labelled])
    canonical = getattr(env, "canonical_action", None)
    for row in data.label_rows:
        task = row["task"]
        state = env.reset(tasks[task], _task_rng(args.seed, task))
        actions: list[str] = []
        keys = []
        for depth, text in enumerate(row["steps"]):
            written = step_action(text, data.step_format)
            action = canonical(state, written) if canonical is not None else written
            actions.append(action)
            key = (task, tuple(actions))
            step = env.step(state, action)  # the sample is given: not counted
            if key not in data.steps:
                data.steps[key] = Step(task, depth, state, action, step.state, bool(step.terminated),
                                       is_success(step))
            keys.append(key)
            state = step.state
        data.row_keys.append(keys)
    return data


# ----------------------------------------------------------------------------- counted env
def _counted_env(name: str, env_kwargs: dict):
    """A fresh env whose instance ``step`` counts its calls (``env.step_calls``)."""
    from treeq.envs.registry import make_env

    env = make_env(name, **env_kwargs)
    plain = env.step
    env.step_calls = 0

    def step(state, action, rng=None):
        env.step_calls += 1
        return plain(state, action, rng)

    env.step = step
    return env


def _scale(value: float, value_range) -> float:
    lo, hi = value_range if value_range is not None else (0.0, 1.0)
    return min(1.0, max(0.0, (value - lo) / (hi - lo)))


# ----------------------------------------------------------------------------- sources
def _tree_source(data: EnvData, budget: int, args) -> Result:
    import numpy as np

    from treeq.envs.base import is_success
    from treeq.mcts.config import SearchConfig, resolve_defaults
    from treeq.mcts.hooks import bound_evaluate, uniform_stream, zero_evaluate
    from treeq.mcts.search import search

    soft: dict[tuple, float] = {}
    hard: dict[tuple, bool] = {}
    cost = 0
    by_task: dict[str, list[tuple]] = {}
    for key in data.steps:
        by_task.setdefault(key[0], []).append(key)
    for task_id, keys in by_task.items():
        env = _counted_env(data.name, data.env_kwargs)
        rng = _task_rng(args.seed, task_id, 1)
        root = env.reset(data.tasks[task_id], _task_rng(args.seed, task_id))
        config = resolve_defaults(SearchConfig(simulations=budget, transpositions=False, solver=not args.no_solver),
                                  env)
        succeeded: set[int] = set()  # id() of the states whose playout succeeded
        if env.default_evaluator == "rollout":
            draw = uniform_stream(rng).__next__
            gamma, max_steps = config.gamma, config.rollout_steps

            def evaluate(states, env=env, draw=draw, gamma=gamma, max_steps=max_steps, rng=rng, seen=succeeded):
                out = []
                for start in states:  # Env.playout, through the counted env.step
                    state, ret, discount = start, 0.0, 1.0
                    for _ in range(max_steps):
                        actions = env.legal_actions(state)
                        if not actions:
                            break
                        step = env.step(state, actions[int(draw() * len(actions))], rng)
                        ret += discount * step.reward
                        discount *= gamma
                        if step.terminated or step.truncated:
                            if is_success(step):
                                seen.add(id(start))
                            break
                        state = step.state
                    out.append(ret)
                return out
        elif env.default_evaluator == "bound":
            evaluate = bound_evaluate(env, config.gamma)
        else:
            evaluate = zero_evaluate
        tree = search(env, root, config, rng, evaluate=evaluate).tree
        cost += env.step_calls
        label = tree.label()
        # saw a success at or below each node (BFS order: children come after their parent)
        seen = (tree.terminal & (tree.reward >= 1.0)).copy()
        if succeeded:
            seen |= np.array([id(s) in succeeded for s in tree.states])
        for n in range(tree.size - 1, 0, -1):
            if seen[n]:
                seen[tree.parent[n]] = True
        for key in keys:
            node = 0
            for action in key[1]:
                node = next((c for c in tree.children(node) if tree.action_text(c) == action), None)
                if node is None:
                    break
            if node is not None and not math.isnan(label[node]):
                soft[key] = _scale(float(label[node]), env.value_range)
                hard[key] = bool(seen[node])
    return _finish(Result("tree", str(budget), cost, soft, hard), data)


def _mc_source(data: EnvData, k: int, args) -> Result:
    from treeq.envs.base import is_success

    soft: dict[tuple, float] = {}
    hard: dict[tuple, bool] = {}
    env = _counted_env(data.name, data.env_kwargs)
    completions = 0
    for key, step in data.steps.items():
        if step.terminated:
            soft[key], hard[key] = float(step.success), step.success
            continue
        rng = _task_rng(args.seed, key[0], 2, k, len(key[1]), zlib.crc32("\n".join(key[1]).encode("utf-8")))
        wins = 0
        for _ in range(k):
            completions += 1
            state = step.after
            for _ in range(args.mc_max_steps):
                actions = env.legal_actions(state)
                if not actions:
                    break
                got = env.step(state, actions[int(rng.integers(len(actions)))], rng)
                if got.terminated or got.truncated:
                    wins += is_success(got)
                    break
                state = got.state
        soft[key], hard[key] = wins / k, wins > 0
    result = _finish(Result("mc", str(k), env.step_calls, soft, hard), data)
    result.completions = completions
    return result


def _exact_source(data: EnvData) -> Result:
    from treeq.pipelines.prm_bench import step_is_good

    soft, hard = {}, {}
    for row, keys in zip(data.label_rows, data.row_keys):
        for key, q, v in zip(keys, row["q_star"], row["v_star"]):
            good = step_is_good(q, v)
            soft[key], hard[key] = float(good), good
    return _finish(Result("exact", "-", None, soft, hard), data)


def _row_labels(result: Result, data: EnvData) -> tuple[list[list[float]], list[list[bool]]]:
    """Each label row's soft and hard labels (a missing step: 0.5, not flagged)."""
    soft = [[result.soft.get(k, 0.5) for k in keys] for keys in data.row_keys]
    hard = [[result.hard.get(k, True) for k in keys] for keys in data.row_keys]
    return soft, hard


def _finish(result: Result, data: EnvData) -> Result:
    import numpy as np

    from treeq.pipelines.prm_bench import _f1, step_is_good
    from treeq.prm.metrics import auroc, auroc_by_depth, depth_mean

    soft, hard = _row_labels(result, data)
    flat = np.array([x for row in soft for x in row])
    good = np.array([step_is_good(q, v) for r in data.label_rows for q, v in zip(r["q_star"], r["v_star"])])
    depth = np.array([i for r in data.label_rows for i in range(len(r["steps"]))])
    by_depth = auroc_by_depth(flat, good, depth)
    result.auroc = auroc(flat, good)
    result.within = depth_mean(by_depth)
    predicted = [next((i for i, h in enumerate(row) if not h), -1) for row in hard]
    result.f1 = _f1(predicted, [r["label"] for r in data.label_rows])["first_error_f1"]
    keys = [k for keys in data.row_keys for k in keys]
    result.coverage = sum(k in result.soft for k in keys) / len(keys)
    return result


# ----------------------------------------------------------------------------- PRM
class _PRM:
    """One env's PRM setup: tokenizer, window and length shared by every source's model."""

    def __init__(self, data: EnvData, args, tmp: Path) -> None:
        from treeq.envs.registry import make_env
        from treeq.prm.config import TinyModelConfig
        from treeq.prm.format import path_text
        from treeq.prm.model import local_window, quiet_transformers, train_tokenizer

        quiet_transformers()
        self.data, self.args, self.tmp = data, args, tmp
        texts = sorted({t for r in data.label_rows for t in (r["problem"], *r["steps"])})
        self.tokenizer = train_tokenizer(texts, 1024)
        rows = data.label_rows + data.heldout_rows
        longest = max(len(ids) for ids in self.tokenizer([path_text(r["problem"], r["steps"]) for r in rows])
                      ["input_ids"])
        self.max_length = max(512, -(-longest // 64) * 64)  # every path fits
        self.tiny = TinyModelConfig(hidden_size=args.hidden_size, layers=args.layers, heads=4,
                                    max_length=self.max_length)
        env = make_env(data.name, **data.env_kwargs)
        self.window = local_window(self.tokenizer, (s for r in data.label_rows for s in r["steps"]), args.layers) \
            if env.step_holds_state else 0

    def examples(self, soft: list[list[float]]):
        from treeq.prm.dataset import StepExample

        ids: dict[tuple, int] = {}
        out = []
        for row, labels in zip(self.data.label_rows, soft):
            nodes, parents, owned = [], [], []
            for i in range(len(row["steps"])):
                key = (row["task"], tuple(row["steps"][: i + 1]))
                owned.append(key not in ids)
                ids.setdefault(key, len(ids))
                parents.append(nodes[-1] if nodes else -1)
                nodes.append(ids[key])
            out.append(StepExample(task_id=row["task"], env=self.data.name, prompt=row["problem"],
                                   steps=list(row["steps"]), labels=[float(x) for x in labels],
                                   visits=[1] * len(labels), owned=owned, nodes=nodes, parents=parents))
        return out

    def score(self, soft: list[list[float]], tag: str) -> tuple[float, float]:
        """Train on the labelled rows' ``soft`` labels; (first-error F1, within-depth AUROC) on the held-out rows."""
        from treeq.pipelines.prm_bench import _bench_metrics
        from treeq.prm.config import TrainConfig
        from treeq.prm.model import score_batch, tiny_model
        from treeq.prm.train import PackedDataset, fit

        args = self.args
        model = tiny_model(self.tokenizer, self.tiny, args.seed, self.window)
        train_set = PackedDataset(self.examples(soft), self.tokenizer, self.max_length)
        cfg = TrainConfig(max_steps=args.prm_steps, batch_size=args.prm_batch, seed=args.seed,
                          save_every=args.prm_steps + 1, first_passes=0, positive_passes=0)
        fit(model, self.tokenizer, train_set, None, cfg, self.tmp / f"ckpt-{self.data.name}-{tag}",
            cfg.learning_rate(pretrained=False), progress=False, resume=False)
        rows = self.data.heldout_rows
        scores = score_batch(model, self.tokenizer, [(r["problem"], list(r["steps"])) for r in rows],
                             self.max_length, batch_size=32, skip_long=True)
        predicted = [None if s is None else next((i for i, x in enumerate(s) if x < 0.5), -1) for s in scores]
        metrics = _bench_metrics(rows, scores, predicted)
        return metrics["first_error_f1"], metrics["within_depth_auroc"]


# ----------------------------------------------------------------------------- output
def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else ("n/a" if x != x else f"{x:.{digits}f}")


def _table(lines: list[tuple[str, Result]]) -> str:
    cells = [HEADER] + [
        (env, r.source, r.budget, "-" if r.cost is None else f"{r.cost:,}", _num(r.auroc), _num(r.within),
         _num(r.f1), _num(r.prm_f1), f"{r.coverage:.0%}", _num(r.prm_within))
        for env, r in lines]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADER))]
    fmt = lambda row: " | ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(cells[0]), "-+-".join("-" * w for w in widths)] + [fmt(row) for row in cells[1:]])


def _headline(results: list[Result], largest: int) -> tuple[Result, Result]:
    """The tree at its largest budget and MC at the K whose cost is closest to it (by ratio)."""
    tree = next(r for r in results if r.source == "tree" and r.budget == str(largest))
    mcs = [r for r in results if r.source == "mc"]
    return tree, min(mcs, key=lambda r: (abs(math.log(max(r.cost, 1) / max(tree.cost, 1))), int(r.budget)))


def _summary(per_env: dict[str, list[Result]], largest: int) -> str:
    parts, ks = [], []
    for env, results in per_env.items():
        tree, mc = _headline(results, largest)
        ks.append(f"K={mc.budget} ({env})")

        def said(r: Result) -> str:
            prm = "" if r.prm_f1 is None else f", PRM F1 {_num(r.prm_f1, 2)}"
            return (f"AUROC {_num(r.auroc, 2)} (within depth {_num(r.within, 2)}), F1 {_num(r.f1, 2)}{prm}, "
                    f"{r.cost:,} env steps")

        parts.append(f"{env} tree {said(tree)} vs MC {said(mc)}")
    return f"tree labels at {largest} simulations vs MC at {', '.join(ks)}: " + "; ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    envs = [e.strip() for e in args.envs.split(",") if e.strip()]
    unknown = [e for e in envs if e not in DEFAULT_TASKS]
    if unknown:
        raise SystemExit(f"unknown env(s) {', '.join(unknown)}: choose from {', '.join(DEFAULT_TASKS)}")
    if args.per_task < 2 or args.per_task % 2 or args.tasks_per_env < 1 or args.heldout_per_env < 1 \
            or args.prm_steps < 0:
        raise SystemExit("--per-task must be even and >= 2; --tasks-per-env, --heldout-per-env >= 1; "
                         "--prm-steps >= 0")

    import tempfile

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    per_env: dict[str, list[Result]] = {}
    with tempfile.TemporaryDirectory(prefix="label-sources-") as tmp:
        for name in envs:
            t0 = time.perf_counter()
            data = _build(name, args, Path(tmp))
            n_steps = sum(len(r["steps"]) for r in data.label_rows)
            print(f"{name}: {len({r['task'] for r in data.label_rows})} labelled tasks, {len(data.label_rows)} rows "
                  f"({sum(r['label'] >= 0 for r in data.label_rows)} flawed), {n_steps} steps "
                  f"({len(data.steps)} distinct, {sum(not s.terminated for s in data.steps.values())} not terminal); "
                  f"{len({r['task'] for r in data.heldout_rows})} held-out tasks, {len(data.heldout_rows)} rows; "
                  f"step format {data.step_format} ({time.perf_counter() - t0:.1f} s)", flush=True)
            results = [_exact_source(data)]
            for budget in args.budgets:
                t0 = time.perf_counter()
                results.append(_tree_source(data, budget, args))
                print(f"  tree {budget}: {results[-1].cost:,} env steps ({time.perf_counter() - t0:.1f} s)", flush=True)
            largest = results[-1].cost  # the last tree: the largest budget
            cap = args.mc_cost_cap * largest if args.mc_cost_cap > 0 else math.inf
            per_k1 = None
            for k in args.mc_k:
                if per_k1 is not None and per_k1 * k > cap and k != args.mc_k[0]:
                    print(f"  mc {k}: skipped (about {per_k1 * k:,.0f} env steps, over {args.mc_cost_cap:g} x the "
                          f"largest tree's {largest:,})", flush=True)
                    continue
                t0 = time.perf_counter()
                results.append(_mc_source(data, k, args))
                per_k1 = results[-1].cost / k
                print(f"  mc {k}: {results[-1].cost:,} env steps, {results[-1].completions:,} completions "
                      f"({time.perf_counter() - t0:.1f} s)", flush=True)
            if args.prm_steps:
                t0 = time.perf_counter()
                prm = _PRM(data, args, Path(tmp))
                chosen = results if args.prm_for == "all" else [results[0], *_headline(results, max(args.budgets))]
                for r in chosen:
                    soft, hard = _row_labels(r, data)
                    if r.source == "mc" and args.mc_train_labels == "hard":  # Math-Shepherd's hard estimate
                        soft = [[float(h) for h in row] for row in hard]
                    r.prm_f1, r.prm_within = prm.score(soft, f"{r.source}-{r.budget}")
                print(f"  {len(chosen)} PRMs of {args.prm_steps} steps ({time.perf_counter() - t0:.1f} s)", flush=True)
            per_env[name] = results
    print()
    print(_table([(env, r) for env, results in per_env.items() for r in results]))
    print(f"\nexact: the exact labels themselves; tree: budget = simulations per task; mc: budget = completions "
          f"per step; env steps = env.step calls of the source; coverage = share of bench steps the source "
          f"labelled (else 0.5). {time.perf_counter() - started:.0f} s in all.")
    print(_summary(per_env, max(args.budgets)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
