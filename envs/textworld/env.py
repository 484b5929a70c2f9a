"""TextWorld games as a functional, reversible env (Jericho snapshots inside the states).

The env is thin: finding and checking games is :mod:`.files`, the interpreter and its
snapshots are :mod:`.runtime` (read its docstring for how a state is restored and
advanced). The package re-exports ``find_games`` and ``read_walkthrough``.

textworld and jericho are imported only when a game is first played, so importing this
module (and ``python cli.py --help``) stays fast.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ActionError, ConfigError, EnvFailure, TaskFileError
from ..base import Env, Step, Task
from .exact import MAX_EXACT_STATES, ExactSolver
from .files import game_task, load_games, read_walkthrough
from .runtime import GameRuntime, TextWorldState

__all__ = ["TextWorldEnv"]


# ----------------------------------------------------------------------------- env
class TextWorldEnv(Env):
    """TextWorld games (``tw-make`` output) behind the functional env protocol.

    Rewards: the change in the game's score divided by its max score, and on a win
    whatever makes the episode's rewards sum to exactly 1.0. The episode terminates
    when the game is won or lost; a win carries ``info={"success": True}``.

    Not thread-safe: each env object drives one interpreter per game file.

    Args:
        max_games: Interpreters kept alive at once (least recently used first out);
            states of an evicted game still step, its interpreter is rebuilt.
        room_and_inventory: Keep the room description and the inventory in every
            state (and in ``render``). The game then looks and takes inventory inside
            every turn: about 3.5 ms per step instead of 1.8 ms.
        exact_states: The most reachable states (terminal ones included) a game may
            have for :meth:`exact_value` to enumerate it; larger games get None.
    """

    name = "textworld"
    has_value_bound = True
    deterministic = True
    default_gamma = 0.95
    # admissible commands loop back (go east / go west, look): share statistics by state
    prefer_transpositions = True
    # quest rewards are sparse and each step costs milliseconds: instead of random
    # playouts, leaves take the optimistic value bound, so graph search runs best-first
    # over distinct world states and finds the shortest win (Q of unexplored branches
    # stays an upper bound until they are explored)
    default_evaluator = "bound"
    # Q differences between siblings are powers of gamma apart: explore on that scale
    default_c = 0.1

    def __init__(self, max_games: int = 8, room_and_inventory: bool = True,
                 exact_states: int = MAX_EXACT_STATES) -> None:
        for name, value in (("max_games", max_games), ("exact_states", exact_states)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        self.max_games = max_games
        self.room_and_inventory = bool(room_and_inventory)
        self.exact_states = exact_states
        self._runtimes: OrderedDict[str, GameRuntime] = OrderedDict()
        self._exact = ExactSolver(exact_states)

    # -- runtimes
    def _runtime(self, game: str, task_id: str) -> GameRuntime:
        rt = self._runtimes.get(game)
        if rt is None:
            path = Path(game)
            if not path.is_file():
                raise TaskFileError(f"TextWorld game not found: {path}")
            try:
                rt = GameRuntime(task_id, path, self.room_and_inventory)
            except TaskFileError:
                raise
            except ImportError as exc:
                raise ConfigError(
                    f"the textworld env needs the textworld and jericho packages ({exc}); pip install textworld"
                ) from None
            except Exception as exc:  # a broken story file, an old TextWorld json ...
                raise EnvFailure(f"{path}: cannot start the game ({type(exc).__name__}: {exc})") from exc
            self._runtimes[game] = rt
            while len(self._runtimes) > self.max_games:
                self._runtimes.popitem(last=False)
        self._runtimes.move_to_end(game)
        return rt

    def _runtime_of(self, state: TextWorldState) -> GameRuntime:
        rt = self._runtime(state.game, state.game_id)
        if rt.z8_digest != state._z8_digest:
            raise EnvFailure(f"{state.game} changed on disk since this state was made; reset the task")
        return rt

    def close(self) -> None:
        """Release every interpreter (they come back on the next use)."""
        self._runtimes.clear()

    # -- protocol
    def reset(self, task: Task, rng: np.random.Generator | None = None) -> TextWorldState:
        """The start state of ``task`` (``rng`` is unused: the games are deterministic)."""
        return self._runtime(self._game_path(task), task.task_id).start

    def legal_actions(self, state: TextWorldState) -> list[str]:
        return [] if state.done else list(state.admissible)

    def step(self, state: TextWorldState, action: str, rng: np.random.Generator | None = None) -> Step[TextWorldState]:
        command = self.canonical_action(state, action)
        nxt, reward = self._runtime_of(state).step(state, command)
        info: dict[str, Any] = {"success": True} if nxt.won else {"success": False} if nxt.lost else {}
        return Step(nxt, reward, nxt.done, False, info)

    def state_key(self, state: TextWorldState) -> str:
        """Game (by content) + score + TextWorld's logic facts, hashed.

        States reached by different paths with the same world (rooms, objects, doors,
        inventory) and score share a key; see ``GameRuntime._key`` for why these parts.
        """
        return state.key

    def subtask_progress(self, state: TextWorldState) -> int:
        """The game's score: each point is a quest step done."""
        return int(state.score)

    def render(self, state: TextWorldState) -> str:
        """Goal, last command and answer, room description and inventory.

        The goal heads every state, as the target does in Countdown, so a policy or PRM
        reading one state knows what it is for; at the start the intro's banner and its
        copy of the goal are cut.
        """
        obs = state.observation
        if not state.steps and state.objective and state.objective in obs:
            obs = obs.split(state.objective, 1)[1].strip()
        parts = [f"Goal: {state.objective}" if state.objective else ""]
        parts.append(f"> {state.steps[-1]}\n{obs}" if state.steps else obs)
        if state.description and state.description not in obs:
            parts.append(state.description)
        if state.inventory:
            parts.append(state.inventory)
        return "\n\n".join(p for p in parts if p)

    def observe(self, state: TextWorldState) -> str:
        """The game's answer to the command, then the room and the inventory where the answer
        leaves them out (:meth:`render` without the goal and the command, which the prompt
        and the step hold)."""
        parts = [state.observation]
        if state.description and state.description not in state.observation:
            parts.append(state.description)
        if state.inventory:
            parts.append(state.inventory)
        return "\n\n".join(p for p in parts if p)

    def value_bound(self, state: TextWorldState, gamma: float) -> float:
        """``1 - rewards so far``: TextWorld scores only grow, and a win closes at 1.0."""
        return 0.0 if state.done else max(0.0, 1.0 - state.total_reward)

    def exact_value(self, state: TextWorldState, gamma: float) -> float | None:
        """V*(state): the optimal discounted return after ``state`` (0.0 once the game is over).

        The game's whole reachable state graph (one node per :meth:`state_key`, one edge
        per admissible command) is enumerated breadth-first from its start, once per
        game, and solved by Bellman backups to their fixed point, once per (game, gamma)
        (:mod:`.exact`); later calls look the state up (a state not reachable from the
        start adds what is reachable from it). Enumeration steps every command of every
        state: seconds for a few hundred states, minutes for 20,000.

        Returns:
            The value, or None when the game has more than ``exact_states`` reachable
            states (it is too large for the exact solver).
        """
        if state.done:
            return 0.0
        rt = self._runtime_of(state)
        return self._exact.value(self, state, gamma, (state.game, rt.z8_digest), rt.start)

    # -- text from outside
    def canonical_action(self, state: TextWorldState, text: str) -> str:
        """The admissible command ``text`` names (case and spacing are forgiven).

        Raises:
            ActionError: the game is over or ``text`` is not an admissible command.
        """
        if state.done:
            outcome = "won" if state.won else "lost"
            raise ActionError(f"no command is admissible: {state.game_id} is over ({outcome}); got {text!r}")
        if text in state.admissible:
            return text
        wanted = " ".join(str(text).split()).casefold()
        for command in state.admissible:
            if command.casefold() == wanted:
                return command
        raise ActionError(
            f"{text!r} is not an admissible command in {state.game_id}; admissible: {', '.join(state.admissible)}"
        )

    # -- tasks
    @staticmethod
    def _game_path(task: Task) -> str:
        game = task.payload.get("game")
        if not isinstance(game, str) or not game:
            raise TaskFileError(f"task {task.task_id!r} has no 'game' path; load tasks with TextWorldEnv.load_tasks")
        return game

    def make_task(self, game: str | Path) -> Task:
        """The task of one game file; its id is the file stem (``game-3``).

        Raises:
            TaskFileError: not a playable TextWorld game, or its ``.json`` is missing.
        """
        return game_task(game)

    def load_tasks(self, path: str | Path | None = None) -> list[Task]:
        """One task per game: ``path`` is a game file, a directory or a glob.

        Raises:
            TaskFileError: ``path`` is None (no games ship with treeq), nothing matches,
                a game's files are missing or broken, or two games share a file stem.
        """
        return load_games(path)

    def walkthrough(self, task: Task) -> list[str]:
        """A winning command sequence (from the game's ``.json``, else from its quests).

        Raises:
            TaskFileError: the game files are missing or broken.
            EnvFailure: TextWorld knows no winning sequence for this game.
        """
        game = self._game_path(task)
        walk = read_walkthrough(game)
        if walk is None:
            walk = self._runtime(game, task.task_id).game.walkthrough
        if not walk:
            raise EnvFailure(f"{game}: TextWorld has no walkthrough for this game")
        return list(walk)

    def walkthrough_length(self, task: Task) -> int:
        """Commands in the walkthrough: an upper bound on the shortest win."""
        return len(self.walkthrough(task))
