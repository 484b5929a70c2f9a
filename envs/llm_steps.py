"""Open-text reasoning steps: an LLM writes one step at a time until it states an answer.

A state is a question plus the steps written so far; an action is one more step, a
single line of free text, so ``legal_actions`` is None and a policy proposes the steps.
The episode ends when a step contains the final-answer marker ``Answer:`` (case
insensitive; the text after it is the answer) or when ``max_steps`` steps are written.
The reward is 1 when the answer checks, else 0.

Two kinds of task:

* **puzzles** (Game of 24 / Countdown): the answer is one arithmetic expression over
  integers with ``+ - * /`` (also ``×``, ``÷`` and the unicode minus ``−``) and
  parentheses, optionally followed by ``= <target>``. It must use the puzzle's numbers
  exactly once each (as a multiset) and evaluate exactly (``fractions.Fraction``) to the
  target. A small recursive-descent parser reads it, never ``eval``; nesting deeper than
  :data:`MAX_NESTING` is malformed, not a ``RecursionError``.
* **numeric questions** from a JSONL file of ``{"question": str, "answer": number or
  numeric string, "id": optional}``: the first number in the answer text (``3/4``,
  ``-2.5``, ``1,234``) must equal the expected value: exactly for an integer, a fraction
  or a decimal written as a string; within 1e-9 relative for a JSON float.

Malformed answers (garbage, a division by zero, numbers reused or missing) give reward 0,
never an exception; only an action that is not one line of text raises
:class:`~treeq.errors.ActionError`.

Why one module over 400 lines: the env and the answer checker it rewards with (a small
parser that never calls ``eval``) are one contract; the checker has no other user.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ActionError, ConfigError, TaskFileError
from .base import Env, Step, Task
from .countdown import TASK_SUFFIXES, CountdownEnv, Game24Env, format_number
from .taskfiles import (
    check_unique_ids,
    expand_task_path,
    json_objects,
    loads_json,
    read_text,
    shorten,
)

__all__ = [
    "MAX_NESTING",
    "LLMStepsEnv",
    "LLMStepsState",
    "check_expression",
    "check_numeric",
    "clean_step",
    "extract_answer",
    "parse_number_text",
    "puzzle_question",
]

#: Deepest parenthesis nesting an answer expression may have; deeper is malformed.
MAX_NESTING = 100
#: Longest answer text the checkers read (characters); longer is malformed.
MAX_ANSWER_CHARS = 10_000
_INFO_CHARS = 500  # of the answer, kept in Step.info

_MARKER_RE = re.compile(r"\banswer\s*:", re.IGNORECASE)
# Decoration models put around an answer: markdown bold / code, LaTeX dollars, a final period.
_DECORATION = " \t*`$"

# A number in free text: optional minus (not after a word character, ")" or "."),
# an integer with or without thousands commas, or a decimal; an optional exponent;
# an optional "/ denominator".
_NUMBER = (
    r"(?P<sign>(?<![\w).])[-\u2212])?"
    r"(?P<mant>(?:[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)(?:\.[0-9]+)?|\.[0-9]+)"
    r"(?P<exp>[eE][-+]?[0-9]+)?"
    r"(?:\s*/\s*(?P<den>[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+))?"
)
_NUMBER_RE = re.compile(_NUMBER)


# ----------------------------------------------------------------------------- numbers
def _number_from_match(m: re.Match) -> Fraction | None:
    """The exact value of a :data:`_NUMBER_RE` match; None for a zero denominator, too many digits
    or an exponent past 999 (``1e999999`` would build a million-digit integer)."""
    if m["exp"] is not None and len(m["exp"].lstrip("eE+-").lstrip("0")) > 3:
        return None
    try:
        value = Fraction(m["mant"].replace(",", "") + (m["exp"] or ""))
        if m["den"] is not None:
            den = int(m["den"].replace(",", ""))
            if den == 0:
                return None
            value /= den
    except (ValueError, ZeroDivisionError):  # e.g. past Python's integer digit limit
        return None
    return -value if m["sign"] else value


def parse_number_text(text: str) -> Fraction | None:
    """The first number in ``text`` as an exact rational (``"x = -1,234.5"`` -> ``-2469/2``).

    Accepts a leading minus (``-`` or ``−``), thousands commas, decimals, an exponent
    (``1e-3``) and fractions (``3/4``). Returns None when there is no number, or the
    first one is unusable (a zero denominator).
    """
    m = _NUMBER_RE.search(text)
    return None if m is None else _number_from_match(m)


def _expected_value(value: Any) -> Fraction | float | None:
    """A task's expected answer: exact for ints and numeric strings, float for JSON floats; None if neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and len(value) <= MAX_ANSWER_CHARS:
        m = _NUMBER_RE.fullmatch(value.strip())
        return None if m is None else _number_from_match(m)
    return None


