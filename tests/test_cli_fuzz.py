"""Bad input to every command: one line on stderr, exit 2, every time.

Two sweeps over the click commands themselves (so that a new command or flag is covered
without editing this file): every numeric flag is handed nan, ±inf and a negative value, and
every input path is handed random bytes, an empty file and a directory.
"""

from __future__ import annotations

import shutil
import typing
from pathlib import Path

import duckdb
import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_cli import assert_one_line_error
from treeq.cli import app, main

# Flags where a negative number is a meaningful setting, not a mistake.
NEGATIVE_OK = {("search", "fpu")}  # the Q assumed for unvisited actions: returns can be negative


def numeric_kind(param) -> str | None:
    """'float', 'int' or None for one click parameter (typer's own click or the upstream one)."""
    click_type = getattr(param, "type", None)
    if click_type is not None:  # upstream click
        return {"float": "float", "integer": "int"}.get(getattr(click_type, "name", ""))
    annotation = param.type_descriptor.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    return {float: "float", int: "int"}.get(args[0]) if len(args) == 1 else None


def numeric_flags() -> list[tuple[str, str, str, str]]:
    """(command, param name, flag, kind) for every numeric option of every command."""
    out = []
    for name, command in sorted(typer.main.get_command(app).commands.items()):
        for p in command.params:
            kind = numeric_kind(p)
            if kind and p.opts and p.opts[0].startswith("--"):
                out.append((name, p.name, p.opts[0], kind))
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, game24_store):
    """A real store, a rollouts file and a scratch folder: each command's base invocation runs on them."""
    root = tmp_path_factory.mktemp("fuzz")
    rollouts = root / "rollouts.parquet"
    assert main(["rollouts", "--limit", "1", "--group-size", "2", "--no-progress", "--out", str(rollouts)]) == 0
    task = duckdb.sql(f"SELECT task_id FROM read_parquet('{game24_store}/trees/**/*.parquet') LIMIT 1").fetchall()[0][0]
    return {"store": game24_store, "rollouts": rollouts, "root": root, "task": task}


def base_invocation(command: str, inp: dict, scratch: Path) -> list[str]:
    """A small, valid (or at worst cleanly failing) invocation of ``command``."""
    store, rollouts = str(inp["store"]), str(inp["rollouts"])
    copy = scratch / "store-copy"
    if command == "compact" and not copy.exists():
        shutil.copytree(store, copy)
    return {
        "search": ["search", "--limit", "1", "--simulations", "5", "--workers", "1", "--no-progress",
                   "--out", str(scratch / "search")],
        "query": ["query", store, "SELECT 1"],
        "replay": ["replay", "--env", "game24"],
        "show": ["show", store, "--task", inp["task"], "--out", str(scratch / "tree.svg")],
        "compact": ["compact", str(copy)],
        "plot": ["plot", store, "--tasks", "1", "--out", str(scratch / "plot.png")],
        "make-textworld-games": ["make-textworld-games", str(scratch / "missing-games"), "--seeds", "0:1"],
        "train-prm": ["train-prm", str(scratch / "no-such-store"), "--out", str(scratch / "prm")],
        "score-steps": ["score-steps", str(scratch / "no-such-prm"), "--input", str(scratch / "no-rows.jsonl")],
        "prm-bench": ["prm-bench", "--limit", "2", "--no-progress", "--out", str(scratch / "bench")],
        "prm-eval": ["prm-eval", str(scratch / "no-such-prm"), "--bench", str(scratch / "no-bench")],
        "export-prm-data": ["export-prm-data", store, "--no-progress", "--out", str(scratch / "prm.jsonl")],
        "export-dpo": ["export-dpo", store, "--no-progress", "--out", str(scratch / "dpo.jsonl")],
        "rollouts": ["rollouts", "--limit", "1", "--group-size", "2", "--no-progress",
                     "--out", str(scratch / "r.parquet")],
        "make-tiny-model": ["make-tiny-model", "--limit", "2", "--out", str(scratch / "tiny")],
        "export-rewards": ["export-rewards", rollouts, "--no-progress", "--out", str(scratch / "rw.parquet")],
        "train-policy": ["train-policy", str(scratch / "no-such-store"), "--model", str(scratch / "no-model"),
                         "--no-progress", "--out", str(scratch / "policy")],
        "credit-bench": ["credit-bench", "--limit", "1", "--group-sizes", "2", "--mc-rollouts", "1", "--simulations", "5",
                         "--seeds", "1", "--max-steps", "6", "--no-progress", "--out", str(scratch / "cb")],
        "self-train": ["self-train", "--tasks", str(scratch / "no-such-tasks.csv"), "--no-progress",
                       "--out", str(scratch / "st")],
    }[command]


@pytest.mark.parametrize("command,name,flag,kind", numeric_flags())
def test_numeric_flag_refuses_nan_inf_and_negatives(command, name, flag, kind, inputs, run_cli, tmp_path):
    """nan, ±inf and -1 for each numeric flag: one line and exit 2 (a negative only where it means something)."""
    base = base_invocation(command, inputs, tmp_path)
    values = ["nan", "inf", "-inf", "-1"] if kind == "float" else ["-1", "nan"]
    for value in values:
        res = run_cli(*base, flag, value)
        if value == "-1" and (command, name) in NEGATIVE_OK:
            assert res.rc in (0, 2) and "Traceback" not in res.err, (flag, value, res.err)
            continue
        assert_one_line_error(res)


