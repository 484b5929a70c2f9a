"""Step datasets from search trees: root-to-node paths with per-step labels.

A tree row is an edge (a step) with its backed-up value; a path from the root is the
task's prompt followed by the step texts along it. This module turns one or more tree
stores into examples a PRM trains on:

* A step qualifies when its row has at least ``min_visits`` visits (with ``proven_steps``,
  also when the solver proved its value, exact whatever its visits: Blocksworld's goal
  steps are proven on expansion and never visited), and every row above it on the path
  qualifies too. Its **soft label** is its value ``coalesce(proven, q)``
  scaled by its env's value range (:func:`value_ranges`), ``(v - lo) / (hi - lo)``,
  clipped to [0, 1] (the value itself for envs whose returns are in [0, 1]); its **hard
  label** is ``soft > threshold``. With ``labels = "optimal"`` the label is 1 where the
  step's scaled value is above 0 and equals the best of its siblings' (within
  :data:`OPTIMAL_TOL`), else 0: ProcessBench's "a step is wrong when it lowers the
  optimal value", which discounting (a far state's best step worth less than a near
  state's worst) hides from value labels.
* The same step sequence from the same task found more than once (several runs, or
  several sources) is **merged**: one step, its label the visit-weighted mean.
* The qualifying steps of a task form a trie; each root-to-leaf path is one example,
  and each step is *owned* by exactly one example (the first path through it), so that
  a shared prefix counts once in the loss however many paths go through it (``mask``).
* Graph-mode trees (``trees.backup = 'max'``) list each state's children once, under its
  shallowest row: a path is the sequence of rows from the root by ``parent_id``, so a
  shared state is labelled once there too.
* The split into train and validation is **by task** (a hash of the task id and the
  seed), never by path, so no task leaks from training into validation.
* A step's text is its action, or, where the trees record what the env answered
  (``nodes.step_observation``, schema v3: envs that act in a world), the action, a
  newline and that observation (:func:`treeq.prm.format.step_text`; the dataset's
  ``step_format`` says which). Trees of one dataset must agree.

Only pyarrow and DuckDB are needed here (no torch): exports and benchmarks use it too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..data.store import connect, iter_store_tasks
from ..errors import ConfigError, StoreError
from .config import StepDatasetConfig
from .format import OBSERVED, step_text

__all__ = ["StepDatasetConfig", "StepExample", "StepDataset", "StepFormats", "build_step_dataset", "split_of",
           "iter_task_examples", "stepwise_rows", "STEPWISE_SCHEMA", "value_ranges", "DEFAULT_RANGE"]

DEFAULT_RANGE = (0.0, 1.0)
OPTIMAL_TOL = 1e-6  # --labels optimal: a step within this (of the value range) of its best sibling is optimal

_NODES_SQL = """
SELECT n.run_id, n.task_id, n.node_id, n.parent_id, n.action, n.observation, n.step_observation, n.visits, n.q,
       n.proven, t.env, t.backup
FROM nodes n JOIN trees t ON t.run_id = n.run_id AND t.task_id = n.task_id
ORDER BY n.task_id, n.run_id, n.node_id
"""

STEPWISE_SCHEMA = pa.schema([
    ("prompt", pa.string()), ("completions", pa.list_(pa.string())), ("labels", pa.list_(pa.float64())),
    ("hard_labels", pa.list_(pa.bool_())), ("visits", pa.list_(pa.int64())), ("owned", pa.list_(pa.bool_())),
    ("task_id", pa.string()), ("env", pa.string()), ("split", pa.string()),
])

@dataclass
class StepExample:
    """One root-to-leaf path of a task's qualifying steps."""

    task_id: str
    env: str
    prompt: str
    steps: list[str]
    labels: list[float]  # soft labels in [0, 1]: values scaled by the env's value range
    visits: list[int]  # merged visit counts
    owned: list[bool]  # the step counts in the loss here (its first path)
    nodes: list[int]  # trie node ids of the steps (unique within the dataset)
    parents: list[int]  # trie node id of each step's parent step (-1: the task's root)
    run_id: str = ""  # run of the first tree the path came from (exact metrics rebuild the task from it)

    def hard(self, threshold: float) -> list[bool]:
        return [x > threshold for x in self.labels]


