"""Blocksworld (PlanBench): stack coloured blocks with one hand, four STRIPS operators.

Tasks are PDDL problem files of the ``blocksworld-4ops`` domain (PlanBench's
``generated_domain.pddl``), read by a small tokenizer and recursive reader written here
(parentheses, symbols, ``;`` comments), never ``eval``. PlanBench names objects ``a``,
``b``, ``c`` ... in the files and ``red``, ``blue``, ``orange`` ... in its prompts; when
every object of a problem is one of those letters the colour names are used (exactly as
PlanBench's ``encoded_objects``), otherwise the object names themselves.

A state stores, for every block (sorted by name), what it rests on: another block, the
table or the hand. Clear and hand-empty follow from that, so one configuration has one
representation whatever path led to it. Actions use PlanBench's plan phrasing
(``unstack the red block from on top of the blue block``); text from outside may also
use the PDDL form ``(unstack red blue)``.

Every operator has an inverse (pick-up/put-down, unstack/stack), so the state graph is
undirected and exact distances to the goal come from one breadth-first search started at
all goal states at once (:func:`optimal_plan_length`).
"""

from __future__ import annotations

import glob as globlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, NamedTuple, Sequence

import numpy as np

from ..errors import ActionError, TaskFileError
from .base import Step, Task

__all__ = [
    "BlocksworldEnv",
    "BlocksworldState",
    "PLANBENCH_COLOURS",
    "PREDICATES",
    "ParsedAction",
    "atoms",
    "is_goal",
    "parse_action",
    "parse_problem",
    "plan_length_lower_bound",
    "optimal_plan_length",
    "optimal_value",
    "exact_q",
]

TASKS_DIR = Path(__file__).resolve().parent / "tasks" / "blocksworld"

#: PlanBench's ``encoded_objects_compact``: PDDL object name -> the colour its prompts use.
PLANBENCH_COLOURS = {
    "a": "red", "b": "blue", "c": "orange", "d": "yellow", "e": "white", "f": "magenta",
    "g": "black", "h": "cyan", "i": "green", "j": "violet", "k": "silver", "l": "gold",
}  # fmt: skip

#: Supported predicates and their arity.
PREDICATES = {"clear": 1, "ontable": 1, "handempty": 0, "holding": 1, "on": 2}

# PlanBench's sentences for ground atoms (configs/blocksworld.yaml, ``predicates``). The
# holding phrase really lacks "the" upstream; kept so that renders match its prompts.
_ATOM_TEXT = {
    "clear": "the {} block is clear",
    "ontable": "the {} block is on the table",
    "handempty": "the hand is empty",
    "holding": "the hand is currently holding {} block",
    "on": "the {} block is on top of the {} block",
}

TABLE, HAND = -1, -2  # supports that are not blocks
# Exact search enumerates every configuration: 866 states for 5 blocks, 75,000 for 7,
# 770,000 for 8. Beyond 7 the pure-Python search takes too long to be a test oracle.
MAX_EXACT_BLOCKS = 7
_NAME_RE = re.compile(r"[a-z][a-z0-9_-]*")
_RESERVED = {"table", "hand"}  # would make state keys ("red on table") ambiguous

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


def _world_atoms(blocks: Sequence[str], world: World) -> list[tuple[str, tuple[int, ...]]]:
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


def _atom_str(pred: str, args: Iterable[str]) -> str:
    return " ".join((pred, *args))


def atoms(state: BlocksworldState) -> frozenset[str]:
    """The current configuration as ground atoms, e.g. ``{"on red blue", "handempty"}``."""
    return frozenset(_atom_str(p, (state.blocks[i] for i in a)) for p, a in _world_atoms(state.blocks, state.world))


# ----------------------------------------------------------------------------- moves
@lru_cache(maxsize=1 << 16)
def _moves(blocks: tuple[str, ...], world: World) -> dict[str, World]:
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


