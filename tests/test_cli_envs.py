"""The CLI over the other envs (gym toy-text, Blocksworld, TextWorld): search, query, replay
and the one-line errors, in-process through ``treeq.cli.main``."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

import treeq
from treeq.data.schema import NODES, RUNS, TREES

FAST = ["--no-progress", "--workers", "1"]
NODE_COLUMNS = [
    "run_id", "task_id", "node_id", "parent_id", "depth", "action", "state_key", "observation",
    "prior", "visits", "value_sum", "q", "reward", "terminal", "proven", "feedback", "step_observation",
]
BW3 = Path(treeq.__file__).parent / "envs" / "tasks" / "blocksworld" / "3"
TW_SEEDS = [101, 202]




def sql(out: Path, table: str, select: str = "*", tail: str = "") -> list[tuple]:
    """Rows read with plain DuckDB, as a user would."""
    return duckdb.sql(f"SELECT {select} FROM read_parquet('{out}/{table}/**/*.parquet') {tail}").fetchall()


def one_line_error(res, *needles: str) -> str:
    """Exit 2 and exactly one stderr line, starting 'error:', naming every needle; no traceback."""
    assert res.rc == 2, (res.rc, res.out, res.err)
    lines = res.err.splitlines()
    assert len(lines) == 1, res.err
    assert lines[0].startswith("error:") and lines[0][len("error:"):].strip(), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in res.out + res.err
    return lines[0]


# ----------------------------------------------------------------------------- gym
def test_search_gym_frozenlake_writes_schema_v3(run_cli, tmp_path):
    out = tmp_path / "out"
    res = run_cli("search", "--env", "gym:FrozenLake-v1", "--env-kwargs", '{"is_slippery": false}',
                  "--tasks", "0:2", "--simulations", "300", "--out", out, *FAST)
    assert res.rc == 0, res.err
    assert res.out.startswith("searched 2 gym:FrozenLake-v1 tasks")
    rel = duckdb.sql(f"SELECT * FROM read_parquet('{out}/nodes/**/*.parquet')")
    assert rel.columns == NODE_COLUMNS == NODES.names
    assert duckdb.sql(f"SELECT * FROM read_parquet('{out}/trees/**/*.parquet')").columns == TREES.names
    assert duckdb.sql(f"SELECT * FROM read_parquet('{out}/runs/**/*.parquet')").columns == RUNS.names
    for f in out.rglob("*.parquet"):
        assert pq.read_schema(f).metadata[b"treeq.schema_version"] == b"3", f
    trees = sql(out, "trees", "task_id, env, simulations, backup, status", "ORDER BY task_id")
    assert trees == [(f"seed-{i}", "gym:FrozenLake-v1", 300, "max", "ok") for i in range(2)]
    roots = sql(out, "nodes", "task_id, parent_id, action, state_key, visits", "WHERE node_id = 0 ORDER BY task_id")
    assert roots == [("seed-0", -1, None, "s=0", 300), ("seed-1", -1, None, "s=0", 300)]
    # first moves are the four named actions; keys carry the position only (time limits are truncation)
    first = sql(out, "nodes", "DISTINCT action", "WHERE depth = 1 ORDER BY action")
    assert {a for (a,) in first} <= {"left", "down", "right", "up"}
    assert all(" t=" not in k for (k,) in sql(out, "nodes", "state_key"))
    # the run records the env options and the env-chosen defaults it resolved
    (config,) = sql(out, "runs", "config")[0]
    cfg = json.loads(config)
    assert cfg["env"] == "gym:FrozenLake-v1" and cfg["env_kwargs"] == {"is_slippery": False}
    assert cfg["search"]["gamma"] == 0.95 and cfg["search"]["transpositions"] is True
    # q is value_sum / visits in every visited row
    bad = sql(out, "nodes", "count(*)", "WHERE visits > 0 AND abs(q - value_sum / visits) > 1e-9")[0][0]
    assert bad == 0


# ----------------------------------------------------------------------------- blocksworld
@pytest.mark.parametrize(
    "tasks, limit, ids",
    [
        (str(BW3), "3", ["instance-1", "instance-2", "instance-3"]),
        (str(BW3 / "instance-1*.pddl"), "3", ["instance-1", "instance-10", "instance-11"]),  # natural order
        (str(BW3 / "instance-5.pddl"), None, ["instance-5"]),
    ],
    ids=["dir", "glob", "file"],
)
def test_search_blocksworld_task_sources(run_cli, tmp_path, tasks, limit, ids):
    out = tmp_path / "out"
    extra = ["--limit", limit] if limit else []
    res = run_cli("search", "--env", "blocksworld", "--tasks", tasks, *extra, "--simulations", "40", "--out", out, *FAST)
    assert res.rc == 0, res.err
    assert res.out.startswith(f"searched {len(ids)} blocksworld tasks")
    assert [t for (t,) in sql(out, "trees", "task_id", "ORDER BY task_id")] == sorted(ids)
    assert [t for (t,) in sql(out, "nodes", "DISTINCT task_id", "ORDER BY task_id")] == sorted(ids)
    if "instance-1" in ids:
        # instance-1.pddl: a (red) on the table, b (blue) on a, c (orange) on b; goal (on a b) (on c a)
        key = sql(out, "nodes", "state_key", "WHERE task_id = 'instance-1' AND node_id = 0")[0][0]
        assert key == "blue on red; orange on blue; red on table; hand empty | goal: on orange red; on red blue"


# ----------------------------------------------------------------------------- textworld
@pytest.mark.slow
def test_search_textworld_solves_quest_length_3(run_cli, tw_games, tmp_path):
    from treeq.envs.textworld import TextWorldEnv

    out = tmp_path / "out"
    res = run_cli("search", "--env", "textworld", "--tasks", tw_games, "--simulations", "500", "--out", out, *FAST)
    assert res.rc == 0, res.err
    assert res.out.startswith("searched 2 textworld tasks") and "solved 2 (100.0%)" in res.out
    rows = sql(out, "trees", "task_id, solved, root_value, best_action", "ORDER BY task_id")
    env = TextWorldEnv()
    tasks = {t.task_id: t for t in env.load_tasks(tw_games)}
    assert [r[0] for r in rows] == [f"game-{s}" for s in TW_SEEDS]
    for task_id, solved, root_value, best in rows:
        walk = env.walkthrough(tasks[task_id])
        assert solved and len(walk) == 3
        # reward 1 on the 3rd command, gamma 0.95: V*(start) = 0.95**2, reached by the walkthrough's first move
        assert root_value == pytest.approx(0.95**2)
        assert best == walk[0]
    won = sql(out, "nodes", "count(*)", "WHERE terminal AND reward > 0 AND state_key LIKE '%:won'")[0][0]
    assert won >= 2


# ----------------------------------------------------------------------------- query: shared states
def test_query_states_shared_across_trees(run_cli, tmp_path):
    """[1,2,3,4] and [1,3,3,4] (target 24) share four states one step from their starts.

    From 1 2 3 4:  1+2 -> 3 3 4,  1*2 -> 2 3 4,  2*3 -> 1 4 6,  3-2 -> 1 1 4.
    From 1 3 3 4:  1*3 -> 3 3 4,  3-1 -> 2 3 4,  3+3 -> 1 4 6,  3/3 -> 1 1 4.
    No other first step of one is a first step of the other (checked pair by pair), and
    With ``--max-depth 1`` only the root is expanded (every first step is tried, nothing
    deeper), so these four are exactly the shared keys.
    """
    tasks = tmp_path / "two.jsonl"
    tasks.write_text(
        json.dumps({"task_id": "p1234", "numbers": [1, 2, 3, 4], "target": 24}) + "\n"
        + json.dumps({"task_id": "p1334", "numbers": [1, 3, 3, 4], "target": 24}) + "\n"
    )
    query = ("SELECT state_key, count(DISTINCT task_id) AS trees FROM nodes GROUP BY state_key "
             "HAVING count(DISTINCT task_id) > 1 ORDER BY state_key")
    shared = ["target=24 left=1 1 4", "target=24 left=1 4 6", "target=24 left=2 3 4", "target=24 left=3 3 4"]

    one = tmp_path / "one"
    assert run_cli("search", "--env", "countdown", "--tasks", tasks, "--simulations", "200", "--max-depth", "1",
                   "--out", one, *FAST).rc == 0
    assert sql(one, "nodes", "max(depth)") == [(1,)]
    res = run_cli("query", one, query, "--format", "json")
    assert res.rc == 0, res.err
    assert json.loads(res.out) == [{"state_key": k, "trees": 2} for k in shared]

    more = tmp_path / "more"
    assert run_cli("search", "--env", "countdown", "--tasks", tasks, "--simulations", "200", "--out", more, *FAST).rc == 0
    res = run_cli("query", more, query, "--format", "json")
    assert res.rc == 0, res.err
    got = {r["state_key"] for r in json.loads(res.out)}
    assert set(shared) <= got
    direct = duckdb.sql(
        f"SELECT state_key FROM read_parquet('{more}/nodes/**/*.parquet') GROUP BY state_key "
        "HAVING count(DISTINCT task_id) > 1"
    ).fetchall()
    assert got == {k for (k,) in direct}


# ----------------------------------------------------------------------------- replay
def test_replay_frozenlake_plan(run_cli):
    res = run_cli("replay", "--env", "gym:FrozenLake-v1", "--env-kwargs", '{"is_slippery": false}', "--tasks", "0:1",
                  *[x for a in ("down", "down", "right", "right", "down", "right") for x in ("-a", a)])
    assert res.rc == 0, res.err
    assert res.out.startswith("task seed-0\n")
    assert "[6] right -> reward 1 terminated (key s=15)" in res.out
    assert res.out.rstrip().endswith("6 actions, total reward 1")


# ----------------------------------------------------------------------------- errors
def test_error_unknown_gym_id(run_cli, tmp_path):
    res = run_cli("search", "--env", "gym:NoSuchEnv-v0", "--simulations", "10", "--out", tmp_path / "o", *FAST)
    one_line_error(res, "NoSuchEnv-v0")
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").rglob("*.parquet"))


@pytest.mark.parametrize(
    "kwargs, needles",
    [
        ("{bad", ("--env-kwargs", "not valid JSON", "{bad")),
        ('{"no_such_option": 1}', ("FrozenLake-v1", "no_such_option")),
        ("[1, 2]", ("must be a JSON object",)),
    ],
    ids=["not-json", "unknown-option", "not-an-object"],
)
def test_error_bad_env_kwargs(run_cli, tmp_path, kwargs, needles):
    res = run_cli("search", "--env", "gym:FrozenLake-v1", "--env-kwargs", kwargs, "--simulations", "10",
                  "--out", tmp_path / "o", *FAST)
    one_line_error(res, *needles)


def test_error_non_tabular_gym_env_subprocess(tmp_path):
    """A real process (warnings are not captured there): stderr is the error line alone."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    proc = subprocess.run(
        [sys.executable, "-m", "treeq.cli", "search", "--env", "gym:CartPole-v1", "--simulations", "10",
         "--out", str(tmp_path / "o"), *FAST],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[-1].startswith("error:") and "CartPole-v1" in lines[-1] and "not a tabular" in lines[-1]
    assert len(lines) == 1, proc.stderr


