"""``search --tasks`` with bad task input: one ``error:`` line, exit code 2, no traceback,
for every env that reads task files; directories and globs of task files work."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

RANDOM_BYTES = random.Random(0).randbytes(4096)
NESTED_JSON = "[" * 5000 + "]" * 5000
NESTED_PDDL = "(" * 5000 + ")" * 5000
GAME_JSON = '{"world": []}'

# (env, files to write: name -> content, the --tasks path relative to the folder, words in the error)
CASES = [
    ("game24", {"t.csv": RANDOM_BYTES}, "t.csv", "not UTF-8 text"),
    ("game24", {"t.jsonl": NESTED_JSON}, "t.jsonl", "JSON nested deeper than 64 levels"),
    ("game24", {"t.csv": ""}, "t.csv", "the file is empty: no tasks"),
    ("game24", {"t.csv": "Rank,Puzzles\n"}, "t.csv", "no tasks in the file (only a header)"),
    ("game24", {"t.csv": RANDOM_BYTES}, ".", "not UTF-8 text"),
    ("game24", {"t.csv": "Rank,Puzzles\n"}, "*.csv", "no tasks in the file (only a header)"),
    ("game24", {"t.csv": "Rank,Puzzles\n"}, "*.jsonl", "no task file (*.csv/*.jsonl/*.json) matches"),
    ("countdown", {"t.jsonl": RANDOM_BYTES}, "t.jsonl", "not UTF-8 text"),
    ("countdown", {"t.jsonl": NESTED_JSON}, "t.jsonl", "JSON nested deeper than 64 levels"),
    ("countdown", {"t.jsonl": ""}, "t.jsonl", "the file is empty: no tasks"),
    ("countdown", {"t.csv": "Puzzles\n"}, ".", "no tasks in the file (only a header)"),
    ("blocksworld", {"p.pddl": RANDOM_BYTES}, "p.pddl", "not UTF-8 text"),
    ("blocksworld", {"p.pddl": NESTED_PDDL}, "p.pddl", "parentheses nested deeper than 64 levels"),
    ("blocksworld", {"p.pddl": ""}, "p.pddl", "the file is empty: no tasks"),
    ("blocksworld", {"p.pddl": NESTED_PDDL}, "*.pddl", "parentheses nested deeper than 64 levels"),
    ("gym:FrozenLake-v1", {"s.txt": RANDOM_BYTES}, "s.txt", "not UTF-8 text"),
    ("gym:FrozenLake-v1", {"s.txt": NESTED_JSON}, "s.txt", "a seed must be a non-negative integer"),
    ("gym:FrozenLake-v1", {"s.txt": ""}, "s.txt", "the file is empty: no seeds"),
    ("textworld", {"g.z8": b"", "g.json": RANDOM_BYTES}, ".", "not UTF-8 text"),
    ("textworld", {"g.z8": b"", "g.json": NESTED_JSON}, "g.z8", "JSON nested deeper than 64 levels"),
    ("textworld", {"g.z8": b"", "g.json": ""}, "*.z8", "the file is empty: no game data"),
    ("textworld", {"g.z8": RANDOM_BYTES, "g.json": GAME_JSON}, "g.z8", "not a Z-machine story file"),
]


def _write(folder: Path, files: dict[str, str | bytes]) -> None:
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())


def _search_args(env: str, tasks: str, out: Path, *extra: str) -> list[str]:
    return ["search", "--env", env, "--tasks", tasks, "--out", str(out), "--simulations", "5", "--workers", "1",
            "--no-progress", *extra]


def _assert_one_error_line(rc: int, err: str, words: str) -> None:
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert words in lines[0]


@pytest.mark.parametrize("env, files, tasks, words", CASES)
def test_bad_task_input_is_one_error_line(run_cli, tmp_path, env, files, tasks, words):
    folder = tmp_path / "tasks"
    _write(folder, files)
    result = run_cli(*_search_args(env, str(folder / tasks), tmp_path / "out"))
    _assert_one_error_line(result.rc, result.err, words)
    assert not list((tmp_path / "out").glob("**/*.parquet"))


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ('{"is_slippery": "no"}', "option is_slippery must be true or false (default True), got 'no'"),
        ('{"slippery": false}', "has no option 'slippery'"),
    ],
)
def test_bad_gym_env_kwargs_are_one_error_line(run_cli, tmp_path, kwargs, words):
    result = run_cli(*_search_args("gym:FrozenLake-v1", "0:2", tmp_path / "out", "--env-kwargs", kwargs))
    _assert_one_error_line(result.rc, result.err, words)


def test_random_bytes_in_a_subprocess(tmp_path):
    """End to end, as a user runs it: nothing but the one line reaches the terminal."""
    _write(tmp_path / "tasks", {"t.jsonl": RANDOM_BYTES})
    proc = subprocess.run(
        [sys.executable, "-m", "treeq.cli", *_search_args("game24", str(tmp_path / "tasks"), tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )
    _assert_one_error_line(proc.returncode, proc.stderr, "t.jsonl:1: not UTF-8 text")


@pytest.mark.parametrize("tasks", [".", "*.csv", "p*"])
def test_game24_directory_and_glob_are_searched(run_cli, tmp_path, tasks):
    _write(tmp_path / "tasks", {"p2.csv": "Puzzles\n4 4 6 8\n", "p10.csv": "Puzzles\n1 2 3 4\n", "NOTES": "x"})
    result = run_cli(*_search_args("game24", str(tmp_path / "tasks" / tasks), tmp_path / "out"))
    assert result.rc == 0, result.err
    assert "searched 2 game24 tasks" in result.out
