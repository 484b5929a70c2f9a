"""Sampling policies built on an env's exact Q*: ``softmax-qstar`` and ``epsilon-qstar``.

``credit-bench`` needs policies that sometimes win (under uniform actions FrozenLake
almost never does, and a group estimator is 0 in most groups) and whose action
probabilities are known exactly, so that Q^pi and V^pi can be computed by dynamic
programming. Both read ``Env.exact_q`` at the search's discount:

* ``softmax-qstar``: pi(a|s) proportional to ``exp((Q*(s,a) - max_b Q*(s,b)) / (T * spread))``,
  ``spread`` the range of Q* over the state's actions (1 where they are all equal): the
  temperature T is relative to what is at stake in the state, so T = 0.1 is nearly
  optimal and T = 10 nearly uniform in every state of every env;
* ``epsilon-qstar``: with probability epsilon a uniform action, else a uniform pick
  among the optimal ones (within 1e-9 of max Q*).

As search proposers (``--proposer softmax-qstar``) they are oracle priors: useful to
test a search, not to learn from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ...envs.base import Env
from ...errors import ConfigError
from ...mcts.hooks import Proposer

__all__ = ["DEFAULT_TEMPERATURE", "DEFAULT_EPSILON", "qstar_probs", "qstar_propose"]

DEFAULT_TEMPERATURE = 0.5
DEFAULT_EPSILON = 0.3
_TIE = 1e-9


def qstar_probs(env: Env, state: Any, gamma: float, kind: str, param: float) -> list[tuple[str, float]]:
    """(action, pi(action | state)) over the legal actions of ``state``; empty where none is left.

    Raises:
        ConfigError: the env has no exact Q* (its ``exact_q`` gives None).
    """
    actions = env.legal_actions(state) or []
    if not actions:
        return []
    q = []
    for a in actions:
        value = env.exact_q(state, a, gamma)
        if value is None:
            raise ConfigError(f"{kind}-qstar needs exact Q* values, and {env.name} has none (or not for this state)")
        q.append(value)
    qs = np.asarray(q, dtype=np.float64)
    best = qs.max()
    if kind == "softmax":
        spread = float(best - qs.min()) or 1.0
        w = np.exp((qs - best) / (param * spread))
    else:
        top = (qs >= best - _TIE).astype(np.float64)
        w = param / len(qs) + (1.0 - param) * top / top.sum()
    w = w / w.sum()
    return list(zip(actions, w.tolist()))


def qstar_propose(env: Env, gamma: float, kind: str, param: float) -> Proposer:
    """A proposer whose priors are :func:`qstar_probs` (``kind``: ``softmax`` or ``epsilon``)."""
    if kind == "softmax" and not (np.isfinite(param) and param > 0):
        raise ConfigError(f"the temperature of softmax-qstar must be > 0, got {param}")
    if kind == "epsilon" and not 0.0 <= param <= 1.0:
        raise ConfigError(f"the epsilon of epsilon-qstar must lie in [0, 1], got {param}")

    def propose(states: Sequence[Any], k: int = 0) -> list[list[tuple[str, float]]]:
        return [qstar_probs(env, s, gamma, kind, param) for s in states]

    return Proposer(propose, trusted=True)  # legal actions: distinct texts