def test_error_bad_gym_tasks(run_cli, tmp_path):
    res = run_cli("search", "--env", "gym:FrozenLake-v1", "--tasks", "seeds please", "--simulations", "10",
                  "--out", tmp_path / "o", *FAST)
    one_line_error(res, "seeds please")


def test_error_pddl_names_file_and_line(run_cli, tmp_path):
    bad = tmp_path / "bad.pddl"
    bad.write_text(
        "(define (problem p)\n"          # 1
        "  (:domain blocksworld-4ops)\n"  # 2
        "  (:objects a b)\n"              # 3
        "  (:init (handempty)\n"          # 4
        "         (ontable a)\n"          # 5
        "         (under b a)\n"          # 6: no such predicate
        "         (clear a))\n"           # 7
        "  (:goal (on a b)))\n"           # 8
    )
    res = run_cli("search", "--env", "blocksworld", "--tasks", bad, "--simulations", "10", "--out", tmp_path / "o", *FAST)
    one_line_error(res, f"{bad}:6", "under")


def test_error_missing_textworld_game(run_cli, tmp_path):
    missing = tmp_path / "nope.z8"
    res = run_cli("search", "--env", "textworld", "--tasks", missing, "--simulations", "10", "--out", tmp_path / "o", *FAST)
    one_line_error(res, "not found", str(missing))


