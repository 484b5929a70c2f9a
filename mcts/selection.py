"""Selection scores over the children of one node (vectorised over a slice).

Both functions take the children's statistics as arrays and return one score per
child; the search picks the first maximum. Zero-visit children: UCT gives them
``+inf`` (every child is tried once before any is tried twice); PUCT scores them with
the first-play value ``fpu`` in place of Q.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["uct_scores", "puct_scores"]


def uct_scores(value_sum: np.ndarray, visits: np.ndarray, parent_visits: float, c: float) -> np.ndarray:
    """UCB1 applied to trees (Kocsis & Szepesvári 2006).

    ``score = Q + c * sqrt(ln N / n)`` with ``Q = value_sum / n``; ``+inf`` where n = 0.

    Args:
        value_sum: Sum of returns through each child edge.
        visits: Visit count of each child edge.
        parent_visits: N, the visit count of the parent.
        c: Exploration constant.
    """
    visited = visits > 0
    n = np.maximum(visits, 1)
    log_n = math.log(parent_visits) if parent_visits > 1 else 0.0
    scores = value_sum / n + c * np.sqrt(log_n / n)
    return np.where(visited, scores, np.inf)


def puct_scores(
    value_sum: np.ndarray,
    visits: np.ndarray,
    prior: np.ndarray,
    parent_visits: float,
    c: float,
    fpu: float = 0.0,
) -> np.ndarray:
    """PUCT as in AlphaZero: ``Q + c * P * sqrt(N) / (1 + n)``.

    Args:
        value_sum: Sum of returns through each child edge.
        visits: Visit count of each child edge.
        prior: Policy prior of each child edge.
        parent_visits: N, the visit count of the parent.
        c: Exploration constant.
        fpu: Q used for children with no visits yet (first-play urgency).
    """
    q = np.where(visits > 0, value_sum / np.maximum(visits, 1), fpu)
    return q + c * prior * math.sqrt(parent_visits) / (1.0 + visits)
