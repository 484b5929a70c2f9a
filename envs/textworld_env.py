"""TextWorld games as a functional, reversible env (Jericho snapshots inside the states).

A task is one game made by TextWorld's ``tw-make``: a Z-machine story file (``.z8``)
plus the ``.json`` beside it that describes the game's logic (world facts, rules,
quests, walkthrough). The game runs in Jericho's Frotz interpreter; one interpreter
per game file is kept alive per env object and reused by every ``step``: the state
handed in is restored into it (``FrotzEnv.set_state``), the command is executed, and
the new interpreter state (``get_state``) goes into the new, immutable state.

Why not ``textworld.start(...)`` plus its wrappers? Its admissible commands, won/lost
flags and score come from wrapper objects (``StateTracking``'s ``GameProgression``,
``Inform7Data``'s previous state) that mutate in place and cannot be restored from a
snapshot. This module does the same work with the same TextWorld pieces, but keeps
everything in the state:

* the Jericho interpreter state (RAM, stack, pc, sp, fp, frame count, opcode, RNG
  and narrative text), stored losslessly (see :class:`_FrotzSnapshot`);
* TextWorld's logic state (``textworld.logic.State``: the facts, from which the
  admissible commands follow) and its valid actions, advanced like TextWorld's
  ``StateTracking`` does it: the game is put in ``tw-trace-actions`` mode, so every
  turn prints Inform7 events such as ``[taking the key - succeeded]``, and
  ``Inform7Game.detect_action`` maps each event to a logic action;
* what ``Inform7Data`` tracks (score, moves, room description, inventory), read from
  the ``<score>`` / ``<moves>`` / ``<description>`` / ``<inventory>`` blocks that the
  game prints every turn once ``tw-extra-infos`` is switched on, and won / lost from
  the game's ``*** The End ***`` / ``*** You lost! ***`` lines.

The Inform7 mode switches live in the game's RAM, so they travel inside the snapshot.
``tests/envs/test_textworld.py`` checks observations, scores and admissible commands
against ``textworld.start`` along walkthroughs and random trajectories.

textworld and jericho are imported only when a game is first played, so importing this
module (and ``python cli.py --help``) stays fast.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import re
import warnings
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ActionError, ConfigError, EnvFailure, TaskFileError
from .base import Step, Task

__all__ = ["TextWorldEnv", "TextWorldState", "find_games", "read_walkthrough"]

GAME_SUFFIXES = (".z8", ".ulx")
GENERATE_HINT = "generate games with `python cli.py make-textworld-games DIR` and pass `--tasks DIR`"
# Frotz seeds its RNG from this at every reset. TextWorld's Inform7 games reseed their
# own RNG anyway; a fixed value keeps jericho from falling back to a time-based seed.
_FROTZ_SEED = 1234
# What TextWorld's TWInform7 wrapper switches on at reset, in its order: the extra
# infos printed every turn (Inform7Data) and then the action trace (StateTracking).
# Room description and inventory are optional: the game then runs 'look' and
# 'inventory' inside every turn, which doubles the interpreter's time per step.
_EXTRA_INFOS = ("inventory", "description", "moves", "score")
_ROOM_AND_INVENTORY = ("inventory", "description")
_EXTRA_RES = {tag: re.compile(rf"<{tag}>\n(.*)</{tag}>", re.DOTALL) for tag in _EXTRA_INFOS}
_DEBUG_TAG_RE = re.compile(r"\[[^]]+\]\n?")
_WON, _LOST = "*** The End ***", "*** You lost! ***"
# Every turn ends with the input prompt and Frotz's status line ("> ... -= Attic =-0/2");
# TextWorld keeps it in its feedback, a reader gains nothing from it.
_PROMPT_TAIL_RE = re.compile(r"\n?>[^\n]*\Z")


# ----------------------------------------------------------------------------- text
def _strip_debug_tags(text: str) -> tuple[list[str], str]:
    """Remove Inform7 ``[event]`` tags; return the succeeded events and the clean text.

    Same rules as TextWorld's ``_detect_i7_events_debug_tags``: only ``... - succeeded``
    tags count, and tags of sub-rules (with parentheses) are dropped.
    """
    events = []
    for match in _DEBUG_TAG_RE.findall(text):
        text = text.replace(match, "")
        name = match.strip()[1:-1]
        if " - succeeded" in name:
            events.append(name[: name.index(" - succeeded")])
    return [e for e in events if "(" not in e and ")" not in e], text


def _split_output(raw: str) -> tuple[str, list[str], dict[str, str]]:
    """Split one turn's output into feedback, Inform7 events and the extra-info blocks."""
    extras: dict[str, str] = {}
    text = raw
    for tag, regex in _EXTRA_RES.items():
        m = regex.search(text)
        if m:
            extras[tag] = _strip_debug_tags(m.group(1))[1].strip()
            text = regex.sub("", text)
    events, text = _strip_debug_tags(text)
    return text, events, extras


