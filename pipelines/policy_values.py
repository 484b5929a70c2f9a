"""Exact values of a sampling policy: Q^pi, V^pi and A^pi by dynamic programming (``credit-bench``).

GRPO, GiGPO, LOOP and Monte Carlo estimate the advantage of the policy that sampled the
trajectories, A^pi(s, a) = Q^pi(s, a) - V^pi(s); the optimal advantage A* = Q* - V*
(``Env.exact_q``, ``Env.exact_value``) is what a user wants. Both are references.

The policy's values are computed over every state reachable from the start within the
horizon, with the horizon the rollouts use: a step taken with h steps left is valued
over those h steps (V^pi_0 = 0), so an estimator is not charged for a horizon mismatch.
The env's model comes from ``Env.transitions`` (deterministic envs: their step; gym
toy-text: ``unwrapped.P``); a terminated or truncated step has no value after it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..envs.base import Env
from ..errors import ConfigError

__all__ = ["PolicyFn", "PolicyValues"]

# policy(states) -> per state [(action, probability), ...] (probabilities summing to 1; empty: no action left)
PolicyFn = Callable[[Sequence[Any]], list[list[tuple[str, float]]]]


class PolicyValues:
    """Q^pi_h and V^pi_h at every state reachable from ``start`` within ``horizon`` steps.

    Args:
        env: An env whose ``transitions`` gives its model.
        start: The start state.
        policy: The sampling policy's action probabilities, batched.
        gamma: Discount.
        horizon: Most steps of a trajectory (the rollouts' ``max_steps``).
        max_states: Refuse larger reachable sets (memory grows as states x horizon).

    Raises:
        ConfigError: the env's model is unknown, or too many states are reachable.
    """

    def __init__(self, env: Env, start: Any, policy: PolicyFn, gamma: float, horizon: int,
                 max_states: int = 200_000) -> None:
        self.env, self.gamma, self.horizon = env, float(gamma), int(horizon)
        self.index: dict[str, int] = {}
        self.pi: list[list[tuple[str, float]]] = []
        # per state and action: [(probability, reward, continues, next index or -1)]
        self.outcomes: list[dict[str, list[tuple[float, float, float, int]]]] = []
        frontier = [start]
        self.index[env.state_key(start)] = 0
        self._states = [start]
        for _depth in range(self.horizon):
            if not frontier:
                break
            probs = policy(frontier)
            nxt = []
            for state, options in zip(frontier, probs):
                table = {action: self._outcomes(state, action, nxt) for action, _p in options}
                if len(self._states) > max_states:
                    raise ConfigError(f"more than {max_states} states of {env.name} are reachable within "
                                      f"{self.horizon} steps: too many for exact policy values")
                self.pi.append(list(options))
                self.outcomes.append(table)
            frontier = nxt
        # states first reached on the last step are never acted in within the horizon
        while len(self.pi) < len(self._states):
            self.pi.append([])
            self.outcomes.append({})
        self._solve()

    def _outcomes(self, state: Any, action: str, new: list | None) -> list[tuple[float, float, float, int]]:
        """(probability, reward, continues, next state's index or -1) of each outcome of ``action``.

        A next state not seen yet gets an index and goes to ``new``; with ``new`` None (after
        the solve) it is an error.
        """
        outs = self.env.transitions(state, action)
        if outs is None:
            raise ConfigError(f"{self.env.name} does not give its transition model (Env.transitions): "
                              f"exact policy values need it")
        row = []
        for p, step in outs:
            done = step.terminated or step.truncated
            j = -1
            if not done:
                key = self.env.state_key(step.state)
                j = self.index.get(key, -1)
                if j < 0:
                    if new is None:
                        raise KeyError("an action outside the policy's support leads out of the explored states")
                    j = self.index[key] = len(self._states)
                    self._states.append(step.state)
                    new.append(step.state)
            row.append((float(p), float(step.reward), 0.0 if done else 1.0, j))
        return row

    def _solve(self) -> None:
        """V[h, i] for h = 0..horizon by backward induction, vectorised over (state, action, outcome)."""
        n = len(self._states)
        pair_state, pair_pi, out_pair, out_p, out_r, out_cont, out_next = [], [], [], [], [], [], []
        for i, (options, table) in enumerate(zip(self.pi, self.outcomes)):
            for action, prob in options:
                k = len(pair_state)
                pair_state.append(i)
                pair_pi.append(prob)
                for p, r, cont, j in table[action]:
                    out_pair.append(k)
                    out_p.append(p)
                    out_r.append(r)
                    out_cont.append(cont)
                    out_next.append(max(j, 0))
        n_pairs = len(pair_state)
        o_pair, o_p = np.asarray(out_pair, dtype=np.int64), np.asarray(out_p)
        o_r, o_cont, o_next = np.asarray(out_r), np.asarray(out_cont), np.asarray(out_next, dtype=np.int64)
        p_state, p_pi = np.asarray(pair_state, dtype=np.int64), np.asarray(pair_pi)
        v = np.zeros((self.horizon + 1, n))
        for h in range(1, self.horizon + 1):
            target = o_p * (o_r + self.gamma * o_cont * v[h - 1][o_next])
            q = np.bincount(o_pair, weights=target, minlength=n_pairs)
            v[h] = np.bincount(p_state, weights=p_pi * q, minlength=n)
        self.v = v

    def _at(self, state: Any) -> int:
        i = self.index.get(self.env.state_key(state))
        if i is None:
            raise KeyError(f"state {self.env.state_key(state)!r} is not reachable from the start within the horizon")
        return i

    def value(self, state: Any, steps_left: int) -> float:
        """V^pi over the next ``steps_left`` steps (0 with none left)."""
        return float(self.v[min(max(steps_left, 0), self.horizon), self._at(state)])

    def q(self, state: Any, action: str, steps_left: int) -> float:
        """Q^pi(state, action) with ``steps_left`` steps left, this one included."""
        if steps_left <= 0:
            return 0.0
        i = self._at(state)
        outs = self.outcomes[i].get(action)
        if outs is None:  # an action the policy never takes here: its model, read now
            outs = self._outcomes(state, action, None)
        h = min(steps_left, self.horizon)
        return float(sum(p * (r + self.gamma * cont * (self.v[h - 1, j] if j >= 0 else 0.0))
                         for p, r, cont, j in outs))

    def advantage(self, state: Any, action: str, steps_left: int) -> float:
        """A^pi = Q^pi - V^pi with ``steps_left`` steps left."""
        return self.q(state, action, steps_left) - self.value(state, steps_left)
