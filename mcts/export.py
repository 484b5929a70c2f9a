"""The export of a search's working storage (:class:`~treeq.mcts.storage.SearchGraph`) to a
flat-array :class:`~treeq.mcts.tree.Tree`: one row per (parent row, stepped action,
outcome), each row's children contiguous. A tree lists its rows in the order of the
actions that led to them; a graph breadth first, a shared node's edges once, under
its shallowest row. Columns are gathered in C where ``_core`` is built.
"""

from __future__ import annotations

import math
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from .codes import DEAD, SAMPLED
from .tree import NO_PARENT, Tree

if TYPE_CHECKING:
    from .storage import SearchGraph

__all__ = ["export_tree"]


def _list_edge(g: SearchGraph, e: int, order: list[int], r_edge: list[int], r_out: list[int]) -> None:
    """Append the rows of edge ``e``: its child, one per sampled outcome, or none
    (never stepped)."""
    child = g.e_child[e]
    if child >= 0:
        order.append(child)
        r_edge.append(e)
        r_out.append(-1)
    elif child == SAMPLED:
        for o in g.e_out[e].values():
            order.append(g.o_child[o])
            r_edge.append(e)
            r_out.append(o)


def _rows_breadth_first(g: SearchGraph) -> tuple[list[int], ...]:
    """Graph mode's rows: breadth first from the root, a node's edges listed once."""
    n_start, n_count = g.n_start, g.n_count
    order, r_edge, r_out, r_parent, depth = [0], [-1], [-1], [NO_PARENT], [0]
    child_start, child_count = [], []
    listed: set[int] = set()
    i = 0
    while i < len(order):
        node = order[i]
        first = len(order)
        s = n_start[node]
        if s >= 0 and node not in listed:
            listed.add(node)
            for e in range(s, s + n_count[node]):
                _list_edge(g, e, order, r_edge, r_out)
            r_parent.extend([i] * (len(order) - len(r_parent)))
            depth.extend([depth[i] + 1] * (len(order) - len(depth)))
        child_start.append(first if len(order) > first else -1)
        child_count.append(len(order) - first)
        i += 1
    return order, r_edge, r_out, r_parent, depth, child_start, child_count


def _rows_in_action_order(g: SearchGraph) -> tuple[np.ndarray, ...]:
    """Tree mode's rows: every node has one, listed in the order of the action (and
    outcome) that created it. A node's actions have consecutive ids, so its children
    stay together; its own action is older than the ones it proposes, so a parent
    comes before its children."""
    e_child = g.e_child
    if g.e_out:  # sampled outcomes: one row each, in the order they were first seen
        order_l, r_edge_l, r_out_l = [0], [-1], [-1]
        for e in range(len(e_child)):
            _list_edge(g, e, order_l, r_edge_l, r_out_l)
        order, r_edge, r_out = (np.array(x, dtype=np.int64) for x in (order_l, r_edge_l, r_out_l))
    else:
        child = _gather(g, e_child, np.arange(len(e_child)), np.int64)
        stepped = np.flatnonzero(child >= 0)
        order = np.concatenate(([0], child[stepped]))
        r_edge = np.concatenate(([-1], stepped))
        r_out = np.full(len(order), -1, dtype=np.int64)
    rows = len(order)
    row_of = np.zeros(len(g.n_state), dtype=np.int64)
    row_of[order] = np.arange(rows)
    r_parent = np.concatenate(([NO_PARENT], row_of[_gather(g, g.e_owner, r_edge[1:], np.int64)]))
    depth = np.zeros(rows, dtype=np.int64)
    if rows > 1:  # parents come first: a row's depth settles once its parent's has
        while True:
            deeper = depth[r_parent[1:]] + 1
            if np.array_equal(deeper, depth[1:]):
                break
            depth[1:] = deeper
    child_count = np.bincount(r_parent[1:], minlength=rows) if rows > 1 else np.zeros(rows, dtype=np.int64)
    child_start = np.full(rows, -1, dtype=np.int64)
    parents, first = np.unique(r_parent[1:], return_index=True)  # a parent's children are contiguous
    child_start[parents] = first + 1
    return order, r_edge, r_out, r_parent, depth, child_start, child_count


