"""Gymnasium toy-text adapter (FrozenLake, CliffWalking, Taxi, ...) and exact Q* by value iteration.

The adapter is reversible through the env's own state, not by replaying: a state
object holds ``unwrapped.s`` and the few other attributes the env's ``step`` reads
(``lastaction``, Taxi's ``fickle_step`` and ``taxi_orientation``). ``step`` writes
those back into one live gymnasium env, calls its real ``step`` and reads the new
state out. The registered ``TimeLimit`` is not part of the MDP (Pardo et al. 2018): it
stays out of the state and the key, ``step`` never truncates for it, and the search
bounds depth itself (``max_depth``, rollout length), so transpositions merge the same
position reached at different times and Q matches value iteration over ``unwrapped.P``.
Stochastic transitions are sampled with the generator the search passes in, so the
search controls the randomness (closed-loop: children keyed by the sampled outcome).
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ActionError, ConfigError, UnknownEnvError
from .base import Env, Step, Task
from .taskfiles import seed_tasks, shorten

__all__ = ["GymEnv", "GymState", "value_iteration", "ACTION_NAMES"]

# Action names as the envs' own docs give them, by env family.
ACTION_NAMES: dict[str, tuple[str, ...]] = {
    "FrozenLake": ("left", "down", "right", "up"),
    "CliffWalking": ("up", "right", "down", "left"),
    "Taxi": ("south", "north", "east", "west", "pickup", "dropoff"),
}
# Attributes besides ``s`` that a toy-text ``step`` reads or that render shows.
_EXTRA_ATTRS = ("lastaction", "fickle_step", "taxi_orientation")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# JSON types a default's type asks for (bool before int: a bool is an int in Python).
_OPTION_TYPES = ((bool, "true or false"), (int, "a whole number"), (float, "a number"), (str, "a string"))


def value_iteration(P: Mapping[int, Mapping[int, list]], gamma: float, tol: float = 1e-12, max_iter: int = 100_000) -> np.ndarray:
    """Exact Q*(s, a) of a tabular MDP given as gymnasium's ``unwrapped.P``.

    ``P[s][a]`` is a list of ``(prob, next_state, reward, terminated)``; a terminated
    transition has no value after it. Iterates the Bellman optimality operator until
    the largest change is below ``tol`` (a contraction for gamma < 1).

    Returns:
        Array of shape ``(n_states, n_actions)``.
    """
    n_s = len(P)
    n_a = max(len(P[s]) for s in P)
    probs, nexts, rewards, conts, rows = [], [], [], [], []
    for s in range(n_s):
        for a in range(n_a):
            for p, s2, r, term in P[s][a]:
                rows.append(s * n_a + a)
                probs.append(p)
                nexts.append(int(s2))
                rewards.append(r)
                conts.append(0.0 if term else 1.0)
    rows_a, probs_a, nexts_a = np.array(rows), np.array(probs, float), np.array(nexts)
    expected_r = np.bincount(rows_a, weights=probs_a * np.array(rewards, float), minlength=n_s * n_a)
    weight = probs_a * np.array(conts)
    q = np.zeros(n_s * n_a)
    for _ in range(max_iter):
        v = q.reshape(n_s, n_a).max(axis=1)
        new = expected_r + gamma * np.bincount(rows_a, weights=weight * v[nexts_a], minlength=n_s * n_a)
        delta = np.max(np.abs(new - q))
        q = new
        if delta < tol:
            break
    return q.reshape(n_s, n_a)


@dataclass(frozen=True, slots=True)
class GymState:
    """A toy-text state: the env's discrete state and its extra attributes (no clock)."""

    s: int
    extras: tuple[tuple[str, Any], ...] = ()


