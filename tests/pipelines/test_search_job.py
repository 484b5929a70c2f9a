"""Batch search jobs through the CLI: countdown task sources, determinism, failure mid-run."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from treeq.envs.countdown import CountdownEnv

FAST = ["--no-progress", "--workers", "1"]


def rows(out: Path, table: str, select: str = "*", order: str = "task_id, node_id") -> list[tuple]:
    """All rows of a table read with plain DuckDB, in a fixed order, NaN made comparable."""
    got = duckdb.sql(f"SELECT {select} FROM read_parquet('{out}/{table}/**/*.parquet') ORDER BY {order}").fetchall()
    return [tuple("nan" if isinstance(v, float) and math.isnan(v) else v for v in r) for r in got]


def write_jsonl(path: Path, objs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs), encoding="utf-8")
    return path


# ------------------------------------------------------------------------- countdown task sources
def test_countdown_shipped_tasks(run_cli, tmp_path):
    """countdown without --tasks searches the shipped JSONL; ids are <stem>-<row>."""
    out = tmp_path / "out"
    res = run_cli("search", "--env", "countdown", "--limit", "3", "--simulations", "100", "--out", out, *FAST)
    assert res.rc == 0, res.err
    assert res.out.startswith("searched 3 countdown tasks")
    trees = rows(out, "trees", "task_id, env", "task_id")
    assert trees == [(f"countdown_cd3_test-{i}", "countdown") for i in range(3)]
    # First line of the shipped file: {"input": "30,100,93", "output": "23"}
    root = rows(out, "nodes", "state_key", "task_id, node_id")[0]
    assert root == ("target=23 left=30 93 100",)


def test_countdown_user_jsonl_input_output_form(run_cli, tmp_path):
    """A user JSONL in the {"input", "output"} form: ids <stem>-<row>, numbers and target read."""
    tasks = write_jsonl(tmp_path / "mine.jsonl", [
        {"input": "30,100,93", "output": "23"},
        {"input": "2 3 4", "output": "24"},
    ])
    out = tmp_path / "out"
    res = run_cli("search", "--env", "countdown", "--tasks", tasks, "--simulations", "100", "--out", out, *FAST)
    assert res.rc == 0, res.err
    assert rows(out, "trees", "task_id", "task_id") == [("mine-0",), ("mine-1",)]
    root_keys = duckdb.sql(
        f"SELECT task_id, state_key FROM read_parquet('{out}/nodes/**/*.parquet') WHERE node_id = 0 ORDER BY task_id"
    ).fetchall()
    assert root_keys == [("mine-0", "target=23 left=30 93 100"), ("mine-1", "target=24 left=2 3 4")]


def test_countdown_user_jsonl_native_form_keeps_task_id(run_cli, tmp_path):
    """The native form's task_id is the one in trees.task_id and nodes.task_id."""
    tasks = write_jsonl(tmp_path / "native.jsonl", [
        {"task_id": "t1", "numbers": [4, 4, 6, 8], "target": 24},
        {"task_id": "t2", "numbers": [1, 2, 3], "target": 6},
    ])
    out = tmp_path / "out"
    res = run_cli("search", "--env", "countdown", "--tasks", tasks, "--simulations", "100", "--out", out, *FAST)
    assert res.rc == 0, res.err
    assert rows(out, "trees", "task_id", "task_id") == [("t1",), ("t2",)]
    assert rows(out, "nodes", "DISTINCT task_id", "task_id") == [("t1",), ("t2",)]


# ------------------------------------------------------------------------- determinism
def test_same_command_twice_gives_identical_nodes(run_cli, tmp_path):
    """Two runs of one command into two dirs: identical nodes rows (run_id included)."""
    argv = ["search", "--env", "game24", "--limit", "3", "--simulations", "150", "--seed", "7", *FAST]
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli(*argv, "--out", a).rc == 0
    assert run_cli(*argv, "--out", b).rc == 0
    nodes_a = rows(a, "nodes")
    assert len(nodes_a) > 3 and nodes_a == rows(b, "nodes")
    no_seconds = "run_id, task_id, env, simulations, nodes, root_value, best_action, solved"
    assert rows(a, "trees", no_seconds, "task_id") == rows(b, "trees", no_seconds, "task_id")