def test_every_float_flag_is_covered():
    """The sweep above sees the float flags (a typer upgrade that hid them would empty it)."""
    flags = {(c, f) for c, _, f, k in numeric_flags() if k == "float"}
    assert {("search", "--gamma"), ("train-prm", "--epochs"), ("export-dpo", "--theta"),
            ("export-rewards", "--weight")} <= flags


# ------------------------------------------------------------------------- bad input files
def path_inputs(inp: dict, scratch: Path, bad: str) -> list[list[str]]:
    """Every invocation that reads a user-given path, with ``bad`` in that place."""
    rollouts = str(inp["rollouts"])
    out = str(scratch / "out")
    return [
        ["query", bad, "SELECT count(*) FROM nodes"],
        ["show", bad, "--task", inp["task"], "--out", str(scratch / "t.svg")],
        ["compact", bad],
        ["plot", bad, "--out", str(scratch / "p.png")],
        ["train-prm", bad, "--out", out, "--no-progress"],
        ["export-prm-data", bad, "--no-progress", "--out", str(scratch / "x.jsonl")],
        ["export-dpo", bad, "--no-progress", "--out", str(scratch / "d.jsonl")],
        ["export-rewards", bad, "--no-progress", "--out", str(scratch / "rw.parquet")],
        ["export-rewards", rollouts, "--estimators", "mcts_q", "--trees", bad, "--no-progress",
         "--out", str(scratch / "rw2.parquet")],
        ["export-rewards", rollouts, "--estimators", "prm", "--prm", bad, "--no-progress",
         "--out", str(scratch / "rw3.parquet")],
        ["score-steps", bad, "--input", str(scratch / "rows.jsonl")],
        ["search", "--tasks", bad, "--simulations", "5", "--workers", "1", "--no-progress", "--out", out],
        ["search", "--config", bad, "--limit", "1", "--workers", "1", "--no-progress", "--out", out],
        ["search", "--policy", "hf", "--model", bad, "--limit", "1", "--workers", "1", "--no-progress",
         "--out", out],
        ["replay", "--tasks", bad],
        ["rollouts", "--tasks", bad, "--no-progress", "--out", str(scratch / "r.parquet")],
        ["make-tiny-model", "--tasks", bad, "--limit", "2", "--out", str(scratch / "tiny")],
        ["credit-bench", "--tasks", bad, "--group-sizes", "2", "--mc-rollouts", "1", "--simulations", "5",
         "--seeds", "1", "--no-progress", "--out", str(scratch / "cb")],
    ]


def _check_all(inp: dict, scratch: Path, bad: Path, run_cli, valid: tuple[str, ...] = ()) -> None:
    """Each invocation of ``path_inputs`` fails in one line; those whose flag is in ``valid`` may also succeed."""
    for argv in path_inputs(inp, scratch, str(bad)):
        res = run_cli(*argv)
        if res.rc == 0 and any(flag in argv for flag in valid):
            continue
        try:
            assert_one_line_error(res)
        except AssertionError as exc:
            raise AssertionError(f"{argv}: {exc}") from None


def test_empty_file_and_directory_as_every_input(inputs, run_cli, tmp_path):
    """An empty file and an empty directory, wherever a path is read: one line, exit 2."""
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    (tmp_path / "rows.jsonl").write_text('{"env": "game24", "task": "1 1 1 1", "steps": ["1 + 1 = 2"]}\n')
    _check_all(inputs, tmp_path, empty, run_cli, valid=("--config",))  # an empty TOML file sets nothing
    folder = tmp_path / "folder"
    folder.mkdir()
    _check_all(inputs, tmp_path, folder, run_cli)


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=1, max_size=2048), suffix=st.sampled_from([".jsonl", ".parquet", ".toml", ".csv", ""]))
def test_random_bytes_as_every_input(inputs, run_cli, tmp_path_factory, data, suffix):
    """Random bytes as each input file (whatever its extension): one line, exit 2."""
    scratch = tmp_path_factory.mktemp("bytes")
    (scratch / "rows.jsonl").write_text('{"env": "game24", "task": "1 1 1 1", "steps": ["1 + 1 = 2"]}\n')
    bad = scratch / f"input{suffix}"
    bad.write_bytes(data)
    _check_all(inputs, scratch, bad, run_cli, valid=("--config",))  # bytes can be valid TOML (a comment)


def test_corrupt_shard_in_a_store(inputs, run_cli, tmp_path):
    """A store whose one nodes shard is random bytes: each reader says which file, in one line."""
    store = tmp_path / "store"
    shutil.copytree(inputs["store"], store)
    shard = next((store / "nodes").rglob("*.parquet"))
    shard.write_bytes(b"PAR1 this is not parquet")
    for argv in (["query", str(store), "SELECT count(*) FROM nodes"],
                 ["export-dpo", str(store), "--no-progress", "--out", str(tmp_path / "d.jsonl")],
                 ["export-prm-data", str(store), "--no-progress", "--out", str(tmp_path / "p.jsonl")],
                 ["show", str(store), "--task", inputs["task"], "--out", str(tmp_path / "t.svg")]):
        assert_one_line_error(run_cli(*argv))
