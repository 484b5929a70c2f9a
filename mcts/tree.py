"""The exported search tree: flat numpy arrays, one row per node (``ROOT = 0``).

Like mctx's ``Tree``, every per-row quantity is one numpy array indexed by row id.
Rows are listed breadth first, so a row's children occupy the contiguous range
``child_start[n] : child_start[n] + child_count[n]`` and are read as slices. In graph
mode a row is one (parent, action, outcome) edge and a state shared by several rows
lists its children once, under its shallowest row (the others carry the same
``state_key``).

The engine (``treeq.mcts.search``) builds a tree once, at the end of a search, from
its own working storage; everything else reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["Tree", "ROOT", "NO_PARENT"]

ROOT = 0
NO_PARENT = -1

# name -> dtype of every per-row array
_FIELDS: dict[str, Any] = {
    "parent": np.int32,
    "action": np.int32,  # index into Tree.action_table; -1 at the root
    "depth": np.int32,
    "visits": np.int64,
    "value_sum": np.float64,  # Q of the row's action times its visits
    "prior": np.float64,
    "reward": np.float64,  # r(parent state, action), mean over the outcome's visits
    "terminal": np.bool_,
    "expanded": np.bool_,
    "child_start": np.int32,  # -1 without children
    "child_count": np.int32,
    "solved_v": np.float64,  # MCTS-Solver's exact V*(row's state); NaN = unproven
    "feedback": np.float64,  # a model's AI-feedback score of the row's action (Agent Q); NaN = none
}


class Tree:
    """Per-row arrays plus the Python objects a row needs (state, key, action text).

    Attributes:
        gamma: Discount used by the search that built this tree.
        size: Number of rows.
        states: Env state of each row (shared, never copied).
        state_keys: ``env.state_key`` of each row.
        action_table: Distinct action texts; ``action[n]`` indexes into it.
    """

    parent: np.ndarray
    action: np.ndarray
    depth: np.ndarray
    visits: np.ndarray
    value_sum: np.ndarray
    prior: np.ndarray
    reward: np.ndarray
    terminal: np.ndarray
    expanded: np.ndarray
    child_start: np.ndarray
    child_count: np.ndarray
    solved_v: np.ndarray
    feedback: np.ndarray

    def __init__(self, gamma: float, columns: dict[str, Sequence[Any]], states: list[Any],
                 state_keys: list[str] | None, action_table: list[str],
                 key_fn: Callable[[Any], str] | None = None) -> None:
        self.gamma = float(gamma)
        self.size = len(states)
        for name, dtype in _FIELDS.items():
            arr = np.asarray(columns[name], dtype=dtype)
            if arr.shape != (self.size,):
                raise ValueError(f"column {name} has shape {arr.shape}, expected ({self.size},)")
            arr.flags.writeable = False
            setattr(self, name, arr)
        self.states = states
        self._state_keys = state_keys
        self._key_fn = key_fn
        self._listing: dict[str, int] | None = None
        self._ranking: tuple[np.ndarray, np.ndarray] | None = None  # best_child's sort keys
        self.action_table = action_table

    @property
    def state_keys(self) -> list[str]:
        """``env.state_key`` of each row; a tree-mode search leaves them to the first read,
        since nothing in the search needs them."""
        if self._state_keys is None:
            if self._key_fn is None:
                raise ValueError("this tree has neither state keys nor a key function")
            self._state_keys = [self._key_fn(s) for s in self.states]
        return self._state_keys

    # ---------------------------------------------------------------- read-only views
    def children(self, node: int) -> range:
        """Row ids of ``node``'s children (empty without children)."""
        start = int(self.child_start[node])
        return range(start, start + int(self.child_count[node])) if start >= 0 else range(0)

    def action_text(self, node: int) -> str | None:
        """Action on the edge into ``node`` (None at the root)."""
        idx = int(self.action[node])
        return None if idx < 0 else self.action_table[idx]

    def q(self) -> np.ndarray:
        """Q of each row's incoming action: ``value_sum / visits``; NaN at zero visits."""
        visits = self.visits
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(visits > 0, self.value_sum / np.maximum(visits, 1), np.nan)

    def proven(self) -> np.ndarray:
        """The solver's exact Q of each row's incoming action (root: V*); NaN = unproven.

        Q*(s, a) = r(s, a) + gamma * V*(s'), the same quantity ``q`` estimates.
        """
        out = self.reward + self.gamma * self.solved_v
        if self.size:
            out[ROOT] = self.solved_v[ROOT]
        return out

    def label(self) -> np.ndarray:
        """The training label of each row: ``coalesce(proven, q)``."""
        proven = self.proven()
        return np.where(np.isnan(proven), self.q(), proven)

    def path(self, node: int) -> list[int]:
        """Row ids from the root down to ``node``."""
        out = []
        while node != NO_PARENT:
            out.append(node)
            node = int(self.parent[node])
        return out[::-1]

    def listing_row(self, node: int) -> int:
        """The row whose children stand for ``node``'s state: ``node`` itself, or in a
        graph-mode tree the (shallowest) row of the same ``state_key`` that lists them."""
        if self.child_count[node] > 0 or self.terminal[node]:
            return node
        if self._listing is None:
            self._listing = {}
            keys = self.state_keys
            for row in np.nonzero(self.child_count > 0)[0].tolist():
                self._listing.setdefault(keys[row], row)
        return self._listing.get(self.state_keys[node], node)

    def best_child(self, node: int = ROOT) -> int | None:
        """Child with the highest label, ties broken by a proven label, then visits, then the
        lower id; None if none.

        The label, not the visit count: under the MCTS-Solver a proven win is never
        visited again, so the most visited child can be a proven loss. In a graph-mode
        tree a row of a shared state takes the children listed under its state's row.
        """
        kids = self.children(self.listing_row(node))
        if len(kids) == 0:
            return None
        if self._ranking is None:  # computed once: the tree is read-only
            label = self.label()
            self._ranking = (np.where(np.isnan(label), -np.inf, label), ~np.isnan(self.proven()))
        key, proven_mask = (a[kids.start : kids.stop] for a in self._ranking)
        visits = self.visits[kids.start : kids.stop]
        order = np.lexsort((-np.arange(len(kids)), visits, proven_mask, key))
        return kids.start + int(order[-1])

    def best_path(self) -> list[int]:
        """Greedy path of :meth:`best_child` from the root to a row without children
        (graph mode: stops before a state it has passed)."""
        path = [ROOT]
        seen = {self.listing_row(ROOT)}
        while (child := self.best_child(path[-1])) is not None:
            listing = self.listing_row(child)
            if listing in seen:
                break
            path.append(child)
            seen.add(listing)
        return path