def test_workers_do_not_change_rows(run_cli, tmp_path):
    """--workers 2 writes exactly the rows --workers 1 writes."""
    base = ["search", "--env", "game24", "--limit", "4", "--simulations", "100", "--no-progress"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert run_cli(*base, "--workers", "1", "--out", one).rc == 0
    res = run_cli(*base, "--workers", "2", "--out", two)
    assert res.rc == 0, res.err
    nodes_one = rows(one, "nodes")
    assert {r[1] for r in nodes_one} == {"24-0", "24-1", "24-2", "24-3"}
    assert nodes_one == rows(two, "nodes")


# ------------------------------------------------------------------------- failure mid-run
def test_env_failure_keeps_finished_tasks(run_cli, tmp_path, monkeypatch):
    """The 3rd task's env raises: t3 is an error row and the run goes on (t4 searched); exit 2, one line
    naming t3 and the count; a rerun skips the finished tasks and retries t3."""
    bad_start = (Fraction(1), Fraction(5), Fraction(5), Fraction(5))
    real_step = CountdownEnv.step

    def step(self, state, action, rng=None):
        if state.start == bad_start:
            raise RuntimeError("simulator exploded")
        return real_step(self, state, action, rng)

    monkeypatch.setattr(CountdownEnv, "step", step)
    tasks = write_jsonl(tmp_path / "t.jsonl", [
        {"task_id": "t1", "numbers": [4, 4, 6, 8], "target": 24},
        {"task_id": "t2", "numbers": [1, 2, 3, 4], "target": 24},
        {"task_id": "t3", "numbers": [5, 5, 5, 1], "target": 24},
        {"task_id": "t4", "numbers": [2, 3, 4, 1], "target": 24},
    ])
    out = tmp_path / "out"
    res = run_cli("search", "--env", "countdown", "--tasks", tasks, "--simulations", "100", "--out", out, *FAST)

    assert res.rc == 2
    lines = res.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), res.err
    assert "t3" in lines[0] and "RuntimeError" in lines[0] and "simulator exploded" in lines[0]
    assert "Traceback" not in res.out + res.err

    assert "1 of 4 tasks failed" in lines[0]
    # t1, t2, t4 searched; t3 recorded as failed (its message, no nodes)
    assert rows(out, "trees", "task_id, status, error IS NULL, backup", "task_id") == [
        ("t1", "ok", True, "mean"), ("t2", "ok", True, "mean"), ("t3", "error", False, None),
        ("t4", "ok", True, "mean")]
    error = rows(out, "trees", "error", "task_id")[2][0]
    assert lines[0][len("error: "):].startswith(error + ";")
    again = run_cli("search", "--env", "countdown", "--tasks", tasks, "--simulations", "100", "--out", out, *FAST)
    assert again.rc == 2 and "1 of 4 tasks failed" in again.err
    assert rows(out, "nodes", "DISTINCT task_id", "task_id") == [("t1",), ("t2",), ("t4",)]
    assert rows(out, "runs", "ended_at IS NOT NULL", "run_id") == [(True,)]

    # Nothing half-written: every *.parquet is complete, no temporary files remain.
    for f in out.rglob("*"):
        if f.is_file() and f.name != "manifest.json":
            assert f.suffix == ".parquet" and not f.name.startswith("."), f
            pq.read_table(f)
    assert not list(out.rglob("*.tmp"))


# ------------------------------------------------------------------------- what the summary says
def test_summary_counts_timed_out_tasks(run_cli, tmp_path):
    """--task-timeout: the summary says how many tasks stopped on it and where that is recorded."""
    out = tmp_path / "out"
    argv = ["search", "--env", "gym:FrozenLake-v1", "--tasks", "0:3", "--simulations", "100000000",
            "--task-timeout", "0.05", "--out", out, *FAST]
    res = run_cli(*argv)
    assert res.rc == 0, res.err
    assert "3 timed out (--task-timeout; trees.status = 'timeout')" in res.out.splitlines()[0], res.out
    assert rows(out, "trees", "status", "task_id") == [("timeout",)] * 3
    again = run_cli(*argv)  # all on disk: the line still counts them
    assert again.rc == 0 and "3 timed out" in again.out.splitlines()[0], again.out


def test_llm_steps_without_a_language_model_refuses_up_front(run_cli, tmp_path):
    """Open-text actions need a model that proposes them: one line naming the flags, no store made."""
    for extra in ([], ["--policy", "hf"]):
        out = tmp_path / "out"
        res = run_cli("search", "--env", "llm-steps", "--limit", "2", "--out", out, *FAST, *extra)
        assert res.rc == 2 and res.out == ""
        (line,) = res.err.splitlines()
        assert line.startswith("error: ") and "--policy hf --model DIR" in line and "--backend openai" in line, line
        assert not out.exists()


def test_an_absurd_budget_is_a_clean_run(run_cli, tmp_path):
    """--simulations beyond any machine integer: the trees are searched until exhausted, no overflow."""
    out = tmp_path / "out"
    res = run_cli("search", "--env", "game24", "--limit", "2", "--simulations", "99999999999999999999",
                  "--out", out, *FAST)
    assert res.rc == 0, res.err
    assert res.out.startswith("searched 2 game24 tasks") and res.err == ""
    assert rows(out, "trees", "status, solved", "task_id") == [("ok", True)] * 2


def test_nodes_record_what_the_env_answered(run_cli, tmp_path):
    """schema v3's step_observation: Env.observe of each node's state (Blocksworld: the configuration
    the action left, in tree and graph search), null at the root and for envs whose steps say it (Game of 24)."""
    from treeq.envs.registry import make_env

    env = make_env("blocksworld")
    for mode in ("--no-transpositions", "--transpositions"):
        out = tmp_path / f"bw{mode}"
        assert run_cli("search", "--env", "blocksworld", "--limit", "2", "--simulations", "40", "--workers", "1",
                       "--no-progress", mode, "--out", out).rc == 0
        got = rows(out, "nodes", "task_id, node_id, parent_id, action, step_observation")
        tasks = {t.task_id: t for t in env.load_tasks(None)}
        states = {}
        for task_id, node, parent, action, seen in got:
            if parent < 0:
                states[task_id, node] = env.reset(tasks[task_id])
                assert seen is None
                continue
            states[task_id, node] = env.step(states[task_id, parent], action).state
            assert seen == env.observe(states[task_id, node]) and seen.startswith("I have that, ")
        assert len(got) > 10
    out = tmp_path / "g24"
    assert run_cli("search", "--env", "game24", "--limit", "1", "--simulations", "30", "--workers", "1",
                   "--no-progress", "--out", out).rc == 0
    assert {r[0] for r in rows(out, "nodes", "step_observation")} == {None}