def _payload_answer(value: Fraction | float) -> str | float:
    """The expected answer as JSON-safe payload: ``"3/4"`` for exact values, the float itself otherwise."""
    return value if isinstance(value, float) else format_number(value)


def check_numeric(answer: str, expected: Fraction | float) -> tuple[bool, str]:
    """Does the first number in ``answer`` equal ``expected``? Returns (ok, reason).

    Exact comparison for a rational ``expected``; a float ``expected`` allows 1e-9
    relative error.
    """
    if len(answer) > MAX_ANSWER_CHARS:
        return False, f"answer longer than {MAX_ANSWER_CHARS} characters"
    got = parse_number_text(answer)
    if got is None:
        return False, "no usable number in the answer"
    if isinstance(expected, float):
        try:
            ok = float(got) == expected or math.isclose(float(got), expected, rel_tol=1e-9, abs_tol=0.0)
        except OverflowError:
            ok = False
    else:
        ok = got == expected
    shown = expected if isinstance(expected, float) else format_number(expected)
    return ok, "correct" if ok else f"answer {format_number(got)} is not {shown}"


# ----------------------------------------------------------------------------- expressions
class _Malformed(Exception):
    """The answer is not an expression of the accepted form (the message says why)."""


_TOKEN_RE = re.compile(r"\s*(?:([0-9]+)|([-+*/()\u00d7\u00f7\u2212]))")
_OP_NAMES = {"\u00d7": "*", "\u00f7": "/", "\u2212": "-"}


def _tokenize(text: str) -> list[str]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            raise _Malformed(f"unexpected {shorten(text[pos:pos + 10])} at column {pos + 1}")
        tok = m[1] if m[1] is not None else _OP_NAMES.get(m[2], m[2])
        tokens.append(tok)
        pos = m.end()
    if not tokens:
        raise _Malformed("empty expression")
    return tokens


