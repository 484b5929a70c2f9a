"""The functional, reversible environment contract every search runs on (env contract v2).

Shape borrowed from Gymnasium's ``FuncEnv``: the env object holds no episode state; a
state goes in and a new state comes out, so the search can branch from any node
without a reset, and the generator is passed to every call that may need randomness.
Actions are strings everywhere above ``envs/``.

Every env subclasses :class:`Env`, which declares the optional parts once with their
documented defaults; nothing above ``envs/`` reads them with ``getattr``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

__all__ = ["Env", "Step", "Task", "State", "parse_seed_spec", "is_success", "prompt_text"]

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


_NO_INFO: dict[str, Any] = {}


class Step(Generic[State]):
    """Result of ``Env.step``: the next state and what the transition gave.

    A plain slotted class rather than a frozen dataclass: the search builds one per
    transition, and a frozen dataclass's ``__init__`` costs several times more.
    Treat it as immutable.
    """

    __slots__ = ("state", "reward", "terminated", "truncated", "info")

    def __init__(self, state: State, reward: float, terminated: bool, truncated: bool = False,
                 info: dict[str, Any] | None = None) -> None:
        self.state = state
        self.reward = reward
        self.terminated = terminated
        self.truncated = truncated
        self.info = _NO_INFO if info is None else info

    def __repr__(self) -> str:
        return (f"Step(state={self.state!r}, reward={self.reward!r}, terminated={self.terminated!r}, "
                f"truncated={self.truncated!r}, info={self.info!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Step):
            return NotImplemented
        return (self.state, self.reward, self.terminated, self.truncated, self.info) == (
            other.state, other.reward, other.terminated, other.truncated, other.info)

    __hash__ = None  # type: ignore[assignment]


def is_success(step: Step) -> bool:
    """The success test of every search: a terminating step whose ``info["success"]`` is
    true, or, when the env does not say, whose reward is at least 1."""
    if not step.terminated:
        return False
    flag = step.info.get("success")
    return bool(step.reward >= 1.0) if flag is None else bool(flag)


def prompt_text(instructions: str, rendered: str, cue: str) -> str:
    """An env's instructions (if any), a rendered state, then ``cue`` on a line of its own."""
    head = f"{instructions}\n\n" if instructions else ""
    return f"{head}{rendered}\n{cue}"


