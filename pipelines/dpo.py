"""DPO preference pairs from search trees (``export-dpo``), in TRL's preference format.

At each node, pairs of its children: the prompt is the node's rendered observation, the
completions are the children's action texts, the value of a child is
``coalesce(proven, q)``. Three rules:

* ``agentq`` (Agent Q, arXiv 2408.07199): every pair of explored children whose values
  differ by at least ``theta``; the value is ``alpha * Q + (1 - alpha) * feedback`` where
  the row holds an AI-feedback score, else Q. The higher is chosen.
* ``rstar`` (rStar-Math): chosen among children with a correct terminal below them, by Q
  descending; rejected among children with a wrong terminal below them, by Q ascending;
  two of each (four when the other side has a single candidate); pairs with a positive
  Q margin. A terminal is correct when its step reward is at least 1 (the success test
  of :func:`treeq.envs.base.is_success` when the env says no more).
* ``agentprm`` (AgentPRM): every pair with Q(chosen) > Q(rejected) + ``delta``.

Rows: ``prompt``, ``chosen``, ``rejected`` (strings, or lists of ``{"role", "content"}``
messages in the conversational format) plus ``task_id``, ``node_id`` (the parent row),
``q_chosen``, ``q_rejected``, ``visits_chosen``, ``visits_rejected``, ``rule``. A pair
never has equal chosen and rejected texts. Graph-mode trees list a shared state's
children once, under its shallowest row, so grouping children by ``parent_id`` serves
both modes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa

from ..data.store import check_record_path, column_lists, connect, task_ranges, write_records
from ..errors import StoreError
from .config import DPOConfig

__all__ = ["Child", "pairs_at", "export_dpo"]

_SQL = """
SELECT run_id, task_id, node_id, parent_id, action, observation, visits, q, proven, feedback, terminal, reward
FROM nodes ORDER BY run_id, task_id, node_id
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


def pairs_at(children: Sequence[Child], cfg: DPOConfig) -> list[tuple[Child, Child]]:
    """(chosen, rejected) pairs among the children of one node under ``cfg.rule``."""
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
                hi, lo = (a, b) if _score(a, cfg) >= _score(b, cfg) else (b, a)
                if cfg.rule == "agentq" and _score(hi, cfg) - _score(lo, cfg) >= cfg.theta:
                    pairs.append((hi, lo))
                elif cfg.rule == "agentprm" and hi.value > lo.value + cfg.delta:
                    pairs.append((hi, lo))
    return [(c, r) for c, r in pairs if c.text != r.text]


def _score(c: Child, cfg: DPOConfig) -> float:
    if cfg.rule == "agentq" and c.feedback is not None:
        return cfg.alpha * c.value + (1.0 - cfg.alpha) * c.feedback
    return c.value


def _rows_of_task(cols: dict[str, list], start: int, end: int, cfg: DPOConfig) -> list[dict[str, Any]]:
    """The pairs of one task's tree (rows ``start:end``, sorted by node id)."""
    index = {cols["node_id"][i]: i for i in range(start, end)}
    correct = {i: False for i in range(start, end)}
    wrong = {i: False for i in range(start, end)}
    for i in range(end - 1, start - 1, -1):  # children come after their parents
        if cols["terminal"][i] and cols["action"][i] is not None:
            ok = cols["reward"][i] >= 1.0
            correct[i] |= ok
            wrong[i] |= not ok
        parent = index.get(cols["parent_id"][i])
        if parent is not None:
            correct[parent] |= correct[i]
            wrong[parent] |= wrong[i]
    children: dict[int, list[Child]] = {}
    for i in range(start, end):
        parent = index.get(cols["parent_id"][i])
        value = cols["proven"][i] if cols["proven"][i] is not None else cols["q"][i]
        if parent is None or value is None or cols["visits"][i] < cfg.min_visits or cols["action"][i] is None:
            continue
        children.setdefault(parent, []).append(Child(
            cols["node_id"][i], cols["action"][i], float(value), int(cols["visits"][i]), cols["feedback"][i],
            correct[i], wrong[i]))
    rows = []
    for parent, kids in children.items():
        prompt = cols["observation"][parent] or ""
        for chosen, rejected in pairs_at(kids, cfg):
            rows.append({
                "prompt": prompt if cfg.format == "standard" else [{"role": "user", "content": prompt}],
                "chosen": chosen.text if cfg.format == "standard" else [{"role": "assistant", "content": chosen.text}],
                "rejected": rejected.text if cfg.format == "standard"
                else [{"role": "assistant", "content": rejected.text}],
                "task_id": cols["task_id"][parent], "node_id": cols["node_id"][parent],
                "q_chosen": chosen.value, "q_rejected": rejected.value,
                "visits_chosen": chosen.visits, "visits_rejected": rejected.visits, "rule": cfg.rule,
            })
    return rows


def export_dpo(sources: Sequence[str | Path], out: str | Path, cfg: DPOConfig) -> tuple[Path, int]:
    """Write the pairs of every tree in ``sources`` to ``out`` (``.parquet`` or ``.jsonl``).

    Raises:
        ConfigError: ``out`` has another extension.
        StoreError: a source is unreadable, or no node yields a pair.
    """
    out = check_record_path(out)  # before the work, not after
    rows: list[dict[str, Any]] = []
    for source in sources:
        con = connect(source)
        try:
            cols = column_lists(con, _SQL)
        finally:
            con.close()
        for start, end in task_ranges(cols):
            rows += _rows_of_task(cols, start, end, cfg)
    if not rows:
        raise StoreError(f"no pair under rule {cfg.rule!r} in {', '.join(map(str, sources))}: "
                         f"lower --min-visits or the margin, or search with more simulations")
    return write_records(out, pa.Table.from_pylist(rows)), len(rows)
