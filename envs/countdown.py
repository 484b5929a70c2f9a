"""Game of 24 and Countdown: combine numbers with + - * / to reach a target.

States hold the remaining numbers as exact rationals (``fractions.Fraction``), sorted
ascending, plus the steps taken. Actions use the Tree-of-Thoughts step format
``4 + 8 = 12 (left: 4 6 12)``. Subtraction is always larger minus smaller: every
expression over + - * / has a counterpart without negative intermediates whose value
is the absolute value of the original, so no solvable puzzle becomes unsolvable, and
the tree stays smaller. Text from outside (an LLM, a file) goes through
:func:`parse_step`, a regular-expression parser, never ``eval``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import ActionError, TaskFileError
from .base import Env, Step, Task
from .taskfiles import check_unique_ids, expand_task_path, json_objects, read_text, shorten

__all__ = [
    "CountdownEnv",
    "CountdownState",
    "Game24Env",
    "ParsedStep",
    "format_number",
    "parse_step",
    "solvable",
    "solution",
    "exact_q",
    "optimal_value",
]

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
TASK_SUFFIXES = (".csv", ".jsonl", ".json")
Numbers = tuple[Fraction, ...]


def format_number(x: Fraction) -> str:
    """``12`` for integers, ``8/3`` for other rationals."""
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


def _format_left(numbers: Iterable[Fraction]) -> str:
    return " ".join(format_number(x) for x in numbers)


def _parse_number(text: str) -> Fraction:
    num, _, den = text.partition("/")
    try:
        numerator, denominator = int(num), int(den) if den else 1
    except ValueError:  # int()'s own message quotes the whole text, however long
        raise ValueError(f"not a number: {shorten(text)}") from None
    if denominator == 0:
        raise ValueError(f"zero denominator in {shorten(text)}")
    return Fraction(numerator, denominator)


@dataclass(frozen=True, slots=True)
class CountdownState:
    """Remaining numbers (sorted ascending), the target, the start numbers and steps."""

    numbers: Numbers
    target: Fraction
    start: Numbers
    steps: tuple[str, ...] = ()


@lru_cache(maxsize=1 << 16)
def _moves(numbers: Numbers, negatives: bool = False) -> dict[str, Numbers]:
    """Every distinct operation on ``numbers`` (sorted), as canonical text -> rest.

    ``negatives``: also the smaller number minus the larger (a negative result).
    """
    moves: dict[str, Numbers] = {}
    n = len(numbers)
    for i in range(n):
        for j in range(i + 1, n):
            a, b = numbers[i], numbers[j]  # a <= b
            rest = numbers[:i] + numbers[i + 1 : j] + numbers[j + 1 :]
            fa, fb = format_number(a), format_number(b)
            candidates = [(f"{fa} + {fb}", a + b), (f"{fb} - {fa}", b - a), (f"{fa} * {fb}", a * b)]
            if negatives and a != b:
                candidates.append((f"{fa} - {fb}", a - b))
            if a != 0:
                candidates.append((f"{fb} / {fa}", b / a))
            if b != 0 and a != b:
                candidates.append((f"{fa} / {fb}", a / b))
            for expr, value in candidates:
                left = tuple(sorted(rest + (value,)))
                text = f"{expr} = {format_number(value)} (left: {_format_left(left)})"
                moves.setdefault(text, left)
    return moves


@lru_cache(maxsize=1 << 18)
def _solvable(numbers: Numbers, target: Fraction, negatives: bool = False) -> bool:
    if len(numbers) == 1:
        return numbers[0] == target
    return any(_solvable(left, target, negatives) for left in _moves(numbers, negatives).values())


def solvable(numbers: Sequence[Fraction | int], target: Fraction | int, negatives: bool = False) -> bool:
    """Exact solver: can ``numbers`` (each used once) reach ``target``? (``negatives``: see ``_moves``.)"""
    return _solvable(tuple(sorted(Fraction(x) for x in numbers)), Fraction(target), negatives)


def solution(state: CountdownState, negatives: bool = False) -> list[str] | None:
    """One sequence of steps from ``state`` to the target, or None if there is none."""
    if len(state.numbers) == 1:
        return [] if state.numbers[0] == state.target else None
    for text, left in _moves(state.numbers, negatives).items():
        if _solvable(left, state.target, negatives):
            rest = solution(CountdownState(left, state.target, state.start), negatives)
            assert rest is not None
            return [text, *rest]
    return None


def optimal_value(state: CountdownState, gamma: float = 1.0, negatives: bool = False) -> float:
    """Exact V*(s): the only reward is 1 at the last step, after len(numbers)-1 steps."""
    m = len(state.numbers)
    if m <= 1 or not _solvable(state.numbers, state.target, negatives):
        return 0.0
    return float(gamma ** (m - 2))


def exact_q(state: CountdownState, action: str, gamma: float = 1.0, negatives: bool = False) -> float:
    """Exact Q*(s, a) = r(s, a) + gamma * V*(s')."""
    left = _moves(state.numbers, negatives)[action]
    if len(left) == 1:
        return 1.0 if left[0] == state.target else 0.0
    return gamma * optimal_value(CountdownState(left, state.target, state.start), gamma, negatives)


# ----------------------------------------------------------------------------- parser
_NUM = r"-?\d+(?:/\d+)?"
_STEP_RE = re.compile(
    rf"^\s*(?P<a>{_NUM})\s*(?P<op>[-+*/×÷x])\s*(?P<b>{_NUM})\s*=\s*(?P<r>{_NUM})"
    rf"\s*(?:\(\s*left\s*:\s*(?P<left>(?:{_NUM}\s*)*)\))?\s*\.?\s*$",
    re.IGNORECASE,
)
_OPS = {"+": "+", "-": "-", "*": "*", "x": "*", "X": "*", "×": "*", "/": "/", "÷": "/"}


@dataclass(frozen=True)
class ParsedStep:
    """One arithmetic step as written: ``a op b = result (left: ...)``."""

    a: Fraction
    op: str
    b: Fraction
    result: Fraction
    left: Numbers | None


def parse_step(text: str) -> ParsedStep:
    """Parse ``'4 + 8 = 12 (left: 4 6 12)'`` (the ``left`` part is optional).

    Raises:
        ActionError: the text is not one step of that form or its arithmetic is wrong.
    """
    m = _STEP_RE.match(text)
    if m is None:
        raise ActionError(f"cannot parse step {text!r}: expected 'A op B = C (left: ...)'")
    try:
        a, b, result = (_parse_number(m[g]) for g in ("a", "b", "r"))
        left = None if m["left"] is None else tuple(_parse_number(t) for t in m["left"].split())
    except ValueError as exc:
        raise ActionError(f"bad number in step {text!r}: {exc}") from None
    op = _OPS[m["op"]]
    if op == "/" and b == 0:
        raise ActionError(f"division by zero in step {text!r}")
    value = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else None}[op]
    if value != result:
        raise ActionError(
            f"wrong arithmetic in step {text!r}: {format_number(a)} {op} {format_number(b)} "
            f"is {format_number(value)}"
        )
    return ParsedStep(a, op, b, result, None if left is None else tuple(sorted(left)))