class GymEnv(Env):
    """A gymnasium toy-text env behind the functional protocol.

    Defaults it gives the search: gamma 0.95; transpositions on (toy-text state
    spaces are small and revisited constantly, and graph search with value backups
    converges to Q* where a tree does not); leaf value 0 instead of random rollouts
    for envs with step costs (CliffWalking, Taxi: random playouts there are long and
    dominated by penalties, while 0 is an optimistic start that drives exploration);
    exploration c = 2 with rollouts, 1 with the zero leaf value.

    Args:
        env_id: A registered gymnasium id such as ``FrozenLake-v1``.
        **kwargs: Passed to ``gymnasium.make`` (``is_slippery``, ``map_name`` ...).

    Raises:
        UnknownEnvError: gymnasium does not know ``env_id``.
        ConfigError: the env is not tabular (no ``unwrapped.P`` / ``unwrapped.s``) or
            rejects ``kwargs``.
    """

    def __init__(self, env_id: str, **kwargs: Any) -> None:
        import gymnasium

        try:
            spec = gymnasium.spec(env_id)
        except gymnasium.error.Error as exc:
            raise UnknownEnvError(f"unknown gym env {env_id!r}: {exc}") from None
        _check_options(env_id, spec.entry_point, kwargs)
        try:
            with warnings.catch_warnings():  # envs without an ansi mode warn; the checks below decide
                warnings.simplefilter("ignore")
                self._env = gymnasium.make(env_id, render_mode="ansi", **kwargs)
        except (TypeError, ValueError, KeyError, IndexError, gymnasium.error.Error) as exc:
            # a value of the right type the env still refuses (FrozenLake's map_name "9x9")
            what = " ".join(f"{type(exc).__name__}: {exc}".split())
            raise ConfigError(f"bad options for gym env {env_id!r}: {what[:200]}") from None
        u = self._env.unwrapped
        if not hasattr(u, "P") or not hasattr(u, "action_space") or not hasattr(u.action_space, "n"):
            raise ConfigError(f"gym env {env_id!r} is not a tabular toy-text env (needs unwrapped.P and a discrete action space)")
        self.env_id = env_id
        self.kwargs = dict(kwargs)
        self.name = f"gym:{env_id}"
        self._u = u
        family = self._family = type(u).__name__.removesuffix("Env")  # FrozenLake8x8-v1 is a FrozenLakeEnv too
        n_a = int(u.action_space.n)
        names = ACTION_NAMES.get(family, ())
        self.actions: tuple[str, ...] = names if len(names) == n_a else tuple(f"action-{i}" for i in range(n_a))
        self._index = {a: i for i, a in enumerate(self.actions)}
        self.max_steps: int | None = self._env.spec.max_episode_steps if self._env.spec else None
        fickle = self._fickle = bool(getattr(u, "fickle_passenger", False))
        self.deterministic = not fickle and all(
            len([t for t in u.P[s][a] if t[0] > 0]) == 1 for s in u.P for a in u.P[s]
        )
        rewards = [t[2] for s in u.P for a in u.P[s] for t in u.P[s][a]]
        self._best_reward = max(rewards)
        self.default_gamma = 0.95
        self.prefer_transpositions = True
        # Sparse 0/1 rewards with rollouts: value backups settle a branch fast, and a
        # wider search keeps a branch whose first playouts all failed from being
        # abandoned (measured: c = 1 locks onto a detour in deterministic FrozenLake for
        # some seeds, c = 2 does not). Step costs with a zero leaf value: the leaf value
        # is already optimistic and drives exploration; c = 1 (c = 2 left Taxi's goal
        # unfound in 2 of 3 seeds at 30k simulations).
        step_costs = min(rewards) < 0
        self.default_evaluator = "zero" if step_costs else "rollout"
        self.default_c = 1.0 if step_costs else 2.0
        self._env.reset(seed=0)  # some attributes (lastaction ...) exist only after a reset
        self._extras = tuple(a for a in _EXTRA_ATTRS if hasattr(u, a))
        self._q_star: dict[float, np.ndarray] = {}
        if step_costs or max(rewards) > 1:  # returns leave [0, 1]: values span those of Q* (milliseconds)
            q = self.q_star(self.default_gamma)
            self.value_range = (float(q.min()), float(q.max()))

    # ---------------------------------------------------------------- protocol
    def reset(self, task: Task, rng: np.random.Generator | None = None) -> GymState:
        self._env.reset(seed=int(task.payload["seed"]))
        return self._read()

    def legal_actions(self, state: GymState) -> list[str]:
        return list(self.actions)

    def step(self, state: GymState, action: str, rng: np.random.Generator | None = None) -> Step[GymState]:
        idx = self._index.get(action)
        if idx is None:
            raise ActionError(f"unknown action {action!r} for {self.name}; actions: {', '.join(self.actions)}")
        self._write(state)
        if rng is not None:
            self._u.np_random = rng  # the search's generator samples the outcome
        s2, reward, terminated, _, info = self._u.step(idx)
        success = bool(terminated and reward >= self._best_reward)
        # the probability of this next state (transitions into the same state added up):
        # graph search weighs sampled outcomes by it (Env.step)
        prob = 1.0 if self.deterministic else (
            None if self._fickle else float(sum(p for p, ns, _, _ in self._u.P[state.s][idx] if ns == s2)))
        return Step(self._read(), float(reward), bool(terminated), False,
                    {"action_index": idx, "success": success, "prob": prob})

    def state_key(self, state: GymState) -> str:
        return f"s={state.s}"

    def render(self, state: GymState) -> str:
        """The map with the agent (the taxi) drawn as ``@`` and a legend line naming where it
        is (Taxi: where the passenger and the destination are): the text a language model
        reads, so it must show the state that gym's colours showed. A function of the key
        (the last action gym prints is left out). Another tabular env: gym's own text, its
        colours stripped, and the state index."""
        u, s = self._u, state.s
        if self._family == "FrozenLake":
            return _render_lake(u, s)
        if self._family == "CliffWalking":
            return _render_cliff(u, s)
        if self._family == "Taxi":
            return _render_taxi(u, s)
        self._write(state)
        text = _ANSI.sub("", u.render() or "").rstrip()
        return f"{text}\nstate {s}" if text else f"state {s}"

    def load_tasks(self, path: str | Path | None = None) -> list[Task]:
        """Tasks are start seeds: None gives seeds 0-9; else ``"0:50"``, ``"3,7,9"``, a file
        of seeds (one per line), a directory of such ``.txt`` files or a glob of them.

        Raises:
            TaskFileError: see :func:`treeq.envs.taskfiles.seed_tasks`.
        """
        return seed_tasks(path, "gym tasks")

    # ---------------------------------------------------------------- exact values
    def q_star(self, gamma: float) -> np.ndarray:
        """Exact Q* over ``unwrapped.P`` (infinite horizon; the time limit is ignored).

        Computed once per gamma and returned read-only.
        """
        q = self._q_star.get(gamma)
        if q is None:
            q = self._q_star[gamma] = value_iteration(self._u.P, gamma)
            q.flags.writeable = False
        return q

    def exact_q(self, state: GymState, action: str, gamma: float) -> float:
        return float(self.q_star(gamma)[state.s, self._index[action]])

    def exact_value(self, state: GymState, gamma: float) -> float:
        """V*(state) = max over the actions of :meth:`q_star` (infinite horizon)."""
        return float(self.q_star(gamma)[state.s].max())

    def transitions(self, state: GymState, action: str) -> list[tuple[float, Step[GymState]]] | None:
        """The outcomes ``unwrapped.P`` lists for (state, action), same next states merged (None: Taxi's
        fickle passenger, whose changes of mind P does not hold)."""
        if self._fickle:
            return None
        idx = self._index.get(action)
        if idx is None:
            raise ActionError(f"unknown action {action!r} for {self.name}; actions: {', '.join(self.actions)}")
        merged: dict[int, list] = {}
        for p, s2, r, term in self._u.P[state.s][idx]:
            if p <= 0:
                continue
            seen = merged.setdefault(int(s2), [0.0, 0.0, bool(term)])
            seen[0] += float(p)
            seen[1] += float(p) * float(r)
        return [(p, Step(GymState(s2, state.extras), pr / p, term,
                         info={"success": bool(term and pr / p >= self._best_reward)}))
                for s2, (p, pr, term) in merged.items()]

    # ---------------------------------------------------------------- snapshot
    def _write(self, state: GymState) -> None:
        self._u.s = state.s
        for name, value in state.extras:
            setattr(self._u, name, value)

    def _read(self) -> GymState:
        return GymState(int(self._u.s), tuple((a, getattr(self._u, a)) for a in self._extras))


