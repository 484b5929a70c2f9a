"""Replay actions written as text in an env: check a plan, an LLM's steps, a walkthrough."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..envs.base import Env, Step
from ..envs.registry import make_env
from ..errors import ActionError, ConfigError, TaskFileError

__all__ = ["ReplayStep", "replay", "step_through"]


@dataclass(frozen=True)
class ReplayStep:
    """One replayed action and what the env answered."""

    action: str
    reward: float
    terminated: bool
    truncated: bool
    state_key: str
    observation: str


def replay(env_name: str, actions: list[str], tasks: str | None = None, task_id: str | None = None,
           env_kwargs: dict | None = None, seed: int = 0) -> tuple[str, str, list[ReplayStep]]:
    """Reset the task and apply ``actions`` in order.

    Returns:
        ``(task_id, start observation, steps)``.

    Raises:
        TaskFileError: the task id is not in the task set.
        ActionError: an action does not parse or is not legal (the message names it and its position).
        ConfigError: the seed is negative.
    """
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    env = make_env(env_name, **(env_kwargs or {}))
    task_list = env.load_tasks(tasks)
    if task_id is None:
        task = task_list[0]
    else:
        matches = [t for t in task_list if t.task_id == task_id]
        if not matches:
            raise TaskFileError(f"no task {task_id!r} in {tasks or 'the default task set'} ({len(task_list)} tasks)")
        task = matches[0]
    rng = np.random.default_rng(seed)
    state = env.reset(task, rng)
    start = env.render(state)
    out: list[ReplayStep] = []
    for action, step in step_through(env, state, actions, rng):
        state = step.state
        out.append(ReplayStep(action, float(step.reward), bool(step.terminated), bool(step.truncated),
                              env.state_key(state), env.render(state)))
    return task.task_id, start, out


def step_through(env: Env, state: Any, actions: Sequence[str], rng: np.random.Generator
                 ) -> Iterator[tuple[str, Step]]:
    """Step ``actions`` in order from ``state``: each action with the env's answer to it.

    Raises:
        ActionError: an action does not parse, is not legal, or follows the episode's end
            (the message names its position).
    """
    ended = False
    for i, action in enumerate(actions, start=1):
        if ended:
            raise ActionError(f"action {i} ({action!r}): the episode already ended after action {i - 1}")
        try:
            step = env.step(state, action, rng)
        except ActionError as exc:
            raise ActionError(f"action {i}: {exc}") from None
        yield action, step
        ended, state = step.terminated or step.truncated, step.state