def _clean(text: str) -> str:
    """Drop the prompt/status line, trailing blanks and runs of empty lines."""
    text = _PROMPT_TAIL_RE.sub("", text)
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _parse_count(text: str | None, previous: int) -> int:
    """An integer ``<score>`` / ``<moves>`` block; the previous value when absent or odd."""
    if text is None:
        return previous
    try:
        return int(text.strip().split("\n")[0])
    except ValueError:
        return previous


def _closing_reward(total: float) -> float:
    """The reward ``r`` with ``total + r == 1.0`` exactly in floating point."""
    r = 1.0 - total
    while total + r < 1.0:
        r = math.nextafter(r, math.inf)
    while total + r > 1.0:
        r = math.nextafter(r, -math.inf)
    return r


# ----------------------------------------------------------------------------- files
def find_games(path: str | Path) -> list[Path]:
    """The game files named by ``path``: one file, a directory or a glob, sorted.

    Raises:
        TaskFileError: nothing matches, or the one file is not a game file.
    """
    text = str(path)
    if any(ch in text for ch in "*?["):
        matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
        games = [p for p in matches if p.suffix.lower() in GAME_SUFFIXES and p.is_file()]
        if not games:
            raise TaskFileError(f"no TextWorld game (.z8) matches {text!r}; {GENERATE_HINT}")
        return games
    p = Path(text)
    if p.is_dir():
        games = sorted(q for q in p.iterdir() if q.suffix.lower() in GAME_SUFFIXES and q.is_file())
        if not games:
            raise TaskFileError(f"{p}: no TextWorld game (*.z8) in this directory; {GENERATE_HINT}")
        return games
    if not p.exists():
        raise TaskFileError(f"TextWorld game not found: {p}")
    if p.suffix.lower() not in GAME_SUFFIXES:
        hint = f"; pass {p.with_suffix('.z8')}" if p.with_suffix(".z8").is_file() else ""
        raise TaskFileError(f"{p}: not a TextWorld game file (expected .z8){hint}")
    return [p]