class _Parser:
    """Recursive descent over ``expr := term (('+'|'-') term)*``, ``term := factor (('*'|'/') factor)*``,
    ``factor := INT | '-' INT | '(' expr ')'``. Builds a tree of ``(op, left, right)`` and
    ``Fraction`` leaves; recursion only on parentheses, at most :data:`MAX_NESTING` deep."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens, self.pos, self.leaves = tokens, 0, []

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str | None:
        tok = self.peek()
        self.pos += 1
        return tok

    def parse(self) -> Any:
        tree = self.expr(0)
        if self.peek() is not None:
            raise _Malformed(f"unexpected {self.peek()!r} after a complete expression")
        return tree

    def expr(self, depth: int) -> Any:
        left = self.term(depth)
        while self.peek() in ("+", "-"):
            op = self.take()
            left = (op, left, self.term(depth))
        return left

    def term(self, depth: int) -> Any:
        left = self.factor(depth)
        while self.peek() in ("*", "/"):
            op = self.take()
            left = (op, left, self.factor(depth))
        return left

    def factor(self, depth: int) -> Any:
        tok = self.take()
        if tok == "(":
            if depth >= MAX_NESTING:
                raise _Malformed(f"parentheses nested deeper than {MAX_NESTING}")
            inner = self.expr(depth + 1)
            if self.take() != ")":
                raise _Malformed("unbalanced parentheses")
            return inner
        sign = 1
        if tok == "-" and self.peek() is not None and self.peek().isdigit():  # a negative number literal
            sign, tok = -1, self.take()
        if tok is None:
            raise _Malformed("the expression ends early")
        if not tok.isdigit():
            raise _Malformed(f"expected a number or '(', got {tok!r}")
        try:
            value = Fraction(sign * int(tok))
        except ValueError:  # past Python's integer digit limit
            raise _Malformed("a number with too many digits") from None
        self.leaves.append(value)
        return value


def _evaluate(tree: Any) -> Fraction:
    if isinstance(tree, Fraction):
        return tree
    op, left, right = tree
    a, b = _evaluate(left), _evaluate(right)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        raise ZeroDivisionError
    return a / b


def _parse(text: str) -> tuple[Any, list[Fraction]]:
    parser = _Parser(_tokenize(text))
    return parser.parse(), parser.leaves


def _numbers_text(values: Any) -> str:
    return " ".join(format_number(x) for x in sorted(values))


def check_expression(answer: str, numbers: tuple[Fraction, ...], target: Fraction) -> tuple[bool, str]:
    """Does ``answer`` use each of ``numbers`` once and evaluate exactly to ``target``? Returns (ok, reason).

    ``answer`` is an expression over integer literals with ``+ - * /`` (``×``, ``÷``,
    ``−`` too) and parentheses, optionally followed by ``= <expression equal to the
    target>``. Never raises on bad text: malformed input, a division by zero or the
    wrong numbers give ``(False, reason)``.
    """
    if len(answer) > MAX_ANSWER_CHARS:
        return False, f"answer longer than {MAX_ANSWER_CHARS} characters"
    lhs, eq, rhs = answer.partition("=")
    if "=" in rhs:
        return False, "malformed expression: more than one '='"
    try:
        tree, leaves = _parse(lhs)
        rhs_tree = _parse(rhs)[0] if eq else None
    except _Malformed as exc:
        return False, f"malformed expression: {exc}"
    if Counter(leaves) != Counter(numbers):
        return False, f"uses {_numbers_text(leaves)}; the numbers are {_numbers_text(numbers)}, each once"
    try:
        value = _evaluate(tree)
        stated = _evaluate(rhs_tree) if rhs_tree is not None else None
    except ZeroDivisionError:
        return False, "division by zero"
    except RecursionError:  # only a task with thousands of numbers gets here
        return False, "malformed expression: too deep to evaluate"
    if value != target:
        return False, f"evaluates to {format_number(value)}, not {format_number(target)}"
    if stated is not None and stated != target:
        return False, f"states '= {format_number(stated)}', not {format_number(target)}"
    return True, "correct"


# ----------------------------------------------------------------------------- text helpers
def extract_answer(step: str) -> str | None:
    """The answer in a step: the text after its first ``Answer:`` (any case), without
    markdown / LaTeX decoration or a final period; None when the step has no marker."""
    m = _MARKER_RE.search(step)
    if m is None:
        return None
    text = step[m.end():].strip(_DECORATION)
    while text.endswith("."):
        text = text[:-1].rstrip(_DECORATION)
    return text


def clean_step(text: str) -> str | None:
    """A generation cut to one legal step: its first non-blank line, stripped; None if it has none.

    For policies: :meth:`LLMStepsEnv.step` refuses empty or multi-line actions.
    """
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return None


# ----------------------------------------------------------------------------- env
@dataclass(frozen=True, slots=True)
class LLMStepsState:
    """The question, the steps written so far, and what the answer checker needs.

    Attributes:
        question: The task as the model reads it.
        steps: The steps so far, each one stripped line.
        numbers: Puzzles: the numbers to use, each once (task order); None for questions.
        target: Puzzles: the value to make; None for questions.
        expected: Numeric questions: the expected answer (Fraction: exact; float: 1e-9
            relative); None for puzzles.
    """

    question: str
    steps: tuple[str, ...] = ()
    numbers: tuple[Fraction, ...] | None = None
    target: Fraction | None = None
    expected: Fraction | float | None = None


def puzzle_question(numbers: Any, target: Any) -> str:
    """``Use the numbers 4 6 8 8 and + - * / to make 24.``"""
    return f"Use the numbers {' '.join(str(x) for x in numbers)} and + - * / to make {target}."


class LLMStepsEnv(Env):
    """Open-text reasoning steps proposed by an LLM, checked exactly at the ``Answer:`` line.

    Args:
        max_steps: Steps after which the episode ends without an answer (reward 0,
            ``info["reason"] == "step limit"``). Default 6.

    Attributes:
        instructions: What a policy tells the model before :meth:`render`'s text: one
            step per line, and how to write the final ``Answer:`` line.
    """

    name = "llm-steps"
    has_value_bound = True
    deterministic = True
    step_on_expand = True  # stepping appends a line: cheap, and every proposal is then listed and checked at once
    default_gamma = 1.0
    prefer_transpositions = False
    default_evaluator = "zero"  # random rollouts cannot play open text

    instructions: str = (
        "Solve the problem one step at a time. Write one step per reply, on a single line. "
        "When you know the answer, write the last step as 'Answer: ' followed by the answer. "
        "For a numbers puzzle the answer is one expression with + - * / and parentheses that uses "
        "each given number exactly once, e.g. 'Answer: (4 + 8) * (8 - 6)'; otherwise it is a number, "
        "e.g. 'Answer: 3/4'."
    )

    def __init__(self, max_steps: int = 6) -> None:
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ConfigError(f"max_steps must be an integer >= 1, got {max_steps!r}")
        self.max_steps = max_steps

    # -- protocol
    def reset(self, task: Task, rng: np.random.Generator | None = None) -> LLMStepsState:
        p = task.payload
        if "numbers" in p:
            numbers = tuple(Fraction(str(x)) for x in p["numbers"])
            target = Fraction(str(p["target"]))
            return LLMStepsState(puzzle_question(p["numbers"], p["target"]), (), numbers, target)
        expected = _expected_value(p["answer"])
        if expected is None:
            raise TaskFileError(f"task {task.task_id}: 'answer' {shorten(p['answer'])} is not a number")
        return LLMStepsState(str(p["question"]), (), expected=expected)

    def legal_actions(self, state: LLMStepsState) -> None:
        return None

    def is_over(self, state: LLMStepsState) -> bool:
        """True when the last step gave an answer or the step limit is reached."""
        return bool(state.steps) and (len(state.steps) >= self.max_steps
                                      or _MARKER_RE.search(state.steps[-1]) is not None)

    def step(self, state: LLMStepsState, action: str, rng: np.random.Generator | None = None) -> Step[LLMStepsState]:
        if not isinstance(action, str):
            raise ActionError(f"a step must be text, got {type(action).__name__}")
        text = action.strip()
        if not text:
            raise ActionError("empty step: write one line of text")
        if len(text.splitlines()) > 1:
            raise ActionError(f"a step is one line of text; {shorten(text)} has a line break (send one step at a time)")
        if self.is_over(state):
            raise ActionError("the episode is over: the last step gave an answer or reached the step limit")
        nxt = LLMStepsState(state.question, state.steps + (text,), state.numbers, state.target, state.expected)
        answer = extract_answer(text)
        if answer is None:
            # Terminated, not truncated: the steps are the state, so a transcript at the
            # limit is a dead end the solver may prove at 0, not a cut-off episode.
            if len(nxt.steps) >= self.max_steps:
                return Step(nxt, 0.0, True, False, {"success": False, "reason": "step limit"})
            return Step(nxt, 0.0, False)
        ok, reason = self.check_answer(state, answer)
        info = {"success": ok, "answer": answer[:_INFO_CHARS], "reason": reason}
        return Step(nxt, 1.0 if ok else 0.0, True, False, info)

    def check_answer(self, state: LLMStepsState, answer: str) -> tuple[bool, str]:
        """Check ``answer`` (the text after ``Answer:``) against the task; returns (ok, reason)."""
        if state.numbers is not None and state.target is not None:
            return check_expression(answer, state.numbers, state.target)
        assert state.expected is not None
        return check_numeric(answer, state.expected)

    def state_key(self, state: LLMStepsState) -> str:
        blob = json.dumps([state.question, list(state.steps)], ensure_ascii=False).encode("utf-8", "surrogatepass")
        return "llm-steps:" + hashlib.sha256(blob).hexdigest()[:32]

    def render(self, state: LLMStepsState) -> str:
        return "\n".join([state.question, *(f"Step {i}: {s}" for i, s in enumerate(state.steps, 1))])

    def observe(self, state: LLMStepsState) -> None:
        """None: a reasoning step answers nothing; its text is the whole step."""
        return None

    def value_bound(self, state: LLMStepsState, gamma: float) -> float:
        # From any open state the next step may be a correct "Answer:" line (reward 1);
        # the MCTS-Solver then proves a node as soon as one child answers correctly.
        return 0.0 if self.is_over(state) else 1.0

    # -- tasks
    def task_from_text(self, text: str) -> Task | None:
        """``"4 6 8 8"`` (Game of 24) or ``"30 100 93 -> 23"`` (Countdown); None if not numbers."""
        return (CountdownEnv() if "->" in text else Game24Env()).task_from_text(text)

    def load_tasks(self, path: str | Path | None = None) -> list[Task]:
        """Read puzzles or numeric questions.

        ``path`` None: the shipped Game of 24 set. Otherwise a file, directory or glob of
        ``.csv`` / ``.jsonl`` / ``.json`` files. A JSONL file whose first row has a
        ``question`` or ``answer`` field holds numeric questions ``{"question": str,
        "answer": number or numeric string, "id": optional}`` (ids ``qa-<line>`` unless
        given); any other file is a Game of 24 / Countdown task file as ``countdown``
        reads it (ids kept).

        Raises:
            TaskFileError: nothing found, a file unreadable or empty, a malformed line
                (file and line named), or a task id that repeats.
        """
        if path is None:
            return [Task(t.task_id, dict(t.payload)) for t in Game24Env().load_tasks(None)]
        files, _ = expand_task_path(path, TASK_SUFFIXES, "task file")
        rows: list[tuple[Task, str]] = []
        for f in files:
            text = read_text(f) if f.suffix.lower() in (".jsonl", ".json") else ""
            if text and self._is_qa_text(f, text):
                rows.extend(self._read_qa(f, text))
            else:
                rows.extend((t, str(f)) for t in CountdownEnv().load_tasks(f))
        check_unique_ids(((t.task_id, where) for t, where in rows),
                         "question ids are qa-<line> unless a row gives an 'id': add ids or read one file at a time")
        return [t for t, _ in rows]

    @staticmethod
    def _is_qa_text(path: Path, text: str) -> bool:
        """Whether the file's first row is a question (decides the reader for the whole file)."""
        for line_no, line in enumerate(io.StringIO(text), start=1):
            if line.strip():
                obj = loads_json(line, f"{path}:{line_no}")
                return isinstance(obj, dict) and ("question" in obj or "answer" in obj)
        return False

    @staticmethod
    def _read_qa(path: Path, text: str) -> list[tuple[Task, str]]:
        rows = []
        for where, obj in json_objects(path, text, "a JSON object with 'question' and 'answer'"):
            question = obj.get("question")
            if not isinstance(question, str) or not question.strip():
                raise TaskFileError(f"{where}: 'question' must be a non-empty string, got {shorten(question)}")
            if "answer" not in obj:
                raise TaskFileError(f"{where}: missing 'answer'")
            expected = _expected_value(obj["answer"])
            if expected is None:
                raise TaskFileError(
                    f"{where}: 'answer' must be a number or a numeric string (42, \"3/4\", \"-1,234.5\"), "
                    f"got {shorten(obj['answer'])}"
                )
            task_id = obj.get("id", f"qa-{where.rsplit(':', 1)[1]}")
            if isinstance(task_id, int) and not isinstance(task_id, bool):
                task_id = str(task_id)
            if not isinstance(task_id, str) or not task_id:
                raise TaskFileError(f"{where}: 'id' must be a non-empty string or an integer, got {shorten(task_id)}")
            rows.append((Task(task_id, {"question": question.strip(), "answer": _payload_answer(expected)}), where))
        return rows
