"""How well per-step advantage estimates match a reference (``credit-bench``): pure numpy and scipy.

Every function takes the estimates and the reference over the same steps (rows where the
estimator gave no value are dropped by the caller) and returns a float, NaN where the
figure is undefined (fewer than two steps, a constant column, no comparable pair).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Sequence

import numpy as np

__all__ = ["METRICS", "spearman", "kendall", "within_state_auroc", "sign_agreement", "nmse", "score", "interval"]

METRICS = ("spearman", "kendall", "auroc", "sign_agreement", "nmse")
_ZERO = 1e-9


def _both_vary(x: np.ndarray, y: np.ndarray) -> bool:
    return len(x) >= 2 and np.ptp(x) > 0 and np.ptp(y) > 0


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (ties take their mean rank)."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    return float(spearmanr(x, y).statistic) if _both_vary(x, y) else math.nan


def kendall(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b, which corrects for ties on either side (A* of Game of 24 takes two values)."""
    from scipy.stats import kendalltau

    x, y = np.asarray(x, float), np.asarray(y, float)
    return float(kendalltau(x, y, variant="b").statistic) if _both_vary(x, y) else math.nan


def within_state_auroc(x: Sequence[float], y: Sequence[float], states: Sequence[Hashable],
                       actions: Sequence[Hashable]) -> float:
    """Does the estimator rank the better action of a state higher?

    Over every pair of steps taken in the same state with different actions whose
    references differ (by more than 1e-9): the share where the estimate orders them as
    the reference does, a tie in the estimate counting one half. NaN without such a pair.
    """
    by_state: dict[Hashable, list[int]] = defaultdict(list)
    for i, s in enumerate(states):
        by_state[s].append(i)
    x, y = np.asarray(x, float), np.asarray(y, float)
    act = list(actions)
    hits, pairs = 0.0, 0
    for rows in by_state.values():
        if len(rows) < 2:
            continue
        idx = np.asarray(rows)
        xs, ys = x[idx], y[idx]
        ids: dict[Hashable, int] = {}
        a = np.asarray([ids.setdefault(act[i], len(ids)) for i in rows])
        dy = ys[:, None] - ys[None, :]
        mask = (dy > _ZERO) & (a[:, None] != a[None, :])
        if not mask.any():
            continue
        dx = (xs[:, None] - xs[None, :])[mask]
        hits += float((dx > 0).sum() + 0.5 * (dx == 0).sum())
        pairs += int(mask.sum())
    return hits / pairs if pairs else math.nan


def sign_agreement(x: Sequence[float], y: Sequence[float]) -> float:
    """Over the steps whose reference is not 0: the share whose estimate has the same sign (an estimate of 0 is wrong)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.abs(y) > _ZERO
    return float(np.mean(np.sign(x[keep]) == np.sign(y[keep]))) if keep.any() else math.nan


def nmse(x: Sequence[float], y: Sequence[float]) -> float:
    """Normalised squared error after the best non-negative scale: min_{a >= 0} mean((a x - y)^2) / mean(y^2).

    A policy gradient absorbs an advantage's scale into the learning rate (GRPO divides
    by a standard deviation), so the scale is fitted; 0 is perfect, 1 is no better than
    predicting 0. NaN where the reference is 0 everywhere.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    yy = float(np.dot(y, y))
    if len(y) == 0 or yy <= 0:
        return math.nan
    xx = float(np.dot(x, x))
    a = max(0.0, float(np.dot(x, y)) / xx) if xx > 0 else 0.0
    return float(np.dot(a * x - y, a * x - y)) / yy


def score(x: Sequence[float], y: Sequence[float], states: Sequence[Hashable], actions: Sequence[Hashable]
          ) -> dict[str, float]:
    """Every metric of :data:`METRICS` for estimates ``x`` against reference ``y``."""
    return {"spearman": spearman(x, y), "kendall": kendall(x, y),
            "auroc": within_state_auroc(x, y, states, actions), "sign_agreement": sign_agreement(x, y),
            "nmse": nmse(x, y)}


def interval(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% Student-t interval over seeds (NaNs dropped; 0 for one seed)."""
    from scipy.stats import t

    v = np.asarray([a for a in values if a is not None and not math.isnan(a)], float)
    if len(v) == 0:
        return math.nan, math.nan
    if len(v) == 1:
        return float(v[0]), 0.0
    return float(v.mean()), float(t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
