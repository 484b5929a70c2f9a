"""Reading task input, shared by every env's task reader.

One place decides what a task path means and what counts as readable input, so every
env refuses bad input the same way, with one :class:`~treeq.errors.TaskFileError` line
that names the file (and the line where that helps):

* a path is a file, a directory (every file of the env's kinds in it, sorted naturally:
  ``instance-2`` before ``instance-10``) or a glob (every match of those kinds);
* a file must be UTF-8 text without NUL bytes, and not empty;
* JSON and s-expressions may not nest deeper than :data:`MAX_DEPTH`; JSON is checked
  before ``json.loads`` sees it, so a line of 5,000 ``[`` never reaches the recursive
  decoder;
* task ids must be unique across all the files read.

Envs whose tasks are start seeds (gym, OpenSpiel) read them with :func:`seed_tasks`.
"""

from __future__ import annotations

import codecs
import glob
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import TaskFileError
from .base import Task, parse_seed_spec

__all__ = [
    "MAX_DEPTH",
    "check_unique_ids",
    "expand_task_path",
    "loads_json",
    "natural_key",
    "read_text",
    "seed_tasks",
    "shorten",
]

#: Deepest nesting accepted in JSON and PDDL task input. Real task files nest a few
#: levels (a TextWorld game's ``.json`` about ten); the recursive JSON decoder fails
#: near 1,000.
MAX_DEPTH = 64

# A JSON string (escapes included; an unterminated one runs to the end) or a bracket.
_JSON_TOKEN_RE = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[{]|[\]}]', re.DOTALL)


def shorten(value: object, limit: int = 40) -> str:
    """``repr`` of ``value``, cut to about ``limit`` characters, for error messages."""
    text = repr(value)
    return text if len(text) <= limit + 2 else f"{text[:limit]}... ({len(text)} characters)"


def natural_key(path: Path) -> tuple:
    """Sort key that puts ``instance-2`` before ``instance-10``."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)), str(path)


def expand_task_path(path: str | Path, kinds: Sequence[str], what: str, hint: str = "") -> tuple[list[Path], bool]:
    """The files a task path names: one file, a directory or a glob.

    Args:
        path: A file, a directory or a glob pattern (``**`` allowed).
        kinds: File suffixes of this env's task files (``(".csv", ".jsonl")``); a
            directory gives its files of these kinds, a glob its matches of these kinds.
            A single file is returned whatever its suffix: its reader says what it expects.
        what: What the files are, for messages (``"PDDL problem"``).
        hint: Appended to the messages for nothing found (how to make such files).

    Returns:
        The files, sorted naturally, and whether ``path`` named one file.

    Raises:
        TaskFileError: nothing found (one line saying what was looked for, and where).
    """
    text = str(path)
    p = Path(text)
    names = "/".join(f"*{k}" for k in kinds)
    tail = f"; {hint}" if hint else ""
    if p.is_file():
        return [p], True
    if p.is_dir():
        files = sorted((f for f in p.iterdir() if f.suffix.lower() in kinds and f.is_file()), key=natural_key)
        if not files:
            raise TaskFileError(f"{p}: no {what} ({names}) in this directory{tail}")
        return files, False
    if glob.has_magic(text):
        matches = (Path(f) for f in glob.glob(text, recursive=True))
        files = sorted((f for f in matches if f.suffix.lower() in kinds and f.is_file()), key=natural_key)
        if not files:
            raise TaskFileError(f"no {what} ({names}) matches {text!r}{tail}")
        return files, False
    raise TaskFileError(f"task file not found: {p}{tail}")


def read_text(path: Path, what: str = "tasks") -> str:
    """The content of a task file as text.

    Args:
        path: The file.
        what: What the file holds, for the messages (``"tasks"``, ``"seeds"``, ``"rows"``).

    Raises:
        TaskFileError: the file cannot be read, is not UTF-8 text (line named), holds
            NUL bytes, or is empty (only white space).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TaskFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise TaskFileError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            f"a file of {what} must be UTF-8 text"
        ) from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise TaskFileError(f"{path}:{line}: NUL byte in the file; a file of {what} must be UTF-8 text")
    if not text.strip():
        raise TaskFileError(f"{path}: the file is empty: no {what} in it")
    return text


