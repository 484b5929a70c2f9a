"""The advantage estimators on small hand-made groups, against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest

from treeq.pipelines import advantages as adv

EPS = adv.EPSILON


def test_discounted_returns_and_turn():
    # G2 = 1; G1 = 0.5 + 0.9 * 1 = 1.4; G0 = 0 + 0.9 * 1.4 = 1.26
    assert adv.discounted_returns([0.0, 0.5, 1.0], 0.9) == pytest.approx([1.26, 1.4, 1.0])
    assert adv.turn([0.0, 0.5, 1.0], 0.9) == pytest.approx([1.26, 1.4, 1.0])
    assert adv.turn([], 0.9) == []


def test_grpo():
    # R = [1, 0, 0, 1]: mean 0.5, unbiased std sqrt(4 * 0.25 / 3) = 0.5773503
    a = adv.grpo([[0, 1], [0], [0, 0, 0], [1]])
    assert a == pytest.approx([0.5 / (math.sqrt(1 / 3) + EPS), -0.5 / (math.sqrt(1 / 3) + EPS)] * 1
                              + [-0.5 / (math.sqrt(1 / 3) + EPS), 0.5 / (math.sqrt(1 / 3) + EPS)])
    assert a[0] == pytest.approx(0.866024, abs=1e-6)
    assert adv.grpo([[0], [0], [0]]) == [0.0, 0.0, 0.0]  # all equal: 0 / (0 + eps)
    assert adv.grpo([[1.0]]) == pytest.approx([1.0 / (1.0 + EPS)])  # a group of one: mean 0, std 1 (verl)
    assert adv.grpo([[1], [0]], std=False) == [0.5, -0.5]


def test_loop_leave_one_out():
    # R = [1, 0, 0, 1]: A_0 = 1 - (0 + 0 + 1) / 3 = 2/3, A_1 = 0 - 2/3
    assert adv.loop([[1], [0], [0], [1]]) == pytest.approx([2 / 3, -2 / 3, -2 / 3, 2 / 3])
    assert adv.loop([[0.3]]) == [0.0]  # nobody to compare with
    assert adv.loop([[0.5], [0.5]]) == [0.0, 0.0]


# Two trajectories of one group, gamma 0.5:
#   A: states s0, s1; rewards 0, 1 -> R = 1, step returns 0.5, 1
#   B: states s0, s2, s3; rewards 0, 0, 0 -> R = 0, step returns 0, 0, 0
# Episode part over the group's 5 step rows [1, 1, 0, 0, 0]: mean 0.4,
#   unbiased std sqrt((2 * 0.36 + 3 * 0.16) / 4) = sqrt(0.3) = 0.5477226.
# Step part: anchor s0 holds {0.5, 0}: mean 0.25, unbiased std 0.3535534; s1, s2, s3 are singletons -> 0.
REWARDS = [[0.0, 1.0], [0.0, 0.0, 0.0]]
ANCHORS = [["s0", "s1"], ["s0", "s2", "s3"]]


def test_gigpo_mean_norm():
    out = adv.gigpo(REWARDS, ANCHORS, gamma=0.5, weight=1.0, mode="mean_norm")
    assert out[0] == pytest.approx([0.6 + 0.25, 0.6])
    assert out[1] == pytest.approx([-0.4 - 0.25, -0.4, -0.4])
    half = adv.gigpo(REWARDS, ANCHORS, gamma=0.5, weight=0.5, mode="mean_norm")
    assert half[0] == pytest.approx([0.6 + 0.125, 0.6])


def test_gigpo_mean_std_norm():
    out = adv.gigpo(REWARDS, ANCHORS, gamma=0.5, weight=1.0, mode="mean_std_norm")
    e_hi, e_lo = 0.6 / (math.sqrt(0.3) + EPS), -0.4 / (math.sqrt(0.3) + EPS)
    s = 0.25 / (math.sqrt(0.125) + EPS)
    assert out[0] == pytest.approx([e_hi + s, e_hi])
    assert out[1] == pytest.approx([e_lo - s, e_lo, e_lo])
    assert out[0][0] == pytest.approx(1.802548, abs=1e-5)


def test_gigpo_singleton_and_all_equal_groups():
    # every anchor state a singleton: the step part is 0 and only the episode part remains
    alone = adv.gigpo([[1.0], [0.0]], [["a"], ["b"]], gamma=0.9, mode="mean_norm")
    assert alone == [[0.5], [-0.5]]
    # all-equal group: both parts 0, with or without the std
    for mode in adv.GIGPO_MODES:
        same = adv.gigpo([[0.0, 1.0], [0.0, 1.0]], [["x", "y"], ["x", "y"]], gamma=0.9, mode=mode)
        assert same == [[0.0, 0.0], [0.0, 0.0]]
    # a group of one step row: episode mean 0, std 1 (verl-agent), the anchor singleton 0
    assert adv.gigpo([[1.0]], [["x"]], gamma=1.0, mode="mean_std_norm") == [[pytest.approx(1.0 / (1.0 + EPS))]]
    with pytest.raises(ValueError, match="mode"):
        adv.gigpo([[1.0]], [["x"]], gamma=1.0, mode="std")
    with pytest.raises(ValueError, match="one state key per step"):
        adv.gigpo([[1.0, 0.0]], [["x"]], gamma=1.0)


def test_gae():
    # gamma 0.9, lambda 0.5, V = [0.5, 0.8], V after = 0:
    # delta_1 = 1 + 0 - 0.8 = 0.2; delta_0 = 0 + 0.9 * 0.8 - 0.5 = 0.22; A_0 = 0.22 + 0.45 * 0.2 = 0.31
    assert adv.gae([0.0, 1.0], [0.5, 0.8], 0.0, 0.9, 0.5) == pytest.approx([0.31, 0.2])
    # lambda 1 and V = 0 everywhere: the discounted return
    assert adv.gae([0.0, 0.5, 1.0], [0, 0, 0], 0.0, 0.9, 1.0) == pytest.approx([1.26, 1.4, 1.0])
    # a missing value voids every advantage that depends on it, and only those
    assert adv.gae([0.0, 1.0], [0.5, None], 0.0, 1.0, 0.5) == [None, None]
    assert adv.gae([0.0, 1.0], [0.5, 0.8], None, 1.0, 0.5) == [None, None]
    # delta_2 = 0 + 0 - 0.1 = -0.1; delta_1 = 1 + 0.1 - 0.8 = 0.3; A_1 = 0.3 + 0.5 * -0.1 = 0.25
    partial = adv.gae([0.0, 1.0, 0.0], [None, 0.8, 0.1], 0.0, 1.0, 0.5)
    assert partial[0] is None and partial[1:] == pytest.approx([0.25, -0.1])
