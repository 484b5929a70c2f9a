"""Rows to score: JSONL reading and the (prompt, steps) of each row.

A row is ``{"prompt": str, "steps": [str, ...]}`` or ``{"env": name, "task": str,
"steps": [...]}``; the second form renders the prompt exactly as training saw it
(``env.render(env.reset(task))``). A task is the env's inline task text (``"4 6 8 8"``
for game24, see :meth:`Env.task_from_text`) or a task id from the env's task set.

A PRM trained on steps with observations (``step_format`` ``action+observation``: envs
that act in a world) reads each action followed by what the env answered: a row gives
them as ``"observations": [str, ...]`` (one per step), or, in the ``env`` and ``task``
form, gives actions only and the env replays them to write the observations
(:meth:`Env.observe`). Otherwise steps are scored as written: never parsed, checked or
rewritten.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..envs.base import Env, Task
from ..envs.registry import make_env
from ..envs.taskfiles import loads_json, read_text
from ..errors import TaskFileError, TreeqError
from ..prm.format import OBSERVED, step_text

__all__ = ["read_rows", "row_paths"]


def read_rows(path: str | Path) -> list[dict]:
    """Read a JSONL file of rows (blank lines skipped).

    Raises:
        TaskFileError: the file is missing, not UTF-8, empty, or a line is not a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        raise TaskFileError(f"{path}: no such file")
    rows = []
    for n, line in enumerate(read_text(path, "rows").splitlines(), start=1):
        if not line.strip():
            continue
        obj = loads_json(line, f"{path}:{n}")
        if not isinstance(obj, dict):
            raise TaskFileError(f"{path}:{n}: expected a JSON object with 'steps'")
        obj["_line"] = f"{path}:{n}"
        rows.append(obj)
    if not rows:
        raise TaskFileError(f"{path}: no rows in the file")
    return rows


def row_paths(rows: list[dict], tasks: str | None = None, step_format: str = "action") -> list[tuple[str, list[str]]]:
    """The (prompt, steps) of each row, its steps written in ``step_format`` (the PRM's).

    Raises:
        TaskFileError: a row lacks its fields, names an unknown env or task, gives
            observations to a PRM of actions only or none to one that reads them and
            cannot be replayed, or an action the env refuses in a replay (its line named).
    """
    envs: dict[str, Env] = {}
    task_sets: dict[str, dict] = {}
    observed = step_format == OBSERVED
    out = []
    for i, row in enumerate(rows):
        where = row.get("_line", f"row {i + 1}")
        steps = row.get("steps")
        if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps) or not steps:
            raise TaskFileError(f"{where}: 'steps' must be a non-empty list of strings")
        seen = row.get("observations")
        if seen is not None:
            if not observed:
                raise TaskFileError(f"{where}: this PRM reads actions only (step format 'action'): "
                                    f"leave 'observations' out")
            if not isinstance(seen, list) or not all(isinstance(s, str) for s in seen) or len(seen) != len(steps):
                raise TaskFileError(f"{where}: 'observations' must be a list of strings, one per step")
        try:
            if seen is not None:
                steps = [step_text(a, o) for a, o in zip(steps, seen)]
            if isinstance(row.get("prompt"), str):
                if observed and seen is None:
                    raise TaskFileError("this PRM reads what the env answered to each action: give 'observations', "
                                        "or 'env' and 'task' to replay the actions")
                out.append((row["prompt"], steps))
                continue
            name, task_text = row.get("env"), row.get("task")
            if not isinstance(name, str) or not isinstance(task_text, str):
                raise TaskFileError("give 'prompt', or 'env' and 'task' (strings)")
            env = envs.get(name) or envs.setdefault(name, make_env(name))
            task = env.task_from_text(task_text)
            if task is None:
                if name not in task_sets:
                    task_sets[name] = {t.task_id: t for t in env.load_tasks(tasks)}
                task = task_sets[name].get(task_text)
                if task is None:
                    raise TaskFileError(f"no task {task_text!r} in {name}'s task set")
            out.append((env.render(env.reset(task)), _replayed(env, task, steps) if observed and seen is None
                        else steps))
        except TreeqError as exc:
            raise TaskFileError(f"{where}: {exc}") from None
    return out


def _replayed(env: Env, task: Task, actions: list[str]) -> list[str]:
    """``actions`` stepped from the task's start, each followed by what the env answered."""
    from .replay import step_through

    rng = np.random.default_rng(0)
    return [step_text(action, env.observe(step.state))
            for action, step in step_through(env, env.reset(task, rng), actions, rng)]


def strip_line(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "_line"}
