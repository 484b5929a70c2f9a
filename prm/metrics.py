"""Label and verifier metrics (numpy only, so benchmarks need no torch)."""

from __future__ import annotations

import numpy as np

__all__ = ["auroc", "spearman", "auroc_by_depth", "depth_mean"]


def auroc(scores, positive) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties 1/2.

    Computed from average ranks (Mann-Whitney U), so it is exact with tied scores.
    Returns NaN when one class is empty.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    u = _ranks(scores)[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based), ties sharing the mean of their positions."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(x.size, dtype=np.float64)
    sorted_x = x[order]
    boundaries = np.flatnonzero(np.diff(sorted_x)) + 1
    for s, e in zip(np.concatenate(([0], boundaries)), np.concatenate((boundaries, [x.size]))):
        ranks[order[s:e]] = (s + 1 + e) / 2.0
    return ranks


def spearman(a, b) -> float:
    """Spearman's rank correlation (Pearson's on average ranks); NaN when either side is constant."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.size < 2:
        return float("nan")
    ra, rb = _ranks(a), _ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def auroc_by_depth(scores, positive, depth) -> dict[int, float]:
    """AUROC within each depth, or any other integer grouping of the steps (a step's parent:
    :func:`within_group_mean`); groups where one class is empty are left out."""
    scores, positive, depth = np.asarray(scores), np.asarray(positive, dtype=bool), np.asarray(depth)
    out = {}
    for d in np.unique(depth):
        m = depth == d
        value = auroc(scores[m], positive[m])
        if value == value:
            out[int(d)] = value
    return out


def within_group_mean(scores, positive, group) -> float:
    """The mean AUROC within each group that holds both classes (NaN if none): with a step's
    parent as its group, how well the scores rank each state's children, which is what a
    search asks of a value."""
    return depth_mean(auroc_by_depth(scores, positive, group))


def depth_mean(by_depth: dict[int, float]) -> float:
    """The within-depth figure: the unweighted mean of :func:`auroc_by_depth`'s values (NaN if none)."""
    return float(np.mean(list(by_depth.values()))) if by_depth else float("nan")
