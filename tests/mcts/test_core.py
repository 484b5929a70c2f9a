"""The compiled hot path (``treeq.mcts._core``) builds the same tree as the pure-Python one.

Every tree-mode setting it touches (graph mode uses only its edge expansion and the
export's gathers), on every kind of env: UCT first tries and plain UCT, PUCT with fpu, the solver's skips (eager and lazy expansion), sampled stochastic edges,
``max_depth`` leaves, the ``max_nodes`` stop, waves with a virtual visit.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from treeq.envs.registry import make_env
from treeq.mcts.search import SearchConfig, search
from treeq.mcts.tree import _FIELDS

engine = importlib.import_module("treeq.mcts.storage")
if engine._core is None:  # pragma: no cover - the build has a C compiler in CI
    pytest.skip("treeq.mcts._core is not built (no C compiler at install)", allow_module_level=True)


def _on_both(run):
    """``[run() compiled, run() in pure Python]``."""
    out = []
    for core in (engine._core, None):
        saved = engine._core
        engine._core = core
        try:
            out.append(run())
        finally:
            engine._core = saved
    return out


def _both(env, cfg, seed=0, task=0):
    root = env.reset(env.load_tasks(None)[task], np.random.default_rng(seed))
    return _on_both(lambda: search(env, root, cfg, np.random.default_rng(seed)))


def _same(a, b):
    assert (a.simulations, a.stop_reason, a.solved) == (b.simulations, b.stop_reason, b.solved)
    ta, tb = a.tree, b.tree
    assert ta.size == tb.size
    for name in _FIELDS:
        np.testing.assert_array_equal(getattr(ta, name), getattr(tb, name), err_msg=name)
    assert ta.state_keys == tb.state_keys
    assert [ta.action_text(i) for i in range(ta.size)] == [tb.action_text(i) for i in range(tb.size)]


CASES = [
    ("game24", {}, dict(simulations=300, transpositions=False)),  # solver, eager steps
    ("game24", {}, dict(simulations=300, transpositions=False, solver=False, selection="puct", fpu=0.3)),
    ("game24", {}, dict(simulations=300, transpositions=False, wave_size=8)),
    ("blocksworld", {}, dict(simulations=300, transpositions=False, max_depth=6)),
    ("gym:FrozenLake-v1", {"is_slippery": True}, dict(simulations=500, transpositions=False)),  # sampled edges
    ("gym:Taxi-v4", {}, dict(simulations=400, transpositions=False, max_nodes=150)),
    ("gym:CliffWalking-v1", {}, dict(simulations=400, transpositions=False, random_untried=False, gamma=0.95)),
    # graph mode: the compiled edge expansion only
    ("game24", {}, dict(simulations=300, transpositions=True, wave_size=4)),
    ("gym:FrozenLake-v1", {"is_slippery": True}, dict(simulations=500)),
]


@pytest.mark.parametrize("name,kwargs,settings", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_compiled_equals_python(name, kwargs, settings):
    env = make_env(name, **kwargs)
    for seed in (0, 1):
        _same(*_both(env, SearchConfig(**settings), seed=seed, task=seed))


def test_compiled_equals_python_openspiel():
    pytest.importorskip("pyspiel")
    env = make_env("openspiel:catch")
    for settings in (dict(simulations=1000, c=2.0, solver=False, transpositions=False, gamma=1.0),
                     dict(simulations=500, selection="puct", transpositions=False, wave_size=4)):
        _same(*_both(env, SearchConfig(**settings), seed=3, task=2))


class _Boom(Exception):
    pass


def _raise(*_args):
    raise _Boom("hook failed")


BAD_HOOKS = {
    "propose-count": dict(propose=lambda states, k: []),
    "evaluate-count": dict(evaluate=lambda states: [1.0, 2.0]),
    "evaluate-text": dict(evaluate=lambda states: ["x"]),
    "propose-non-text": dict(propose=lambda states, k: [[(1, 0.5)]]),
    "propose-raises": dict(propose=_raise),
    "evaluate-raises": dict(evaluate=_raise),
}


@pytest.mark.parametrize("bad", sorted(BAD_HOOKS))
def test_compiled_hook_errors_are_the_python_ones(bad):
    env = make_env("gym:FrozenLake-v1")
    cfg = SearchConfig(simulations=20, transpositions=False)

    def error():
        with pytest.raises(Exception) as info:
            search(env, env.reset(env.load_tasks(None)[0]), cfg, np.random.default_rng(0), **BAD_HOOKS[bad])
        return type(info.value), str(info.value)

    errors = _on_both(error)
    assert errors[0] == errors[1]


def test_compiled_env_error_propagates():
    class Exploding(type(make_env("gym:FrozenLake-v1"))):
        def step(self, state, action, rng=None):
            raise _Boom("env exploded")

    env = Exploding("FrozenLake-v1")
    with pytest.raises(_Boom, match="env exploded"):
        search(env, env.reset(env.load_tasks(None)[0]), SearchConfig(simulations=5, transpositions=False),
               np.random.default_rng(0))


def test_pure_python_switch():
    """TREEQ_PURE_PYTHON=1 runs the Python path (what an install without a C compiler gets)."""
    import os
    import subprocess
    import sys

    code = "import importlib; print(importlib.import_module('treeq.mcts.storage')._core is None)"
    out = {flag: subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                env={**os.environ, "TREEQ_PURE_PYTHON": flag}).stdout.strip()
           for flag in ("1", "0")}
    assert out == {"1": "True", "0": "False"}


def test_compiled_loop_stops_at_the_task_timeout():
    import time

    env = make_env("gym:FrozenLake-v1")
    root = env.reset(env.load_tasks(None)[0])

    def slow(states):
        time.sleep(0.01)
        return [0.0] * len(states)

    cfg = SearchConfig(simulations=100_000, transpositions=False, task_timeout=0.1)
    for result in _on_both(lambda: search(env, root, cfg, np.random.default_rng(0), evaluate=slow)):
        assert result.stop_reason == "timeout"
        assert 1 <= result.simulations <= 40  # about 0.1 s / 0.01 s a leaf, whatever the path (fewer on a loaded machine)


def test_proposals_as_lists_are_taken_as_tuples_are():
    env = make_env("gym:FrozenLake-v1")
    root = env.reset(env.load_tasks(None)[0])

    def propose(states, k):
        return [[[a, 0.25, 0.5] for a in env.legal_actions(s)] for s in states]

    cfg = SearchConfig(simulations=200, transpositions=False)
    trees = _on_both(lambda: search(env, root, cfg, np.random.default_rng(0), propose=propose))
    _same(*trees)
    assert (trees[0].tree.feedback[1:] == 0.5).all()


@pytest.mark.parametrize("info,solved", [({"success": None}, True), ({"success": False}, False), ({}, True),
                                         ({"success": True, "deterministic": True}, True)])
def test_compiled_success_test_is_is_success(info, solved):
    """The compiled step reads ``info`` as ``is_success`` does: a missing or None flag
    falls back to reward >= 1 (here the last step pays 1)."""
    from toy_envs import TwoStepEnv

    from treeq.envs.base import Step

    class Flagged(TwoStepEnv):
        deterministic = False  # the compiled step then reads info["deterministic"] too
        step_on_expand = False

        def step(self, state, action, rng=None):
            s = super().step(state, action, rng)
            return Step(s.state, s.reward, s.terminated, False, {**info, "deterministic": True})

    cfg = SearchConfig(simulations=10, transpositions=False, solver=False, stop_on_solve=False)
    results = _on_both(lambda: search(Flagged(), "root", cfg, np.random.default_rng(0)))
    assert [r.solved for r in results] == [solved, solved]
    _same(*results)