@pytest.mark.slow
def test_error_replay_textworld_not_admissible(run_cli, tw_games):
    res = run_cli("replay", "--env", "textworld", "--tasks", tw_games / "game-101.z8", "-a", "xyzzy")
    one_line_error(res, "action 1", "'xyzzy'", "not an admissible command", "game-101")


def test_error_replay_blocksworld_unparsable(run_cli):
    res = run_cli("replay", "--env", "blocksworld", "-a", "pick up the blue block", "-a", "fly away")
    # instance-1: orange sits on blue, so 'pick up the blue block' is the first failure
    one_line_error(res, "action 1", "pick up the blue block")
    res = run_cli("replay", "--env", "blocksworld", "-a", "fly away")
    one_line_error(res, "action 1", "'fly away'", "cannot parse")


# ----------------------------------------------------------------------------- nothing finished is lost
def test_blocksworld_env_failure_keeps_finished_tasks(run_cli, tmp_path, monkeypatch):
    from treeq.envs.blocksworld import BlocksworldEnv

    real_reset = BlocksworldEnv.reset

    def reset(self, task, rng=None):
        if task.task_id == "instance-3":
            raise RuntimeError("planner exploded")
        return real_reset(self, task, rng)

    monkeypatch.setattr(BlocksworldEnv, "reset", reset)
    out = tmp_path / "out"
    res = run_cli("search", "--env", "blocksworld", "--tasks", BW3, "--limit", "4", "--simulations", "30",
                  "--out", out, *FAST)
    one_line_error(res, "instance-3", "RuntimeError", "planner exploded")
    assert sql(out, "trees", "task_id, status", "ORDER BY task_id") == [
        ("instance-1", "ok"), ("instance-2", "ok"), ("instance-3", "error"), ("instance-4", "ok")]
    assert sql(out, "nodes", "DISTINCT task_id", "ORDER BY task_id") == [
        ("instance-1",), ("instance-2",), ("instance-4",)]  # the run went on past the failure
    for f in out.rglob("*"):
        if f.is_file() and f.name != "manifest.json":
            assert f.suffix == ".parquet" and not f.name.startswith("."), f
            pq.read_table(f)
    visits = sql(out, "nodes", "visits", "WHERE node_id = 0")
    assert all(v > 0 and not math.isnan(v) for (v,) in visits)
