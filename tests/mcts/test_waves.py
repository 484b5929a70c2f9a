"""Waves: one propose and one evaluate call per wave, in tree and graph mode."""

from __future__ import annotations

import numpy as np
import pytest

from treeq.envs.base import Task
from treeq.envs.countdown import Game24Env
from treeq.envs.registry import make_env
from treeq.mcts import SearchConfig, search, uniform_propose


class Counting:
    """Wraps hooks and records the batch size of every call."""

    def __init__(self, env, value=0.0):
        self.inner = uniform_propose(env)
        self.value = value
        self.propose_sizes: list[int] = []
        self.evaluate_sizes: list[int] = []

    def propose(self, states, k):
        self.propose_sizes.append(len(states))
        return self.inner(states, k)

    def evaluate(self, states):
        self.evaluate_sizes.append(len(states))
        return [self.value] * len(states)


def _game24():
    env = Game24Env()
    return env, env.reset(Task("p", {"numbers": ["4", "5", "6", "10"], "target": "24"}))


def _frozen_lake():
    env = make_env("gym:FrozenLake-v1", is_slippery=False, map_name="8x8")
    return env, env.reset(Task("seed-0", {"seed": 0}))


@pytest.mark.parametrize("make, transpositions", [(_game24, False), (_game24, True), (_frozen_lake, True),
                                                   (_frozen_lake, False)])
def test_one_propose_and_one_evaluate_call_per_wave(make, transpositions):
    env, s0 = make()
    hooks = Counting(env)
    cfg = SearchConfig(simulations=640, wave_size=16, transpositions=transpositions, solver=False, gamma=0.95)
    r = search(env, s0, cfg, np.random.default_rng(0), propose=hooks.propose, evaluate=hooks.evaluate)
    assert r.backup == ("max" if transpositions else "mean")
    assert r.waves == len(range(0, r.simulations, 16)) or r.stop_reason != "budget"
    # never more than one call of each per wave, and the waves do reach the hooks batched
    assert len(hooks.propose_sizes) <= r.waves and len(hooks.evaluate_sizes) <= r.waves
    assert max(hooks.propose_sizes) > 1 and max(hooks.evaluate_sizes) > 1
    assert max(hooks.propose_sizes) <= 16 and max(hooks.evaluate_sizes) <= 16
    # every expanded state was proposed for exactly once
    expanded_states = {k for k, e, n in zip(r.tree.state_keys, r.tree.expanded, r.tree.child_count) if e}
    assert sum(hooks.propose_sizes) >= len(expanded_states)


def test_wave_size_one_is_sequential():
    env, s0 = _game24()
    hooks = Counting(env)
    r = search(env, s0, SearchConfig(simulations=50, solver=False), np.random.default_rng(0),
               propose=hooks.propose, evaluate=hooks.evaluate)
    assert r.waves == 50 and set(hooks.propose_sizes) == {1} and set(hooks.evaluate_sizes) <= {1}


def test_waves_keep_same_seed_same_tree():
    env, s0 = _frozen_lake()
    cfg = SearchConfig(simulations=500, wave_size=8, gamma=0.95)
    a, b = (search(env, s0, cfg, np.random.default_rng(3)) for _ in range(2))
    for name in ("parent", "action", "visits", "value_sum", "solved_v"):
        assert np.array_equal(getattr(a.tree, name), getattr(b.tree, name), equal_nan=True)
    assert a.tree.state_keys == b.tree.state_keys
