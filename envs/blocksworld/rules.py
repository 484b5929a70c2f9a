"""Blocksworld's rules: the state, the four STRIPS operators, goals and action text.

A state stores, for every block (sorted by name), what it rests on: another block, the
table or the hand. Clear and hand-empty follow from that, so one configuration has one
representation whatever path led to it. Actions use PlanBench's plan phrasing
(``unstack the red block from on top of the blue block``); text from outside may also
use the PDDL form ``(unstack red blue)``.

Shared by the env (:mod:`treeq.envs.blocksworld`), the PDDL reader
(:mod:`.pddl`) and the exact oracle (:mod:`.exact`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from ...errors import ActionError, TaskFileError

__all__ = [
    "BlocksworldState",
    "HAND",
    "PREDICATES",
    "ParsedAction",
    "TABLE",
    "World",
    "apply_action",
    "atoms",
    "canonical_action",
    "goal_facts_held",
    "is_goal",
    "parse_action",
]

#: Supported predicates and their arity.
PREDICATES = {"clear": 1, "ontable": 1, "handempty": 0, "holding": 1, "on": 2}

TABLE, HAND = -1, -2  # supports that are not blocks

World = tuple[int, ...]

# ----------------------------------------------------------------------------- state
@dataclass(frozen=True, slots=True)
class BlocksworldState:
    """One configuration of the blocks, the goal, and the plan so far.

    Attributes:
        blocks: Block names (colours for PlanBench files), sorted.
        world: For each block, what it rests on: a block index, ``TABLE`` (-1) or
            ``HAND`` (-2). Canonical: equal configurations have equal tuples.
        goal: Goal atoms as sorted strings such as ``"on red blue"``.
        start: ``world`` at the start of the episode (for :meth:`BlocksworldEnv.render`).
        objects: The PDDL object name of each block (PlanBench orders sentences by it).
        steps: Actions taken so far, in canonical phrasing.
    """

    blocks: tuple[str, ...]
    world: World
    goal: tuple[str, ...]
    start: World
    objects: tuple[str, ...]
    steps: tuple[str, ...] = ()


def world_atoms(blocks: Sequence[str], world: World) -> list[tuple[str, tuple[int, ...]]]:
    covered = {s for s in world if s >= 0}
    out: list[tuple[str, tuple[int, ...]]] = []
    for x, s in enumerate(world):
        if s == HAND:
            out.append(("holding", (x,)))
        else:
            out.append(("ontable", (x,)) if s == TABLE else ("on", (x, s)))
            if x not in covered:
                out.append(("clear", (x,)))
    if HAND not in world:
        out.append(("handempty", ()))
    return out


def atom_str(pred: str, args: Iterable[str]) -> str:
    return " ".join((pred, *args))


def atoms(state: BlocksworldState) -> frozenset[str]:
    """The current configuration as ground atoms, e.g. ``{"on red blue", "handempty"}``."""
    return frozenset(atom_str(p, (state.blocks[i] for i in a)) for p, a in world_atoms(state.blocks, state.world))


# ----------------------------------------------------------------------------- moves
@lru_cache(maxsize=1 << 16)
def successors(blocks: tuple[str, ...], world: World) -> dict[str, World]:
    """Every applicable action, canonical text -> next world, in a fixed order.

    Hand empty: for each clear block in name order, pick it up or unstack it. Holding:
    put it down first, then stack it on each clear block in name order.
    """
    moves: dict[str, World] = {}
    covered = {s for s in world if s >= 0}
    if HAND not in world:
        for x, s in enumerate(world):
            if x in covered:
                continue
            if s == TABLE:
                text = f"pick up the {blocks[x]} block"
            else:
                text = f"unstack the {blocks[x]} block from on top of the {blocks[s]} block"
            moves[text] = world[:x] + (HAND,) + world[x + 1 :]
    else:
        h = world.index(HAND)
        moves[f"put down the {blocks[h]} block"] = world[:h] + (TABLE,) + world[h + 1 :]
        for y in range(len(world)):
            if y != h and y not in covered:
                text = f"stack the {blocks[h]} block on top of the {blocks[y]} block"
                moves[text] = world[:h] + (y,) + world[h + 1 :]
    return moves


class Goal(NamedTuple):
    """A goal compiled to block indices."""

    position: tuple[tuple[int, int], ...]  # (block, support) from on / ontable atoms
    clear: tuple[int, ...]
    holding: tuple[int, ...]
    handempty: bool


@lru_cache(maxsize=1 << 12)
def compile_goal(blocks: tuple[str, ...], goal: tuple[str, ...]) -> Goal:
    index = {b: i for i, b in enumerate(blocks)}
    position, clear, holding, handempty = [], [], [], False
    for atom in goal:
        pred, *args = atom.split()
        ix = [index[a] for a in args]
        if pred == "on":
            position.append((ix[0], ix[1]))
        elif pred == "ontable":
            position.append((ix[0], TABLE))
        elif pred == "clear":
            clear.append(ix[0])
        elif pred == "holding":
            holding.append(ix[0])
        else:
            handempty = True
    return Goal(tuple(position), tuple(clear), tuple(holding), handempty)


def satisfied(g: Goal, world: World) -> bool:
    return (
        all(world[x] == s for x, s in g.position)
        and all(world[x] != HAND and x not in world for x in g.clear)
        and all(world[x] == HAND for x in g.holding)
        and not (g.handempty and HAND in world)
    )


def goal_facts_held(state: BlocksworldState) -> int:
    """How many of the goal's atoms hold in ``state``."""
    g, world = compile_goal(state.blocks, state.goal), state.world
    return (sum(world[x] == s for x, s in g.position) + sum(world[x] != HAND and x not in world for x in g.clear)
            + sum(world[x] == HAND for x in g.holding) + int(g.handempty and HAND not in world))


