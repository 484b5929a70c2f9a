"""UCT and PUCT scores against hand-computed numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from treeq.mcts.selection import puct_scores, uct_scores


def test_uct_hand_computed():
    # Q = [0.5, 0.0], N = 4, c = 1: 0.5 + sqrt(ln 4 / 2) and 0 + sqrt(ln 4 / 1)
    s = uct_scores(np.array([1.0, 0.0, 0.0]), np.array([2, 1, 0]), 4, 1.0)
    assert s[0] == pytest.approx(0.5 + math.sqrt(math.log(4) / 2))  # 1.332555
    assert s[1] == pytest.approx(math.sqrt(math.log(4)))  # 1.177410
    assert s[0] == pytest.approx(1.3325546, abs=1e-6)
    assert s[2] == np.inf  # zero visits: tried before anything is tried twice


def test_uct_zero_visit_edge_cases():
    # parent visited once: ln 1 = 0, the bonus vanishes and the score is Q
    s = uct_scores(np.array([0.3]), np.array([1]), 1, 2.0)
    assert s[0] == pytest.approx(0.3)
    # every child unvisited (just expanded): all +inf, argmax takes the first
    s = uct_scores(np.zeros(3), np.zeros(3, dtype=np.int64), 1, 1.0)
    assert np.all(np.isinf(s)) and int(np.argmax(s)) == 0
    # c = 0 is greedy on Q
    s = uct_scores(np.array([1.0, 3.0]), np.array([2, 4]), 6, 0.0)
    assert list(s) == [0.5, 0.75]


def test_puct_hand_computed():
    # N = 4: sqrt(N) = 2; Q = [0.5, 0, fpu]
    s = puct_scores(np.array([1.0, 0.0, 0.0]), np.array([2, 1, 0]), np.array([0.5, 0.25, 0.25]), 4, 1.0)
    assert s == pytest.approx([0.5 + 0.5 * 2 / 3, 0.25 * 2 / 2, 0.25 * 2 / 1])  # 0.8333, 0.25, 0.5


def test_puct_zero_visit_edge_cases():
    # parent never visited: no exploration term, unvisited children score fpu
    s = puct_scores(np.zeros(2), np.zeros(2, dtype=np.int64), np.array([0.9, 0.1]), 0, 1.5, fpu=0.2)
    assert s == pytest.approx([0.2, 0.2])
    # first visit of the parent: the prior decides among unvisited children
    s = puct_scores(np.zeros(2), np.zeros(2, dtype=np.int64), np.array([0.1, 0.9]), 1, 1.0)
    assert int(np.argmax(s)) == 1 and s == pytest.approx([0.1, 0.9])