# ----------------------------------------------------------------------------- env
class CountdownEnv(Env):
    """Countdown: any count of numbers, any target; all numbers must be used.

    Args:
        negatives: Also offer the smaller number minus the larger (``4 - 8 = -4``), as
            models sometimes write; off by default (it makes no puzzle solvable that was
            not). Trees searched with it label such steps for a PRM.
    """

    name = "countdown"
    has_value_bound = rewrites_steps = True  # value_bound and rewrite_step below
    deterministic = True
    step_on_expand = True  # a step is a dict lookup; the solver proves nodes from their children at once
    default_tasks = TASKS_DIR / "countdown" / "countdown_cd3_test.jsonl"
    fixed_target: Fraction | None = None
    fixed_count: int | None = None

    def __init__(self, negatives: bool = False) -> None:
        if not isinstance(negatives, bool):
            raise TypeError(f"negatives must be true or false, got {negatives!r}")
        self.negatives = negatives

    # -- protocol
    def reset(self, task: Task, rng: np.random.Generator | None = None) -> CountdownState:
        numbers = tuple(sorted(Fraction(x) for x in task.payload["numbers"]))
        return CountdownState(numbers, Fraction(task.payload["target"]), numbers)

    def legal_actions(self, state: CountdownState) -> list[str]:
        return list(_moves(state.numbers, self.negatives)) if len(state.numbers) > 1 else []

    def step(self, state: CountdownState, action: str, rng: np.random.Generator | None = None) -> Step[CountdownState]:
        left = _moves(state.numbers, self.negatives).get(action) if len(state.numbers) > 1 else None
        if left is None:
            action = self.canonical_action(state, action)
            left = _moves(state.numbers, self.negatives)[action]
        nxt = CountdownState(left, state.target, state.start, state.steps + (action,))
        done = len(left) == 1
        reward = 1.0 if done and left[0] == state.target else 0.0
        return Step(nxt, reward, done)

    def state_key(self, state: CountdownState) -> str:
        return f"target={format_number(state.target)} left={_format_left(state.numbers)}"

    def render(self, state: CountdownState) -> str:
        lines = [
            f"Use each number once with + - * / to reach {format_number(state.target)}.",
            f"Input: {_format_left(state.start)}",
            "Steps:",
            *state.steps,
        ]
        return "\n".join(lines)

    def answer_text(self, state: CountdownState) -> str:
        """The target (the number the last step must leave)."""
        return format_number(state.target)

    def observe(self, state: CountdownState) -> None:
        """None: a step's text says the numbers left (``(left: ...)``), the target is in the prompt."""
        return None

    def value_bound(self, state: CountdownState, gamma: float) -> float:
        m = len(state.numbers)
        return 0.0 if m <= 1 else float(gamma ** (m - 2))

    def exact_value(self, state: CountdownState, gamma: float) -> float:
        return optimal_value(state, gamma, self.negatives)

    # -- text from outside
    def canonical_action(self, state: CountdownState, text: str) -> str:
        """Map a step written by someone else to this env's canonical action text.

        Raises:
            ActionError: the text does not parse or is not a legal step in ``state``.
        """
        if len(state.numbers) <= 1:
            raise ActionError(f"no action is legal: the episode is over ({self.state_key(state)})")
        p = parse_step(text)
        remaining = list(state.numbers)
        for x in (p.a, p.b):
            if x not in remaining:
                raise ActionError(
                    f"step {text!r} uses {format_number(x)}, which is not among the numbers left "
                    f"({_format_left(state.numbers)})"
                )
            remaining.remove(x)
        if p.op == "-" and p.result < 0 and not self.negatives:
            raise ActionError(f"step {text!r} goes negative; write the larger number first")
        left = tuple(sorted(remaining + [p.result]))
        if p.left is not None and p.left != left:
            raise ActionError(f"step {text!r} lists left numbers {_format_left(p.left)}, expected {_format_left(left)}")
        a, b = (p.a, p.b) if p.op in "-/" else (min(p.a, p.b), max(p.a, p.b))
        canonical = (
            f"{format_number(a)} {p.op} {format_number(b)} = {format_number(p.result)} "
            f"(left: {_format_left(left)})"
        )
        if canonical not in _moves(state.numbers, self.negatives):  # pragma: no cover - guarded above
            raise ActionError(f"step {text!r} is not legal from {self.state_key(state)}")
        return canonical

    # -- tasks
    def make_task(self, task_id: str, numbers: Sequence, target, where: str) -> Task:
        """Validate one task's numbers and target; ``where`` names file and line."""
        try:
            nums = [_parse_number(str(x).strip()) for x in numbers]
            tgt = _parse_number(str(target).strip())
        except (ValueError, TypeError) as exc:
            raise TaskFileError(f"{where}: bad number ({exc})") from None
        if len(nums) < 2:
            raise TaskFileError(f"{where}: need at least 2 numbers, got {len(nums)}")
        if self.fixed_count is not None and len(nums) != self.fixed_count:
            raise TaskFileError(f"{where}: {self.name} takes {self.fixed_count} numbers, got {len(nums)}")
        if self.fixed_target is not None and tgt != self.fixed_target:
            raise TaskFileError(f"{where}: {self.name} has target {self.fixed_target}; use --env countdown")
        return Task(task_id, {"numbers": [format_number(x) for x in nums], "target": format_number(tgt)})

    def rewrite_step(self, text: str, rng: np.random.Generator) -> str:
        """Swap the operands of ``+`` and ``*`` (each half the time) and shuffle the ``left`` list."""
        try:
            p = parse_step(text)
        except ActionError:
            return text
        a, b = (p.b, p.a) if p.op in "+*" and rng.random() < 0.5 else (p.a, p.b)
        written = f"{format_number(a)} {p.op} {format_number(b)} = {format_number(p.result)}"
        if p.left is None:
            return written
        left = [p.left[i] for i in rng.permutation(len(p.left))]
        return f"{written} (left: {_format_left(left)})"

    def task_from_text(self, text: str) -> Task | None:
        """``"4 6 8 8"`` (the target is the env's fixed one) or ``"30 100 93 -> 23"``; None if not numbers."""
        numbers, arrow, target = text.partition("->")
        parts = [t for t in re.split(r"[,\s]+", numbers.strip()) if t]
        if not parts or not all(re.fullmatch(r"-?\d+(?:/\d+)?", t) for t in parts):
            return None
        if not arrow:
            if self.fixed_target is None:
                raise TaskFileError(f"task {shorten(text)!r}: give the target as 'numbers -> target'")
            target = format_number(self.fixed_target)
        return self.make_task(" ".join(parts) + ("" if not arrow else f" -> {target.strip()}"), parts, target.strip(),
                              f"task {shorten(text)!r}")

    def load_tasks(self, path: str | Path | None = None) -> list[Task]:
        """Read tasks from CSV (column ``Puzzles``) or JSONL (d1 or native form).

        ``path`` is a file, a directory (every ``.csv`` / ``.jsonl`` / ``.json`` in it,
        sorted naturally) or a glob. JSONL lines are either ``{"input": "30,100,93",
        "output": "23"}`` or the native ``{"numbers": [4, 4, 6, 8], "target": 24,
        "task_id": "optional"}``. Task ids default to ``<file stem>-<row>`` with rows
        counted from 0.

        Raises:
            TaskFileError: nothing found, a file is not UTF-8 text, empty or has no
                tasks, a line is malformed (file and line named), or a task id repeats
                (also across files that share a stem).
        """
        files, _ = expand_task_path(path if path is not None else self.default_tasks, TASK_SUFFIXES, "task file")
        rows: list[tuple[Task, str]] = []
        for f in files:
            suffix = f.suffix.lower()
            if suffix not in TASK_SUFFIXES:
                raise TaskFileError(f"{f}: unknown task file type {suffix!r} (use .csv or .jsonl)")
            text = read_text(f)
            found = self._read_csv(f, text) if suffix == ".csv" else self._read_jsonl(f, text)
            if not found:
                raise TaskFileError(f"{f}: no tasks in the file{' (only a header)' if suffix == '.csv' else ''}")
            rows.extend(found)
        check_unique_ids(
            ((t.task_id, where) for t, where in rows),
            "ids are <file stem>-<row> unless a JSONL line gives a task_id: rename a file or change the task_id",
        )
        return [t for t, _ in rows]

    def _read_csv(self, path: Path, text: str) -> list[tuple[Task, str]]:
        rows = []
        reader = csv.DictReader(io.StringIO(text, newline=""))
        try:
            if reader.fieldnames is None or "Puzzles" not in reader.fieldnames:
                found = [shorten(n) for n in reader.fieldnames or []]
                raise TaskFileError(f"{path}:1: CSV needs a 'Puzzles' column, found {', '.join(found) or 'none'}")
            target = self.fixed_target if self.fixed_target is not None else 24
            for row_index, row in enumerate(reader):
                where = f"{path}:{reader.line_num}"
                puzzle = (row.get("Puzzles") or "").split()
                rows.append((self.make_task(f"{path.stem}-{row_index}", puzzle, target, where), where))
        except csv.Error as exc:  # e.g. a field past csv's size limit; line_num counts lines done
            raise TaskFileError(f"{path}:{reader.line_num + 1}: not valid CSV ({exc})") from None
        return rows

    def _read_jsonl(self, path: Path, text: str) -> list[tuple[Task, str]]:
        rows = []
        for where, obj in json_objects(path, text):
            task_id = obj.get("task_id", f"{path.stem}-{len(rows)}")
            if not isinstance(task_id, str) or not task_id:
                raise TaskFileError(f"{where}: task_id must be a non-empty string")
            if "numbers" in obj:
                numbers, target = obj["numbers"], obj.get("target", self.fixed_target or None)
                if not isinstance(numbers, list):
                    raise TaskFileError(f"{where}: 'numbers' must be a list")
            elif "input" in obj:
                numbers = [t for t in re.split(r"[,\s]+", str(obj["input"]).strip()) if t]
                target = obj.get("output", self.fixed_target)
            else:
                raise TaskFileError(f"{where}: expected 'numbers' or 'input' field")
            if target is None:
                raise TaskFileError(f"{where}: missing target ('target' or 'output')")
            rows.append((self.make_task(task_id, numbers, target, where), where))
        return rows


class Game24Env(CountdownEnv):
    """Game of 24: four numbers, target 24."""

    name = "game24"
    default_tasks = TASKS_DIR / "game24" / "24.csv"
    fixed_target = Fraction(24)
    step_holds_state = True  # the target is fixed, so the `left` list is the whole state
    fixed_count = 4
