"""``train-policy``: a causal-LM policy (the ``hf`` policy's model) trained on searched trees.

Three methods (``--method``):

* **distill** (AlphaZero, Expert Iteration): at every node with at least ``min_visits``
  visits (or, outside Gumbel trees, with every child proven by the solver: an exact
  target at any visit count) and two or more children, the model's prior over the children's actions is pulled
  towards the search's target by cross-entropy. The target (:func:`distill_target`) is
  Gumbel search's improved policy where the run searched with ``selection = "gumbel"``;
  else, where the solver proved a child, ``softmax(v / temperature)`` of the children's
  values ``v = coalesce(proven, q)`` (scaled to [0, 1] by the env's value range; a child
  with neither takes its siblings' lowest value); else the visit distribution. The prior
  is the ``hf`` policy's exactly, with gradients: the softmax over the node's children of
  the mean per-token log-probability of ``joiner + action`` after the formatted prompt.
  The same (prompt, actions) met in several trees is one example, its target the
  visit-weighted mean. A plain torch loop (AdamW, linear decay, batches of nodes).
* **sft** (rStar-Math, ReST-MCTS*): TRL's ``SFTTrainer`` on the steps of successful paths
  (with the solver: every root-to-terminal path that follows, at each node, the children
  proven to the best value there and ends in a successful terminal transition; without
  it, each tree's highest-Q path where it ends in success). Prompt: the policy's
  formatted prompt; completion: ``joiner + action + eos``; the loss on the completion only.
* **dpo** (Agent Q): TRL's ``DPOTrainer`` on the pairs of ``export-dpo``'s rules
  (``pairs``), built in memory; the prompt is the policy's formatted prompt (export-dpo
  writes the rendered observation, a different text), chosen and rejected are
  ``joiner + action`` (TRL appends the eos); the reference model is the starting model.

Texts are tokenized as the ``hf`` policy scores them (:class:`~treeq.pipelines.policies.lm.HFBackend`):
``prompt + continuation`` as one text without special tokens, the continuation's tokens
those that start at or after the prompt's end; so training sees exactly the text the
search sends. The prompt of a node is :meth:`Env.policy_prompt` of its state: for an env
that keeps the base prompt (instructions, rendered state, cue) it is built from the
recorded observation (the render of the state the search held there); an env with a
prompt of its own has its states rebuilt by replaying the node's actions from the task's
start, which a stochastic env cannot do (refused).

The output directory is a plain transformers model (safetensors weights, tokenizer) that
``search --policy hf --model DIR`` loads, plus ``treeq_policy.json`` (method, base model,
sources, data fingerprint, settings, steps, metrics). It must be new, empty, or hold this
run (same data and settings): an interrupted run resumes from ``DIR/checkpoints``
(every ``save_every`` steps), a finished one returns its stored summary untrained.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..errors import ConfigError, Interrupted, OutputError, StoreError
from .config import DPOConfig

__all__ = ["PolicyTrainConfig", "train_policy", "training_examples", "METHODS", "ChildStats", "distill_target", "default_learning_rate",
           "POLICY_FILE", "SMALL_MODEL_PARAMS", "format_prompt", "joiner_of", "split_ids"]

METHODS = ("distill", "sft", "dpo")
POLICY_FILE = "treeq_policy.json"
_RUN_FILE = "treeq_run.json"  # in DIR/checkpoints: the fingerprint of the run that writes them
_CKPT = "checkpoints"

SMALL_MODEL_PARAMS = 20_000_000
"""Below this many parameters a model counts as small and freshly made (``make-tiny-model`` builds ~0.1M):
it takes the large learning rates; a larger one is a pretrained model, fine-tuned with small ones."""

# learning-rate defaults by method: (small / from-scratch model, pretrained model)
_LR = {"distill": (3e-3, 2e-5), "sft": (2e-3, 2e-5), "dpo": (1e-3, 1e-5)}


@dataclass(frozen=True)
class PolicyTrainConfig:
    """A ``train-policy`` run."""

    sources: tuple[str, ...] = field(default=(), metadata={"help": "Search output directories to learn from."})
    model: str | None = field(default=None, metadata={
        "help": "The policy to train (required): a local directory, a hub id or smollm2 (SmolLM2-135M-Instruct from "
                "PyPI); `make-tiny-model` makes a small one offline."})
    method: str = field(default="distill", metadata={
        "help": "distill (AlphaZero: the prior towards the search's policy at each node), sft (rStar-Math: the "
                "steps of successful paths) or dpo (Agent Q: export-dpo's pairs)."})
    out: str = field(default="treeq-policy", metadata={
        "help": "Directory of the trained policy: new or empty, or holding this run (same data and settings), "
                "which then resumes or, finished, gives its stored summary."})
    epochs: float = field(default=3.0, metadata={"help": "Passes over the examples."})
    max_steps: int | None = field(default=None, metadata={
        "help": "Stop after this many optimisation steps; None: the epochs decide."})
    learning_rate: float | None = field(default=None, metadata={
        "help": "Peak learning rate (linear decay); None: by method and model: a model under 20M parameters "
                "(make-tiny-model's) 3e-3 distill, 2e-3 sft, 1e-3 dpo; a larger (pretrained) one 2e-5 distill "
                "and sft, 1e-5 dpo."})
    batch_size: int = field(default=16, metadata={
        "help": "Examples per optimisation step: nodes (distill), prompt-completion pairs (sft) or preference "
                "pairs (dpo)."})
    min_visits: int = field(default=10, metadata={
        "help": "distill: nodes with at least this many visits (a visit distribution over fewer is mostly noise); "
                "a node whose children the solver all proved qualifies at any count (its target is exact)."})
    temperature: float = field(default=0.1, metadata={
        "help": "distill with solver values: the target is softmax(v / temperature), v = coalesce(proven, q) scaled "
                "to [0, 1] by the env's value range (0.1: a proven win outweighs a proven loss e^10 to 1)."})
    beta: float = field(default=0.1, metadata={"help": "dpo: the KL weight beta of the DPO loss."})
    pairs: DPOConfig = field(default_factory=DPOConfig, metadata={
        "help": "dpo: how the children of a node are paired (export-dpo's rules)."})
    seed: int = field(default=0, metadata={"help": "Seed of the data order (and of TRL's trainers)."})
    max_length: int | None = field(default=None, metadata={
        "help": "Longest example in tokens; a longer one is left out (counted in the summary); None: the "
                "model's context length."})
    max_batch_tokens: int = field(default=4096, metadata={
        "help": "distill: padded tokens per forward pass at most (a step's nodes are split into passes whose "
                "gradients add up; a node's actions always go together)."})
    save_every: int = field(default=200, metadata={"help": "Optimisation steps between checkpoints (resume points)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    device: str | None = field(default=None, metadata={"help": "Torch device; None: cuda when present, else cpu."})
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not self.model:
            raise ConfigError("train-policy needs --model: a local directory, a hub id or smollm2 "
                              "(make one offline with `treeq make-tiny-model`)")
        if not self.sources:
            raise ConfigError("give at least one search output directory")
        if not (self.epochs > 0 and math.isfinite(self.epochs)):
            raise ConfigError(f"epochs must be a finite number > 0, got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.learning_rate is not None and not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ConfigError(f"learning_rate must be a finite number > 0, got {self.learning_rate}")
        for name in ("batch_size", "min_visits", "save_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ConfigError(f"temperature must be a finite number > 0, got {self.temperature}")
        if not (self.beta > 0 and math.isfinite(self.beta)):
            raise ConfigError(f"beta must be a finite number > 0, got {self.beta}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.max_length is not None and self.max_length < 2:
            raise ConfigError(f"max_length must be >= 2, got {self.max_length}")
        if self.max_batch_tokens < 64:
            raise ConfigError(f"max_batch_tokens must be >= 64, got {self.max_batch_tokens}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")


def default_learning_rate(method: str, parameters: int) -> float:
    """The learning rate ``method`` takes by default for a model of ``parameters`` parameters."""
    small, pretrained = _LR[method]
    return small if parameters < SMALL_MODEL_PARAMS else pretrained


# ---------------------------------------------------------------------------- distill targets
@dataclass(frozen=True)
class ChildStats:
    """One child of a node as the distill target reads it (its rows merged where an action has several)."""

    action: str
    prior: float
    visits: int
    q: float | None
    proven: float | None


def distill_target(children: Sequence[ChildStats], selection: str, temperature: float,
                   value_range: tuple[float, float] = (0.0, 1.0)) -> list[float]:
    """The policy a node's children are distilled towards (see the module docstring).

    * ``selection == "gumbel"``: :func:`treeq.mcts.selection.improved_policy` of the recorded
      priors, Q and visits, the node's raw value standing in as the prior-weighted mean Q of
      its visited children (an unvisited child's Q is not read);
    * else, where a child is proven: ``softmax(v / temperature)``, ``v = coalesce(proven, q)``
      scaled by ``value_range`` to [0, 1], a child with neither at its siblings' lowest value;
    * else the visit distribution; none (an empty list) where the children hold no visit (in
      graph search a node can be visited often while its children are not).
    """
    if selection == "gumbel":
        from ..mcts.selection import improved_policy

        priors = [c.prior for c in children]
        seen = [c for c in children if c.visits > 0 and c.q is not None]
        mass = sum(max(c.prior, 1e-300) for c in seen)
        raw = sum(max(c.prior, 1e-300) * c.q for c in seen) / mass if seen else 0.0
        return improved_policy(priors, [c.q if c.visits > 0 and c.q is not None else 0.0 for c in children],
                               [c.visits if c.q is not None else 0 for c in children], raw)
    if any(c.proven is not None for c in children):
        lo, hi = value_range
        span = hi - lo if hi > lo else 1.0
        values = [c.proven if c.proven is not None else c.q for c in children]
        known = [v for v in values if v is not None and not math.isnan(v)]
        floor = min(known)
        x = np.array([(floor if v is None or math.isnan(v) else v) for v in values], dtype=np.float64)
        x = (x - lo) / span / temperature
        x = np.exp(x - x.max())
        return (x / x.sum()).tolist()
    visits = np.array([c.visits for c in children], dtype=np.float64)
    total = visits.sum()
    return (visits / total).tolist() if total > 0 else []


# ---------------------------------------------------------------------------- reading the trees
_NODES_SQL = """
SELECT n.run_id, n.task_id, n.node_id, n.parent_id, n.depth, n.action, n.state_key, n.observation, n.prior, n.visits, n.q,
       n.proven, n.feedback, n.terminal, n.reward, t.env, t.backup
FROM nodes n JOIN trees t ON t.run_id = n.run_id AND t.task_id = n.task_id
ORDER BY n.task_id, n.run_id, n.node_id
"""


class _Prompts:
    """``env.policy_prompt(state)`` of the rows of each tree (see the module docstring)."""

    def __init__(self, runs: dict[str, dict]) -> None:
        from ..envs.base import Env
        from .prm_eval import TaskSource

        self._runs = runs
        self._source = TaskSource(runs)
        self._base = Env.policy_prompt
        self._states: dict[tuple[str, str, int], Any] = {}

    def env(self, run_id: str):
        env = self._source.env(run_id)
        if env is None:
            raise StoreError(f"cannot rebuild the env of run {run_id} (its runs row is missing or names an env "
                             f"that cannot be built here)")
        return env

    def of(self, cols: dict[str, list], i: int, index: dict[int, int]) -> str:
        """The policy prompt of row ``i`` of one tree (``index``: node id -> row)."""
        run_id = cols["run_id"][i]
        env = self.env(run_id)
        obs = cols["observation"][i]
        if type(env).policy_prompt is self._base and obs is not None:
            # the base prompt reads the state through render() only: the recorded render gives the same text
            return self._base(SimpleNamespace(instructions=env.instructions, render=lambda _state: obs), None)
        return env.policy_prompt(self._state(cols, i, index, env))

    def _state(self, cols: dict[str, list], i: int, index: dict[int, int], env) -> Any:
        from .search import task_rng

        run_id, task_id = cols["run_id"][i], cols["task_id"][i]
        if not env.deterministic:
            raise ConfigError(f"{env.name} is stochastic and has a policy prompt of its own: its states cannot be "
                              f"rebuilt by replaying the recorded actions, so train-policy cannot write its prompts")
        path = []
        j = i
        while (run_id, task_id, cols["node_id"][j]) not in self._states:
            parent = index.get(cols["parent_id"][j])
            if parent is None:  # the root
                got = self._source.get(run_id)
                if isinstance(got, str):
                    raise StoreError(f"cannot rebuild the states of task {task_id}: {got}")
                tasks = got[1]
                if task_id not in tasks:
                    raise StoreError(f"task {task_id} is not in the task set of run {run_id}")
                seed = int(self._runs[run_id].get("seed", 0))
                self._states[run_id, task_id, cols["node_id"][j]] = env.reset(tasks[task_id], task_rng(seed, task_id))
                break
            path.append(j)
            j = parent
        state = self._states[run_id, task_id, cols["node_id"][j]]
        for k in reversed(path):
            state = env.step(state, cols["action"][k]).state
            self._states[run_id, task_id, cols["node_id"][k]] = state
        return state

    def forget(self) -> None:
        """Drop the replayed states (one tree at a time is kept)."""
        self._states.clear()


def _runs_and_envs(sources: Sequence[str]) -> tuple[dict[str, dict], list[str]]:
    from ..data.store import connect

    con = connect(list(sources))
    try:
        runs = {r: json.loads(c) for r, c in con.execute("SELECT run_id, config FROM runs").fetchall() if c}
        envs = sorted(e for (e,) in con.execute("SELECT DISTINCT env FROM trees WHERE env IS NOT NULL").fetchall())
    finally:
        con.close()
    return runs, envs


def _iter_trees(sources: Sequence[str], progress: bool, desc: str) -> Iterable[dict[str, list]]:
    """The rows of each tree (one run's rows of one task, by node id), with a progress bar over task shards."""
    from tqdm import tqdm

    from ..data.store import iter_store_tasks, shard_names

    with tqdm(total=len(shard_names(list(sources))), desc=desc, unit="task", disable=not progress,
              dynamic_ncols=True) as bar:
        task = None
        for cols in iter_store_tasks(list(sources), _NODES_SQL):
            if cols["task_id"][0] != task:
                task = cols["task_id"][0]
                bar.update(1)
            yield cols


def _children(cols: dict[str, list]) -> tuple[dict[int, int], dict[int, list[int]]]:
    """(node id -> row, row -> its children's rows) of one tree."""
    index = {n: i for i, n in enumerate(cols["node_id"])}
    kids: dict[int, list[int]] = {}
    for i, p in enumerate(cols["parent_id"]):
        if p is not None and p >= 0 and p in index and cols["action"][i] is not None:
            kids.setdefault(index[p], []).append(i)
    return index, kids


def _merged(cols: dict[str, list], rows: list[int]) -> list[ChildStats]:
    """A node's children by action text (several rows of one action, as stochastic outcomes, merged)."""
    by_action: dict[str, list[int]] = {}
    for i in rows:
        by_action.setdefault(cols["action"][i], []).append(i)
    out = []
    for action, group in by_action.items():
        visits = sum(int(cols["visits"][i]) for i in group)
        qs = [(cols["q"][i], int(cols["visits"][i])) for i in group
              if cols["q"][i] is not None and not math.isnan(cols["q"][i]) and cols["visits"][i] > 0]
        q = sum(v * n for v, n in qs) / sum(n for _, n in qs) if qs else None
        proven = {cols["proven"][i] for i in group}
        out.append(ChildStats(action, float(cols["prior"][group[0]] or 0.0), visits, q,
                              proven.pop() if len(proven) == 1 else None))
    return out


@dataclass
class _Data:
    """The examples of a method, before tokenization."""

    examples: list[Any]
    fingerprint: str
    depths: list[int] | None = None  # distill: each node's depth (batches draw every depth equally often)


def _hash(items: Iterable[Any]) -> str:
    h = hashlib.sha256()
    for item in items:
        h.update(json.dumps(item, sort_keys=True).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def _distill_data(cfg: PolicyTrainConfig, runs: dict[str, dict], envs: list[str]) -> _Data:
    """(prompt, actions, target) per distinct node, targets of equal nodes averaged by visits."""
    from ..prm.dataset import DEFAULT_RANGE, value_ranges

    if len(envs) > 1:
        raise ConfigError(f"distill learns one env's policy, and the sources hold trees of {len(envs)} envs "
                          f"({', '.join(envs)}): give the trees of one env")
    ranges = value_ranges(list(cfg.sources))
    prompts = _Prompts(runs)
    merged: dict[tuple[str, tuple[str, ...]], list] = {}  # key -> [weight, weighted target sum]
    for cols in _iter_trees(cfg.sources, cfg.progress, "reading trees"):
        index, kids = _children(cols)
        selection = (runs.get(cols["run_id"][0], {}).get("search") or {}).get("selection", "uct")
        value_range = ranges.get(cols["env"][0], DEFAULT_RANGE)
        for node, rows in kids.items():
            visits = int(cols["visits"][node])
            children = _merged(cols, rows)
            if len(children) < 2:
                continue
            exact = selection != "gumbel" and all(c.proven is not None for c in children)
            if visits < cfg.min_visits and not exact:  # exact values need no visits to be a target
                continue
            visits = max(visits, 1)
            target = distill_target(children, selection, cfg.temperature, value_range)
            if not target:
                continue
            order = sorted(range(len(children)), key=lambda k: children[k].action)
            key = (prompts.of(cols, node, index), tuple(children[k].action for k in order))
            acc = merged.setdefault(key, [0.0, np.zeros(len(order)), int(cols["depth"][node])])
            acc[0] += visits
            acc[1] += visits * np.asarray([target[k] for k in order])
        prompts.forget()
    if not merged:
        raise StoreError(f"no node has {cfg.min_visits} or more visits and two or more children in "
                         f"{', '.join(cfg.sources)}: lower --min-visits or search with more simulations")
    items = sorted(merged.items(), key=lambda kv: kv[0])
    examples = [(prompt, list(actions), (total / weight).tolist()) for (prompt, actions), (weight, total, _) in items]
    return _Data(examples, _hash([p, a, [round(x, 9) for x in t]] for p, a, t in examples),
                 [depth for _, (_, _, depth) in items])


def _success(cols: dict[str, list], i: int) -> bool:
    """A terminal transition that succeeded (reward >= 1: the success test where the env says no more)."""
    return bool(cols["terminal"][i]) and cols["action"][i] is not None and (cols["reward"][i] or 0.0) >= 1.0


def _successful_steps(cols: dict[str, list], kids: dict[int, list[int]]) -> list[int]:
    """Rows on the successful paths of one tree (see the module docstring), each once, in order."""
    root = next((i for i, p in enumerate(cols["parent_id"]) if p is None or p < 0), None)
    if root is None:
        return []
    steps: dict[int, None] = {}
    if any(cols["proven"][i] is not None for rows in kids.values() for i in rows):
        stack = [(root, ())]
        while stack:
            node, path = stack.pop()
            proven = [i for i in kids.get(node, []) if cols["proven"][i] is not None]
            if not proven:
                continue
            best = max(cols["proven"][i] for i in proven)
            for i in proven:
                if cols["proven"][i] < best - 1e-9:
                    continue
                if _success(cols, i):
                    steps.update(dict.fromkeys((*path, i)))
                elif not cols["terminal"][i]:
                    stack.append((i, (*path, i)))
        return sorted(steps)
    path, node = [], root
    while kids.get(node):
        seen = [i for i in kids[node] if cols["visits"][i] > 0 and cols["q"][i] is not None]
        if not seen:
            break
        node = max(seen, key=lambda i: (cols["q"][i], cols["visits"][i], -cols["node_id"][i]))
        path.append(node)
    return path if path and _success(cols, path[-1]) else []


def _sft_data(cfg: PolicyTrainConfig, runs: dict[str, dict]) -> _Data:
    """(prompt, action) of every step on a successful path, each pair once."""
    prompts = _Prompts(runs)
    pairs: dict[tuple[str, str], None] = {}
    for cols in _iter_trees(cfg.sources, cfg.progress, "reading trees"):
        index, kids = _children(cols)
        for i in _successful_steps(cols, kids):
            parent = index[cols["parent_id"][i]]
            pairs[prompts.of(cols, parent, index), cols["action"][i]] = None
        prompts.forget()
    if not pairs:
        raise StoreError(f"no successful path in {', '.join(cfg.sources)}: search with more simulations "
                         f"(sft learns the steps of paths that end in success)")
    examples = sorted(pairs)
    return _Data(examples, _hash(examples))


def _dpo_data(cfg: PolicyTrainConfig, runs: dict[str, dict]) -> _Data:
    """(prompt, chosen action, rejected action) of export-dpo's pairs, each once."""
    from dataclasses import replace

    from ..prm.dataset import DEFAULT_RANGE, value_ranges
    from .dpo import _rows_of_task

    rule = replace(cfg.pairs, format="standard")
    ranges = value_ranges(list(cfg.sources))
    prompts = _Prompts(runs)
    pairs: dict[tuple[str, str, str], None] = {}
    for cols in _iter_trees(cfg.sources, cfg.progress, "reading trees"):
        index = {n: i for i, n in enumerate(cols["node_id"])}
        for row in _rows_of_task(cols, rule, ranges.get(cols["env"][0], DEFAULT_RANGE)):
            prompt = prompts.of(cols, index[row["node_id"]], index)
            pairs[prompt, row["chosen"], row["rejected"]] = None
        prompts.forget()
    if not pairs:
        raise StoreError(f"no pair under rule {cfg.pairs.rule!r} in {', '.join(cfg.sources)}: lower the pairs' "
                         f"min_visits or margin, or search with more simulations")
    examples = sorted(pairs)
    return _Data(examples, _hash(examples))


def _data(cfg: PolicyTrainConfig) -> _Data:
    runs, envs = _runs_and_envs(cfg.sources)
    if cfg.method == "distill":
        return _distill_data(cfg, runs, envs)
    if cfg.method == "sft":
        return _sft_data(cfg, runs)
    return _dpo_data(cfg, runs)


def training_examples(cfg: PolicyTrainConfig) -> list[tuple]:
    """The examples ``cfg.method`` trains on, before tokenization, in a fixed order; prompts are the env's policy
    prompts (not yet through the chat template). distill: ``(prompt, actions, target)`` (actions sorted);
    sft: ``(prompt, action)``; dpo: ``(prompt, chosen action, rejected action)``.

    Raises:
        ConfigError, StoreError: as :func:`train_policy`.
    """
    return _data(cfg).examples


# ---------------------------------------------------------------------------- tokenization
def format_prompt(tokenizer, text: str) -> str:
    """The ``hf`` policy's prompt text: ``text`` through the chat template where the tokenizer has one."""
    from .policies.lm import HFBackend

    return HFBackend.format_prompt(SimpleNamespace(tokenizer=tokenizer), text)


def joiner_of(tokenizer) -> str:
    """What the ``hf`` policy puts between the prompt and an action (as :class:`HFBackend` sets it)."""
    return "" if getattr(tokenizer, "chat_template", None) else " "


def split_ids(tokenizer, prompt: str, continuations: Sequence[str]) -> list[tuple[list[int], list[int]]]:
    """(prompt tokens, continuation tokens) of each ``prompt + continuation``, tokenized as one text without
    special tokens, the continuation's tokens those starting at or after the prompt's end (as the policy counts)."""
    enc = tokenizer([prompt + c for c in continuations], add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for ids, offsets in zip(enc["input_ids"], enc["offset_mapping"]):
        cut = len(ids)
        while cut > 0 and offsets[cut - 1][0] >= len(prompt):
            cut -= 1
        out.append((list(ids[:cut]), list(ids[cut:])))
    return out


# ---------------------------------------------------------------------------- the output directory
def _recorded(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("fingerprint") if isinstance(data, dict) else None


def _claim_out(out: Path, fingerprint: str | None) -> dict[str, Any] | None:
    """Make ``out`` ready for the run ``fingerprint``; its stored record where that run has finished there.

    Raises:
        OutputError: ``out`` is a file, cannot be created, or holds anything but this run.
    """
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        done = _recorded(out / POLICY_FILE)
        recorded = {_recorded(out / _CKPT / _RUN_FILE), done} - {None}
        if not recorded or (fingerprint is not None and recorded != {fingerprint}):
            raise OutputError(f"{out} is not empty and holds no policy or checkpoints of this run (same data and "
                              f"settings): choose a new or empty --out, or remove what is there")
        if fingerprint is not None and done == fingerprint:
            return json.loads((out / POLICY_FILE).read_text(encoding="utf-8"))
    if fingerprint is None:
        return None
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out}: {exc.strerror or exc}") from None
    return None


def _last_checkpoint(ckpt: Path) -> Path | None:
    from ..prm.train import last_checkpoint

    return last_checkpoint(ckpt)


def _save_policy(out: Path, model, tokenizer) -> None:
    """Weights and tokenizer into a temporary folder in ``out``, then each file moved into place."""
    tmp = Path(tempfile.mkdtemp(prefix=".save-", dir=out))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for f in tmp.iterdir():
            os.replace(f, out / f.name)
    except OSError as exc:
        raise OutputError(f"cannot write the policy to {out}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------- the job
_SETTINGS = ("model", "method", "epochs", "max_steps", "learning_rate", "batch_size", "seed", "max_length",
             "weight_decay")
_METHOD_SETTINGS = {"distill": ("min_visits", "temperature"), "sft": (), "dpo": ("beta", "pairs")}


def _settings(cfg: PolicyTrainConfig) -> dict[str, Any]:
    """What makes the trained weights under ``cfg.method`` (not where the data lies, where it runs, how often it
    saves, or another method's settings)."""
    values = asdict(cfg)
    return {k: values[k] for k in _SETTINGS + _METHOD_SETTINGS[cfg.method]}


def train_policy(cfg: PolicyTrainConfig) -> dict[str, Any]:
    """Train ``cfg.model`` on the trees of ``cfg.sources`` by ``cfg.method``; return the summary.

    The summary: ``method``, ``examples``, ``dropped`` (longer than ``max_length``), ``steps``,
    ``seconds``, ``first_loss``, ``final_loss``, ``learning_rate``, ``base_model``, ``out``,
    ``fingerprint``; ``reused`` is True where ``out`` already held this finished run (nothing
    was trained). Prints nothing but progress bars (``cfg.progress``).

    Raises:
        ConfigError: sources of several envs (distill); a stochastic env whose prompt needs its states.
        StoreError: a source is unreadable; no node, path or pair qualifies.
        ModelError: the model cannot be loaded.
        OutputError: ``out`` holds anything but this run, or cannot be written.
        Interrupted: Ctrl-C while training (rerun the same command to resume).
    """
    started = time.perf_counter()
    out = Path(cfg.out).expanduser()
    _claim_out(out, None)  # a folder of no run is refused before the data is read
    data = _data(cfg)
    fingerprint = _hash([{"data": data.fingerprint, "settings": _settings(cfg)}])
    finished = _claim_out(out, fingerprint)
    if finished is not None:
        return {**finished["summary"], "out": str(out), "reused": True}

    import torch

    from ..data.store import write_text_atomic
    from ..prm.model import quiet_transformers
    from .models import load_pretrained

    quiet_transformers()
    tokenizer, model = load_pretrained(cfg.model, kind="causal-lm")
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"the tokenizer of {cfg.model} is not a fast tokenizer: treeq needs its offset mapping")
    if tokenizer.eos_token_id is None and cfg.method != "distill":
        raise ConfigError(f"the tokenizer of {cfg.model} has no eos token: {cfg.method} ends each completion with it")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # what the hf policy pads with, too
    parameters = sum(p.numel() for p in model.parameters())
    lr = cfg.learning_rate or default_learning_rate(cfg.method, parameters)
    max_length = cfg.max_length or int(getattr(model.config, "max_position_embeddings", 0) or 2048)
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    ckpt = out / _CKPT
    ckpt.mkdir(parents=True, exist_ok=True)
    write_text_atomic(ckpt / _RUN_FILE, json.dumps({"fingerprint": fingerprint, "base_model": cfg.model}) + "\n")
    run = _Run(cfg, tokenizer, model, lr, max_length, device, ckpt)
    try:
        if cfg.method == "distill":
            result = run.distill(data.examples, data.depths)
        elif cfg.method == "sft":
            result = run.sft(data.examples)
        else:
            result = run.dpo(data.examples)
    except KeyboardInterrupt:
        saved = _last_checkpoint(ckpt)
        raise Interrupted(f"training stopped; rerun the same command to resume "
                          f"{f'from {saved.name}' if saved else 'from the start (no checkpoint yet)'}") from None
    model = run.model
    model.eval()
    _save_policy(out, model, tokenizer)
    summary = {
        "method": cfg.method, "examples": len(data.examples), "dropped": result["dropped"], "steps": result["steps"],
        "seconds": round(time.perf_counter() - started, 1), "first_loss": result["first_loss"],
        "final_loss": result["final_loss"], "learning_rate": lr, "base_model": cfg.model, "out": str(out),
        "fingerprint": fingerprint, "reused": False,
    }
    record = {
        "fingerprint": fingerprint, "method": cfg.method, "base_model": cfg.model, "parameters": parameters,
        "sources": [str(s) for s in cfg.sources], "data_fingerprint": data.fingerprint, "settings": _settings(cfg),
        "learning_rate": lr, "max_length": max_length, "joiner": joiner_of(tokenizer), "steps": result["steps"],
        "metrics": {"first_loss": result["first_loss"], "final_loss": result["final_loss"],
                    "losses": result["losses"]},
        "summary": summary,
    }
    write_text_atomic(out / POLICY_FILE, json.dumps(_plain(record), indent=2) + "\n")
    shutil.rmtree(ckpt, ignore_errors=True)
    return summary


def _plain(x: Any) -> Any:
    """Strict JSON: numpy numbers as Python ones, NaN as null."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _total_steps(cfg: PolicyTrainConfig, examples: int) -> int:
    per_epoch = math.ceil(examples / cfg.batch_size)
    return cfg.max_steps or max(1, math.ceil(cfg.epochs * per_epoch))


class _Run:
    """One training run's model, settings and checkpoints; one method per ``--method``."""

    def __init__(self, cfg: PolicyTrainConfig, tokenizer, model, lr: float, max_length: int, device: str,
                 ckpt: Path) -> None:
        self.cfg, self.tokenizer, self.model, self.lr = cfg, tokenizer, model, lr
        self.max_length, self.device, self.ckpt = max_length, device, ckpt
        self.joiner = joiner_of(tokenizer)

    # ------------------------------------------------------------------------ distill: a plain torch loop
    def distill(self, examples: list[tuple[str, list[str], list[float]]], depths: list[int] | None = None
                ) -> dict[str, Any]:
        """Cross-entropy to the targets. Batches draw nodes so that every depth is drawn equally often (a
        tree has a few nodes near its root and many below: uniform draws would teach the last steps alone)."""
        import inspect

        import torch
        from tqdm import tqdm

        cfg, tok = self.cfg, self.tokenizer
        nodes, kept_depths = [], []  # (rows of (prompt ids, action ids), target)
        dropped = 0
        for k, (prompt, actions, target) in enumerate(examples):
            rows = split_ids(tok, format_prompt(tok, prompt), [self.joiner + a for a in actions])
            if max(len(p) + len(c) for p, c in rows) > self.max_length or any(not p for p, _ in rows):
                dropped += 1
                continue
            nodes.append((rows, torch.tensor(target, dtype=torch.float32)))
            kept_depths.append(depths[k] if depths is not None else 0)
        counts = Counter(kept_depths)
        weights = np.array([1.0 / counts[d] for d in kept_depths])
        weights /= weights.sum()
        if not nodes:
            raise StoreError(f"every node's prompt and actions are longer than {self.max_length} tokens: "
                             f"raise --max-length")
        total = _total_steps(cfg, len(nodes))
        per_epoch = math.ceil(len(nodes) / cfg.batch_size)
        model = self.model.to(self.device)
        model.train()
        keep_arg = "logits_to_keep" in inspect.signature(model.forward).parameters
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.lr, weight_decay=cfg.weight_decay)
        step, losses, skipped = 0, [], 0
        last = _last_checkpoint(self.ckpt)
        if last is not None:
            step, losses = self._load_distill(last, model, optimizer)
        torch.manual_seed(cfg.seed)
        pad = tok.pad_token_id
        with tqdm(total=total, initial=step, desc="train-policy distill", unit="step", disable=not cfg.progress,
                  dynamic_ncols=True) as bar:
            while step < total:
                epoch, b = divmod(step, per_epoch)
                order = np.random.default_rng([cfg.seed, epoch]).choice(len(nodes), size=len(nodes), p=weights)
                batch = [nodes[k] for k in order[b * cfg.batch_size:(b + 1) * cfg.batch_size]]
                for group in optimizer.param_groups:  # linear decay to 0 over the run
                    group["lr"] = self.lr * (1.0 - step / total)
                optimizer.zero_grad(set_to_none=True)
                step_loss = 0.0
                for micro in _micro_batches(batch, cfg.max_batch_tokens):
                    loss = _distill_loss(model, micro, pad, self.device, keep_arg) / len(batch)
                    loss.backward()
                    step_loss += float(loss.detach())
                norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
                if math.isfinite(step_loss) and math.isfinite(float(norm)):
                    optimizer.step()
                else:  # a non-finite loss or gradient would turn every weight into NaN: the step is left out
                    skipped += 1
                step += 1
                losses.append(step_loss)
                bar.update(1)
                bar.set_postfix(loss=f"{step_loss:.4f}", refresh=False)
                if step % cfg.save_every == 0 and step < total:
                    self._save_distill(step, losses, model, optimizer)
        return {"steps": step, "dropped": dropped, "skipped_steps": skipped, "first_loss": losses[0],
                "final_loss": losses[-1], "losses": losses}

    def _save_distill(self, step: int, losses: list[float], model, optimizer) -> None:
        """A checkpoint: weights (safetensors), optimizer state (tensors and numbers only) and the step."""
        import torch
        from safetensors.torch import save_model

        target = self.ckpt / f"checkpoint-{step}"
        tmp = self.ckpt / f".checkpoint-{step}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_model(model, str(tmp / "model.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, "losses": losses}) + "\n", encoding="utf-8")
        os.replace(tmp, target)
        for old in self.ckpt.iterdir():
            if old.name.startswith("checkpoint-") and old != target:
                shutil.rmtree(old, ignore_errors=True)

    def _load_distill(self, path: Path, model, optimizer) -> tuple[int, list[float]]:
        import torch
        from safetensors.torch import load_model

        load_model(model, str(path / "model.safetensors"), device=self.device)
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location=self.device, weights_only=True))
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
        return int(state["step"]), [float(x) for x in state["losses"]]

    # ------------------------------------------------------------------------ sft and dpo: TRL's trainers
    def _trl_args(self, config_class, **extra):
        import torch

        cfg = self.cfg
        on_cpu = self.device == "cpu" or not torch.cuda.is_available()
        return config_class(
            output_dir=str(self.ckpt), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps or -1,
            per_device_train_batch_size=cfg.batch_size, learning_rate=self.lr, lr_scheduler_type="linear",
            weight_decay=cfg.weight_decay, max_length=None, save_strategy="steps", save_steps=cfg.save_every,
            save_total_limit=1, logging_strategy="steps", logging_steps=1, report_to=[], seed=cfg.seed,
            data_seed=cfg.seed, disable_tqdm=not cfg.progress, bf16=False, fp16=False,
            activation_checkpointing=False, use_cpu=on_cpu, dataloader_num_workers=0, **extra)

    def _train(self, trainer) -> dict[str, Any]:
        from transformers import PrinterCallback, ProgressCallback

        trainer.remove_callback(PrinterCallback)
        if self.cfg.progress:
            trainer.remove_callback(ProgressCallback)
            trainer.add_callback(_quiet_progress(f"train-policy {self.cfg.method}"))
        last = _last_checkpoint(self.ckpt)
        result = trainer.train(resume_from_checkpoint=str(last) if last is not None else None)
        losses = [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]
        self.model = trainer.model
        return {"steps": int(result.global_step), "first_loss": losses[0] if losses else None,
                "final_loss": losses[-1] if losses else None, "losses": losses}

    def sft(self, examples: list[tuple[str, str]]) -> dict[str, Any]:
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        tok = self.tokenizer
        rows, dropped = [], 0
        for prompt, action in examples:
            ((p, c),) = split_ids(tok, format_prompt(tok, prompt), [self.joiner + action])
            ids = p + c + [tok.eos_token_id]
            if len(ids) > self.max_length or not p:
                dropped += 1
                continue
            rows.append({"input_ids": ids, "completion_mask": [0] * len(p) + [1] * (len(c) + 1)})
        if not rows:
            raise StoreError(f"every sft example is longer than {self.max_length} tokens: raise --max-length")
        with _quiet_trl():
            trainer = SFTTrainer(
                model=self.model, processing_class=tok, train_dataset=Dataset.from_list(rows),
                args=self._trl_args(SFTConfig, completion_only_loss=True, packing=False))
            got = self._train(trainer)
        return {**got, "dropped": dropped}

    def dpo(self, examples: list[tuple[str, str, str]]) -> dict[str, Any]:
        from datasets import Dataset
        from trl import DPOConfig as TRLDPOConfig
        from trl import DPOTrainer

        from .models import load_pretrained

        class _Tokenized(DPOTrainer):
            """The pairs come tokenized as the policy scores them (no special tokens added, eos appended)."""

            def _prepare_dataset(self, dataset, *args, **kwargs):
                return dataset

        tok = self.tokenizer
        eos = tok.eos_token_id
        rows, dropped = [], 0
        for prompt, chosen, rejected in examples:
            (pc, c), (pr, r) = split_ids(tok, format_prompt(tok, prompt), [self.joiner + chosen, self.joiner + rejected])
            full_c, full_r = pc + c, pr + r
            n = 0  # where the two texts' tokens part: the shared prompt
            while n < min(len(pc), len(pr)) and full_c[n] == full_r[n]:
                n += 1
            if max(len(full_c), len(full_r)) + 1 > self.max_length or not n:
                dropped += 1
                continue
            rows.append({"prompt_ids": full_c[:n], "chosen_ids": full_c[n:] + [eos], "rejected_ids": full_r[n:] + [eos]})
        if not rows:
            raise StoreError(f"every dpo pair is longer than {self.max_length} tokens: raise --max-length")
        _, reference = load_pretrained(self.cfg.model, kind="causal-lm")  # the starting model, again
        with _quiet_trl():
            trainer = _Tokenized(
                model=self.model, ref_model=reference, processing_class=tok, train_dataset=Dataset.from_list(rows),
                args=self._trl_args(TRLDPOConfig, beta=self.cfg.beta))
            got = self._train(trainer)
        return {**got, "dropped": dropped}


