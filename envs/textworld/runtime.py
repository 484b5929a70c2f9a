"""The TextWorld interpreter runtime: one live Frotz per game, snapshots inside the states.

A task is one game made by TextWorld's ``tw-make`` (a ``.z8`` story file and its
``.json``, checked by :mod:`treeq.envs.textworld.files`). The game runs in Jericho's
Frotz interpreter; one interpreter per game file is kept alive per env object
(:class:`~treeq.envs.textworld.TextWorldEnv`) and reused by every ``step``: the
state handed in is restored into it (``FrotzEnv.set_state``), the command is executed,
and the new interpreter state (``get_state``) goes into the new, immutable state.

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

import hashlib
import math
import re
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .files import check_story, read_game_json

__all__ = ["TextWorldState", "GameRuntime", "clean_text"]

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


def clean_text(text: str) -> str:
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
    def capture(cls, frotz_state: tuple, base_ram: np.ndarray, logic: Any, valid: tuple) -> _FrotzSnapshot:
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


class GameRuntime:
    """One game file: its live interpreter, its TextWorld logic and its start state."""

    def __init__(self, task_id: str, path: Path, room_and_inventory: bool) -> None:
        # Heavy imports happen here, when a game is first played.
        import jericho
        from textworld.generator.game import Game
        from textworld.generator.inform7 import Inform7Game

        json_path = path.with_suffix(".json")
        check_story(path)
        read_game_json(json_path)  # one clear error line for a missing / broken .json
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
            observation=clean_text(intro), extras=extras, score=_parse_count(extras.get("score"), 0),
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
            description=clean_text(description) if description else None,
            inventory=clean_text(inventory) if inventory else None,
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
            observation=clean_text(text), extras=extras, score=score, moves=_parse_count(extras.get("moves"), state.moves),
            won=won, lost=lost, logic=logic, valid=valid, admissible=admissible, steps=state.steps + (command,),
            total_reward=state.total_reward + reward, prev=state,
        )
        return nxt, reward