# What the agent stands on, by the letter its ``@`` hides.
_LAKE_CELLS = {"S": "the start", "F": "frozen ice", "H": "a hole", "G": "the goal"}
_CLIFF_CELLS = {"S": "the start", ".": "ground", "C": "the cliff", "G": "the goal"}


def _marked(rows: list[list[str]], r: int, c: int, legend: str) -> str:
    """``rows`` with the agent's cell (grid row ``r``, column ``c``) drawn as ``@``, then ``legend``."""
    rows[r][c] = "@"
    return "\n".join("".join(row) for row in rows) + "\n" + legend


def _render_grid(rows: list[list[str]], s: int, cells: dict[str, str], key: str) -> str:
    r, c = divmod(s, len(rows[0]))
    under = cells.get(rows[r][c], repr(rows[r][c]))
    return _marked(rows, r, c, f"@ = you, at row {r + 1}, column {c + 1} (on {under}); {key}")


def _render_lake(u: Any, s: int) -> str:
    rows = [[b.decode() for b in line] for line in u.desc.tolist()]
    return _render_grid(rows, s, _LAKE_CELLS, "S start, F frozen, H hole, G goal")


def _render_cliff(u: Any, s: int) -> str:
    n_rows, n_cols = u.shape
    start, goal = divmod(int(u.start_state_index), n_cols), (n_rows - 1, n_cols - 1)
    rows = [["C" if u._cliff[i, j] else "S" if (i, j) == start else "G" if (i, j) == goal else "."
             for j in range(n_cols)] for i in range(n_rows)]
    return _render_grid(rows, s, _CLIFF_CELLS, ". ground, S start, C cliff, G goal")


