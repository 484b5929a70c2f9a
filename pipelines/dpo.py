"""DPO preference pairs from search trees (``export-dpo``), in TRL's preference format.

At each node, pairs of its children: the prompt is the node's rendered observation, the
completions are the children's action texts, the value of a child is
``coalesce(proven, q)``. Margins (``theta``, ``delta``) are fractions of the env's value
range (:func:`treeq.prm.dataset.value_ranges`: ``hi - lo``, 1 for values in [0, 1]), so
one default fits Game of 24 and Taxi alike. Three rules:

A child takes part when it has ``min_visits`` visits or a proven value (the solver proves
terminal children without visiting them). In graph mode a node's prompt is its state's
observation as first reached (a render that echoes the last command shows that path's).

* ``agentq`` (Agent Q, arXiv 2408.07199): every pair of children whose values
  differ by at least ``theta``; the value is ``alpha * Q + (1 - alpha) * feedback`` where
  the row holds an AI-feedback score (in [0, 1], mapped onto the value range), else Q.
  The higher is chosen.
* ``rstar`` (rStar-Math): chosen among children with a correct terminal below them, by Q
  descending; rejected among children with a wrong terminal below them, by Q ascending;
  two of each (four when the other side has a single candidate); pairs with a positive
  Q margin. A terminal is correct when its step reward is at least 1 (the success test
  of :func:`treeq.envs.base.is_success` when the env says no more). In graph mode "below"
  follows the state graph: a shared state's children hang under one of its rows only.
* ``agentprm`` (AgentPRM): every pair with Q(chosen) > Q(rejected) + ``delta``.

Rows: ``prompt``, ``chosen``, ``rejected`` (strings, or lists of ``{"role", "content"}``
messages in the conversational format) plus ``task_id``, ``node_id`` (the parent row),
``q_chosen``, ``q_rejected`` (the values the rule compared: ``coalesce(proven, q)``, mixed
with the feedback under ``agentq`` where a row holds one, so an ``agentq`` pair always has
``q_chosen - q_rejected >= theta * (hi - lo)``), ``feedback_chosen``, ``feedback_rejected`` (null
without feedback), ``visits_chosen``, ``visits_rejected``, ``rule``. A pair
never has equal chosen and rejected texts. Graph-mode trees list a shared state's
children once, under its shallowest row, so grouping children by ``parent_id`` serves
both modes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..data.store import RecordWriter, check_record_path, iter_store_tasks, shard_names
from ..errors import ConfigError, StoreError
from ..prm.dataset import DEFAULT_RANGE, value_ranges
from .config import DPOConfig

__all__ = ["Child", "pairs_at", "pair_schema", "export_dpo"]

_SQL = """
SELECT n.run_id, n.task_id, n.node_id, n.parent_id, n.action, n.state_key, n.observation, n.visits, n.q, n.proven,
       n.feedback, n.terminal, n.reward, t.backup, t.env
