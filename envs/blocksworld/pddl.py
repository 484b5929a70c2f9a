"""A small PDDL reader for Blocksworld problem files (PlanBench's ``blocksworld-4ops``).

Tasks are PDDL problem files of the ``blocksworld-4ops`` domain (PlanBench's
``generated_domain.pddl``), read by a tokenizer and an iterative s-expression reader
written here (parentheses, symbols, ``;`` comments), never ``eval``; nesting deeper than
:data:`~treeq.envs.taskfiles.MAX_DEPTH` is refused. PlanBench names objects ``a``, ``b``,
``c`` ... in the files and ``red``, ``blue``, ``orange`` ... in its prompts; when every
object of a problem is one of those letters the colour names are used (exactly as
PlanBench's ``encoded_objects``), otherwise the object names themselves.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ...errors import TaskFileError
from ..taskfiles import MAX_DEPTH
from .rules import PREDICATES, Atom, atom_str, build_world

__all__ = ["PLANBENCH_COLOURS", "DomainFileError", "parse_problem"]

#: PlanBench's ``encoded_objects_compact``: PDDL object name -> the colour its prompts use.
PLANBENCH_COLOURS = {
    "a": "red", "b": "blue", "c": "orange", "d": "yellow", "e": "white", "f": "magenta",
    "g": "black", "h": "cyan", "i": "green", "j": "violet", "k": "silver", "l": "gold",
}  # fmt: skip

_NAME_RE = re.compile(r"[a-z][a-z0-9_-]*")
_RESERVED = {"table", "hand"}  # would make state keys ("red on table") ambiguous


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
            if len(stack) > MAX_DEPTH:  # stack[0] is the top level, not a parenthesis
                raise TaskFileError(f"{where(line)}: parentheses nested deeper than {MAX_DEPTH} levels")
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


class DomainFileError(TaskFileError):
    """The file defines a domain, not a problem (skipped when loading a directory)."""


def _atom(node: _List | _Sym, objects: set[str], where: Callable[[int], str], what: str) -> Atom:
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
    return Atom(pred, tuple(names), node.line)


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
        raise DomainFileError(f"{where(top.line)}: this is a domain definition, not a problem")
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

    def named(a: Atom) -> Atom:
        return Atom(a.pred, tuple(to_name[x] for x in a.args), a.line)

    init_n, goal_n = [named(a) for a in init], [named(a) for a in goal]
    # validate now, with line numbers; the payload is rebuilt into a state by ``reset``
    build_world(names, objects, init_n, goal_n, where, init_line=sections[":init"].line, goal_line=goal_sec.line)
    return {
        "path": source,
        "problem": head.items[1].text,
        "domain": dom[0].text,
        "objects": objects,
        "blocks": names,
        "init": list(dict.fromkeys(atom_str(a.pred, a.args) for a in init_n)),
        "goal": list(dict.fromkeys(atom_str(a.pred, a.args) for a in goal_n)),
    }