class _Goal(NamedTuple):
    """A goal compiled to block indices."""

    position: tuple[tuple[int, int], ...]  # (block, support) from on / ontable atoms
    clear: tuple[int, ...]
    holding: tuple[int, ...]
    handempty: bool


@lru_cache(maxsize=1 << 12)
def _compile_goal(blocks: tuple[str, ...], goal: tuple[str, ...]) -> _Goal:
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
    return _Goal(tuple(position), tuple(clear), tuple(holding), handempty)


def _satisfied(g: _Goal, world: World) -> bool:
    return (
        all(world[x] == s for x, s in g.position)
        and all(world[x] != HAND and x not in world for x in g.clear)
        and all(world[x] == HAND for x in g.holding)
        and not (g.handempty and HAND in world)
    )


def is_goal(state: BlocksworldState) -> bool:
    """Whether every goal atom holds in ``state``."""
    return _satisfied(_compile_goal(state.blocks, state.goal), state.world)


# ----------------------------------------------------------------------------- bounds
@lru_cache(maxsize=1 << 16)
def _lower_bound(blocks: tuple[str, ...], world: World, goal: tuple[str, ...]) -> int:
    g = _compile_goal(blocks, goal)
    if _satisfied(g, world):
        return 0
    # Every action moves exactly one block, so per-block counts of actions that every
    # plan must contain add up to a lower bound on the plan length. "pick" below means
    # pick-up or unstack, "place" put-down or stack; a pick is always followed by a
    # place of the same block, and every pick needs an empty hand.
    n = len(world)
    below = [[] for _ in range(n)]  # blocks under x, nearest first
    for x in range(n):
        s = world[x]
        while s >= 0:
            below[x].append(s)
            s = world[s]
    above = [{x for x in range(n) if t in below[x]} for t in range(n)]
    misplaced = {x for x, s in g.position if world[x] != s}  # must be placed at least once
    # ``picked``: blocks (not held now) that every plan picks up and later places.
    picked = {x for x in misplaced if world[x] != HAND}
    for u, z in g.position:
        if z >= 0 and world[u] != z:
            # z must be clear when u is stacked on it: whatever sits on z now is taken off
            # and placed somewhere before the hand can hold u.
            picked.update(above[z])
    for x in list(picked):  # a block resting on one that must be picked is taken off first
        picked.update(above[x])
    target = {x: z for x, z in g.position if z >= 0}
    held = world.index(HAND) if HAND in world else None

    def before_final(x: int, depth: int = 0) -> frozenset[int]:
        """Blocks that are picked at least once before x's last placement onto its target."""
        z = target.get(x)
        if z is None or depth > n:  # depth: goal cycles (unsolvable) must not recurse forever
            return frozenset()
        out = set(above[z]) - {x}  # z must be clear by then
        z_first = before_final(z, depth + 1)
        # A held z is picked again if another block must be picked before it can land.
        if z in picked or (z == held and z_first - {z}):
            # x lands on z after z's last pick, and that pick comes right before z's last
            # placement, so after every other pick that must precede z's last placement.
            out |= {z} | z_first
        return frozenset(out)

    h = 0
    for x in picked:
        # x is picked, placed, and must be placed twice (so picked twice) when some other
        # block's pick falls between x's first pick and x's last placement: a block under
        # x (x comes off first) that must be picked before x can land, or x itself in the
        # chain (then x's target z is picked after x's first pick and before x lands).
        bf = before_final(x)
        twice = x in target and (x in bf or any(w in bf for w in below[x]))
        h += 4 if twice else 2
    if held is not None:
        if held in misplaced:
            # placed at least once; twice (place, pick, place) if another block must be
            # picked before it can land, since that pick needs the hand empty
            h += 3 if before_final(held) - {held} else 1
        elif picked:
            h += 1  # put somewhere before the first other pick
    return max(h, 1)


