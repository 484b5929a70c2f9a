"""Selection rules, each written once: the score of an edge, and the best edge of a node.

* UCT (UCB1 on trees, Kocsis & Szepesvari 2006): ``Q + c sqrt(ln N / n)``, an unvisited
  edge scoring +inf (the engine tries those first, in turn, without scoring them);
* PUCT (AlphaZero): ``Q + c P sqrt(N) / (1 + n)``, with ``fpu`` for Q at ``n = 0``.

``N`` is the node's visit count, ``n`` the edge's, ``P`` its prior. The engine
(:mod:`treeq.mcts.search`) asks :func:`select` for the best of a node's live edges (dead
self-loops, proven children and cycles passed over). The compiled loop (``_core.c``:
``uct_explore``, ``uct_score``, ``puct_explore``, ``puct_score``) computes the same scores in
the same floating-point order; ``tests/mcts/test_core.py`` holds the two to the same trees. A new rule (Gumbel is next) adds its name to ``RULES`` here and
its branch to :func:`select`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["RULES", "select", "grow_tables"]

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


def select(rule: str, start: int, stop: int, c: float, parent_n: int, e_n: list[int], e_w: list[float],
           q: Callable[[int], float] | None, e_prior: list[float], fpu: float, skip: tuple | None = None) -> int:
    """The best of the edges ``start:stop`` of a node visited ``parent_n`` times, by ``rule``
    with exploration constant ``c``: the first of the highest score; -1 when none is live.

    Q of an edge is ``e_w[e] / e_n[e]`` (tree mode, ``q`` None) or ``q(e)`` (graph mode).
    ``skip``: ``(e_dead, e_child, n_solved, on_path)``, the edges passed over (dead
    self-loops, edges into proven nodes where ``n_solved`` is given, edges closing a cycle
    where ``on_path`` is given); None: every edge is live. UCT expects every edge visited
    (the engine tries unvisited ones first).
    """
    isqrt, uct = _ISQRT, rule == "uct"
    if uct:  # the node's exploration factor: c sqrt(ln N) (UCT) or c sqrt(N) (PUCT)
        explore = c * (_SQRT_LOG[parent_n] if parent_n < _TABLED else math.sqrt(math.log(parent_n)))
    else:
        explore = c * math.sqrt(parent_n)
    e_dead, e_child, n_solved, on_path = skip or (None, None, None, None)
    best, best_e = -math.inf, -1
    for e in range(start, stop):
        if e_dead is not None:
            if e_dead[e]:
                continue
            child = e_child[e]
            if child >= 0 and ((n_solved is not None and n_solved[child] is not None)
                               or (on_path is not None and child in on_path)):
                continue
        n = e_n[e]
        if uct:
            score = (e_w[e] / n if q is None else q(e)) + explore * (isqrt[n] if n < _TABLED else 1.0 / math.sqrt(n))
        elif n:
            score = (e_w[e] / n if q is None else q(e)) + explore * e_prior[e] / (1 + n)
        else:
            score = fpu + explore * e_prior[e]
        if score > best:
            best, best_e = score, e
    return best_e