FROM nodes n LEFT JOIN trees t ON t.run_id = n.run_id AND t.task_id = n.task_id
ORDER BY n.task_id, n.run_id, n.node_id
"""


@dataclass(frozen=True)
class Child:
    """One explored child of a node, as the rules see it."""

    node_id: int
    text: str
    value: float  # coalesce(proven, q)
    visits: int
    feedback: float | None = None
    correct_below: bool = False
    wrong_below: bool = False


def pairs_at(children: Sequence[Child], cfg: DPOConfig, value_range: tuple[float, float] = DEFAULT_RANGE
             ) -> list[tuple[Child, Child]]:
    """(chosen, rejected) pairs among the children of one node under ``cfg.rule``, margins scaled by ``value_range``."""
    span = value_range[1] - value_range[0]
    if cfg.rule == "rstar":
        good = sorted((c for c in children if c.correct_below), key=lambda c: (-c.value, c.node_id))
        bad = sorted((c for c in children if c.wrong_below), key=lambda c: (c.value, c.node_id))
        good_n = 4 if len(bad) == 1 else 2
        bad_n = 4 if len(good) == 1 else 2
        pairs = [(g, b) for g in good[:good_n] for b in bad[:bad_n] if g.value - b.value > 0]
    else:
        pairs = []
        for i, a in enumerate(children):
            for b in children[i + 1:]:
                score_a, score_b = _score(a, cfg, value_range), _score(b, cfg, value_range)
                hi, lo = (a, b) if score_a >= score_b else (b, a)
                if cfg.rule == "agentq" and abs(score_a - score_b) >= cfg.theta * span:
                    pairs.append((hi, lo))
                elif cfg.rule == "agentprm" and hi.value > lo.value + cfg.delta * span:
                    pairs.append((hi, lo))
    return [(c, r) for c, r in pairs if c.text != r.text]


def _score(c: Child, cfg: DPOConfig, value_range: tuple[float, float]) -> float:
    if cfg.rule == "agentq" and c.feedback is not None:
        lo, hi = value_range
        return cfg.alpha * c.value + (1.0 - cfg.alpha) * (lo + c.feedback * (hi - lo))
    return c.value


def _terminal_flags(cols: dict[str, list]) -> tuple[list[bool], list[bool]]:
    """Per row: is a correct / a wrong terminal at or below it?

    Tree mode follows ``parent_id``. In graph mode (``backup = 'max'``) a state's children
    hang under one row of that state only, so the flags are those of the state: a fixed
    point over the state graph (cycles allowed), read back onto every row of the state.
    """
    n = len(cols["node_id"])
    index = {cols["node_id"][i]: i for i in range(n)}
    own_ok = [bool(cols["terminal"][i] and cols["action"][i] is not None and cols["reward"][i] >= 1.0)
              for i in range(n)]
    own_bad = [bool(cols["terminal"][i] and cols["action"][i] is not None and cols["reward"][i] < 1.0)
               for i in range(n)]
    if cols["backup"][0] != "max":
        correct, wrong = own_ok[:], own_bad[:]
        for i in range(n - 1, -1, -1):  # children come after their parents
            parent = index.get(cols["parent_id"][i])
            if parent is not None:
                correct[parent] |= correct[i]
                wrong[parent] |= wrong[i]
        return correct, wrong
    key = cols["state_key"]
    parents_of: dict[str, set[str]] = {}  # state -> states with an edge into it
    for i in range(n):
        parent = index.get(cols["parent_id"][i])
        if parent is not None:
            parents_of.setdefault(key[i], set()).add(key[parent])
    flags = []
    for own in (own_ok, own_bad):
        # states with such a terminal at or below them: the terminals' states, then every state above
        marked = {key[i] for i in range(n) if own[i]}
        todo = list(marked)
        while todo:
            for up in parents_of.get(todo.pop(), ()):
                if up not in marked:
                    marked.add(up)
                    todo.append(up)
        flags.append([key[i] in marked for i in range(n)])
    return flags[0], flags[1]


def _rows_of_task(cols: dict[str, list], cfg: DPOConfig, value_range: tuple[float, float]) -> list[dict[str, Any]]:
    """The pairs of one task's tree (its rows, sorted by node id), margins scaled by ``value_range``."""
    n = len(cols["node_id"])
    index = {cols["node_id"][i]: i for i in range(n)}
    correct, wrong = _terminal_flags(cols)
    children: dict[int, list[Child]] = {}
    for i in range(n):
        parent = index.get(cols["parent_id"][i])
        value = cols["proven"][i] if cols["proven"][i] is not None else cols["q"][i]
        if parent is None or value is None or cols["action"][i] is None:
            continue
        if cols["visits"][i] < cfg.min_visits and cols["proven"][i] is None:  # a proof needs no visits
            continue
        children.setdefault(parent, []).append(Child(
            cols["node_id"][i], cols["action"][i], float(value), int(cols["visits"][i]), cols["feedback"][i],
            correct[i], wrong[i]))
    rows = []
    for parent, kids in children.items():
        prompt = cols["observation"][parent] or ""
        for chosen, rejected in pairs_at(kids, cfg, value_range):
            rows.append({
                "prompt": prompt if cfg.format == "standard" else [{"role": "user", "content": prompt}],
                "chosen": chosen.text if cfg.format == "standard" else [{"role": "assistant", "content": chosen.text}],
                "rejected": rejected.text if cfg.format == "standard"
                else [{"role": "assistant", "content": rejected.text}],
                "task_id": cols["task_id"][parent], "node_id": cols["node_id"][parent],
                "q_chosen": _score(chosen, cfg, value_range), "q_rejected": _score(rejected, cfg, value_range),
                "feedback_chosen": chosen.feedback, "feedback_rejected": rejected.feedback,
                "visits_chosen": chosen.visits, "visits_rejected": rejected.visits, "rule": cfg.rule,
            })
    return rows


def pair_schema(fmt: str) -> pa.Schema:
    """Columns of the pair rows: TRL's three, then the provenance."""
    text = pa.string() if fmt == "standard" else pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    return pa.schema([
        ("prompt", text), ("chosen", text), ("rejected", text), ("task_id", pa.string()), ("node_id", pa.int32()),
        ("q_chosen", pa.float64()), ("q_rejected", pa.float64()), ("feedback_chosen", pa.float64()),
        ("feedback_rejected", pa.float64()), ("visits_chosen", pa.int64()),
        ("visits_rejected", pa.int64()), ("rule", pa.string()),
    ])


def export_dpo(sources: Sequence[str | Path], out: str | Path, cfg: DPOConfig, progress: bool = False
               ) -> tuple[Path, int]:
    """Write the pairs of every tree in ``sources`` to ``out`` (``.parquet`` or ``.jsonl``).

    Streams: memory holds a few tasks' trees, whatever the store's size. A progress bar
    counts tasks.

    Raises:
        ConfigError: ``out`` has another extension, or no source is given.
        StoreError: a source is unreadable, or no node yields a pair (``out`` is not written).
    """
    from tqdm import tqdm

    out = check_record_path(out)  # before the work, not after
    if not sources:
        raise ConfigError("give at least one search output directory")
    roots = [str(s) for s in sources]
    ranges = value_ranges(roots)
    with RecordWriter(out, pair_schema(cfg.format)) as writer, tqdm(
            total=len(shard_names(roots)), desc=f"export-dpo {cfg.rule}", unit="task", disable=not progress,
            dynamic_ncols=True) as bar:
        task = None
        for cols in iter_store_tasks(roots, _SQL):
            if cols["task_id"][0] != task:
                task = cols["task_id"][0]
                bar.update(1)
            writer.write(_rows_of_task(cols, cfg, ranges.get(cols["env"][0], DEFAULT_RANGE)))
        if writer.rows == 0:
            raise StoreError(f"no pair under rule {cfg.rule!r} in {', '.join(roots)}: "
                             f"lower --min-visits or the margin, or search with more simulations")
    return writer.path, writer.rows
