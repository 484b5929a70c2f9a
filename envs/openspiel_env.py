"""OpenSpiel single-player games (``catch``, ``cliff_walking``, ``deep_sea`` ...) behind the
functional protocol.

Reversible through ``pyspiel.State.clone()``: a state object wraps one pyspiel state
that nothing mutates after it is built; ``step`` clones it and applies the action to
the clone. Chance nodes are resolved inside the step that reaches them, so every state
the search sees is a decision (or terminal) node:

* ``reset`` builds the initial state and samples its opening chance nodes (catch's
  ball column, 2048's first tiles) with a generator seeded from the task's seed, so a
  task is one fixed start position, rooted after its opening chance nodes;
* chance nodes reached by ``step`` are sampled with the search's generator (closed
  loop: the engine keys each sampled outcome by ``state_key``). A step that met no
  chance node says so with ``info["deterministic"] = True``, so the engine steps that
  edge once and reuses it, as in a deterministic env.

The step reward is the player's reward of the transition (``rewards()[0]`` after the
action, plus that of any chance transitions that followed), so the rewards of a path
sum to ``returns()[0]``. ``info["success"]``: the game ended with the game's maximum
utility (catch: the ball caught; cliff_walking: the goal by a shortest path).

**State key.** ``str(state)``, OpenSpiel's ``ToString``: for catch the board (ball and
paddle), for cliff_walking the grid with the player, for deep_sea the grid with the
diver. It is the position only, the same whatever the path (transpositions merge) and
without a clock: cliff_walking's ``horizon`` is a time limit that OpenSpiel ends the game
on, and the env contract keeps time limits out of keys. The game still ends at its horizon
(OpenSpiel's rules are the game), so in graph mode a position first reached exactly at
the horizon would be shared as terminal with earlier visits (not with the default
horizon 100: a graph descent never revisits a node, so it is at most 32 steps long on
the 4x8 grid; only a horizon below the grid's size can do it). The env's default is a
tree (``prefer_transpositions`` False), where every result is exact; ``--transpositions``
is sound for cliff_walking at its default horizon, and there, a deterministic game, the
solver proves values (the optimal -9 within 2,000 simulations, where a tree with random
rollouts still prefers the cliff's -100 to rollouts that average -116). Games
whose ``ToString`` hides part of the state would need another key; catch and
cliff_walking are checked in tests/envs/test_openspiel.py.

Imperfect-information games (blackjack, solitaire) are searched on the full state: the
search, unlike a player, sees the dealer's hole card and the face-down cards.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ActionError, ConfigError, UnknownEnvError
from .base import Env, Step, Task
from .taskfiles import seed_tasks

__all__ = ["OpenSpielEnv", "OpenSpielState", "single_player_games"]

_INSTALL = "pip install open_spiel (or pip install 'treeq[openspiel]')"
# Games whose action text depends on the action id alone (checked against their
# ActionToString, and on random walks in tests/envs/test_openspiel.py): their texts are
# computed once per set of legal actions instead of once per state (about 1 us a node).
_ID_ONLY_TEXTS = frozenset({"catch", "cliff_walking", "deep_sea", "2048", "blackjack"})


# pyspiel's PlayerId values (current_player() of a chance node and of a terminal)
_CHANCE, _TERMINAL = -1, -4
# the step infos, one shared dict per (deterministic, success), indexed by the two bools:
# read-only like every Step
_INFO = [[{"success": ok, "deterministic": True} if fixed else {"success": ok} for ok in (False, True)]
         for fixed in (False, True)]


def _pyspiel() -> Any:
    try:
        import pyspiel
    except ImportError:
        raise ConfigError(f"openspiel:<game> envs need OpenSpiel, which is not installed: {_INSTALL}") from None
    return pyspiel


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 while pyspiel may raise: it prints every error to stderr
    as well, and the ConfigError that follows should be the one line a user sees."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _sample(outcomes: list[tuple[int, float]], u: float) -> int:
    """The chance outcome that the uniform number ``u`` picks by inverse CDF."""
    acc = 0.0
    for action, p in outcomes:
        acc += p
        if u < acc:
            return action
    return outcomes[-1][0]  # rounding: probabilities summing to 1 - 1e-16


def single_player_games() -> list[str]:
    """Names of the registered OpenSpiel games this env can play (one player, sequential,
    chance nodes explicit or none)."""
    pyspiel = _pyspiel()
    ok_chance = (pyspiel.GameType.ChanceMode.DETERMINISTIC, pyspiel.GameType.ChanceMode.EXPLICIT_STOCHASTIC)
    return sorted(g.short_name for g in pyspiel.registered_games()
                  if g.min_num_players == 1 and g.dynamics == pyspiel.GameType.Dynamics.SEQUENTIAL
                  and g.chance_mode in ok_chance)


class OpenSpielState:
    """One decision (or terminal) node of an OpenSpiel game.

    Attributes:
        s: The ``pyspiel.State``. Read it, clone it; never apply actions to it.
    """

    __slots__ = ("s", "_ids")

    def __init__(self, s: Any) -> None:
        self.s = s
        self._ids: dict[str, int] | None = None  # action text -> id, filled on first use

    def __repr__(self) -> str:
        return f"OpenSpielState({str(self.s)!r})"


def _check_params(game_type: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Refuse unknown parameter names and values of the wrong type before pyspiel sees them
    (pyspiel prints every error it raises to stderr as well)."""
    spec = game_type.parameter_specification
    out: dict[str, Any] = {}
    for name, value in params.items():
        if name not in spec:
            known = ", ".join(sorted(spec)) or "none"
            raise ConfigError(f"OpenSpiel game {game_type.short_name!r} has no parameter {name!r}; parameters: {known}")
        default = spec[name]
        kind = type(default)
        ok = (isinstance(value, bool) if kind is bool
              else isinstance(value, int) and not isinstance(value, bool) if kind is int
              else isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float
              else isinstance(value, str) if kind is str else True)
        if not ok:
            raise ConfigError(f"OpenSpiel parameter {name!r} of {game_type.short_name!r} must be of type "
                              f"{kind.__name__} (default {default!r}), got {value!r}")
        out[name] = float(value) if kind is float else value
    return out


