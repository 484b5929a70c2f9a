"""Flat-array search tree (node id = creation order, ``ROOT = 0``).

Like mctx's ``Tree``, every per-node quantity is one numpy array indexed by node id;
children of a node are created together, so they occupy the contiguous id range
``child_start[n] : child_start[n] + child_count[n]`` and selection works on slices.
Arrays grow by doubling, since agent action counts are not known ahead. Only
``mcts/search.py`` mutates a tree; everything else reads it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Tree", "ROOT", "NO_PARENT"]

ROOT = 0
NO_PARENT = -1

# name -> (dtype, fill value) of every per-node array
_FIELDS: dict[str, tuple[Any, Any]] = {
    "parent": (np.int32, NO_PARENT),
    "action": (np.int32, -1),  # index into Tree.action_table; -1 at the root
    "depth": (np.int32, 0),
    "visits": (np.int64, 0),
    "value_sum": (np.float64, 0.0),  # sum of returns through the edge parent -> node
    "prior": (np.float64, 0.0),
    "reward": (np.float64, 0.0),  # r(parent state, action)
    "terminal": (np.bool_, False),
    "expanded": (np.bool_, False),
    "child_start": (np.int32, -1),
    "child_count": (np.int32, 0),
    "solved_v": (np.float64, np.nan),  # MCTS-Solver's exact V*(node state); NaN = unproven
    "bound": (np.float64, np.nan),  # env's upper bound on V*(node state); NaN = none
}


class Tree:
    """Per-node arrays plus the Python objects a node needs (state, key, action text).

    Attributes:
        gamma: Discount used by the search that built this tree.
        size: Number of nodes in use.
        states: Env state of each node (immutable objects, shared, never copied).
        state_keys: ``env.state_key`` of each node.
        action_table: Distinct action texts; ``action[n]`` indexes into it.
    """

    def __init__(self, gamma: float, capacity: int = 256) -> None:
        self.gamma = float(gamma)
        self.size = 0
        self._capacity = max(int(capacity), 1)
        for name, (dtype, fill) in _FIELDS.items():
            setattr(self, name, np.full(self._capacity, fill, dtype=dtype))
        self.states: list[Any] = []
        self.state_keys: list[str] = []
        self.action_table: list[str] = []
        self._action_index: dict[str, int] = {}

    # ---------------------------------------------------------------- growth
    def _grow(self, needed: int) -> None:
        new_cap = self._capacity
        while new_cap < needed:
            new_cap *= 2
        for name, (dtype, fill) in _FIELDS.items():
            old = getattr(self, name)
            arr = np.full(new_cap, fill, dtype=dtype)
            arr[: self.size] = old[: self.size]
            setattr(self, name, arr)
        self._capacity = new_cap

    def add_node(
        self,
        state: Any,
        state_key: str,
        parent: int = NO_PARENT,
        action: str | None = None,
        prior: float = 0.0,
        reward: float = 0.0,
        terminal: bool = False,
    ) -> int:
        """Append one node and return its id. Called by the search only."""
        n = self.size
        if n + 1 > self._capacity:
            self._grow(n + 1)
        self.size = n + 1
        self.parent[n] = parent
        if action is not None:
            idx = self._action_index.get(action)
            if idx is None:
                idx = self._action_index[action] = len(self.action_table)
                self.action_table.append(action)
            self.action[n] = idx
        self.depth[n] = 0 if parent == NO_PARENT else self.depth[parent] + 1
        self.prior[n] = prior
        self.reward[n] = reward
        self.terminal[n] = terminal
        self.states.append(state)
        self.state_keys.append(state_key)
        return n

    # ---------------------------------------------------------------- read-only views
    def children(self, node: int) -> range:
        """Ids of ``node``'s children (empty before expansion)."""
        start = int(self.child_start[node])
        return range(start, start + int(self.child_count[node])) if start >= 0 else range(0)

    def action_text(self, node: int) -> str | None:
        """Action on the edge into ``node`` (None at the root)."""
        idx = int(self.action[node])
        return None if idx < 0 else self.action_table[idx]

    def q(self) -> np.ndarray:
        """Q of each node's incoming edge: ``value_sum / visits``; NaN at zero visits."""
        n = self.size
        visits = self.visits[:n]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(visits > 0, self.value_sum[:n] / np.maximum(visits, 1), np.nan)

    def proven(self) -> np.ndarray:
        """The solver's exact Q of each node's incoming edge (root: V*); NaN = unproven.

        Q*(s, a) = r(s, a) + gamma * V*(s'), the same quantity ``q`` estimates.
        """
        n = self.size
        out = self.reward[:n] + self.gamma * self.solved_v[:n]
        out[ROOT] = self.solved_v[ROOT]
        return out

    def label(self) -> np.ndarray:
        """The training label of each edge: proven value where known, else ``q``."""
        proven = self.proven()
        return np.where(np.isnan(proven), self.q(), proven)

    def path(self, node: int) -> list[int]:
        """Node ids from the root down to ``node``."""
        out = []
        while node != NO_PARENT:
            out.append(node)
            node = int(self.parent[node])
        return out[::-1]

    def best_child(self, node: int = ROOT) -> int | None:
        """Child with the highest label, ties broken by visits then id; None if leaf."""
        kids = self.children(node)
        if len(kids) == 0:
            return None
        label = self.label()[kids.start : kids.stop]
        visits = self.visits[kids.start : kids.stop]
        key = np.where(np.isnan(label), -np.inf, label)
        order = np.lexsort((-np.arange(len(kids)), visits, key))
        return kids.start + int(order[-1])

    def best_path(self) -> list[int]:
        """Greedy path of :meth:`best_child` from the root to a leaf."""
        path = [ROOT]
        while (child := self.best_child(path[-1])) is not None:
            path.append(child)
        return path