class Env(Generic[State]):
    """Base class of every reversible environment with immutable states.

    Subclasses implement :meth:`reset`, :meth:`legal_actions`, :meth:`step`,
    :meth:`state_key`, :meth:`render` and :meth:`load_tasks`, and override the class
    attributes below where their defaults do not fit. Those defaults are the only
    place the search learns an env's preferences; ``treeq.mcts.resolve_defaults``
    applies them.

    Attributes:
        name: Registry name (``game24``, ``gym:FrozenLake-v1`` ...).
        deterministic: True when ``step`` has exactly one outcome per (state, action).
            The MCTS-Solver runs only then. Default False (the safe answer).
        default_gamma: Discount the search uses when the user gives none. Default 1.
        default_c: Exploration constant of UCT / PUCT when the user gives none. Default 1.
        prefer_transpositions: Search the state graph (one node per ``state_key``)
            unless the user says otherwise. Default False (a tree).
        default_evaluator: Leaf evaluator by registry name (``rollout``, ``zero``,
            ``bound``) when the user gives none. Default ``rollout``.
        instructions: What a language-model policy is told before the rendered state
            (:meth:`policy_prompt`). Default empty.
        step_on_expand: For a deterministic env whose steps are cheap: the search steps
            every proposed action as soon as it expands a node, so terminal children and
            value bounds are known at once and the MCTS-Solver proves a node without
            spending simulations on its children. Default False: an action is stepped
            the first time it is selected (expensive steps, many proposals).
        step_holds_state: A step's text names the whole state it leads to, so its value
            can be read from that text alone (Game of 24: ``(left: 1 24)``, the target
            being fixed). The default PRM then gives its separators a local attention
            window. Default False: the value may depend on the prompt and earlier steps.
        value_range: The (lo, hi) that step values ``coalesce(proven, q)`` span at the
            default gamma: PRM labels are ``(v - lo) / (hi - lo)`` clipped to [0, 1], and
            ``export-dpo``'s margins are fractions of ``hi - lo``. Default (0, 1), for
            returns in [0, 1]; None: the env cannot say, and the lowest and highest value
            of its trees (widened to hold [0, 1]) stand in.
        has_value_bound: :meth:`value_bound` gives bounds: the MCTS-Solver proves a node
            as soon as one child reaches it, and the ``bound`` evaluator is available.
            Default False.
        rewrites_steps: :meth:`rewrite_step` words a step in other ways: PRM training
            may vary its text. Default False.
        renames: :meth:`rename` maps a path's text onto an equivalent task's (a symmetry
            such as a permutation of the env's object names): PRM training varies it so the
            model learns what the labels do not depend on. Default False.
    """

    name: str = "env"
    deterministic: bool = False
    default_gamma: float = 1.0
    default_c: float = 1.0
    prefer_transpositions: bool = False
    default_evaluator: str = "rollout"
    step_on_expand: bool = False
    step_holds_state: bool = False
    value_range: tuple[float, float] | None = (0.0, 1.0)
    has_value_bound: bool = False
    rewrites_steps: bool = False
    renames: bool = False
    instructions: str = ""  # what a language-model policy is told before the state (policy_prompt)

    def reset(self, task: Task, rng: np.random.Generator | None = None) -> State:
        """Return the start state of ``task``."""
        raise NotImplementedError

    def legal_actions(self, state: State) -> list[str] | None:
        """Every legal action as text, in a fixed order; None for open text."""
        raise NotImplementedError

    def step(self, state: State, action: str, rng: np.random.Generator | None = None) -> Step[State]:
        """Apply ``action``; raise :class:`treeq.errors.ActionError` if illegal.

        A stochastic env samples the outcome with ``rng`` (the search's generator); a
        deterministic env ignores it. Time limits are not part of the state: an env
        reports ``truncated`` only for its own reasons, never for a step count.

        ``info`` keys the search reads: ``success`` (see :func:`is_success`);
        ``deterministic`` (True: this transition had one possible outcome, so the
        search steps the edge once and reuses it); ``prob`` (the probability of the
        sampled next state given state and action, transitions into the same state
        added up: graph search then weighs the outcomes it has seen by it instead of
        by their sample counts).
        """
        raise NotImplementedError

    def state_key(self, state: State) -> str:
        """Canonical key: equal env states give equal keys across trees and tasks."""
        raise NotImplementedError

    def render(self, state: State) -> str:
        """The text an LLM or PRM reads for this state."""
        raise NotImplementedError

    def observe(self, state: State) -> str | None:
        """What the env answers to the step that reached ``state``: the observation an agent
        reads after its action (ReAct, AgentPRM, verl-agent). A PRM path of an env that
        observes reads ``prompt, action_1, observation_1, action_2, ...`` (docs/prm.md).

        Default: :meth:`render`. None where a step's text already says what it did
        (Countdown and Game of 24: ``(left: ...)``; llm-steps: the step is the text), so
        those paths stay action-only.
        """
        return self.render(state)

    def policy_prompt(self, state: State) -> str:
        """The text a language-model policy reads before writing (or scoring) the next action.

        The one prompt builder of every env: its ``instructions`` (if any), the rendered
        state, then ``Next action:`` on a line of its own; the action text follows it
        directly. The policy passes it through the model's chat template where the
        tokenizer has one.
        """
        return prompt_text(self.instructions, self.render(state), "Next action:")

    def answer_text(self, state: State) -> str | None:
        """The task's final answer as text, for estimators that ask how likely a language model
        finds it after the steps so far (``credit-bench``'s ``mig``). None: the env has no answer
        text (the default); Countdown and Game of 24 answer with their target."""
        return None

    def answer_prompt(self, state: State) -> str:
        """:meth:`policy_prompt` with ``Answer:`` where it says ``Next action:``: the text the
        answer (:meth:`answer_text`) follows."""
        return prompt_text(self.instructions, self.render(state), "Answer:")

    def value_bound(self, state: State, gamma: float) -> float | None:
        """An upper bound on the optimal return from ``state`` (None: unknown, the default).

        The MCTS-Solver proves a node as soon as one child reaches this bound, and the
        ``bound`` evaluator uses it as an optimistic leaf value. An env that gives bounds
        declares ``has_value_bound = True``.
        """
        return None

    def exact_value(self, state: State, gamma: float) -> float | None:
        """The exact optimal value V*(state) from an exact solver (None: the env has none, the default).

        Metrics and benchmarks score labels against it; the search never calls it.
        """
        return None

    def exact_q(self, state: State, action: str, gamma: float) -> float | None:
        """The exact optimal action value Q*(state, action) (None: the env has no exact solver).

        The default, for deterministic envs with :meth:`exact_value`: the step's reward plus
        ``gamma`` times V* of the state it reaches (0 at a terminal state). A stochastic env
        with exact values overrides it (gym toy-text: value iteration over its transition table).
        """
        if not self.deterministic:
            return None
        step = self.step(state, action)
        after = 0.0 if step.terminated else self.exact_value(step.state, gamma)
        return None if after is None else step.reward + gamma * after

    def transitions(self, state: State, action: str) -> list[tuple[float, Step[State]]] | None:
        """Every outcome of ``action`` in ``state`` with its probability: the env's model.

        Exact policy values (Q^pi, V^pi in ``credit-bench``) are computed from it by dynamic
        programming. The default, for deterministic envs: the one step, probability 1. A
        stochastic env with a known model overrides it (gym toy-text: ``unwrapped.P``);
        None: the model is unknown (the default for stochastic envs).
        """
        if not self.deterministic:
            return None
        return [(1.0, self.step(state, action))]

    def subtask_progress(self, state: State) -> int | None:
        """How many of the task's subgoals ``state`` has achieved: a step ends a subtask where
        this count rises (``credit-bench``'s hierarchical ``hiper`` estimator reads it).

        None (the default): the env declares no subtasks. Blocksworld counts the goal facts
        that hold; TextWorld its score.
        """
        return None

    def rewrite_step(self, text: str, rng: np.random.Generator) -> str:
        """The same step as another writer might word it (operands reordered, ...); the default keeps ``text``.

        Used to vary PRM training text: the rewrite must describe the same transition, so
        that the step's label still holds. An env that rewrites declares ``rewrites_steps = True``.
        """
        return text

    def rename(self, texts: Sequence[str], rng: np.random.Generator) -> list[str]:
        """The texts of one path (prompt and steps) under one symmetry of the env drawn from
        ``rng``, applied to them all (Blocksworld: the blocks' colours permuted); the default
        keeps them. The renamed path must be the same path of an equivalent task, so that
        every label still holds. An env that renames declares ``renames = True``.
        """
        return list(texts)

    def task_from_text(self, text: str) -> Task | None:
        """A task written inline (``"4 6 8 8"`` for Game of 24); None: this env reads tasks from files only.

        Raises:
            TaskFileError: the text is meant as a task of this env but is malformed.
        """
        return None

    def load_tasks(self, path: str | None) -> Sequence[Task]:
        """Read a task file, directory or glob (None: the env's shipped default set)."""
        raise NotImplementedError

    def playout(self, state: State, draw: Callable[[], float], gamma: float, max_steps: int,
                rng: np.random.Generator) -> float:
        """Discounted return of one uniformly random playout from ``state``.

        ``draw()`` returns the next uniform number in [0, 1) of the search's stream and
        picks each action; ``rng`` samples stochastic steps. Envs with a mutable
        simulator override this to play in place after one copy (OpenSpiel); the
        result must be the same in distribution.
        """
        ret, discount = 0.0, 1.0
        for _ in range(max_steps):
            actions = self.legal_actions(state)
            if not actions:
                break
            step = self.step(state, actions[int(draw() * len(actions))], rng)
            ret += discount * step.reward
            discount *= gamma
            if step.terminated or step.truncated:
                break
            state = step.state
        return ret


def parse_seed_spec(spec: str) -> list[int] | None:
    """Seeds written as ``"A:B"`` (A to B-1) or ``"A,B,C"``; None if ``spec`` is neither."""
    if re.fullmatch(r"\d+:\d+", spec):
        lo, hi = map(int, spec.split(":"))
        return list(range(lo, hi))
    if re.fullmatch(r"\d+(,\d+)*", spec):
        return [int(x) for x in spec.split(",")]
    return None