_KINDS = {np.dtype(np.float64): "d", np.dtype(np.int64): "q", np.dtype(np.bool_): "?"}


def _gather(g: SearchGraph, values: list, index: np.ndarray, dtype: Any) -> np.ndarray:
    """``values[index]`` as a numpy array (a list read once, in C where _core is built)."""
    index = np.ascontiguousarray(index, dtype=np.int64)
    if g._core is not None:
        return np.frombuffer(g._core.gather(values, index, _KINDS[np.dtype(dtype)]), dtype=dtype)
    return np.fromiter(values, dtype, len(values))[index] if len(values) else np.zeros(len(index), dtype)


def export_tree(g: SearchGraph) -> Tree:
    """Flat rows with each row's children contiguous: one row per (parent row,
    stepped action, outcome). A tree lists them in the order of the actions that led
    to them; a graph breadth first, a shared node's edges once, under its shallowest
    row."""
    graph = g.graph
    order, r_edge, r_out, r_parent, depth, child_start, child_count = (
        _rows_breadth_first(g) if graph else _rows_in_action_order(g))
    order = np.asarray(order, dtype=np.int64)
    edges = np.asarray(r_edge[1:], dtype=np.int64)
    outs = np.asarray(r_out[1:], dtype=np.int64)
    sampled = np.flatnonzero(outs >= 0)  # rows of sampled outcomes: their counts and rewards

    gather = partial(_gather, g)

    visits = np.concatenate(([g.n_visits[0]], gather(g.e_n, edges, np.int64)))
    reward = np.concatenate(([0.0], gather(g.e_reward, edges, np.float64)))
    if len(sampled):
        o_n = np.array(g.o_n, dtype=np.int64)[outs[sampled]]
        o_rsum = np.array(g.o_rsum, dtype=np.float64)[outs[sampled]]
        visits[1 + sampled] = o_n
        with np.errstate(invalid="ignore", divide="ignore"):
            reward[1 + sampled] = np.where(o_n > 0, o_rsum / np.maximum(o_n, 1), 0.0)
    root_sum = g.estimate(0) * visits[0]
    if graph or g.e_out:  # Q from the model of the outcomes: per edge, times the row's visits
        q = {e: g.q(e) for e in set(edges.tolist())}
        qs = np.array([q[e] for e in edges.tolist()], dtype=np.float64)
        with np.errstate(invalid="ignore"):
            value_sum = np.concatenate(([root_sum], np.where(visits[1:] > 0, qs * visits[1:], 0.0)))
    else:  # the plain tree: a row's value_sum is its edge's sum of returns
        value_sum = np.concatenate(([root_sum], gather(g.e_w, edges, np.float64)))
    e_action = g.e_action
    texts = [e_action[e] for e in edges.tolist()]
    action_index = {text: i for i, text in enumerate(dict.fromkeys(texts))}  # first-seen order
    n_start = gather(g.n_start, order, np.int64)
    columns = {
        "parent": r_parent, "action": [-1] + [action_index[text] for text in texts], "depth": depth,
        "visits": visits, "value_sum": value_sum,
        "prior": np.concatenate(([0.0], gather(g.e_prior, edges, np.float64))), "reward": reward,
        "feedback": np.concatenate(([math.nan], gather(g.e_feedback, edges, np.float64))),
        "terminal": gather(g.n_term, order, np.bool_),
        "expanded": (n_start >= 0) | (n_start == DEAD),
        "child_start": child_start, "child_count": child_count,
        "solved_v": np.array([math.nan if v is None else v for v in g.n_solved], dtype=np.float64)[order],
    }
    order = order.tolist()
    states = [g.n_state[n] for n in order]
    keys = [g.n_key[n] for n in order] if graph else None  # tree mode: on first use
    return Tree(g.gamma, columns, states, keys, list(action_index), key_fn=g.env.state_key)