def is_goal(state: BlocksworldState) -> bool:
    """Whether every goal atom holds in ``state``."""
    return satisfied(compile_goal(state.blocks, state.goal), state.world)


# ----------------------------------------------------------------------------- actions
class ParsedAction(NamedTuple):
    """An action as written: operator (PDDL name) and block names."""

    op: str
    block: str
    other: str | None = None


_N = r"([^\s()]+)"
_TEXT_FORMS = [
    ("pick-up", re.compile(rf"pick up the {_N} block")),
    ("put-down", re.compile(rf"put down the {_N} block")),
    ("stack", re.compile(rf"stack the {_N} block on top of the {_N} block")),
    ("unstack", re.compile(rf"unstack the {_N} block from on top of the {_N} block")),
]
_PDDL_FORM = re.compile(r"\(\s*(pick-up|put-down|stack|unstack)((?:\s+[^\s()]+)*)\s*\)")
_EXPECTED = (
    "expected 'pick up the X block', 'put down the X block', 'stack the X block on top of the Y block', "
    "'unstack the X block from on top of the Y block' or PDDL such as '(unstack x y)'"
)


def parse_action(text: str) -> ParsedAction:
    """Parse one action in PlanBench phrasing or PDDL form.

    Case, runs of whitespace and one final period are forgiven; nothing else is.

    Raises:
        ActionError: the text is neither form.
    """
    norm = " ".join(text.lower().split()).removesuffix(".").strip()
    m = _PDDL_FORM.fullmatch(norm)
    if m is not None:
        args = m[2].split()
        arity = 2 if m[1] in ("stack", "unstack") else 1
        if len(args) != arity:
            raise ActionError(f"cannot parse action {text!r}: {m[1]} takes {arity} block(s), got {len(args)}")
        return ParsedAction(m[1], *args)
    for op, pattern in _TEXT_FORMS:
        m = pattern.fullmatch(norm)
        if m is not None:
            return ParsedAction(op, *m.groups())
    raise ActionError(f"cannot parse action {text!r}: {_EXPECTED}")


def _canonical(op: str, blocks: Sequence[str], x: int, y: int | None) -> str:
    if op == "pick-up":
        return f"pick up the {blocks[x]} block"
    if op == "put-down":
        return f"put down the {blocks[x]} block"
    assert y is not None
    if op == "stack":
        return f"stack the {blocks[x]} block on top of the {blocks[y]} block"
    return f"unstack the {blocks[x]} block from on top of the {blocks[y]} block"


def _why_illegal(op: str, blocks: Sequence[str], world: World, x: int, y: int | None) -> str:
    """The first failed precondition of ``op`` (the action is known to be illegal)."""
    bx = f"the {blocks[x]} block"
    held = world.index(HAND) if HAND in world else None

    def where(b: int) -> str:
        s = world[b]
        if s == TABLE:
            return "it is on the table"
        return "it is being held" if s == HAND else f"it is on top of the {blocks[s]} block"

    def not_clear(b: int) -> str | None:
        on_top = [i for i, s in enumerate(world) if s == b]
        if on_top:
            return f"the {blocks[b]} block is not clear (the {blocks[on_top[0]]} block is on top of it)"
        if world[b] == HAND:
            return f"the {blocks[b]} block is not clear (it is being held)"
        return None

    hand = "the hand is empty" if held is None else f"the hand is holding the {blocks[held]} block"
    if y is not None and x == y:
        return "a block cannot be on top of itself"
    if op in ("pick-up", "unstack"):
        if held is not None:
            return f"the hand is not empty (it is holding the {blocks[held]} block)"
        if op == "pick-up" and world[x] != TABLE:
            return f"{bx} is not on the table ({where(x)})"
        if op == "unstack" and world[x] != y:
            return f"{bx} is not on top of the {blocks[y]} block ({where(x)})"  # type: ignore[index]
        return not_clear(x) or "precondition failed"
    if world[x] != HAND:
        return f"{bx} is not being held ({hand})"
    return (not_clear(y) if y is not None else None) or "precondition failed"


