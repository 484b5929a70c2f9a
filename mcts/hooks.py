"""The engine's hooks: their declared form, and the built-in ones (uniform priors,
random rollouts, zero, bound).

A hook is a function over a batch of states, so that an LLM policy or a trained PRM
can answer a whole wave of leaves in one forward pass:

* ``propose(states, k) -> [[(action, prior), ...], ...]``; a proposal may carry a third
  element, a model's AI-feedback score of the action (Agent Q), stored as ``nodes.feedback``
* ``evaluate(states) -> [value, ...]`` (the discounted return expected from each state)

What the engine may assume of a hook is declared, never discovered: a :class:`Proposer`
or :class:`Evaluator` wraps the function with its contract (trusted proposals, what the
compiled loop may call directly). A plain function given to the engine is wrapped as an
untrusted hook that the compiled loop calls like any other.

The registry that builds hooks by name for jobs and the CLI is
``treeq.pipelines.policies``; this module holds only what the engine itself falls back
on and what the registry wraps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from ..envs.base import Env
from ..errors import ConfigError

__all__ = ["ProposeFn", "EvaluateFn", "Proposer", "Evaluator", "uniform_propose", "random_rollout",
           "zero_evaluate", "bound_evaluate", "uniform_stream"]

ProposeFn = Callable[[Sequence[Any], int], list[list[tuple]]]  # (action, prior[, feedback])
EvaluateFn = Callable[[Sequence[Any]], list[float]]


@dataclass(frozen=True)
class Proposer:
    """A propose hook and what the engine may assume of it.

    Attributes:
        fn: ``propose(states, k) -> [[(action, prior[, feedback]), ...], ...]``.
        trusted: Its proposals are distinct text actions: the engine skips its checks
            (type, duplicates merged). False for a hook from outside.
        legal_of: Set when the proposals are exactly ``legal_of.legal_actions(state)``
            with uniform priors (:func:`uniform_propose`): the compiled loop then asks
            that env itself, with the same results. None: the loop calls ``fn``.
    """

    fn: ProposeFn
    trusted: bool = False
    legal_of: Env | None = None

    def __call__(self, states: Sequence[Any], k: int = 0) -> list[list[tuple]]:
        return self.fn(states, k)

    @staticmethod
    def of(hook: Proposer | ProposeFn | None) -> Proposer | None:
        """``hook`` as a declared proposer: a plain function becomes an untrusted one."""
        return hook if hook is None or isinstance(hook, Proposer) else Proposer(hook)


@dataclass(frozen=True)
class Evaluator:
    """An evaluate hook and what the engine may assume of it.

    Attributes:
        fn: ``evaluate(states) -> [value, ...]``.
        rollout: Set when the value is one random playout (:func:`random_rollout`):
            ``(env.playout, draw, gamma, max_steps, rng)``, which the compiled loop then
            calls itself, with the same results. None: the loop calls ``fn``.
        reads_path: The value depends on how the state was reached (a PRM scores the
            path's steps): the engine calls ``fn(states, paths)``, ``paths[i]`` being
            ``(root_state, actions, rewards, path_states)``, the actions from the root on
            the descent that reached ``states[i]``, their rewards and the states they reached. The search then runs in Python (the compiled loop
            passes states only).
    """

    fn: EvaluateFn
    rollout: tuple | None = None
    reads_path: bool = False

    def __call__(self, states: Sequence[Any], paths: Sequence[tuple] | None = None) -> list[float]:
        return self.fn(states, paths) if self.reads_path else self.fn(states)

    @staticmethod
    def of(hook: Evaluator | EvaluateFn | None) -> Evaluator | None:
        """``hook`` as a declared evaluator: a plain function becomes one the loop calls as it is."""
        return hook if hook is None or isinstance(hook, Evaluator) else Evaluator(hook)


def uniform_propose(env: Env) -> Proposer:
    """Every legal action with prior ``1 / #actions``; ``k`` is ignored (all are kept)."""

    def propose(states: Sequence[Any], k: int = 0) -> list[list[tuple[str, float]]]:
        out = []
        for state in states:
            actions = env.legal_actions(state)
            if actions is None:
                raise ConfigError(f"env {env.name!r} has open-text actions: pass a policy that proposes them")
            p = 1.0 / len(actions) if actions else 0.0
            out.append([(a, p) for a in actions])
        return out

    return Proposer(propose, trusted=True, legal_of=env)  # legal actions are distinct texts


def uniform_stream(rng: np.random.Generator, block: int = 4096) -> Iterator[float]:
    """Uniform numbers in [0, 1) from ``rng``, drawn a block at a time.

    One numpy call per ``block`` numbers instead of one per action: a rollout step
    then costs a list read, and the stream is still a pure function of the seed. The
    iterator is built from C-level parts (a chain over blocks) rather than a generator:
    its ``__next__`` runs once per rollout step, where a generator's resumption costs
    several times more.
    """
    return chain.from_iterable(iter(lambda: rng.random(block).tolist(), None))


def random_rollout(env: Env, rng: np.random.Generator, gamma: float, max_steps: int = 200) -> Evaluator:
    """Value by one uniformly random playout per state (``Env.playout``), up to ``max_steps``.

    Returns the discounted sum of rewards collected after the state.
    """
    draw = uniform_stream(rng).__next__
    playout = env.playout

    def evaluate(states: Sequence[Any]) -> list[float]:
        return [playout(state, draw, gamma, max_steps, rng) for state in states]

    return Evaluator(evaluate, rollout=(playout, draw, gamma, max_steps, rng))


def bound_evaluate(env: Env, gamma: float) -> Evaluator:
    """Value = the env's upper bound on V* (``value_bound``): optimism under uncertainty.

    With graph search in a deterministic env this is best-first search with an
    admissible heuristic: shallow unexplored states look better than deep ones, so
    the shortest solution is found first. Q of branches not yet explored stays
    optimistic (an upper bound), unlike rollout values (lower bounds).
    """
    if not env.has_value_bound:
        raise ConfigError(f"env {env.name!r} has no value_bound: the 'bound' evaluator needs one")

    def evaluate(states: Sequence[Any]) -> list[float]:
        out = []
        for state in states:
            b = env.value_bound(state, gamma)
            if b is None:
                raise ConfigError(f"env {env.name!r} gives no value bound for a state: use another evaluator")
            out.append(float(b))
        return out

    return Evaluator(evaluate)


def _zero(states: Sequence[Any]) -> list[float]:
    return [0.0] * len(states)


zero_evaluate = Evaluator(_zero)
"""Value 0 for every state: measures the cost of the tree alone."""