@dataclass
class StepDataset:
    """Examples split by task, plus what produced them."""

    config: StepDatasetConfig
    train: list[StepExample]
    val: list[StepExample]
    sources: list[str]
    rows: int  # tree rows read
    runs: dict[str, dict] = field(default_factory=dict)  # run_id -> its search config (JSON)
    value_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # env -> (lo, hi) of the labels
    step_format: str = "action"  # or 'action+observation' (treeq.prm.format.STEP_FORMATS)

    @property
    def examples(self) -> list[StepExample]:
        return self.train + self.val

    def fingerprint(self) -> str:
        """A hash of every example's text and labels: the identity of the training data."""
        h = hashlib.sha256()
        for part, examples in (("train", self.train), ("val", self.val)):
            h.update(part.encode())
            for ex in examples:
                h.update(json.dumps([ex.task_id, ex.prompt, ex.steps, [round(x, 9) for x in ex.labels], ex.owned])
                         .encode())
        return h.hexdigest()[:16]

    def stepwise_table(self, threshold: float | None = None) -> pa.Table:
        """The stepwise PRM format (``prompt``, ``completions``, ``labels``) plus provenance.

        ``labels`` are the soft labels, ``hard_labels`` the thresholded ones, side by side.
        """
        thr = self.config.threshold if threshold is None else threshold
        return pa.concat_tables([stepwise_rows(self.train, "train", thr), stepwise_rows(self.val, "val", thr)])


def stepwise_rows(examples: Sequence[StepExample], split: str, threshold: float) -> pa.Table:
    """Rows of :data:`STEPWISE_SCHEMA` for ``examples`` of one split."""
    return pa.table({
        "prompt": [ex.prompt for ex in examples],
        "completions": [ex.steps for ex in examples],
        "labels": [ex.labels for ex in examples],
        "hard_labels": [ex.hard(threshold) for ex in examples],
        "visits": [ex.visits for ex in examples],
        "owned": [ex.owned for ex in examples],
        "task_id": [ex.task_id for ex in examples],
        "env": [ex.env for ex in examples],
        "split": [split] * len(examples),
    }, schema=STEPWISE_SCHEMA)


def split_of(task_id: str, seed: int, val_fraction: float) -> str:
    """``'val'`` or ``'train'`` for a task: a stable hash, so every path of a task lands together."""
    digest = hashlib.sha256(f"{seed}\x1f{task_id}".encode()).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2**64 < val_fraction else "train"


class _Trie:
    """Merged steps of one task: node -> (parent, text, visit-weighted label sums)."""

    def __init__(self) -> None:
        self.index: dict[tuple[int, str], int] = {}
        self.parent: list[int] = []
        self.text: list[str] = []
        self.weight: list[float] = []  # sum of visits (or 1 per row when visits are 0)
        self.label_sum: list[float] = []
        self.visits: list[int] = []
        self.children: list[list[int]] = []
        self.roots: list[int] = []

    def add(self, parent: int, text: str, label: float, visits: int) -> int:
        key = (parent, text)
        i = self.index.get(key)
        if i is None:
            i = self.index[key] = len(self.parent)
            self.parent.append(parent)
            self.text.append(text)
            self.weight.append(0.0)
            self.label_sum.append(0.0)
            self.visits.append(0)
            self.children.append([])
            (self.children[parent] if parent >= 0 else self.roots).append(i)
        w = float(visits) if visits > 0 else 1.0
        self.weight[i] += w
        self.label_sum[i] += w * label
        self.visits[i] += int(visits)
        return i

    def paths(self) -> Iterable[list[int]]:
        """Root-to-leaf paths in depth-first order (children in insertion order)."""
        stack = [[r] for r in reversed(self.roots)]
        while stack:
            path = stack.pop()
            kids = self.children[path[-1]]
            if not kids:
                yield path
            else:
                stack.extend(path + [k] for k in reversed(kids))


def _label(q: float | None, proven: float | None, lo: float, hi: float) -> float | None:
    value = proven if proven is not None else q
    if value is None or value != value:  # no visits and no proof: no label
        return None
    return min(1.0, max(0.0, (float(value) - lo) / (hi - lo)))


_VALUES_SQL = """
SELECT t.env, min(v), max(v) FROM (
    SELECT n.run_id, n.task_id, coalesce(n.proven, n.q) AS v FROM nodes n WHERE n.parent_id >= 0
) x JOIN trees t ON t.run_id = x.run_id AND t.task_id = x.task_id
WHERE v IS NOT NULL AND NOT isnan(v) GROUP BY t.env
"""


