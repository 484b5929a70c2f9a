"""An env checker in the spirit of Gymnasium's ``check_env``, for the functional protocol.

Checks, along a seeded random walk from a task's start state:

* ``reset`` is deterministic (same key and text twice);
* ``legal_actions`` are distinct strings in a fixed order;
* ``step`` is deterministic for deterministic envs, and for stochastic envs given the
  same generator state;
* restore after divergence: stepping action A, then another action B from the same
  state, then A again gives the same key, text, reward, flags and legal actions as
  the first time (the state object alone carries everything);
* ``render`` shows the state: two states reached with different keys render
  differently (the render is what a language model or PRM reads; a position it cannot
  see there, such as a bare state index, it cannot act on);
* ``state_key`` is stable across processes (a fresh interpreter computes the same
  keys for the same walk).

An open-text env (``legal_actions`` None, ``llm-steps``) is walked with a ``script`` of
candidate actions standing in for a policy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import TreeqError
from .base import Env, Task

__all__ = ["EnvCheckError", "check_env", "walk_keys"]


class EnvCheckError(TreeqError, AssertionError):
    """An env breaks the protocol (the message says which check and where)."""


def _snapshot(env: Env, step) -> tuple:
    return (env.state_key(step.state), env.render(step.state), float(step.reward), bool(step.terminated),
            bool(step.truncated), tuple(env.legal_actions(step.state) or ()))


def _step(env: Env, state: Any, action: str, seed: int | None):
    if env.deterministic:
        return env.step(state, action)
    return env.step(state, action, np.random.default_rng(seed))


def _actions(env: Env, state: Any, script: Sequence[str] | None) -> list[str]:
    """The legal actions, or for an open-text env (None) the ``script`` of candidate actions."""
    actions = env.legal_actions(state)
    if actions is not None:
        return list(actions)
    if script is None:
        raise EnvCheckError(f"{env.name}: open-text env: give check_env a script "
                            f"of candidate actions to walk with")
    return list(script)


def walk_keys(env: Env, task: Task, steps: int, seed: int, script: Sequence[str] | None = None) -> list[str]:
    """State keys along a seeded random walk (also run in a fresh process by the checker)."""
    rng = np.random.default_rng(seed)
    state = env.reset(task, np.random.default_rng(seed))
    keys = [env.state_key(state)]
    for i in range(steps):
        actions = _actions(env, state, script)
        if not actions:
            break
        step = _step(env, state, actions[int(rng.integers(len(actions)))], seed + i)
        keys.append(env.state_key(step.state))
        if step.terminated or step.truncated:
            break
        state = step.state
    return keys


def check_env(env: Env, task: Task, steps: int = 20, seed: int = 0, env_spec: tuple[str, dict] | None = None,
              script: Sequence[str] | None = None) -> None:
    """Run every check; raise :class:`EnvCheckError` on the first failure.

    Args:
        env: The env under test.
        task: A task of that env.
        steps: Length of the random walk.
        seed: Seed of the walk.
        env_spec: ``(registry name, kwargs)`` to rebuild the env in a fresh process for
            the cross-process key check; None skips that check.
        script: Open-text envs (``legal_actions`` None): the candidate actions the walk
            picks from at every step (a policy's stand-in); ignored elsewhere.
    """
    name = env.name
    a, b = env.reset(task, np.random.default_rng(seed)), env.reset(task, np.random.default_rng(seed))
    if (env.state_key(a), env.render(a)) != (env.state_key(b), env.render(b)):
        raise EnvCheckError(f"{name}: reset is not deterministic for task {task.task_id}")
    seen: dict[str, str] = {}  # rendered text -> the first key that rendered it

    def shown(state: Any) -> None:
        key, text = env.state_key(state), env.render(state)
        other = seen.setdefault(text, key)
        if other != key:
            raise EnvCheckError(f"{name}: states {other!r} and {key!r} render the same text; render must show "
                                f"the state (it is what a language model reads): {text[:80]!r}")

    shown(a)
    rng = np.random.default_rng(seed)
    state = a
    for i in range(steps):
        actions = _actions(env, state, script)
        if actions != _actions(env, state, script):
            raise EnvCheckError(f"{name}: legal_actions changes between calls at step {i}")
        if len(set(actions)) != len(actions) or not all(isinstance(x, str) for x in actions):
            raise EnvCheckError(f"{name}: legal_actions must be distinct strings at step {i}: {actions!r}")
        if not actions:
            break
        pick = actions[int(rng.integers(len(actions)))]
        step = _step(env, state, pick, seed + i)
        shown(step.state)
        first = _snapshot(env, step)
        other = [x for x in actions if x != pick]
        if other:
            shown(_step(env, state, other[int(rng.integers(len(other)))], seed + 1000 + i).state)  # diverge
        again = _step(env, state, pick, seed + i)
        if _snapshot(env, again) != first:
            raise EnvCheckError(
                f"{name}: restoring the state after diverging changed the result of {pick!r} at step {i} "
                f"(key {first[0]!r} vs {env.state_key(again.state)!r})"
            )
        if again.terminated or again.truncated:
            break
        state = again.state
    if env_spec is not None:
        here = walk_keys(env, task, steps, seed, script)
        code = (
            "import json, sys\n"
            "from treeq.envs.registry import make_env\n"
            "from treeq.envs.base import Task\n"
            "from treeq.envs.checker import walk_keys\n"
            "spec = json.loads(sys.argv[1])\n"
            "env = make_env(spec['name'], **spec['kwargs'])\n"
            "task = Task(spec['task_id'], spec['payload'])\n"
            "print(json.dumps(walk_keys(env, task, spec['steps'], spec['seed'], spec['script'])))\n"
        )
        arg = json.dumps({"name": env_spec[0], "kwargs": env_spec[1], "task_id": task.task_id,
                          "payload": task.payload, "steps": steps, "seed": seed,
                          "script": None if script is None else list(script)})
        proc = subprocess.run([sys.executable, "-c", code, arg], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise EnvCheckError(f"{name}: the cross-process check failed: {proc.stderr.strip().splitlines()[-1:]}")
        there = json.loads(proc.stdout.strip().splitlines()[-1])
        if there != here:
            raise EnvCheckError(f"{name}: state_key differs across processes: {here[:3]} vs {there[:3]}")