def _render_taxi(u: Any, s: int) -> str:
    rows = [[b.decode() for b in line] for line in u.desc.tolist()]
    names = [rows[1 + i][2 * j + 1] for i, j in u.locs]  # the letters on the map: R, G, Y, B
    taxi_r, taxi_c, passenger, dest = u.decode(s)
    here = (taxi_r, taxi_c)
    at = f" (at {names[u.locs.index(here)]})" if here in u.locs else ""
    where = "in the taxi" if passenger == len(u.locs) else f"at {names[passenger]}"
    return _marked(rows, 1 + taxi_r, 2 * taxi_c + 1,
                   f"@ = the taxi, at row {taxi_r + 1}, column {taxi_c + 1}{at}; "
                   f"passenger {where}; destination {names[dest]}")


def _check_options(env_id: str, entry_point: Any, kwargs: dict[str, Any]) -> None:
    """Refuse options the env's constructor does not take, or of another type than its default.

    gymnasium passes ``kwargs`` on to the env class unchecked, and a toy-text env keeps
    whatever it gets: ``is_slippery="no"`` is truthy, so FrozenLake would silently be
    slippery. Types are checked where the default is a bool, int, float or str.

    Raises:
        ConfigError: one line naming the option.
    """
    from gymnasium.envs.registration import load_env_creator

    try:
        creator = entry_point if callable(entry_point) else load_env_creator(entry_point)
        params = inspect.signature(creator).parameters
    except (ImportError, AttributeError, TypeError, ValueError):
        return  # nothing to check against; gymnasium.make reports what it must
    named = {n: p for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n != "render_mode"}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for name, value in kwargs.items():
        if name == "render_mode":
            raise ConfigError(f"gym env {env_id!r}: render_mode is set by treeq ('ansi'); drop it from --env-kwargs")
        param = named.get(name)
        if param is None:
            if takes_any:
                continue
            raise ConfigError(f"gym env {env_id!r} has no option {name!r}; its options: {', '.join(named) or 'none'}")
        for kind, words in _OPTION_TYPES:
            if isinstance(param.default, kind):
                accepted = (int, float) if kind is float else kind
                if isinstance(value, bool) != (kind is bool) or not isinstance(value, accepted):
                    raise ConfigError(
                        f"gym env {env_id!r}: option {name} must be {words} (default {param.default!r}), "
                        f"got {shorten(value)}"
                    )
                break