def value_ranges(sources: Sequence[str | Path], con=None) -> dict[str, tuple[float, float]]:
    """The value range (lo, hi) of each env of the stores, by env name.

    The range the env declares (``Env.value_range``, built from its runs' configs). Where
    it declares none or cannot be built here (its package missing, no runs row), the
    lowest and highest ``coalesce(proven, q)`` of its rows, widened to hold [0, 1] (so
    values in [0, 1] keep their labels). Runs of one env that declare different ranges
    (other options) share their union: one scale per env. ``con``: a connection to the
    stores already open (left open); None: one is opened here.
    """
    from ..envs.registry import make_env
    from ..errors import TreeqError

    own = con is None
    con = connect([str(s) for s in sources]) if own else con
    try:
        pairs = con.execute("SELECT DISTINCT t.env, r.config FROM trees t LEFT JOIN runs r ON r.run_id = t.run_id"
                            ).fetchall()
        declared: dict[str, tuple[float, float] | None] = {}
        built: dict[tuple[str, str], tuple[float, float] | None] = {}
        for env, config in pairs:
            cfg = json.loads(config) if config else {}
            key = (str(cfg.get("env")), json.dumps(cfg.get("env_kwargs", {}), sort_keys=True))
            if key not in built:
                try:
                    lo, hi = make_env(cfg["env"], **cfg.get("env_kwargs", {})).value_range
                    built[key] = (float(lo), float(hi)) if float(lo) < float(hi) else None
                except (TreeqError, KeyError, TypeError, ValueError):  # unbuildable, or no range declared
                    built[key] = None
            got, seen = built[key], declared.get(env, ())
            declared[env] = None if got is None or seen is None else (
                got if seen == () else (min(seen[0], got[0]), max(seen[1], got[1])))
        if any(r is None for r in declared.values()):
            for env, lo, hi in con.execute(_VALUES_SQL).fetchall():
                if declared.get(env, ()) is None:
                    declared[env] = (min(0.0, lo), max(1.0, hi))
    finally:
        if own:
            con.close()
    return {env: DEFAULT_RANGE if r is None else r for env, r in declared.items()}


def build_step_dataset(sources: Sequence[str | Path], config: StepDatasetConfig = StepDatasetConfig()) -> StepDataset:
    """Read tree stores and build the labelled step paths, split by task.

    Raises:
        StoreError: a source is not a readable tree store of a known schema version, or
            no step passes the visit threshold.
    """
    if not sources:
        raise ConfigError("give at least one search output directory")
    con = connect(list(sources))
    try:
        runs = {run_id: json.loads(cfg) for run_id, cfg in con.execute("SELECT run_id, config FROM runs").fetchall()}
        rows = con.execute("SELECT count(*) FROM nodes").fetchall()[0][0]
        ranges = value_ranges(sources, con)
    finally:
        con.close()
    train: list[StepExample] = []
    val: list[StepExample] = []
    seen = StepFormats()
    for split, examples in iter_task_examples(sources, config, ranges, seen):
        (val if split == "val" else train).extend(examples)
    if not train and not val:
        raise no_steps_error(sources, config)
    return StepDataset(config, train, val, [str(s) for s in sources], rows, runs, ranges, seen.format(sources))


class StepFormats:
    """The step formats met while reading trees: one dataset must hold one."""

    def __init__(self) -> None:
        self.tasks: dict[str, str] = {}  # format -> a task of it

    def add(self, fmt: str, task_id: str) -> None:
        self.tasks.setdefault(fmt, task_id)

    def format(self, sources: Sequence[str | Path]) -> str:
        """The one format met ('action' if none).

        Raises:
            StoreError: steps with and without observations (trees written before schema v3 beside newer ones).
        """
        if len(self.tasks) > 1:
            raise StoreError(
                f"{', '.join(map(str, sources))}: task {self.tasks[OBSERVED]!r} records what the env "
                f"answered to each step, task {self.tasks['action']!r} does not (trees from before schema v3): "
                "search the old tasks again, or train on actions only (--no-observations)")
        return next(iter(self.tasks), "action")


def no_steps_error(sources: Sequence[str | Path], config: StepDatasetConfig) -> StoreError:
    return StoreError(f"no step has {config.min_visits} or more visits in {', '.join(map(str, sources))}: "
                      f"lower --min-visits or search with more simulations")


