"""The env checker: every shipped env passes it (cross-process key check included), and
deliberately broken toy envs fail it with the check that they break named."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from treeq.envs.base import Step, Task
from treeq.envs.checker import EnvCheckError, check_env, walk_keys
from treeq.envs.registry import make_env
from treeq.errors import TreeqError

TW_SEEDS = [101, 202]




# ----------------------------------------------------------------------------- shipped envs pass
ENVS = [
    # (registry name, kwargs, tasks, cross-process check)
    ("game24", {}, None, True),
    ("countdown", {}, None, False),
    ("blocksworld", {}, None, True),
    ("gym:FrozenLake-v1", {}, "0:1", True),
    ("gym:FrozenLake-v1", {"is_slippery": False}, "0:1", False),
    ("gym:CliffWalking-v1", {}, "0:1", False),
    ("gym:Taxi-v4", {}, "5:6", True),
    ("gym:FrozenLake8x8-v1", {}, "0:1", False),
    ("gym:CliffWalkingSlippery-v1", {}, "0:1", False),
    ("openspiel:catch", {}, "0:1", False),
    ("openspiel:2048", {}, "0:1", False),
]


@pytest.mark.parametrize("name, kwargs, tasks, cross", ENVS, ids=[f"{e[0]}{e[1] or ''}" for e in ENVS])
def test_shipped_envs_pass(name, kwargs, tasks, cross):
    if name.startswith("openspiel:"):
        pytest.importorskip("pyspiel")
    env = make_env(name, **kwargs)
    task = env.load_tasks(tasks)[0]
    for seed in (0, 1, 2):
        check_env(env, task, steps=30, seed=seed)
    if cross:
        check_env(env, task, steps=30, seed=0, env_spec=(name, kwargs))


@pytest.mark.slow
def test_textworld_passes(tw_games):
    env = make_env("textworld")
    tasks = env.load_tasks(tw_games)
    assert [t.task_id for t in tasks] == [f"game-{s}" for s in TW_SEEDS]
    for task in tasks:
        check_env(env, task, steps=15, seed=0)
    check_env(env, tasks[0], steps=15, seed=1, env_spec=("textworld", {}))


def test_walk_keys_is_seeded():
    env = make_env("game24")
    task = env.load_tasks(None)[0]
    a, b, c = walk_keys(env, task, 3, 0), walk_keys(env, task, 3, 0), walk_keys(env, task, 3, 5)
    assert a == b and len(a) == 4  # the start and 3 steps (4 numbers: the 3rd step ends it)
    assert a[0] == "target=24 left=1 1 4 6" == c[0]
    assert a != c
    slippery = make_env("gym:FrozenLake-v1")
    t = slippery.load_tasks("0:1")[0]
    assert walk_keys(slippery, t, 30, 3) == walk_keys(slippery, t, 30, 3)


def test_env_check_error_is_a_treeq_error():
    assert issubclass(EnvCheckError, TreeqError) and issubclass(EnvCheckError, AssertionError)


# ----------------------------------------------------------------------------- broken toy envs
class _Toy:
    """A chain of 5 moves with actions a / b; states are tuples of the actions taken."""

    name = "toy"
    deterministic = True
    depth = 5

    def reset(self, task, rng=None):
        return ()

    def legal_actions(self, state):
        return ["a", "b"] if len(state) < self.depth else []

    def step(self, state, action):
        nxt = tuple(state) + (action,)
        return Step(nxt, 1.0 if len(nxt) == self.depth else 0.0, len(nxt) == self.depth)

    def state_key(self, state):
        return ",".join(state)

    def render(self, state):
        return " ".join(state)


class MutatingEnv(_Toy):
    """The state is a list that ``step`` appends to in place: stepping one child changes the parent."""

    def reset(self, task, rng=None):
        return []

    def step(self, state, action):
        state.append(action)
        return Step(state, 0.0, len(state) >= self.depth)


class IdKeyEnv(_Toy):
    """``state_key`` is the object's address: two resets give two keys."""

    def reset(self, task, rng=None):
        return ["start"]

    def step(self, state, action):
        return Step([*state, action], 0.0, len(state) >= self.depth)

    def state_key(self, state):
        return f"obj-{id(state)}"


class DuplicateActionsEnv(_Toy):
    def legal_actions(self, state):
        return ["a", "b", "a"] if len(state) < self.depth else []


class ShufflingActionsEnv(_Toy):
    """legal_actions come out in a different order on every call."""

    def __init__(self):
        self.calls = 0

    def legal_actions(self, state):
        self.calls += 1
        return ["a", "b"] if self.calls % 2 else ["b", "a"]


class CountingEnv(_Toy):
    """Claims to be deterministic, but its reward depends on a hidden counter."""

    def __init__(self):
        self.n = 0

    def step(self, state, action):
        self.n += 1
        return Step(tuple(state) + (action,), float(self.n), False)


class HiddenRngEnv(_Toy):
    """Stochastic, but samples with its own generator instead of the one it is given."""

    deterministic = False

    def __init__(self):
        self.own = np.random.default_rng(0)

    def step(self, state, action, rng=None):
        return Step(tuple(state) + (action, str(int(self.own.integers(100)))), 0.0, False)