def _json_depth_exceeded(text: str, limit: int) -> bool:
    if text.count("[") + text.count("{") <= limit:  # the common case: nothing to scan
        return False
    depth = 0
    for m in _JSON_TOKEN_RE.finditer(text):
        c = m[0]
        if c in "[{":
            depth += 1
            if depth > limit:
                return True
        elif c in "]}":
            depth -= 1
    return False


def loads_json(text: str, where: str) -> Any:
    """``json.loads`` that fails with one line, and never deep in the decoder.

    Args:
        text: One JSON document (a JSONL line, a whole ``.json`` file).
        where: File and line for the message (``tasks.jsonl:3``).

    Raises:
        TaskFileError: nested deeper than :data:`MAX_DEPTH`, or not valid JSON.
    """
    if _json_depth_exceeded(text, MAX_DEPTH):
        raise TaskFileError(f"{where}: JSON nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TaskFileError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:  # e.g. a number past Python's digit limit
        raise TaskFileError(f"{where}: not valid JSON ({' '.join(str(exc).split())[:120]})") from None


def json_objects(path: Path, text: str, expected: str = "a JSON object") -> Iterable[tuple[str, dict]]:
    """``(where, object)`` of every non-blank line of a JSONL file (``where`` is ``path:line``).

    Raises:
        TaskFileError: a line is not JSON, or not an object (``expected`` says what should be there).
    """
    import io

    for line_no, line in enumerate(io.StringIO(text), start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        obj = loads_json(line, where)
        if not isinstance(obj, dict):
            raise TaskFileError(f"{where}: expected {expected}")
        yield where, obj


def check_unique_ids(ids: Iterable[tuple[str, str]], hint: str = "") -> None:
    """Refuse a task id that appears twice.

    Args:
        ids: ``(task_id, where)`` pairs, ``where`` naming the file (and line).
        hint: Appended to the message (how ids are made, what to rename).

    Raises:
        TaskFileError: naming the id and both places.
    """
    seen: dict[str, str] = {}
    for task_id, where in ids:
        if task_id in seen:
            tail = f"; {hint}" if hint else ""
            raise TaskFileError(f"task id {task_id!r} appears twice ({seen[task_id]} and {where}){tail}")
        seen[task_id] = where


def seed_tasks(path: str | Path | None, what: str, repeat_hint: str = "one tree per start seed") -> list[Task]:
    """Tasks that are start seeds, with ids ``seed-N`` and payload ``{"seed": N}``.

    Args:
        path: None (seeds 0-9), ``"A:B"`` (A to B-1), ``"A,B,C"``, a file of seeds (one
            per line), a directory of such ``.txt`` files or a glob of them.
        what: The env, for messages (``"gym tasks"``).
        repeat_hint: Appended when a seed repeats (why one is enough).

    Raises:
        TaskFileError: neither seeds nor a seed file; a file is not UTF-8 text or
            empty; a line is not a non-negative integer; a seed repeats.
    """
    spec = "0:10" if path is None else str(path)
    seeds = parse_seed_spec(spec)
    if Path(spec).exists() or glob.has_magic(spec):
        tokens = []
        for f in expand_task_path(spec, (".txt",), "seed file")[0]:
            lines = read_text(f, "seeds").split("\n")
            tokens += [(f"{f}:{i}", line.strip()) for i, line in enumerate(lines, 1) if line.strip()]
    elif seeds is not None:
        tokens = [(f"seed list {spec!r}", str(x)) for x in seeds]
    else:
        raise TaskFileError(
            f"{what} are start seeds: give 'A:B', 'A,B,C' or a file of seeds, got {shorten(spec)} (no such file)"
        )
    tasks = []
    for where, tok in tokens:
        if not (tok.isascii() and tok.isdigit()):  # str.isdigit() also passes '²', which int() refuses
            raise TaskFileError(f"{where}: a seed must be a non-negative integer, got {shorten(tok)}")
        tasks.append((Task(f"seed-{int(tok)}", {"seed": int(tok)}), where))
    if not tasks:
        raise TaskFileError(f"{spec}: no seeds")
    check_unique_ids(((t.task_id, where) for t, where in tasks), repeat_hint)
    return [t for t, _ in tasks]