def plan_length_lower_bound(state: BlocksworldState) -> int:
    """A lower bound on the number of actions left to the goal (0 at the goal).

    Admissible: every action moves one block, so actions every plan must spend on each
    block add up. A block that the goal puts elsewhere, sits on a block that a goal ``on``
    atom needs clear, or sits above either, is picked and placed (2); it is picked and
    placed twice (4) when another block must be picked between its first pick and its
    final placement. A held block costs 1 or 3 on the same reasoning. Never more than
    :func:`optimal_plan_length` (checked on every state of the shipped instances).
    """
    return _lower_bound(state.blocks, state.world, state.goal)


@lru_cache(maxsize=256)
def _distances(blocks: tuple[str, ...], goal: tuple[str, ...]) -> dict[World, int]:
    """Exact distance to the goal for every configuration of ``blocks``."""
    if len(blocks) > MAX_EXACT_BLOCKS:
        raise ValueError(f"exact search supports at most {MAX_EXACT_BLOCKS} blocks, got {len(blocks)}")
    g = _compile_goal(blocks, goal)
    # All configurations of a block set are connected (everything can be put on the
    # table and rebuilt), so enumerating from all-on-the-table finds every one.
    start: World = (TABLE,) * len(blocks)
    seen = {start}
    order = [start]
    for w in order:
        for nxt in _moves(blocks, w).values():
            if nxt not in seen:
                seen.add(nxt)
                order.append(nxt)
    # Operators are invertible, so the graph is undirected: a forward search from all
    # goal states gives every state's distance *to* the goal.
    dist = {w: 0 for w in order if _satisfied(g, w)}
    frontier = list(dist)
    d = 0
    while frontier:
        d += 1
        nxt_frontier = []
        for w in frontier:
            for nxt in _moves(blocks, w).values():
                if nxt not in dist:
                    dist[nxt] = d
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    return dist


def optimal_plan_length(state: BlocksworldState) -> int | None:
    """Length of a shortest plan from ``state`` to its goal (0 at the goal).

    Breadth-first search over the 4-operator domain, cached per (blocks, goal): one search
    answers every configuration of that block set.

    Returns:
        The number of actions, or None if the goal is unreachable (contradictory goal).

    Raises:
        ValueError: more than ``MAX_EXACT_BLOCKS`` blocks.
    """
    return _distances(state.blocks, state.goal).get(state.world)


def optimal_value(state: BlocksworldState, gamma: float = 1.0) -> float:
    """Exact V*(s): the reward 1 arrives on the d-th action, so V* = gamma**(d-1).

    0.0 at the goal (the episode has ended) and where the goal cannot be reached.
    """
    d = optimal_plan_length(state)
    if not d:
        return 0.0
    return float(gamma ** (d - 1))


def exact_q(state: BlocksworldState, action: str, gamma: float = 1.0) -> float:
    """Exact Q*(s, a) = r(s, a) + gamma * V*(s'), with r = 1 when s' is the goal.

    Raises:
        ActionError: ``action`` does not parse or is not legal in ``state``.
    """
    step = BlocksworldEnv().step(state, action)
    return step.reward if step.terminated else gamma * optimal_value(step.state, gamma)


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


# ----------------------------------------------------------------------------- PDDL reader
@dataclass(frozen=True)
class _Sym:
    text: str
    line: int


@dataclass(frozen=True)
class _List:
    items: tuple
    line: int  # line of the opening parenthesis


_TOKEN_RE = re.compile(r"(?P<space>\s+)|(?P<comment>;[^\n]*)|(?P<open>\()|(?P<close>\))|(?P<sym>[^\s();]+)")