class OpenSpielEnv(Env):
    """A single-player OpenSpiel game, ``--env openspiel:<game>``.

    Defaults it gives the search: gamma 1 (OpenSpiel returns are undiscounted), a tree
    (see the module notes on the key), random rollouts, and an exploration constant
    scaled to the game's utility range, ``c = (max - min) / 2``: the base default 1 for
    utilities in [-1, 1] (catch), 0.5 for deep_sea, 95 for cliff_walking's step costs.
    Measured on catch, 5 start positions, 2,000 simulations: Q of the most visited root
    action 0.63 to 0.93 with c = 1, -0.58 to 0.77 with sqrt(2), -0.52 to 0.40 with 2 (the
    game is deterministic after its opening, so exploitation pays); with c = 1 and
    10,000 simulations it is above 0.9 for all of 10 positions.

    Args:
        game: A registered OpenSpiel game name (``catch``, ``cliff_walking`` ...).
        **params: Game parameters, passed to ``pyspiel.load_game(game, params)``
            (``rows=8``, ``horizon=50``, ``size=10`` ...).

    Raises:
        ConfigError: OpenSpiel is not installed; the game has several players, is not
            sequential, samples its chance nodes itself, or rejects ``params``.
        UnknownEnvError: OpenSpiel has no game of that name.
    """

    default_gamma = 1.0
    prefer_transpositions = False
    default_evaluator = "rollout"

    def __init__(self, game: str, /, **params: Any) -> None:
        pyspiel = _pyspiel()
        types = {g.short_name: g for g in pyspiel.registered_games()}
        gtype = types.get(game)
        if gtype is None:
            raise UnknownEnvError(f"unknown OpenSpiel game {game!r}; single-player games: "
                                  f"{', '.join(single_player_games())}")
        if gtype.dynamics != pyspiel.GameType.Dynamics.SEQUENTIAL:
            raise ConfigError(f"OpenSpiel game {game!r} is not a sequential game ({gtype.dynamics.name}); "
                              f"openspiel:<game> plays single-player sequential games")
        if gtype.chance_mode == pyspiel.GameType.ChanceMode.SAMPLED_STOCHASTIC:
            raise ConfigError(f"OpenSpiel game {game!r} samples its chance events itself, out of reach of "
                              "the search's generator (trees would not be reproducible)")
        params = _check_params(gtype, params)
        try:
            with _quiet_stderr():
                self._game = pyspiel.load_game(game, params)
        except pyspiel.SpielError as exc:
            raise ConfigError(f"OpenSpiel rejected {game}{params or ''}: {_first_line(exc)}") from None
        if self._game.num_players() != 1:
            raise ConfigError(f"OpenSpiel game {game!r} has {self._game.num_players()} players; "
                              f"openspiel:<game> plays single-player games ({', '.join(single_player_games())})")
        self.game = game
        self.params = params
        self.name = f"openspiel:{game}"
        self._long_name = gtype.long_name
        self.deterministic = gtype.chance_mode == pyspiel.GameType.ChanceMode.DETERMINISTIC
        self._terminal_rewards = gtype.reward_model == pyspiel.GameType.RewardModel.TERMINAL
        self.max_utility = float(self._game.max_utility())
        self.min_utility = float(self._game.min_utility())
        span = self.max_utility - self.min_utility
        self.default_c = span / 2.0 if math.isfinite(span) and span > 0 else 1.0
        if math.isfinite(span) and span > 0 and (self.min_utility < 0 or self.max_utility > 1):
            self.value_range = (self.min_utility, self.max_utility)  # returns leave [0, 1]
        self._tables: dict[tuple[int, ...], dict[str, int]] | None = {} if game in _ID_ONLY_TEXTS else None
        probe = self._opening(0)  # refuse parameters that leave nothing to play
        if probe.is_terminal():
            raise ConfigError(f"OpenSpiel game {game}{params or ''} is over before its first move")
        try:
            with _quiet_stderr():
                probe.legal_actions()
        except pyspiel.SpielError as exc:  # e.g. crossword: action structs only
            raise ConfigError(f"OpenSpiel game {game!r} cannot list its legal actions: {_first_line(exc)}") from None

    # ---------------------------------------------------------------- protocol
    def _opening(self, seed: int) -> Any:
        s = self._game.new_initial_state()
        rng = np.random.default_rng(seed)
        while s.is_chance_node():
            outcomes = s.chance_outcomes()
            if not outcomes:
                raise ConfigError(f"OpenSpiel game {self.name}{self.params or ''} has a chance node without outcomes")
            s.apply_action(_sample(outcomes, rng.random()))
        return s

    def reset(self, task: Task, rng: np.random.Generator | None = None) -> OpenSpielState:
        """The start position of ``task``: the initial state after its opening chance
        nodes, sampled from the task's seed (``rng`` is not used: a task is one position)."""
        return OpenSpielState(self._opening(int(task.payload["seed"])))

    def _actions(self, state: OpenSpielState) -> dict[str, int]:
        ids = state._ids
        if ids is None:
            s = state.s
            legal = s.legal_actions()  # [] at a terminal; never at a chance node (none is handed out)
            table = self._tables
            if table is None:
                ids = self._texts(s, legal)
            else:  # action texts that depend on the id alone: one shared, read-only dict per action set
                key = tuple(legal)
                ids = table.get(key)
                if ids is None:
                    ids = table[key] = self._texts(s, legal)
            state._ids = ids
        return ids

    @staticmethod
    def _texts(s: Any, legal: list[int]) -> dict[str, int]:
        if not legal:
            return {}
        player = s.current_player()
        ids = {s.action_to_string(player, a): a for a in legal}
        if len(ids) != len(legal):  # two actions print alike: tell them apart by id
            ids = {f"{s.action_to_string(player, a)} #{a}": a for a in legal}
        return ids

    def legal_actions(self, state: OpenSpielState) -> list[str]:
        ids = state._ids
        return list(self._actions(state) if ids is None else ids)

    def step(self, state: OpenSpielState, action: str, rng: np.random.Generator | None = None) -> Step[OpenSpielState]:
        ids = state._ids
        if ids is None:
            ids = self._actions(state)
        a = ids.get(action)
        if a is None:
            legal = ", ".join(ids) or "none (the game is over)"
            raise ActionError(f"illegal action {action!r} for {self.name}; legal: {legal}")
        s = state.s.clone()
        s.apply_action(a)
        player = s.current_player()
        fixed = player != _CHANCE
        if fixed:  # a terminal-reward game pays nothing before its end: no rewards() call
            reward = 0.0 if self._terminal_rewards and player != _TERMINAL else s.rewards()[0]
        else:
            if rng is None:
                raise ConfigError(f"{self.name}: a step reached a chance node; pass the search's generator as rng")
            reward = s.rewards()[0]
            while player == _CHANCE:
                s.apply_action(_sample(s.chance_outcomes(), rng.random()))
                reward += s.rewards()[0]
                player = s.current_player()
        terminal = player == _TERMINAL
        success = terminal and s.returns()[0] >= self.max_utility - 1e-9
        return Step(OpenSpielState(s), reward, terminal, False, _INFO[fixed][success])  # reward: a float already

    def state_key(self, state: OpenSpielState) -> str:
        """``str(state)``: the position (see the module notes)."""
        return str(state.s)

    def render(self, state: OpenSpielState) -> str:
        """The game's own text of the position (``str(state)``, the board: it is the key, so
        different positions read differently), then the game's name and whose turn it is."""
        s = state.s
        turn = "game over" if s.is_terminal() else f"player {s.current_player()} to move"
        board = str(s).rstrip("\n")
        return f"{board}\n{self._long_name}: {turn}"

    def playout(self, state: OpenSpielState, draw: Callable[[], float], gamma: float, max_steps: int,
                rng: np.random.Generator) -> float:
        """One random playout in place on a single clone (chance outcomes drawn with ``draw``)."""
        s = state.s.clone()
        chance = not self.deterministic
        apply, legal = s.apply_action, s.legal_actions  # bound once: the loop is the hot path of rollouts
        # The player's actions; empty at a terminal or (stochastic games) a chance node,
        # so a chance node costs a check only where one can be.
        la = legal(0)
        if self._terminal_rewards:  # rewards on the last transition only: none to read on the way
            n = 0
            while True:
                if not la:
                    if chance and s.is_chance_node():
                        apply(_sample(s.chance_outcomes(), draw()))
                        la = legal(0)
                        continue
                    break  # a terminal: one player, so no actions means the game is over
                if n == max_steps:
                    return 0.0
                apply(la[int(draw() * len(la))])
                n += 1
                la = legal(0)
            if n == 0:
                return 0.0
            g = s.returns()[0]  # what the game paid before the playout: nothing, it was not over
            return g if gamma == 1.0 else g * gamma ** (n - 1)
        ret, discount, last, n = 0.0, 1.0, 1.0, 0
        while True:
            if not la:
                if chance and s.is_chance_node():  # its reward counts with the action before it
                    apply(_sample(s.chance_outcomes(), draw()))
                    ret += last * s.rewards()[0]
                    la = legal(0)
                    continue
                break
            if n == max_steps:
                break
            apply(la[int(draw() * len(la))])
            n += 1
            ret += discount * s.rewards()[0]
            last = discount
            discount *= gamma
            la = legal(0)
        return ret

    # ---------------------------------------------------------------- tasks
    def load_tasks(self, path: str | Path | None = None) -> list[Task]:
        """Tasks are seeds of the opening chance nodes, read by
        :func:`treeq.envs.taskfiles.seed_tasks`: None gives seeds 0-9; else ``"0:50"``,
        ``"3,7,9"``, a file of seeds (one per line), a directory or a glob of them."""
        return seed_tasks(path, f"{self.name} tasks", "one tree per start position")