def _micro_batches(batch: list, budget: int) -> Iterable[list]:
    """The nodes of a step in passes of at most ``budget`` padded tokens (a node is never split)."""
    chunk: list = []
    rows = width = 0
    for node in batch:
        n = len(node[0])
        w = max(len(p) + len(c) for p, c in node[0])
        if chunk and (rows + n) * max(width, w) > budget:
            yield chunk
            chunk, rows, width = [], 0, 0
        chunk.append(node)
        rows, width = rows + n, max(width, w)
    if chunk:
        yield chunk


def _distill_loss(model, nodes: list, pad_id: int, device: str, keep_arg: bool):
    """Sum over ``nodes`` of cross-entropy(target, prior): the prior the hf policy computes, with gradients.

    Rows are left-padded, so every action's tokens end the row and only the last ``longest action + 1``
    positions' logits are needed.
    """
    import torch

    rows = [(p, c) for row_list, _ in nodes for p, c in row_list]
    width = max(len(p) + len(c) for p, c in rows)
    keep = max(len(c) for _, c in rows) + 1
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    cont = torch.zeros((len(rows), keep - 1), dtype=torch.float32)
    for r, (p, c) in enumerate(rows):
        n = len(p) + len(c)
        ids[r, width - n:] = torch.tensor(p + c, dtype=torch.long)
        mask[r, width - n:] = 1
        if c:
            cont[r, keep - 1 - len(c):] = 1.0
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    ids, mask, positions, cont = ids.to(device), mask.to(device), positions.to(device), cont.to(device)
    kwargs = {"logits_to_keep": keep} if keep_arg else {}
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, **kwargs).logits[:, -keep:]
    logits = logits.float()
    targets = ids[:, width - keep + 1:]
    token_lp = logits[:, :-1].gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits[:, :-1], dim=-1)
    counts = cont.sum(-1)
    scores = (token_lp * cont).sum(-1) / counts.clamp(min=1.0)  # mean log-probability per token; no tokens: 0
    total = scores.new_zeros(())
    start = 0
    for row_list, target in nodes:
        k = len(row_list)
        log_prior = torch.log_softmax(scores[start:start + k], dim=-1)
        total = total - (target.to(device) * log_prior).sum()
        start += k
    return total


def _quiet_progress(desc: str):
    """transformers' ProgressCallback without its log line per step: the bar alone, named ``desc``."""
    from transformers import ProgressCallback

    class QuietProgress(ProgressCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            super().on_train_begin(args, state, control, **kwargs)
            if self.training_bar is not None:
                self.training_bar.set_description(desc)
                self.training_bar.unit = "step"

        def on_log(self, args, state, control, logs=None, **kwargs):
            return None

    return QuietProgress()


class _quiet_trl:
    """While a TRL trainer is built and runs: no ``datasets`` progress bars (its map calls), and no
    FutureWarning (TRL 1.16 reads ``is_gradient_checkpointing``, which transformers 5 deprecates)."""

    def __enter__(self):
        import datasets

        self._was = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore", FutureWarning)
        return self

    def __exit__(self, *exc) -> None:
        import datasets

        self._warnings.__exit__(*exc)
        if self._was:
            datasets.enable_progress_bars()