def _read_sexps(text: str, where: Callable[[int], str]) -> list[_List | _Sym]:
    """Tokenise and nest; PDDL is case-insensitive, so symbols are lower-cased."""
    stack: list[tuple[int, list]] = [(0, [])]
    line = 1
    for m in _TOKEN_RE.finditer(text):
        kind = m.lastgroup
        if kind == "open":
            stack.append((line, []))
        elif kind == "close":
            if len(stack) == 1:
                raise TaskFileError(f"{where(line)}: unbalanced parentheses: ')' closes nothing")
            opened, items = stack.pop()
            stack[-1][1].append(_List(tuple(items), opened))
        elif kind == "sym":
            stack[-1][1].append(_Sym(m[0].lower(), line))
        line += m[0].count("\n")
    if len(stack) > 1:
        raise TaskFileError(
            f"{where(stack[-1][0])}: unbalanced parentheses: '(' opened here is never closed "
            f"(the text ends at line {line})"
        )
    return stack[0][1]


class _DomainFileError(TaskFileError):
    """The file defines a domain, not a problem (skipped when loading a directory)."""


@dataclass(frozen=True)
class _Atom:
    pred: str
    args: tuple[str, ...]
    line: int | None


def _atom(node: _List | _Sym, objects: set[str], where: Callable[[int], str], what: str) -> _Atom:
    if not isinstance(node, _List) or not node.items or not isinstance(node.items[0], _Sym):
        line = node.line
        raise TaskFileError(f"{where(line)}: expected an atom such as (on a b) in {what}")
    pred = node.items[0].text
    if pred not in PREDICATES:
        known = ", ".join(PREDICATES)
        raise TaskFileError(f"{where(node.line)}: unknown predicate {pred!r} in {what} (supported: {known})")
    args = node.items[1:]
    if len(args) != PREDICATES[pred]:
        raise TaskFileError(f"{where(node.line)}: {pred} takes {PREDICATES[pred]} argument(s), got {len(args)}")
    names = []
    for a in args:
        if not isinstance(a, _Sym):
            raise TaskFileError(f"{where(a.line)}: expected an object name in ({pred} ...)")
        if a.text not in objects:
            raise TaskFileError(f"{where(a.line)}: unknown object {a.text!r} in ({pred} ...); not in :objects")
        names.append(a.text)
    return _Atom(pred, tuple(names), node.line)


