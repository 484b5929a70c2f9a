"""The MCTS-Solver (Winands et al. 2008, single-agent form) over the search's storage.

Two proofs, both from exact values only, so they hold in tree and graph mode alike:

* :func:`try_prove`, child by child during the search: a terminal node is proven
  (V* = 0); a node is proven when all its actions lead to proven nodes (V* = max of
  ``r + gamma * V*``) or one of them reaches the env's ``value_bound``.
* :func:`prove_closed`, at the end of a graph search: cycles keep the first proof from
  ever settling a node whose successors lead back to it, so the closed part of the
  explored graph is solved as a whole.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .storage import SearchGraph

__all__ = ["try_prove", "prove_closed"]

_EPS = 1e-12
_INF = math.inf


def try_prove(g: SearchGraph, node: int) -> bool:
    """Prove ``node`` from its children if their proven values settle it."""
    if g.n_term[node]:
        g.n_solved[node] = 0.0
        return True
    s = g.n_start[node]
    if s < 0:
        return False
    n_solved, e_child, e_reward, gamma = g.n_solved, g.e_child, g.e_reward, g.gamma
    best = None
    complete = True
    for e in range(s, s + g.n_count[node]):
        child = e_child[e]
        v = n_solved[child] if child >= 0 else None
        if v is None:
            complete = False
            continue
        q = e_reward[e] + gamma * v
        if best is None or q > best:
            best = q
    if best is None:
        return False
    bound = g.n_bound[node]
    if complete or (bound is not None and best >= bound - _EPS):
        g.n_solved[node] = best
        if g.graph:
            g.n_value[node] = best
        return True
    return False


def prove_closed(g: SearchGraph, max_work: int = 20_000_000) -> bool:
    """Graph mode, solver on, gamma < 1: prove every node whose explored subgraph is
    closed; True when the root is proven.

    A node is closed when it is terminal or proven, or expanded with every action
    stepped and every successor closed. Cycles keep :func:`try_prove` from proving
    such nodes one at a time (a child on a cycle is never proven first), but over a
    closed finite deterministic subgraph the Bellman optimality equations have one
    solution, V*. Value iteration from below (unknown values start at -inf) finds it:
    after k sweeps a value is the best return of paths that end within k steps, so a
    sweep that changes nothing has reached the fixed point, and with every value
    finite that is V*. Nothing is proven when that does not happen within the work
    bound (sweeps times edges).
    """
    if not (g.graph and g.solver and g.gamma < 1.0):
        return g.n_solved[0] is not None
    n_solved, n_term, n_start, n_count = g.n_solved, g.n_term, g.n_start, g.n_count
    e_child, e_reward, gamma = g.e_child, g.e_reward, g.gamma
    closed = [n_solved[n] is not None or n_term[n]
              or (n_start[n] >= 0 and all(e_child[e] >= 0 for e in range(n_start[n], n_start[n] + n_count[n])))
              for n in range(len(g.n_state))]
    open_nodes = [n for n, c in enumerate(closed) if c and n_solved[n] is None and not n_term[n]]
    parents: dict[int, list[int]] = {}
    for n in open_nodes:
        for e in range(n_start[n], n_start[n] + n_count[n]):
            parents.setdefault(e_child[e], []).append(n)
    dropped = [n for n, c in enumerate(closed) if not c]
    while dropped:  # a node with a successor outside is not closed either
        for p in parents.get(dropped.pop(), ()):
            if closed[p]:
                closed[p] = False
                dropped.append(p)
    open_nodes = [n for n in open_nodes if closed[n]]
    if not open_nodes:
        return n_solved[0] is not None
    value = {n: -_INF for n in open_nodes}
    edges = sum(n_count[n] for n in open_nodes)
    for _ in range(max(1, max_work // max(edges, 1))):
        changed = False
        for n in open_nodes:  # Gauss-Seidel: still monotone from below, never past V*
            best = -_INF
            for e in range(n_start[n], n_start[n] + n_count[n]):
                child = e_child[e]
                v = value[child] if child in value else (n_solved[child] if n_solved[child] is not None else 0.0)
                q = e_reward[e] + gamma * v
                if q > best:
                    best = q
            if best != value[n]:
                value[n] = best
                changed = True
        if not changed:
            break
    else:
        return n_solved[0] is not None
    if any(v == -_INF for v in value.values()):
        return n_solved[0] is not None
    for n, v in value.items():
        n_solved[n] = v
        g.n_value[n] = v
    return n_solved[0] is not None
