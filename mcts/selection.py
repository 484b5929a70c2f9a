"""Selection rules, each written once: the score of an edge, and the best edge of a node.

* UCT (UCB1 on trees, Kocsis & Szepesvari 2006): ``Q + c sqrt(ln N / n)``, an unvisited
  edge scoring +inf (the engine tries those first, in turn, without scoring them);
* PUCT (AlphaZero): ``Q + c P sqrt(N) / (1 + n)``, with ``fpu`` for Q at ``n = 0``.

``N`` is the node's visit count, ``n`` the edge's, ``P`` its prior. The engine
(:mod:`treeq.mcts.search`) asks :func:`explore` once per node and :func:`select` for the
best of the node's live edges; it filters the edges (dead self-loops, proven children,
cycles) itself. The compiled loop (``_core.c``: ``uct_score``, ``puct_score``) computes
the same scores in the same floating-point order; ``tests/mcts/test_core.py`` holds the
two to the same trees. A new rule (Gumbel is next) adds its name to ``RULES`` here and
its branch to :func:`explore` and :func:`select`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

__all__ = ["RULES", "explore", "select", "grow_tables"]

RULES = ("uct", "puct")

# 1 / sqrt(n) and sqrt(ln n) by table: a list read is cheaper than a call on the hot path. The
# tables stop at _TABLED (about 4 MB): a count beyond it is computed by the same expression, so
# memory follows the tree, never the budget (--simulations 10**20 is a budget like any other)
_TABLED = 1 << 16
_ISQRT: list[float] = [0.0]
_SQRT_LOG: list[float] = [0.0]


def grow_tables(size: int) -> None:
    """Cover visit counts up to ``size`` (at most ``_TABLED``) by the tables."""
    for n in range(len(_ISQRT), min(size, _TABLED) + 1):
        _ISQRT.append(1.0 / math.sqrt(n))
        _SQRT_LOG.append(math.sqrt(math.log(n)))


def explore(rule: str, c: float, parent_n: int) -> float:
    """The node's exploration factor: ``c sqrt(ln N)`` (UCT) or ``c sqrt(N)`` (PUCT)."""
    if rule == "uct":
        return c * (_SQRT_LOG[parent_n] if parent_n < _TABLED else math.sqrt(math.log(parent_n)))
    return c * math.sqrt(parent_n)


def select(rule: str, edges: Sequence[int], explore: float, e_n: list[int], e_w: list[float],
           q: Callable[[int], float] | None, e_prior: list[float], fpu: float) -> int:
    """The best of ``edges`` by ``rule``: the first of the highest score; -1 when ``edges`` is empty.

    Q of an edge is ``e_w[e] / e_n[e]`` (tree mode, ``q`` None) or ``q(e)`` (graph mode).
    UCT expects every edge visited (the engine tries unvisited ones first).
    """
    isqrt = _ISQRT
    best, best_e = -math.inf, -1
    if rule == "uct":
        for e in edges:
            n = e_n[e]
            score = (e_w[e] / n if q is None else q(e)) + explore * (isqrt[n] if n < _TABLED else 1.0 / math.sqrt(n))
            if score > best:
                best, best_e = score, e
        return best_e
    for e in edges:
        n = e_n[e]
        if n:
            score = (e_w[e] / n if q is None else q(e)) + explore * e_prior[e] / (1 + n)
        else:
            score = fpu + explore * e_prior[e]
        if score > best:
            best, best_e = score, e
    return best_e