def parse_problem(text: str, source: str = "<string>") -> dict:
    """Read one PDDL problem of the blocksworld domain into a task payload.

    Accepts ``(define (problem N) (:domain D) (:objects ...) (:init ...) (:goal ...))``
    with an optional ``(:requirements ...)``; the goal is one atom or ``(and ...)`` of
    positive atoms. The initial state must describe a complete, consistent configuration.

    Args:
        text: The file's content.
        source: Name used in error messages (the file path).

    Returns:
        A JSON-friendly payload: ``problem``, ``domain``, ``objects`` (PDDL names),
        ``blocks`` (the display names, parallel to ``objects``), ``init`` and ``goal``
        (atoms such as ``"on red blue"`` in display names), ``path``.

    Raises:
        TaskFileError: the text is malformed; the message names ``source`` and the line.
    """

    def where(line: int | None) -> str:
        return f"{source}:{line}" if line is not None else source

    forms = _read_sexps(text, where)
    if not forms:
        raise TaskFileError(f"{where(1)}: empty file, expected (define (problem ...) ...)")
    top = forms[0]
    if len(forms) > 1:
        raise TaskFileError(f"{where(forms[1].line)}: unexpected text after the problem definition")
    first = top.items[0] if isinstance(top, _List) and top.items else None
    if not isinstance(first, _Sym) or first.text != "define":
        raise TaskFileError(f"{where(top.line)}: expected (define (problem ...) ...)")
    head = top.items[1] if len(top.items) > 1 else None
    if (
        not isinstance(head, _List)
        or len(head.items) != 2
        or not all(isinstance(i, _Sym) for i in head.items)
        or head.items[0].text not in ("problem", "domain")
    ):
        raise TaskFileError(f"{where(top.line)}: expected (problem NAME) after define")
    if head.items[0].text == "domain":
        raise _DomainFileError(f"{where(top.line)}: this is a domain definition, not a problem")
    sections: dict[str, _List] = {}
    for sec in top.items[2:]:
        if not isinstance(sec, _List) or not sec.items or not isinstance(sec.items[0], _Sym):
            raise TaskFileError(f"{where(sec.line)}: expected a section such as (:init ...)")
        name = sec.items[0].text
        if name not in (":domain", ":objects", ":init", ":goal", ":requirements"):
            raise TaskFileError(f"{where(sec.line)}: unsupported section {name!r}")
        if name in sections:
            earlier = sections[name].line
            raise TaskFileError(f"{where(sec.line)}: section {name} appears twice (first at line {earlier})")
        sections[name] = sec
    for required in (":domain", ":objects", ":init", ":goal"):
        if required not in sections:
            raise TaskFileError(f"{where(top.line)}: problem has no ({required} ...) section")

    dom = sections[":domain"].items[1:]
    if len(dom) != 1 or not isinstance(dom[0], _Sym):
        raise TaskFileError(f"{where(sections[':domain'].line)}: expected (:domain NAME)")

    objects: list[str] = []
    obj_items = list(sections[":objects"].items[1:])
    while obj_items:
        o = obj_items.pop(0)
        if not isinstance(o, _Sym):
            raise TaskFileError(f"{where(o.line)}: expected object names in :objects")
        if o.text == "-":  # a type annotation (``a b - block``): types are not needed here
            if not obj_items or not isinstance(obj_items[0], _Sym):
                raise TaskFileError(f"{where(o.line)}: '-' in :objects must be followed by a type name")
            obj_items.pop(0)
            continue
        if not _NAME_RE.fullmatch(o.text) or o.text in _RESERVED:
            raise TaskFileError(f"{where(o.line)}: bad object name {o.text!r}")
        if o.text in objects:
            raise TaskFileError(f"{where(o.line)}: object {o.text!r} declared twice")
        objects.append(o.text)
    if not objects:
        raise TaskFileError(f"{where(sections[':objects'].line)}: no objects declared")

    init = [_atom(a, set(objects), where, ":init") for a in sections[":init"].items[1:]]
    goal_sec = sections[":goal"]
    if len(goal_sec.items) != 2:
        raise TaskFileError(f"{where(goal_sec.line)}: expected (:goal (and ...)) with one formula")
    formula = goal_sec.items[1]
    connective = (
        formula.items[0].text
        if isinstance(formula, _List) and formula.items and isinstance(formula.items[0], _Sym)
        else None
    )
    if connective in ("and", "or", "not", "imply", "exists", "forall", "when"):
        if connective != "and":
            raise TaskFileError(
                f"{where(formula.line)}: unsupported goal connective {connective!r}; "
                "use an atom or (and ...) of positive atoms"
            )
        goal_nodes = formula.items[1:]
        if not goal_nodes:
            raise TaskFileError(f"{where(formula.line)}: the goal (and) is empty")
    else:
        goal_nodes = (formula,)
    goal = [_atom(a, set(objects), where, ":goal") for a in goal_nodes]

    names = [PLANBENCH_COLOURS[o] for o in objects] if all(o in PLANBENCH_COLOURS for o in objects) else list(objects)
    to_name = dict(zip(objects, names))

    def named(a: _Atom) -> _Atom:
        return _Atom(a.pred, tuple(to_name[x] for x in a.args), a.line)

    init_n, goal_n = [named(a) for a in init], [named(a) for a in goal]
    # validate now, with line numbers; the payload is rebuilt into a state by ``reset``
    _build(names, objects, init_n, goal_n, where, init_line=sections[":init"].line, goal_line=goal_sec.line)
    return {
        "path": source,
        "problem": head.items[1].text,
        "domain": dom[0].text,
        "objects": objects,
        "blocks": names,
        "init": list(dict.fromkeys(_atom_str(a.pred, a.args) for a in init_n)),
        "goal": list(dict.fromkeys(_atom_str(a.pred, a.args) for a in goal_n)),
    }