def _read_game_json(json_path: Path) -> dict[str, Any]:
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TaskFileError(f"{json_path}: cannot read TextWorld game data ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TaskFileError(f"{json_path}: not valid TextWorld game data ({exc})") from None
    if not isinstance(data, dict) or "world" not in data:
        raise TaskFileError(f"{json_path}: not TextWorld game data (no 'world' entry)")
    return data


def _check_story(path: Path) -> None:
    """Refuse files that are not Z-machine story files before Frotz sees them.

    Frotz ends the whole process (``exit``) on a story it cannot run, so a stray file
    must fail here, as one error line, rather than kill a batch job.
    """
    try:
        with path.open("rb") as f:
            header = f.read(64)
        size = path.stat().st_size
    except OSError as exc:
        raise TaskFileError(f"{path}: cannot read the game ({exc.strerror})") from None
    version = header[0] if header else 0
    scale = 2 if version <= 3 else 4 if version <= 5 else 8
    static_base = int.from_bytes(header[0x0E:0x10], "big") if len(header) == 64 else 0
    length = int.from_bytes(header[0x1A:0x1C], "big") * scale if len(header) == 64 else 0
    if not 1 <= version <= 8 or len(header) < 64 or not 64 <= static_base <= size or length > size:
        raise TaskFileError(f"{path}: not a Z-machine story file (a TextWorld .z8 game); regenerate it")


def read_walkthrough(game: str | Path) -> list[str] | None:
    """The walkthrough stored in a game's ``.json`` (``metadata.walkthrough``), if any.

    Raises:
        TaskFileError: the ``.json`` is missing or is not TextWorld game data.
    """
    data = _read_game_json(Path(game).with_suffix(".json"))
    walk = (data.get("metadata") or {}).get("walkthrough")
    return [str(c) for c in walk] if isinstance(walk, list) and walk else None


# ----------------------------------------------------------------------------- state
@dataclass(frozen=True, slots=True, eq=False)  # compared by identity: never by RAM
class _FrotzSnapshot:
    """Lossless, immutable form of ``FrotzEnv.get_state()`` plus the logic state.

    ``get_state`` returns ``(ram, stack, pc, sp, fp, frame_count, opcode, rng,
    narrative)`` with ``ram`` and ``stack`` as writable numpy arrays (about 35 KB and
    2 KB for a small TextWorld game). A tree holds tens of thousands of states, so
    the RAM is kept as the zlib-compressed XOR against the game's start RAM (a few
    hundred bytes: a turn touches little memory) and the stack compressed; both are
    bytes, hence immutable, and :meth:`frotz_state` rebuilds the exact tuple.

    ``logic`` (a ``textworld.logic.State``) and ``valid_actions`` are never mutated:
    ``step`` copies ``logic`` before applying an action.
    """

    ram_xor: bytes
    stack: bytes
    pc: int
    sp: int
    fp: int
    frame_count: int
    opcode: int
    rng: tuple[int, int, int]
    narrative: bytes
    logic: Any
    valid_actions: tuple[Any, ...]

    @classmethod
    def capture(cls, frotz_state: tuple, base_ram: np.ndarray, logic: Any, valid: tuple) -> "_FrotzSnapshot":
        ram, stack, pc, sp, fp, frame_count, opcode, rng, narrative = frotz_state
        return cls(
            zlib.compress(np.bitwise_xor(ram, base_ram).tobytes(), 1),
            zlib.compress(stack.tobytes(), 1),
            int(pc), int(sp), int(fp), int(frame_count), int(opcode),
            tuple(int(x) for x in rng), bytes(narrative), logic, valid,
        )

    def frotz_state(self, base_ram: np.ndarray) -> tuple:
        """The tuple ``FrotzEnv.set_state`` takes (fresh, writable arrays)."""
        ram = np.bitwise_xor(np.frombuffer(zlib.decompress(self.ram_xor), dtype=np.uint8), base_ram)
        stack = np.frombuffer(zlib.decompress(self.stack), dtype=np.uint8).copy()
        return (ram, stack, self.pc, self.sp, self.fp, self.frame_count, self.opcode, self.rng, self.narrative)


@dataclass(frozen=True)
class TextWorldState:
    """One moment of a TextWorld game; everything ``legal_actions``/``render`` need.

    Attributes:
        game_id: Task id (the game file's stem).
        game: Absolute path of the game file.
        objective: The quest text of the game.
        observation: The game's answer to the last command (the intro at the start),
            without Inform7 trace tags, extra-info blocks and the status line.
        description: The room description after the last command.
        inventory: The inventory text after the last command.
        score: The game's score; ``max_score`` the most it can reach.
        moves: Turns taken, as the game counts them.
        won: The game was won (``*** The End ***``); ``lost`` likewise.
        admissible: Admissible commands (TextWorld's, sorted, deduplicated).
        steps: Commands taken from the start.
        total_reward: Sum of the rewards so far (exactly 1.0 once won).
        key: The canonical state key (see ``TextWorldEnv.state_key``).
    """

    game_id: str
    game: str
    objective: str
    observation: str
    description: str | None
    inventory: str | None
    score: int
    max_score: int
    moves: int
    won: bool
    lost: bool
    admissible: tuple[str, ...]
    steps: tuple[str, ...]
    total_reward: float
    key: str
    _snapshot: _FrotzSnapshot = field(repr=False, compare=False)
    _z8_digest: str = field(repr=False, compare=False)

    @property
    def done(self) -> bool:
        """Whether the game is over (won or lost)."""
        return self.won or self.lost


# ----------------------------------------------------------------------------- runtime
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _GameRuntime:
    """One game file: its live interpreter, its TextWorld logic and its start state."""

    def __init__(self, task_id: str, path: Path, room_and_inventory: bool) -> None:
        # Heavy imports happen here, when a game is first played.
        import jericho
        from textworld.generator.game import Game
        from textworld.generator.inform7 import Inform7Game

        json_path = path.with_suffix(".json")
        _check_story(path)
        _read_game_json(json_path)  # one clear error line for a missing / broken .json
        self.task_id, self.path = task_id, path
        self.z8_digest = _sha256(path)
        # The key names the game by its logic (.json), not by its story file: a z8's
        # header carries the compile date, so the same game compiled on another day
        # must still give the same keys.
        self.game_digest = _sha256(json_path)
        self.game = Game.load(str(json_path))
        self.inform7 = Inform7Game(self.game)
        self.rules = list(self.game.kb.rules.values())
        self.constants = self.game.kb.types.constants_mapping
        self.objective = (self.game.objective or "").strip()
        self.max_score = int(self.game.max_score or 0)
        with warnings.catch_warnings():
            # TextWorld games are not among Jericho's hand-annotated games: Jericho's
            # score / move / world-hash helpers are off for them, which we do not use.
            warnings.simplefilter("ignore", jericho.UnsupportedGameWarning)
            self.frotz = jericho.FrotzEnv(str(path), _FROTZ_SEED)
        intro, _ = self.frotz.reset()
        self.base_ram = self.frotz.get_state()[0].copy()
        self.base_ram.flags.writeable = False
        extras: dict[str, str] = {}
        for tag in _EXTRA_INFOS:
            if room_and_inventory or tag not in _ROOM_AND_INVENTORY:
                extras.update(_split_output(self._send(f"tw-extra-infos {tag}"))[2])
        self._send("tw-trace-actions")
        logic = self.game.world.state.copy()
        valid = tuple(logic.all_applicable_actions(self.rules, self.constants))
        self.start = self._make_state(
            observation=_clean(intro), extras=extras, score=_parse_count(extras.get("score"), 0),
            moves=_parse_count(extras.get("moves"), 0), won=False, lost=False, logic=logic, valid=valid,
            admissible=None, steps=(), total_reward=0.0, prev=None,
        )

    def _send(self, command: str) -> str:
        text, _, _, _ = self.frotz.step(command)
        return text

    def _make_state(self, *, observation: str, extras: dict[str, str], score: int, moves: int, won: bool,
                    lost: bool, logic: Any, valid: tuple, admissible: tuple[str, ...] | None,
                    steps: tuple[str, ...], total_reward: float, prev: TextWorldState | None) -> TextWorldState:
        if admissible is None:
            admissible = tuple(sorted(set(self.inform7.gen_commands_from_actions(valid))))
        # Inform7Data carries a block over from the previous turn when a turn prints none.
        description = extras.get("description") or (prev.description if prev else None)
        inventory = extras.get("inventory") or (prev.inventory if prev else None)
        snapshot = _FrotzSnapshot.capture(self.frotz.get_state(), self.base_ram, logic, valid)
        return TextWorldState(
            game_id=self.task_id, game=str(self.path), objective=self.objective, observation=observation,
            description=_clean(description) if description else None,
            inventory=_clean(inventory) if inventory else None,
            score=score, max_score=self.max_score, moves=moves, won=won, lost=lost,
            admissible=admissible, steps=steps, total_reward=total_reward,
            key=self._key(logic, score, won, lost), _snapshot=snapshot, _z8_digest=self.z8_digest,
        )

    def _key(self, logic: Any, score: int, won: bool, lost: bool) -> str:
        # Jericho's get_world_state_hash() cannot serve: it walks the object tree only
        # for games it ships bindings for; in a TextWorld game it sees no objects and
        # returns one hash for every state ('go east' keeps it). TextWorld's logic
        # facts are the world state
        # the game is built from (where the player and each object are, what is open,
        # locked, carried): equal facts give equal admissible commands and dynamics,
        # and they return to earlier values when an action is undone ('open'/'close',
        # 'go east'/'go west'), unlike the Z-machine RAM (turn counter, visited flags).
        # The score is added because a completed quest is not a fact, and the game is
        # named (by its .json digest) because fact names such as 'k_0' or 'r_1' are
        # reused by every generated game and different games have different quests.
        facts = "\n".join(sorted(str(f) for f in logic.facts))
        digest = hashlib.sha1(facts.encode("utf-8")).hexdigest()[:16]
        end = ":won" if won else ":lost" if lost else ""
        return f"textworld:{self.game_digest[:12]}:score={score}:{digest}{end}"

    def step(self, state: TextWorldState, command: str) -> tuple[TextWorldState, float]:
        """Restore ``state`` into the interpreter, run ``command``: the next state and reward."""
        snap = state._snapshot
        self.frotz.set_state(snap.frotz_state(self.base_ram))
        text, events, extras = _split_output(self._send(command))
        logic, valid, admissible = snap.logic, snap.valid_actions, state.admissible
        for event in events:
            action = self.inform7.detect_action(event, valid)
            # look / examine / inventory leave the facts as they are: skip the copy and
            # the (costly) recomputation of the valid actions for them.
            if action is None or not (action.added or action.removed):
                continue
            if logic is snap.logic:
                logic = logic.copy()
            logic.apply(action)
            valid = tuple(logic.all_applicable_actions(self.rules, self.constants))
            admissible = None
        won, lost = _WON in text, _LOST in text
        score = _parse_count(extras.get("score"), state.score)
        if won:
            reward = _closing_reward(state.total_reward)
        elif self.max_score > 0:
            reward = (score - state.score) / self.max_score
        else:
            reward = 0.0
        nxt = self._make_state(
            observation=_clean(text), extras=extras, score=score, moves=_parse_count(extras.get("moves"), state.moves),
            won=won, lost=lost, logic=logic, valid=valid, admissible=admissible, steps=state.steps + (command,),
            total_reward=state.total_reward + reward, prev=state,
        )
        return nxt, reward


# ----------------------------------------------------------------------------- env
class TextWorldEnv:
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
    """

    name = "textworld"
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

    def __init__(self, max_games: int = 8, room_and_inventory: bool = True) -> None:
        if not isinstance(max_games, int) or isinstance(max_games, bool) or max_games < 1:
            raise ConfigError(f"max_games must be a positive integer, got {max_games!r}")
        self.max_games = max_games
        self.room_and_inventory = bool(room_and_inventory)
        self._runtimes: OrderedDict[str, _GameRuntime] = OrderedDict()

    # -- runtimes
    def _runtime(self, game: str, task_id: str) -> _GameRuntime:
        rt = self._runtimes.get(game)
        if rt is None:
            path = Path(game)
            if not path.is_file():
                raise TaskFileError(f"TextWorld game not found: {path}")
            try:
                rt = _GameRuntime(task_id, path, self.room_and_inventory)
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

    def _runtime_of(self, state: TextWorldState) -> _GameRuntime:
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

    def step(self, state: TextWorldState, action: str) -> Step[TextWorldState]:
        command = self.canonical_action(state, action)
        nxt, reward = self._runtime_of(state).step(state, command)
        info: dict[str, Any] = {"success": True} if nxt.won else {"success": False} if nxt.lost else {}
        return Step(nxt, reward, nxt.done, False, info)

    def state_key(self, state: TextWorldState) -> str:
        """Game (by content) + score + TextWorld's logic facts, hashed.

        States reached by different paths with the same world (rooms, objects, doors,
        inventory) and score share a key; see ``_GameRuntime._key`` for why these parts.
        """
        return state.key

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

    def value_bound(self, state: TextWorldState, gamma: float) -> float:
        """``1 - rewards so far``: TextWorld scores only grow, and a win closes at 1.0."""
        return 0.0 if state.done else max(0.0, 1.0 - state.total_reward)

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
        path = Path(game).resolve()
        if path.suffix.lower() == ".ulx":
            raise TaskFileError(
                f"{path}: Glulx (.ulx) games cannot be played: Jericho runs Z-machine games only "
                "and TextWorld >= 1.7 dropped Glulx; make .z8 games instead"
            )
        if not path.is_file():
            raise TaskFileError(f"TextWorld game not found: {path}")
        json_path = path.with_suffix(".json")
        if not json_path.is_file():
            raise TaskFileError(
                f"{path}: its game data {json_path.name} is missing (tw-make writes both files; regenerate the game)"
            )
        _read_game_json(json_path)
        _check_story(path)
        return Task(path.stem, {"game": str(path)})

    def load_tasks(self, path: str | Path | None = None) -> list[Task]:
        """One task per game: ``path`` is a game file, a directory or a glob.

        Raises:
            TaskFileError: ``path`` is None (no games ship with treeq), nothing matches,
                a game's ``.json`` is missing, or two games share a file stem.
        """
        if path is None:
            raise TaskFileError(f"the textworld env has no default games: {GENERATE_HINT} (a dir, a .z8 or a glob)")
        tasks = [self.make_task(p) for p in find_games(path)]
        seen: dict[str, str] = {}
        for t in tasks:
            if t.task_id in seen:
                raise TaskFileError(
                    f"task id {t.task_id!r} appears twice ({seen[t.task_id]} and {t.payload['game']}); rename one"
                )
            seen[t.task_id] = t.payload["game"]
        return tasks

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