class OpenTextEnv(_Toy):
    def legal_actions(self, state):
        return None


class HiddenStateEnv(_Toy):
    """Renders the move count only, as a bare map without the agent would: 'a' and 'b' read alike."""

    def render(self, state):
        return f"{len(state)} moves made"


TOY_TASK = Task("toy", {})


def test_good_toy_passes():
    check_env(_Toy(), TOY_TASK, steps=10)


@pytest.mark.parametrize(
    "env, match",
    [
        (MutatingEnv(), "restoring the state after diverging"),
        (IdKeyEnv(), "reset is not deterministic"),
        (DuplicateActionsEnv(), "distinct strings"),
        (ShufflingActionsEnv(), "changes between calls"),
        (CountingEnv(), "restoring the state after diverging"),
        (HiddenRngEnv(), "restoring the state after diverging"),
        (OpenTextEnv(), "open-text"),
    ],
    ids=["mutating-state", "id-key", "duplicate-actions", "shuffled-actions", "hidden-counter", "hidden-rng",
         "open-text"],
)
def test_broken_toys_fail(env, match):
    with pytest.raises(EnvCheckError, match=match):
        check_env(env, TOY_TASK, steps=10)


def test_a_render_that_hides_the_state_fails_naming_both_keys():
    """After one move the walk holds 'a' (the pick) and 'b' (the divergence), both rendered '1 moves made'."""
    with pytest.raises(EnvCheckError, match=r"^toy: states '(a|b)' and '(a|b)' render the same text") as info:
        check_env(HiddenStateEnv(), TOY_TASK, steps=10)
    message = str(info.value)
    assert "'a'" in message and "'b'" in message and "'1 moves made'" in message and "\n" not in message


# ----------------------------------------------------------------------------- cross-process keys
TOY_MODULE = textwrap.dedent(
    '''
    """Toys registered in a fresh interpreter by the sitecustomize next to this file."""
    from treeq.envs.base import Step


    class _Walk:
        name = "walk"
        deterministic = True

        def reset(self, task, rng=None):
            return "start"

        def legal_actions(self, state):
            return ["left", "right"] if state.count("/") < 6 else []

        def step(self, state, action):
            nxt = state + "/" + action
            return Step(nxt, 0.0, nxt.count("/") >= 6)

        def render(self, state):
            return state


    class StableKeyToy(_Walk):
        def state_key(self, state):
            return state


    class HashKeyToy(_Walk):
        def state_key(self, state):
            return f"h{hash(state) & 0xFFFFFFFF:08x}"  # str hashes change with PYTHONHASHSEED
    '''
)
SITECUSTOMIZE = textwrap.dedent(
    """
    import treeq.envs.registry as _registry
    from treeq_checker_toys import HashKeyToy, StableKeyToy

    _registry._REGISTRY["stable-toy"] = lambda **kw: StableKeyToy()
    _registry._REGISTRY["hash-toy"] = lambda **kw: HashKeyToy()
    """
)


@pytest.fixture
def toy_registry(tmp_path, monkeypatch):
    """The toys importable here, and registered in every child interpreter via sitecustomize."""
    (tmp_path / "treeq_checker_toys.py").write_text(TOY_MODULE)
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p))
    sys.modules.pop("treeq_checker_toys", None)
    # a hash seed for the child whose str hashes differ from this process's
    probe = "start/left"
    for seed in range(1, 20):
        out = subprocess.run([sys.executable, "-S", "-c", f"print(hash({probe!r}))"], capture_output=True, text=True,
                             env={**os.environ, "PYTHONHASHSEED": str(seed)}, check=True).stdout
        if int(out) != hash(probe):
            monkeypatch.setenv("PYTHONHASHSEED", str(seed))
            break
    else:  # pragma: no cover - 19 seeds all agreeing with ours is not going to happen
        pytest.skip("no hash seed differs from this process's")
    yield importlib.import_module("treeq_checker_toys")
    sys.modules.pop("treeq_checker_toys", None)


def test_cross_process_check_passes_a_stable_toy(toy_registry):
    """Control: the child really builds the registered toy and agrees on stable keys."""
    check_env(toy_registry.StableKeyToy(), TOY_TASK, steps=6, env_spec=("stable-toy", {}))


def test_hash_keys_pass_in_process_but_fail_across_processes(toy_registry):
    env = toy_registry.HashKeyToy()
    check_env(env, TOY_TASK, steps=6)  # one process: hash() is stable, nothing to see
    assert walk_keys(env, TOY_TASK, 6, 0) == walk_keys(env, TOY_TASK, 6, 0)
    with pytest.raises(EnvCheckError, match="state_key differs across processes"):
        check_env(env, TOY_TASK, steps=6, env_spec=("hash-toy", {}))


def test_cross_process_check_reports_a_failing_child():
    """A child that cannot build the env: the failure names the cross-process check."""
    env = make_env("game24")
    with pytest.raises(EnvCheckError, match="cross-process check failed"):
        check_env(env, env.load_tasks(None)[0], steps=3, env_spec=("no-such-env", {}))
