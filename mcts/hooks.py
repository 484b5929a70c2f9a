"""Default policy hooks: uniform priors over legal actions and random rollouts.

Hooks are plain functions over a batch of states (DESIGN.md), so that an LLM policy
or a trained PRM can answer a whole wave of leaves in one forward pass:

* ``propose(states, k) -> [[(action, prior), ...], ...]``
* ``evaluate(states) -> [value, ...]`` (the value of each state, discounted return
  expected from it)
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..envs.base import Env
from ..errors import ConfigError

__all__ = [
    "ProposeFn", "EvaluateFn", "EVALUATORS", "uniform_propose", "random_rollout", "zero_evaluate", "bound_evaluate",
    "make_evaluator",
]

ProposeFn = Callable[[Sequence[Any], int], list[list[tuple[str, float]]]]
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

    return propose


def random_rollout(env: Env, rng: np.random.Generator, gamma: float, max_steps: int = 200) -> EvaluateFn:
    """Value by one uniformly random playout to the end (or ``max_steps``).

    Returns the discounted sum of rewards collected after the state.
    """

    stochastic = not getattr(env, "deterministic", True)

    def evaluate(states: Sequence[Any]) -> list[float]:
        values = []
        for state in states:
            ret, discount = 0.0, 1.0
            for _ in range(max_steps):
                actions = env.legal_actions(state)
                if not actions:
                    break
                action = actions[int(rng.random() * len(actions))]
                step = env.step(state, action, rng) if stochastic else env.step(state, action)
                ret += discount * step.reward
                discount *= gamma
                state = step.state
                if step.terminated or step.truncated:
                    break
            values.append(ret)
        return values

    return evaluate


def bound_evaluate(env: Env, gamma: float) -> EvaluateFn:
    """Value = the env's upper bound on V* (``value_bound``): optimism under uncertainty.

    With graph search in a deterministic env this is best-first search with an
    admissible heuristic: shallow unexplored states look better than deep ones, so
    the shortest solution is found first. Q of branches not yet explored stays
    optimistic (an upper bound), unlike rollout values (lower bounds).
    """
    bound_fn = getattr(env, "value_bound", None)
    if bound_fn is None:
        raise ConfigError(f"env {env.name!r} has no value_bound: the 'bound' evaluator needs one")

    def evaluate(states: Sequence[Any]) -> list[float]:
        out = []
        for state in states:
            b = bound_fn(state, gamma)
            if b is None:
                raise ConfigError(f"env {env.name!r} gives no value bound for a state: use another evaluator")
            out.append(float(b))
        return out

    return evaluate


def zero_evaluate(states: Sequence[Any]) -> list[float]:
    """Value 0 for every state: measures the cost of the tree alone."""
    return [0.0] * len(states)


EVALUATORS = ("rollout", "zero", "bound")


def make_evaluator(name: str, env: Env, rng: np.random.Generator, gamma: float, rollout_steps: int = 200) -> EvaluateFn:
    """The built-in evaluator called ``name`` (one of :data:`EVALUATORS`)."""
    if name == "rollout":
        return random_rollout(env, rng, gamma, rollout_steps)
    if name == "zero":
        return zero_evaluate
    if name == "bound":
        return bound_evaluate(env, gamma)
    raise ConfigError(f"evaluator must be one of {', '.join(EVALUATORS)}, got {name!r}")
