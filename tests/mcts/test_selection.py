"""UCT and PUCT selection of the engine against hand-computed scores, zero-visit cases
included. A root with three stepped actions is set up by hand and one descent is run;
the edge it takes is the selection's answer."""

from __future__ import annotations

import math

import numpy as np

from treeq.envs.base import Env, Step
from treeq.mcts.config import SearchConfig, resolve_defaults
from treeq.mcts.hooks import zero_evaluate
from treeq.mcts.search import _Engine
from treeq.mcts.selection import grow_tables as _tables


class ThreeWay(Env):
    """root -> x | y | z, each to its own room; rooms go on forever (nothing terminal)."""

    name = "three-way"
    deterministic = True

    def legal_actions(self, state):
        return ["x", "y", "z"]

    def step(self, state, action, rng=None):
        return Step(state + action, 0.0, False)

    def state_key(self, state):
        return state

    def render(self, state):
        return state


def _root(visits, value_sum, prior=(1 / 3, 1 / 3, 1 / 3), parent_visits=None, solved=(None, None, None), **cfg):
    """An engine whose root has three actions with the given statistics; each visited one
    is stepped. Returns the engine; ``_pick(engine)`` runs one descent."""
    env = ThreeWay()
    config = resolve_defaults(SearchConfig(simulations=10, random_untried=False, **cfg), env)
    eng = _Engine(env, config, np.random.default_rng(0), None, zero_evaluate)
    _tables(100)
    eng._new_node("r", "r", False)
    eng._check_proposals = False
    eng._expand(0, list(zip("xyz", prior)))
    for e, (n, w, v) in enumerate(zip(visits, value_sum, solved)):
        eng.e_n[e], eng.e_w[e] = n, w
        if n:
            child = eng._new_node("r" + "xyz"[e], "r" + "xyz"[e], False)
            eng.e_child[e] = child
            eng.n_solved[child] = v
            if eng.graph:
                eng.n_value[child] = w / n
    eng.n_next[0] = sum(1 for n in visits if n)
    eng.n_visits[0] = sum(visits) if parent_visits is None else parent_visits
    return eng


def _pick(eng) -> int:
    d = eng._descend()
    return -1 if d is None else d[1][0]


def test_uct_hand_computed():
    # Q = [0.5, 0, 0.3], n = [2, 1, 1], N = 4, c = 1:
    # 0.5 + sqrt(ln 4 / 2) = 1.3326, 0 + sqrt(ln 4) = 1.1774, 0.3 + sqrt(ln 4) = 1.4774 -> z
    assert 0.5 + math.sqrt(math.log(4) / 2) < 0.3 + math.sqrt(math.log(4))
    assert _pick(_root([2, 1, 1], [1.0, 0.0, 0.3], c=1.0, solver=False)) == 2
    # c = 0: greedy on Q
    assert _pick(_root([2, 1, 1], [1.0, 0.0, 0.3], c=0.0, solver=False)) == 0


def test_uct_zero_visits_first():
    # an unvisited action is tried before any is tried twice (UCT's +inf), in proposal order
    eng = _root([5, 0, 0], [5.0, 0.0, 0.0], c=1.0, solver=False)
    assert _pick(eng) == 1
    assert _pick(eng) == 2


def test_uct_skips_proven_children_under_the_solver():
    # z would win on score (1.4774) but is proven: never selected again
    assert _pick(_root([2, 1, 1], [1.0, 0.0, 0.3], c=1.0, solved=(None, None, 0.3))) == 0
    # every action proven: nothing left to search at the root
    assert _pick(_root([2, 1, 1], [1.0, 0.0, 0.3], c=1.0, solved=(0.5, 0.0, 0.3))) == -1


def test_puct_hand_computed():
    # Q + c P sqrt(N) / (1 + n), N = 4, c = 1, P = [0.5, 0.25, 0.25], n = [2, 1, 0], fpu 0:
    # 0.5 + 0.5 * 2 / 3 = 0.8333, 0 + 0.25 * 2 / 2 = 0.25, 0 + 0.25 * 2 / 1 = 0.5 -> x
    kw = dict(selection="puct", c=1.0, solver=False)
    assert _pick(_root([2, 1, 0], [1.0, 0.0, 0.0], prior=(0.5, 0.25, 0.25), **kw)) == 0
    # first-play urgency 0.5: the unvisited z scores 0.5 + 0.5 = 1.0 -> z
    assert _pick(_root([2, 1, 0], [1.0, 0.0, 0.0], prior=(0.5, 0.25, 0.25), fpu=0.5, **kw)) == 2


def test_puct_zero_visits_everywhere():
    # N = 0: sqrt(N) = 0, every action scores fpu: the first one
    kw = dict(selection="puct", c=1.5, solver=False, fpu=0.2)
    assert _pick(_root([0, 0, 0], [0.0, 0.0, 0.0], prior=(0.1, 0.2, 0.7), parent_visits=0, **kw)) == 0
    # N = 1: the prior decides, 0.2 + 1.5 * P
    assert _pick(_root([0, 0, 0], [0.0, 0.0, 0.0], prior=(0.1, 0.2, 0.7), parent_visits=1, **kw)) == 2