def _build(
    names: Sequence[str],
    objects: Sequence[str],
    init: Sequence[_Atom],
    goal: Sequence[_Atom],
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
    goal_t = tuple(sorted({_atom_str(a.pred, a.args) for a in goal}))
    state = BlocksworldState(blocks, world, goal_t, world, objs)
    if is_goal(state):
        raise TaskFileError(f"{where(goal_line)}: the goal already holds in the initial state")
    return state


def _natural_key(path: Path) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)), str(path)


# ----------------------------------------------------------------------------- env
class BlocksworldEnv:
    """PlanBench Blocksworld: reward 1.0 on the action that reaches the goal, else 0."""

    name = "blocksworld"
    deterministic = True
    default_tasks = TASKS_DIR / "3"
    default_gamma = 0.95  # discounting makes shorter plans worth more

    # -- protocol
    def reset(self, task: Task, rng: np.random.Generator | None = None) -> BlocksworldState:
        """Start state of ``task`` (a payload from :meth:`load_tasks` or :func:`parse_problem`).

        Raises:
            TaskFileError: the payload is malformed or describes an inconsistent world.
        """
        p = task.payload

        def where(line: int | None) -> str:
            return f"task {task.task_id}"

        try:
            names, objects = list(p["blocks"]), list(p.get("objects", p["blocks"]))
            known = set(names)
            init = [_payload_atom(a, known, where) for a in p["init"]]
            goal = [_payload_atom(a, known, where) for a in p["goal"]]
        except (KeyError, TypeError, AttributeError) as exc:
            raise TaskFileError(f"task {task.task_id}: payload needs blocks, init and goal ({exc!r})") from None
        if len(objects) != len(names) or not goal:
            raise TaskFileError(f"task {task.task_id}: payload needs as many objects as blocks and a goal")
        return _build(names, objects, init, goal, where)

    def legal_actions(self, state: BlocksworldState) -> list[str]:
        """Every applicable action (none once the goal holds), in a fixed order."""
        if is_goal(state):
            return []
        return list(_moves(state.blocks, state.world))

    def step(self, state: BlocksworldState, action: str) -> Step[BlocksworldState]:
        """Apply ``action`` (PlanBench phrasing or PDDL form).

        Raises:
            ActionError: the text does not parse, names an unknown block, is not
                applicable (the message says which precondition fails), or the goal
                already holds.
        """
        if is_goal(state):
            raise ActionError(f"action {action!r} after the goal was reached: the episode is over")
        moves = _moves(state.blocks, state.world)
        nxt = moves.get(action)
        if nxt is None:
            action = self.canonical_action(state, action)
            nxt = moves[action]
        new = BlocksworldState(state.blocks, nxt, state.goal, state.start, state.objects, state.steps + (action,))
        if is_goal(new):
            return Step(new, 1.0, True, info={"success": True})
        return Step(new, 0.0, False)

    def state_key(self, state: BlocksworldState) -> str:
        """Configuration and goal, e.g. ``blue on red; red on table; hand empty | goal: on blue red``.

        The goal is part of the key because values depend on it; the steps are not, so
        two paths to one configuration share a key, also across tasks with one goal.
        """
        parts = []
        for b, s in zip(state.blocks, state.world):
            parts.append(f"{b} on {'table' if s == TABLE else state.blocks[s]}" if s != HAND else f"{b} held")
        if HAND not in state.world:
            parts.append("hand empty")
        return f"{'; '.join(parts)} | goal: {'; '.join(state.goal)}"

    def render(self, state: BlocksworldState) -> str:
        """PlanBench's statement of the task, then the plan so far.

        The first two lines equal the ``[STATEMENT]`` of PlanBench's plan-generation
        prompt for the same instance; ``[PLAN END]`` follows once the goal holds.
        """
        start_atoms = [(p, tuple(state.blocks[i] for i in a)) for p, a in _world_atoms(state.blocks, state.start)]
        goal_atoms = [(p, tuple(args)) for p, *args in (g.split() for g in state.goal)]
        obj = dict(zip(state.blocks, state.objects))
        lines = [
            f"As initial conditions I have that, {_sentence(start_atoms, obj)}.",
            f"My goal is to have that {_sentence(goal_atoms, obj)}.",
            "",
            "My plan is as follows:",
            "",
            "[PLAN]",
            *state.steps,
        ]
        if is_goal(state):
            lines.append("[PLAN END]")
        return "\n".join(lines)

    def value_bound(self, state: BlocksworldState, gamma: float) -> float:
        """gamma**(h-1) with h = :func:`plan_length_lower_bound` (0.0 at the goal).

        Since h <= d, the true distance, gamma**(h-1) >= gamma**(d-1) = V*(s).
        """
        h = plan_length_lower_bound(state)
        return 0.0 if h == 0 else float(gamma ** (h - 1))

    # -- text from outside
    def canonical_action(self, state: BlocksworldState, text: str) -> str:
        """Map an action written by someone else to this env's canonical phrasing.

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
        if canonical not in _moves(state.blocks, state.world):
            raise ActionError(f"illegal action {text!r}: {_why_illegal(p.op, state.blocks, state.world, x, y)}")
        return canonical

    # -- tasks
    def load_tasks(self, path: str | Path | None = None) -> list[Task]:
        """Read PDDL problems: one file, every ``*.pddl`` in a directory, or a glob pattern.

        ``None`` loads the shipped 3-block set. Files are ordered naturally
        (``instance-2`` before ``instance-10``); the task id is the file stem. Domain
        files met in a directory or glob are skipped.

        Raises:
            TaskFileError: nothing found, a file is malformed (file and line named), or
                two files share a stem.
        """
        target = Path(path) if path is not None else self.default_tasks
        text = str(target)
        if target.is_dir():
            files = sorted((f for f in target.glob("*.pddl") if f.is_file()), key=_natural_key)
            if not files:
                raise TaskFileError(f"no .pddl files in directory {target}")
            single = False
        elif target.is_file():
            if target.suffix.lower() != ".pddl":
                raise TaskFileError(f"{target}: expected a .pddl problem file, got {target.suffix or 'no suffix'!r}")
            files, single = [target], True
        elif globlib.has_magic(text):
            files = sorted((Path(f) for f in globlib.glob(text) if Path(f).is_file()), key=_natural_key)
            if not files:
                raise TaskFileError(f"no files match {text}")
            single = False
        else:
            raise TaskFileError(f"task file not found: {target}")
        tasks: list[Task] = []
        origin: dict[str, Path] = {}
        for f in files:
            try:
                content = f.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise TaskFileError(f"{f}: cannot read ({exc})") from None
            try:
                payload = parse_problem(content, str(f))
            except _DomainFileError:
                if single:
                    raise
                continue
            if f.stem in origin:
                raise TaskFileError(f"task id {f.stem!r} comes from two files: {origin[f.stem]} and {f}")
            origin[f.stem] = f
            tasks.append(Task(f.stem, payload))
        if not tasks:
            raise TaskFileError(f"no problem files in {text} (only domain definitions)")
        return tasks


def _payload_atom(text: str, known: set[str], where: Callable[[int | None], str]) -> _Atom:
    pred, *args = str(text).split()
    if pred not in PREDICATES or len(args) != PREDICATES[pred] or not set(args) <= known:
        raise TaskFileError(f"{where(None)}: bad atom {text!r} in payload")
    return _Atom(pred, tuple(args), None)


def _sentence(atom_list: list[tuple[str, tuple[str, ...]]], obj: dict[str, str]) -> str:
    """PlanBench's sentence: atoms sorted by predicate and PDDL names, joined with 'and'."""
    ordered = sorted(atom_list, key=lambda a: " ".join((a[0], *(obj[x] for x in a[1]))))
    parts = [_ATOM_TEXT[p].format(*args) for p, args in ordered]
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]
