"""The engine's built-in policy hooks: uniform priors, random rollouts, zero, bound.

Hooks are plain functions over a batch of states (DESIGN.md), so that an LLM policy
or a trained PRM can answer a whole wave of leaves in one forward pass:

* ``propose(states, k) -> [[(action, prior), ...], ...]``; a proposal may carry a third
  element, a model's AI-feedback score of the action (Agent Q), stored as ``nodes.feedback``
* ``evaluate(states) -> [value, ...]`` (the discounted return expected from each state)

The registry that builds hooks by name for jobs and the CLI is
``treeq.pipelines.policies``; this module holds only what the engine itself falls back
on and what the registry wraps.
"""

from __future__ import annotations

from itertools import chain
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..envs.base import Env
from ..errors import ConfigError

__all__ = ["ProposeFn", "EvaluateFn", "uniform_propose", "random_rollout", "zero_evaluate", "bound_evaluate",
           "uniform_stream"]

ProposeFn = Callable[[Sequence[Any], int], list[list[tuple]]]  # (action, prior[, feedback])
EvaluateFn = Callable[[Sequence[Any]], list[float]]


def uniform_propose(env: Env) -> ProposeFn:
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

    propose.valid_proposals = True  # type: ignore[attr-defined]  # distinct texts: the engine skips its checks
    propose.uniform_env = env  # type: ignore[attr-defined]  # the compiled loop asks env.legal_actions itself
    return propose


def uniform_stream(rng: np.random.Generator, block: int = 4096) -> Iterator[float]:
    """Uniform numbers in [0, 1) from ``rng``, drawn a block at a time.

    One numpy call per ``block`` numbers instead of one per action: a rollout step
    then costs a list read, and the stream is still a pure function of the seed. The
    iterator is built from C-level parts (a chain over blocks) rather than a generator:
    its ``__next__`` runs once per rollout step, where a generator's resumption costs
    several times more.
    """
    return chain.from_iterable(iter(lambda: rng.random(block).tolist(), None))


def random_rollout(env: Env, rng: np.random.Generator, gamma: float, max_steps: int = 200) -> EvaluateFn:
    """Value by one uniformly random playout per state (``Env.playout``), up to ``max_steps``.

    Returns the discounted sum of rewards collected after the state.
    """
    draw = uniform_stream(rng).__next__
    playout = env.playout

    def evaluate(states: Sequence[Any]) -> list[float]:
        return [playout(state, draw, gamma, max_steps, rng) for state in states]

    evaluate.rollout = (playout, draw, gamma, max_steps, rng)  # type: ignore[attr-defined]  # for the compiled loop
    return evaluate


def bound_evaluate(env: Env, gamma: float) -> EvaluateFn:
    """Value = the env's upper bound on V* (``value_bound``): optimism under uncertainty.

    With graph search in a deterministic env this is best-first search with an
    admissible heuristic: shallow unexplored states look better than deep ones, so
    the shortest solution is found first. Q of branches not yet explored stays
    optimistic (an upper bound), unlike rollout values (lower bounds).
    """
    if type(env).value_bound is Env.value_bound:
        raise ConfigError(f"env {env.name!r} has no value_bound: the 'bound' evaluator needs one")

    def evaluate(states: Sequence[Any]) -> list[float]:
        out = []
        for state in states:
            b = env.value_bound(state, gamma)
            if b is None:
                raise ConfigError(f"env {env.name!r} gives no value bound for a state: use another evaluator")
            out.append(float(b))
        return out

    return evaluate


def zero_evaluate(states: Sequence[Any]) -> list[float]:
    """Value 0 for every state: measures the cost of the tree alone."""
    return [0.0] * len(states)
