"""The functional, reversible environment protocol every search runs on.

Shape borrowed from Gymnasium's ``FuncEnv``: the env object holds no episode state;
a state goes in and a new state comes out, so the search can branch from any node
without a reset. Actions are strings everywhere above ``envs/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, Sequence, TypeVar, runtime_checkable

import numpy as np

__all__ = ["Env", "Step", "Task", "State", "parse_seed_spec"]

State = TypeVar("State")


@dataclass(frozen=True)
class Task:
    """One problem instance.

    Attributes:
        task_id: Unique id within a task set (used as the Parquet shard name).
        payload: Env-specific content (numbers and target, a file path, a seed...).
    """

    task_id: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Step(Generic[State]):
    """Result of ``Env.step``: the next state and what the transition gave."""

    state: State
    reward: float
    terminated: bool
    truncated: bool = False
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Env(Protocol[State]):
    """A reversible environment with immutable states.

    Attributes:
        name: Registry name (``game24``, ``countdown`` ...).
        deterministic: True when ``step`` has one outcome per (state, action); the
            MCTS-Solver is only sound then. Stochastic envs take the search's
            generator as a third argument of ``step`` and sample the outcome with it.

    Optional attributes the search reads when the user leaves a setting open:
    ``default_gamma``, ``default_c``, ``prefer_transpositions`` and
    ``default_evaluator`` (``rollout``, ``zero`` or ``bound``).
    """

    name: str
    deterministic: bool

    def reset(self, task: Task, rng: np.random.Generator) -> State:
        """Return the start state of ``task``."""

    def legal_actions(self, state: State) -> list[str] | None:
        """Every legal action as text, in a fixed order; None for open text."""

    def step(self, state: State, action: str) -> Step[State]:
        """Apply ``action``; raise :class:`treeq.errors.ActionError` if illegal.

        Stochastic envs: ``step(state, action, rng)`` with a ``numpy.random.Generator``.
        """

    def state_key(self, state: State) -> str:
        """Canonical key: equal env states give equal keys across trees and tasks."""

    def render(self, state: State) -> str:
        """The text an LLM or PRM reads for this state."""

    def value_bound(self, state: State, gamma: float) -> float | None:
        """An upper bound on the optimal return from ``state`` (None: unknown).

        The MCTS-Solver proves a node as soon as one child reaches this bound.
        """

    def load_tasks(self, path: str | None) -> Sequence[Task]:
        """Read a task file (None: the env's shipped default set)."""


def parse_seed_spec(spec: str) -> list[int] | None:
    """Seeds written as ``"A:B"`` (A to B-1) or ``"A,B,C"``; None if ``spec`` is neither."""
    if re.fullmatch(r"\d+:\d+", spec):
        lo, hi = map(int, spec.split(":"))
        return list(range(lo, hi))
    if re.fullmatch(r"\d+(,\d+)*", spec):
        return [int(x) for x in spec.split(",")]
    return None