def iter_task_examples(sources: Sequence[str | Path], config: StepDatasetConfig,
                       ranges: dict[str, tuple[float, float]] | None = None,
                       formats: StepFormats | None = None) -> Iterator[tuple[str, list[StepExample]]]:
    """(split, examples) of each task, streamed: memory holds a few tasks' trees.

    The rows of a task from every run and source are merged into one trie first. Labels
    scale by ``ranges`` (env -> (lo, hi); None: :func:`value_ranges` of ``sources``).
    ``formats`` collects each task's step format (:class:`StepFormats`).
    """
    if ranges is None:
        ranges = value_ranges(sources)
    offset = 0
    task_id: str | None = None
    trie, env, prompt, first_run = _Trie(), "", "", ""

    def finish() -> tuple[str, list[StepExample]]:
        owner_seen: set[int] = set()
        examples = []
        for path in trie.paths():
            owned = [n not in owner_seen for n in path]
            owner_seen.update(path)
            examples.append(StepExample(
                task_id=task_id, env=env, prompt=prompt,
                steps=[trie.text[n] for n in path],
                labels=[trie.label_sum[n] / trie.weight[n] for n in path],
                visits=[trie.visits[n] for n in path],
                owned=owned,
                nodes=[offset + n for n in path],
                parents=[offset + trie.parent[n] if trie.parent[n] >= 0 else -1 for n in path],
                run_id=first_run,
            ))
        return split_of(task_id, config.seed, config.val_fraction), examples

    for cols in iter_store_tasks([str(x) for x in sources], _NODES_SQL):
        if cols["task_id"][0] != task_id:
            if task_id is not None:
                yield finish()
                offset += len(trie.parent)
            task_id, trie, env, prompt, first_run = cols["task_id"][0], _Trie(), "", "", ""
        fmt = _add_rows(cols, trie, config.min_visits, ranges.get(cols["env"][0], DEFAULT_RANGE), config.observations,
                        config.labels, config.proven_steps)
        if formats is not None and fmt is not None:
            formats.add(fmt, cols["task_id"][0])
        if not first_run:
            roots = [i for i, p in enumerate(cols["parent_id"]) if p < 0]
            if roots:
                env, prompt, first_run = cols["env"][roots[0]], cols["observation"][roots[0]] or "", cols["run_id"][0]
    if task_id is not None:
        yield finish()


def _add_rows(cols: dict[str, list], trie: _Trie, min_visits: int, value_range: tuple[float, float],
              observations: bool = True, labels: str = "value", proven_steps: bool = False) -> str | None:
    """Add one tree's rows (sorted by node id) to its task's trie, labels scaled by ``value_range``
    (``labels == "optimal"``: 1 for a step whose value is its best sibling's, 0 else); the step
    format of the rows added (None: none added)."""
    trie_node: dict[int, int] = {}  # tree node id -> trie node (-1: the root)
    seen = cols["step_observation"] if observations else [None] * len(cols["node_id"])
    best: dict[int, float] = {}  # parent node id -> the highest scaled value among its children
    if labels == "optimal":
        for i, parent in enumerate(cols["parent_id"]):
            got = _label(cols["q"][i], cols["proven"][i], *value_range) if parent >= 0 else None
            if got is not None and got > best.get(parent, -1.0):
                best[parent] = got
    fmt = None
    for i in range(len(cols["node_id"])):
        node, parent = cols["node_id"][i], cols["parent_id"][i]
        if parent < 0:
            trie_node[node] = -1
            continue
        up = trie_node.get(parent)
        if up is None:  # the parent did not qualify, or came later in a graph listing
            continue
        label = _label(cols["q"][i], cols["proven"][i], *value_range)
        exact = proven_steps and cols["proven"][i] is not None  # the solver's value: exact at any visit count
        if (cols["visits"][i] < min_visits and not exact) or label is None or cols["action"][i] is None:
            continue
        if labels == "optimal":
            label = float(label > OPTIMAL_TOL and label >= best[parent] - OPTIMAL_TOL)
        fmt = "action" if seen[i] is None else OBSERVED
        trie_node[node] = trie.add(up, step_text(cols["action"][i], seen[i]), label, cols["visits"][i])
    return fmt


def owned_values(examples: Sequence[StepExample], rows: Sequence[Sequence]) -> np.ndarray:
    """Per-step values (one row per example, one value per step) flattened over the owned
    steps, in :func:`label_arrays`' order."""
    return np.array([v for ex, row in zip(examples, rows) for v, own in zip(row, ex.owned) if own])


def label_arrays(examples: Sequence[StepExample], threshold: float) -> dict[str, np.ndarray]:
    """Flat per-step arrays over the owned steps: soft label, hard label, depth, example index,
    parent (the trie node id of the step's parent; a task's root is a negative id of its own)."""
    soft, depth, index, parent = [], [], [], []
    roots: dict[str, int] = {}
    for i, ex in enumerate(examples):
        for d, (label, own, up) in enumerate(zip(ex.labels, ex.owned, ex.parents)):
            if own:
                soft.append(label)
                depth.append(d)
                index.append(i)
                parent.append(up if up >= 0 else -1 - roots.setdefault(ex.task_id, len(roots)))
    soft_a = np.asarray(soft, dtype=np.float64)
    return {"soft": soft_a, "hard": soft_a > threshold, "depth": np.asarray(depth, dtype=np.int64),
            "example": np.asarray(index, dtype=np.int64), "parent": np.asarray(parent, dtype=np.int64)}
