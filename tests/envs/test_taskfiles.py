"""Reading task input (``treeq.envs.taskfiles``) and every env's task reader on bad input.

Every reader goes through the shared module, so each hand-written bad input below
(random bytes, a line nested 5,000 deep, an empty file, a header-only CSV, PDDL nested
5,000 deep) must give one ``TaskFileError`` line that names the file and the problem,
for every env that reads task files; a directory and a glob must work for each.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from treeq.envs.blocksworld import TASKS_DIR as BW_TASKS
from treeq.envs.countdown import CountdownEnv, Game24Env
from treeq.envs.gym_toytext import GymEnv
from treeq.envs.taskfiles import (
    MAX_DEPTH,
    check_unique_ids,
    expand_task_path,
    loads_json,
    natural_key,
    read_text,
    shorten,
)
from treeq.envs.textworld import TextWorldEnv
from treeq.errors import TaskFileError

RANDOM_BYTES = random.Random(0).randbytes(4096)
NESTED_JSON = "[" * 5000 + "]" * 5000
NESTED_PDDL = "(" * 5000 + ")" * 5000
GAME_JSON = '{"world": [], "metadata": {"walkthrough": ["go east"]}}'


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and len(msg) < 300, msg
    return msg


# ----------------------------------------------------------------------------- the module
def test_read_text_refuses_bytes_that_are_not_utf8(tmp_path):
    f = tmp_path / "t.csv"
    f.write_bytes(b"Puzzles\n1 2 3 4\n\xff\xfe 5\n")
    with pytest.raises(TaskFileError, match=r"t.csv:3: not UTF-8 text \(byte 0xff at offset 16\)"):
        read_text(f)
    f.write_bytes(b"Puzzles\n1 2\x00 3 4\n")
    with pytest.raises(TaskFileError, match=r"t.csv:2: NUL byte"):
        read_text(f)


def test_read_text_empty_bom_and_missing(tmp_path):
    f = tmp_path / "e.jsonl"
    for blank in (b"", b"\n  \n\t\n", b"\xef\xbb\xbf"):
        f.write_bytes(blank)
        with pytest.raises(TaskFileError, match=r"e.jsonl: the file is empty: no tasks in it"):
            read_text(f)
    f.write_bytes(b"\xef\xbb\xbfPuzzles\n")
    assert read_text(f) == "Puzzles\n"  # a UTF-8 byte-order mark is dropped
    with pytest.raises(TaskFileError, match="cannot read"):
        read_text(tmp_path / "missing.csv")


def test_loads_json_depth_is_checked_before_decoding():
    ok = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    expected: list = []
    for _ in range(MAX_DEPTH - 1):
        expected = [expected]
    assert loads_json(ok, "x:1") == expected
    with pytest.raises(TaskFileError, match=rf"x:1: JSON nested deeper than {MAX_DEPTH} levels"):
        loads_json("[" + ok + "]", "x:1")
    with pytest.raises(TaskFileError, match="nested deeper"):
        loads_json('{"a": ' * 5000, "x:1")  # never closed: refused for depth, not RecursionError
    # brackets inside strings (escaped quotes too) are text, not nesting
    text = '{"s": "' + "[{" * 5000 + '\\"]", "t": [1]}'
    assert loads_json(text, "x:1")["t"] == [1]


def test_loads_json_errors_are_one_line():
    with pytest.raises(TaskFileError, match=r"x:2: not valid JSON \(Expecting value at column 1\)"):
        loads_json("nope", "x:2")
    with pytest.raises(TaskFileError, match="x:3: not valid JSON") as exc:
        loads_json('{"n": ' + "9" * 5000 + "}", "x:3")  # past Python's digit limit: a ValueError
    _one_line(exc)


def test_expand_task_path_file_dir_glob(tmp_path):
    for name in ("b10.csv", "b2.csv", "a.jsonl", "notes.txt"):
        (tmp_path / name).write_text("x")
    assert expand_task_path(tmp_path / "notes.txt", (".csv",), "task file") == ([tmp_path / "notes.txt"], True)
    files, single = expand_task_path(tmp_path, (".csv", ".jsonl"), "task file")
    assert [f.name for f in files] == ["a.jsonl", "b2.csv", "b10.csv"] and not single
    files, _ = expand_task_path(str(tmp_path / "b*"), (".csv",), "task file")
    assert [f.name for f in files] == ["b2.csv", "b10.csv"]
    with pytest.raises(TaskFileError, match=r"no task file \(\*.csv\) matches '.*zz\*'; make some"):
        expand_task_path(str(tmp_path / "zz*"), (".csv",), "task file", "make some")
    with pytest.raises(TaskFileError, match=r"no task file \(\*.pddl\) in this directory"):
        expand_task_path(tmp_path, (".pddl",), "task file")
    with pytest.raises(TaskFileError, match="task file not found: .*missing.csv"):
        expand_task_path(tmp_path / "missing.csv", (".csv",), "task file")


def test_helpers():
    assert sorted([Path("i-10"), Path("i-2"), Path("i-1")], key=natural_key) == [Path("i-1"), Path("i-2"), Path("i-10")]
    assert shorten("abc") == "'abc'" and shorten("[" * 5000).endswith("(5002 characters)")
    check_unique_ids([("a", "f:1"), ("b", "f:2")])
    with pytest.raises(TaskFileError, match=r"task id 'a' appears twice \(f:1 and g:4\); rename"):
        check_unique_ids([("a", "f:1"), ("a", "g:4")], "rename")


# ----------------------------------------------------------------------------- every env's reader
def _textworld_game(d: Path, z8: bytes = b"", json: str | bytes = GAME_JSON) -> Path:
    d.mkdir(exist_ok=True)
    (d / "g.z8").write_bytes(z8)
    (d / "g.json").write_bytes(json.encode() if isinstance(json, str) else json)
    return d


# (env, file name, content, expected words); each env's reader, each bad input
BAD_INPUTS = [
    ("game24", "t.csv", RANDOM_BYTES, r"t.csv:\d+: not UTF-8 text"),
    ("game24", "t.jsonl", RANDOM_BYTES, r"t.jsonl:\d+: not UTF-8 text"),
    ("game24", "t.jsonl", '{"numbers": [1, 2, 3, 4]}\n' + NESTED_JSON + "\n", rf"t.jsonl:2: JSON nested deeper than {MAX_DEPTH}"),
    ("game24", "t.csv", "", "t.csv: the file is empty: no tasks"),
    ("game24", "t.jsonl", "\n\n", "t.jsonl: the file is empty: no tasks"),
    ("game24", "t.csv", "Rank,Puzzles,AMT (s)\n", r"t.csv: no tasks in the file \(only a header\)"),
    ("game24", "t.csv", "Rank,Puzzles\n1," + "[" * 5000 + "\n", r"t.csv:2: bad number \(not a number: '\[\[\["),
    ("game24", "t.csv", "Rank,Puzzles\n1,1 2 3 " + "4" * 200_000 + "\n", r"t.csv:2: not valid CSV"),
    ("countdown", "t.jsonl", RANDOM_BYTES, r"t.jsonl:\d+: not UTF-8 text"),
    ("countdown", "t.jsonl", NESTED_JSON, rf"t.jsonl:1: JSON nested deeper than {MAX_DEPTH}"),
    ("countdown", "t.json", "", "t.json: the file is empty: no tasks"),
    ("countdown", "t.csv", "Puzzles\n", r"t.csv: no tasks in the file \(only a header\)"),
    ("blocksworld", "p.pddl", RANDOM_BYTES, r"p.pddl:\d+: not UTF-8 text"),
    ("blocksworld", "p.pddl", NESTED_PDDL, rf"p.pddl:1: parentheses nested deeper than {MAX_DEPTH}"),
    ("blocksworld", "p.pddl", " \n", "p.pddl: the file is empty: no tasks"),
    ("gym:FrozenLake-v1", "seeds.txt", RANDOM_BYTES, r"seeds.txt:\d+: not UTF-8 text"),
    ("gym:FrozenLake-v1", "seeds.txt", "3\n" + NESTED_JSON + "\n", r"seeds.txt:2: a seed must be a non-negative integer, got '\[\[\["),
    ("gym:FrozenLake-v1", "seeds.txt", "", "seeds.txt: the file is empty: no seeds"),
]


def _make_env(name: str):
    return GymEnv(name[4:]) if name.startswith("gym:") else {
        "game24": Game24Env, "countdown": CountdownEnv, "blocksworld": _blocksworld, "textworld": TextWorldEnv,
    }[name]()


def _blocksworld():
    from treeq.envs.blocksworld import BlocksworldEnv

    return BlocksworldEnv()


@pytest.mark.parametrize("as_dir", [False, True], ids=["file", "dir"])
@pytest.mark.parametrize("env_name, name, content, words", BAD_INPUTS)
def test_every_reader_refuses_bad_input_in_one_line(tmp_path, env_name, name, content, words, as_dir):
    f = tmp_path / name
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(TaskFileError, match=words) as exc:
        _make_env(env_name).load_tasks(tmp_path if as_dir else f)
    assert str(f) in _one_line(exc)


@pytest.mark.parametrize(
    "z8, json, words",
    [
        (b"", RANDOM_BYTES, r"g.json:\d+: not UTF-8 text"),
        (b"", NESTED_JSON, rf"g.json: JSON nested deeper than {MAX_DEPTH}"),
        (b"", "", "g.json: the file is empty: no game data"),
        (b"", "[1]", r"g.json: not TextWorld game data \(no 'world' entry\)"),
        (RANDOM_BYTES, GAME_JSON, "g.z8: not a Z-machine story file"),
        (b"", GAME_JSON, "g.z8: the file is empty, not a Z-machine story file"),
    ],
)
def test_textworld_reader_refuses_bad_game_files(tmp_path, z8, json, words):
    """No interpreter is started: the files are checked before Frotz could see them."""
    d = _textworld_game(tmp_path / "games", z8, json)
    for path in (d, d / "g.z8", str(d / "*.z8")):
        with pytest.raises(TaskFileError, match=words) as exc:
            TextWorldEnv().load_tasks(path)
        _one_line(exc)


def test_shipped_blocksworld_json_is_within_depth():
    """The depth limit leaves real task data alone (the deepest shipped JSON is the plans file)."""
    loads_json(read_text(BW_TASKS / "optimal_plans.json"), "plans")


# ----------------------------------------------------------------------------- directories and globs
def test_game24_and_countdown_read_directories_and_globs(tmp_path):
    d = tmp_path / "tasks"
    d.mkdir()
    (d / "p10.csv").write_text("Rank,Puzzles\n1,4 4 6 8\n2,1 2 3 4\n")
    (d / "p2.jsonl").write_text('{"numbers": [1, 1, 4, 6], "target": 24}\n')
    (d / "NOTICE").write_text("not a task file")
    (d / "p3.txt").write_text("not a task file either")
    by_dir = Game24Env().load_tasks(d)
    assert [t.task_id for t in by_dir] == ["p2-0", "p10-0", "p10-1"]  # natural order of files
    assert Game24Env().load_tasks(str(d / "p*")) == by_dir
    assert [t.task_id for t in Game24Env().load_tasks(str(d / "*.csv"))] == ["p10-0", "p10-1"]
    assert Game24Env().load_tasks(d / "p10.csv") == by_dir[1:]  # one file: ids as before
    assert [t.task_id for t in CountdownEnv().load_tasks(str(tmp_path / "**" / "*.jsonl"))] == ["p2-0"]
    with pytest.raises(TaskFileError, match=r"no task file \(\*.csv/\*.jsonl/\*.json\) matches"):
        Game24Env().load_tasks(str(d / "*.parquet"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TaskFileError, match=r"empty: no task file \(\*.csv/\*.jsonl/\*.json\) in this directory"):
        CountdownEnv().load_tasks(empty)
    with pytest.raises(TaskFileError, match=r"unknown task file type '.txt'"):
        Game24Env().load_tasks(d / "p3.txt")


def test_shipped_sets_by_directory_keep_their_ids():
    from treeq.envs.countdown import TASKS_DIR

    one = Game24Env().load_tasks(TASKS_DIR / "game24" / "24.csv")
    assert Game24Env().load_tasks(TASKS_DIR / "game24") == one
    assert Game24Env().load_tasks(str(TASKS_DIR / "game24" / "*")) == one
    assert CountdownEnv().load_tasks(TASKS_DIR / "countdown") == CountdownEnv().load_tasks(None)


def test_files_sharing_a_stem_are_refused_clearly(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "24.csv").write_text("Puzzles\n4 4 6 8\n")
    with pytest.raises(TaskFileError, match=r"task id '24-0' appears twice \(.*a/24.csv:2 and .*b/24.csv:2\); ids are"):
        Game24Env().load_tasks(str(tmp_path / "*" / "24.csv"))
    (tmp_path / "b" / "24.csv").rename(tmp_path / "b" / "25.csv")
    assert [t.task_id for t in Game24Env().load_tasks(str(tmp_path / "*" / "2*.csv"))] == ["24-0", "25-0"]


def test_gym_seed_files_by_directory_and_glob(tmp_path):
    (tmp_path / "s2.txt").write_text("3\n4\n")
    (tmp_path / "s10.txt").write_text("7\n")
    lake = GymEnv("FrozenLake-v1")
    assert [t.task_id for t in lake.load_tasks(tmp_path)] == ["seed-3", "seed-4", "seed-7"]
    assert [t.task_id for t in lake.load_tasks(str(tmp_path / "s1*.txt"))] == ["seed-7"]
    (tmp_path / "s11.txt").write_text("\u00b2\n", encoding="utf-8")  # a digit to str.isdigit(), not to int()
    with pytest.raises(TaskFileError, match=r"s11.txt:1: a seed must be a non-negative integer, got '\u00b2'"):
        lake.load_tasks(tmp_path / "s11.txt")
    (tmp_path / "s11.txt").unlink()
    (tmp_path / "s3.txt").write_text("4\n")
    with pytest.raises(TaskFileError, match=r"'seed-4' appears twice \(.*s2.txt:2 and .*s3.txt:1\); one tree per start seed"):
        lake.load_tasks(tmp_path)
