"""AUROC against hand-counted pairs."""

import math

from treeq.prm.metrics import auroc


def test_auroc_hand_counted():
    # positives 0.9, 0.4; negatives 0.5, 0.1: pairs won 1+1, 0+1 -> 3/4
    assert auroc([0.9, 0.4, 0.5, 0.1], [1, 1, 0, 0]) == 0.75


def test_auroc_ties_count_half_and_one_class_is_nan():
    assert auroc([1.0, 1.0, 0.0], [1, 0, 0]) == 0.75  # (0.5 + 1) / 2
    assert auroc([0.2, 0.2], [1, 0]) == 0.5
    assert math.isnan(auroc([0.1, 0.2], [1, 1]))