def canonical_action(state: BlocksworldState, text: str) -> str:
    """Map an action written by someone else to the canonical phrasing.

    Block names may be the display names (``red``) or, in the PDDL form, the file's
    object names (``a``).

    Raises:
        ActionError: the text does not parse, names an unknown block or is not legal.
    """
    p = parse_action(text)
    index = {b: i for i, b in enumerate(state.blocks)}
    for i, o in enumerate(state.objects):
        index.setdefault(o, i)
    ix = []
    for name in (p.block, p.other):
        if name is None:
            continue
        if name not in index:
            raise ActionError(f"unknown block {name!r} in action {text!r} (blocks: {', '.join(state.blocks)})")
        ix.append(index[name])
    x, y = ix[0], ix[1] if len(ix) > 1 else None
    canonical = _canonical(p.op, state.blocks, x, y)
    if canonical not in successors(state.blocks, state.world):
        raise ActionError(f"illegal action {text!r}: {_why_illegal(p.op, state.blocks, state.world, x, y)}")
    return canonical


def apply_action(state: BlocksworldState, action: str) -> BlocksworldState:
    """The state after ``action`` (PlanBench phrasing or PDDL form), the step recorded.

    Raises:
        ActionError: the text does not parse, names an unknown block, is not
            applicable (the message says which precondition fails), or the goal
            already holds.
    """
    if is_goal(state):
        raise ActionError(f"action {action!r} after the goal was reached: the episode is over")
    moves = successors(state.blocks, state.world)
    nxt = moves.get(action)
    if nxt is None:
        action = canonical_action(state, action)
        nxt = moves[action]
    return BlocksworldState(state.blocks, nxt, state.goal, state.start, state.objects, state.steps + (action,))


# ----------------------------------------------------------------------------- building states
@dataclass(frozen=True)
class Atom:
    pred: str
    args: tuple[str, ...]
    line: int | None



def build_world(
    names: Sequence[str],
    objects: Sequence[str],
    init: Sequence[Atom],
    goal: Sequence[Atom],
    where: Callable[[int | None], str],
    init_line: int | None = None,
    goal_line: int | None = None,
) -> BlocksworldState:
    """Turn validated atoms into the start state; reject inconsistent configurations."""
    order = sorted(range(len(names)), key=lambda i: names[i])
    blocks = tuple(names[i] for i in order)
    objs = tuple(objects[i] for i in order)
    if len(set(blocks)) != len(blocks):
        raise TaskFileError(f"{where(None)}: block names repeat: {list(names)}")
    index = {b: i for i, b in enumerate(blocks)}
    support: list[int | None] = [None] * len(blocks)
    placed_at: list[int | None] = [None] * len(blocks)
    clear_atoms: set[int] = set()
    handempty = False
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for a in init:
        if (a.pred, a.args) in seen:
            continue  # a repeated atom says nothing new
        seen.add((a.pred, a.args))
        ix = [index[x] for x in a.args]
        if a.pred == "clear":
            clear_atoms.add(ix[0])
            continue
        if a.pred == "handempty":
            handempty = True
            continue
        x = ix[0]
        s = TABLE if a.pred == "ontable" else HAND if a.pred == "holding" else ix[1]
        if s == x:
            raise TaskFileError(f"{where(a.line)}: the {blocks[x]} block cannot be on top of itself")
        if support[x] is not None:
            raise TaskFileError(
                f"{where(a.line)}: the {blocks[x]} block is placed twice in :init (first at line {placed_at[x]})"
            )
        support[x], placed_at[x] = s, a.line
    for x, s in enumerate(support):
        if s is None:
            raise TaskFileError(
                f"{where(init_line)}: the {blocks[x]} block has no position in :init (needs ontable, on or holding)"
            )
    world: World = tuple(support)  # type: ignore[arg-type]
    for s in set(world):
        if s >= 0 and world.count(s) > 1:
            on = [blocks[x] for x, t in enumerate(world) if t == s]
            raise TaskFileError(f"{where(init_line)}: blocks {on} are all on top of the {blocks[s]} block in :init")
    if world.count(HAND) > 1:
        raise TaskFileError(f"{where(init_line)}: the hand holds more than one block in :init")
    for x in range(len(world)):  # every tower must stand on the table or the hand
        s, steps = world[x], 0
        while s >= 0:
            s, steps = world[s], steps + 1
            if steps > len(world):
                raise TaskFileError(
                    f"{where(init_line)}: the on atoms in :init form a cycle through the {blocks[x]} block"
                )
    if handempty == (HAND in world):
        what = "says (handempty) while holding a block" if handempty else "neither says (handempty) nor holds a block"
        raise TaskFileError(f"{where(init_line)}: :init {what}")
    derived = {x for x in range(len(world)) if world[x] != HAND and x not in world}
    if derived != clear_atoms:
        bad = sorted(blocks[x] for x in derived ^ clear_atoms)
        raise TaskFileError(
            f"{where(init_line)}: :init clear atoms disagree with the towers for block(s) {', '.join(bad)}"
        )
    goal_t = tuple(sorted({atom_str(a.pred, a.args) for a in goal}))
    state = BlocksworldState(blocks, world, goal_t, world, objs)
    if is_goal(state):
        raise TaskFileError(f"{where(goal_line)}: the goal already holds in the initial state")
    return state
