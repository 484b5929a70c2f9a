"""AUROC against hand-counted pairs, pooled and within groups."""

import math

from treeq.prm.metrics import auroc, within_group_mean


def test_auroc_hand_counted():
    # positives 0.9, 0.4; negatives 0.5, 0.1: pairs won 1+1, 0+1 -> 3/4
    assert auroc([0.9, 0.4, 0.5, 0.1], [1, 1, 0, 0]) == 0.75


def test_auroc_ties_count_half_and_one_class_is_nan():
    assert auroc([1.0, 1.0, 0.0], [1, 0, 0]) == 0.75  # (0.5 + 1) / 2
    assert auroc([0.2, 0.2], [1, 0]) == 0.5
    assert math.isnan(auroc([0.1, 0.2], [1, 1]))


def test_within_group_mean_ranks_siblings_only():
    """Group 7: its positive above its negative (1.0); group 3: its positive below both negatives
    (0.0); group -1 holds one class and is left out: mean 0.5. Pooled, the same scores give 6/9."""
    scores = [0.9, 0.1, 0.2, 0.8, 0.5, 0.6]
    positive = [1, 0, 1, 0, 0, 1]
    group = [7, 7, 3, 3, 3, -1]
    assert within_group_mean(scores, positive, group) == 0.5
    assert abs(auroc(scores, positive) - 6 / 9) < 1e-12
    assert math.isnan(within_group_mean([0.3, 0.4], [1, 1], [0, 0]))
    assert math.isnan(within_group_mean([], [], []))
