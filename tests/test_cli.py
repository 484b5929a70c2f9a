"""The CLI end to end, in-process through ``treeq.cli.main``: real Parquet, real DuckDB."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pyarrow.parquet as pq
import pytest

import treeq
from treeq.data.schema import NODES, RUNS, TREES

NODE_COLUMNS = [
    "run_id", "task_id", "node_id", "parent_id", "depth", "action", "state_key", "observation",
    "prior", "visits", "value_sum", "q", "reward", "terminal", "proven", "feedback", "step_observation",
]
FAST = ["--no-progress", "--workers", "1"]


def assert_one_line_error(res, *needles: str) -> str:
    """Exit 2, exactly one non-empty 'error:' line on stderr naming ``needles``, no traceback."""
    assert res.rc == 2, (res.rc, res.out, res.err)
    lines = res.err.splitlines()
    assert len(lines) == 1, res.err
    line = lines[0]
    assert line.startswith("error:") and line[len("error:"):].strip(), line
    for needle in needles:
        assert needle in line, (needle, line)
    assert "Traceback" not in res.out and "Traceback" not in res.err
    return line


def plain_duckdb(out: Path, table: str, select: str = "*", tail: str = ""):
    """Read a table with plain DuckDB (not treeq's helper), as a user would."""
    return duckdb.sql(f"SELECT {select} FROM read_parquet('{out}/{table}/**/*.parquet') {tail}")


# ------------------------------------------------------------------------- help
def test_help_subprocess_exits_zero():
    """`python cli.py --help` runs from the repository root and lists both commands."""
    root = Path(treeq.__file__).parent
    proc = subprocess.run([sys.executable, "cli.py", "--help"], cwd=root, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "search" in proc.stdout and "query" in proc.stdout


def test_reader_that_leaves_early_is_no_error(tmp_path):
    """`treeq search ... | head -0`: the summary meets a closed pipe; no traceback, exit 141."""
    root = Path(treeq.__file__).parent
    proc = subprocess.Popen([sys.executable, str(root / "cli.py"), "search", "--env", "countdown", "--limit", "2",
                             "--simulations", "20", "--out", str(tmp_path / "out"), *FAST],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the reader is gone before anything is written
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err and "Error" not in err
    assert len(list((tmp_path / "out" / "trees").rglob("*.parquet"))) == 2  # the work itself is done


# ------------------------------------------------------------------------- main job path
def test_search_game24_writes_schema_v3_store(run_cli, tmp_path):
    """search --env game24 --limit 3: summary line, v3 columns in all tables, metadata on every file."""
    out = tmp_path / "out"
    res = run_cli("search", "--env", "game24", "--limit", "3", "--simulations", "200", "--out", out, *FAST)
    assert res.rc == 0, res.err
    summary = res.out.splitlines()[0]
    assert summary.startswith("searched 3 game24 tasks") and "solved" in summary

    nodes = plain_duckdb(out, "nodes")
    assert nodes.columns == NODE_COLUMNS == NODES.names
    assert plain_duckdb(out, "trees").columns == TREES.names
    assert plain_duckdb(out, "runs").columns == RUNS.names

    files = sorted(out.rglob("*.parquet"))
    assert len(files) == 3 + 3 + 1  # nodes and trees per task, one runs file
    for f in files:
        assert pq.read_schema(f).metadata[b"treeq.schema_version"] == b"3", f

    # The summary's counts are the store's counts.
    n_nodes = plain_duckdb(out, "nodes", "count(*)").fetchall()[0][0]
    assert f"{n_nodes:,} nodes" in summary
    solved = plain_duckdb(out, "trees", "count(*) FILTER (WHERE solved)").fetchall()[0][0]
    assert f"solved {solved} (" in summary
    sims = plain_duckdb(out, "trees", "sum(simulations)").fetchall()[0][0]
    assert f"{sims:,} simulations" in summary

    status = plain_duckdb(out, "trees", "DISTINCT backup, status, error").fetchall()
    assert status == [("mean", "ok", None)]  # tree mode: mean backup
    assert plain_duckdb(out, "nodes", "count(*)", "WHERE feedback IS NOT NULL").fetchall() == [(0,)]
    trees = plain_duckdb(out, "trees", "task_id, env, nodes", "ORDER BY task_id").fetchall()
    per_task = dict(plain_duckdb(out, "nodes", "task_id, count(*)", "GROUP BY task_id").fetchall())
    assert [(t, e) for t, e, _ in trees] == [("24-0", "game24"), ("24-1", "game24"), ("24-2", "game24")]
    assert {t: n for t, _, n in trees} == per_task

    # One root per task; the first rows of 24.csv are "1 1 4 6", "1 1 11 11", "1 1 3 8".
    roots = plain_duckdb(out, "nodes", "task_id, parent_id, depth, action, state_key",
                         "WHERE node_id = 0 ORDER BY task_id").fetchall()
    assert roots == [
        ("24-0", -1, 0, None, "target=24 left=1 1 4 6"),
        ("24-1", -1, 0, None, "target=24 left=1 1 11 11"),
        ("24-2", -1, 0, None, "target=24 left=1 1 3 8"),
    ]
    assert plain_duckdb(out, "nodes", "count(*)", "WHERE parent_id = -1").fetchall()[0][0] == 3
    bad_depth = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{out}/nodes/**/*.parquet') c "
        f"JOIN read_parquet('{out}/nodes/**/*.parquet') p "
        "ON c.task_id = p.task_id AND c.parent_id = p.node_id WHERE c.depth <> p.depth + 1"
    ).fetchall()[0][0]
    assert bad_depth == 0

    run = plain_duckdb(out, "runs", "run_id, seed, ended_at IS NOT NULL").fetchall()
    assert len(run) == 1 and run[0][1:] == (0, True)
    assert f"(run {run[0][0]})" in res.out


# ------------------------------------------------------------------------- user errors
def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_error_unknown_env(run_cli, tmp_path):
    """--env nope names the env and the known ones."""
    res = run_cli("search", "--env", "nope", "--limit", "2", "--simulations", "50", "--out", tmp_path / "o", *FAST)
    assert_one_line_error(res, "nope", "game24")


def test_error_missing_task_file(run_cli, tmp_path):
    """A task file that does not exist is named."""
    missing = tmp_path / "missing.jsonl"
    res = run_cli("search", "--tasks", missing, "--limit", "2", "--simulations", "50", "--out", tmp_path / "o", *FAST)
    assert_one_line_error(res, "not found", str(missing))


def test_error_malformed_jsonl_names_line(run_cli, tmp_path):
    """Bad JSON on line 3 of a JSONL file: the message says file:3."""
    tasks = _write(tmp_path / "t.jsonl",
                   '{"input": "30,100,93", "output": "23"}\n'
                   '{"numbers": [4, 4, 6, 8], "target": 24}\n'
                   '{"numbers": [1, 2\n')
    res = run_cli("search", "--env", "countdown", "--tasks", tasks, "--limit", "2", "--simulations", "50",
                  "--out", tmp_path / "o", *FAST)
    assert_one_line_error(res, f"{tasks}:3")


def test_error_csv_without_puzzles_column(run_cli, tmp_path):
    """A CSV without a Puzzles column is refused with the column name."""
    tasks = _write(tmp_path / "t.csv", "Rank,Numbers\n1,1 1 4 6\n")
    res = run_cli("search", "--tasks", tasks, "--limit", "2", "--simulations", "50", "--out", tmp_path / "o", *FAST)
    assert_one_line_error(res, str(tasks), "Puzzles")


def test_error_game24_row_with_three_numbers(run_cli, tmp_path):
    """Row 2 (line 3 after the header) has 3 numbers: file:3 and the count are named."""
    tasks = _write(tmp_path / "t.csv", "Rank,Puzzles\n1,1 1 4 6\n2,1 2 3\n")
    res = run_cli("search", "--tasks", tasks, "--limit", "2", "--simulations", "50", "--out", tmp_path / "o", *FAST)
    assert_one_line_error(res, f"{tasks}:3", "3")


@pytest.mark.parametrize(
    "flag, value, needle",
    [("--simulations", "0", "simulations"), ("--gamma", "2", "gamma")],
)
def test_error_bad_search_value(run_cli, tmp_path, flag, value, needle):
    """Out-of-range search settings name the setting and the bad value."""
    res = run_cli("search", "--limit", "2", "--simulations", "50", flag, value, "--out", tmp_path / "o", *FAST)
    line = assert_one_line_error(res, needle)
    assert value in line


def test_error_out_is_a_regular_file(run_cli, tmp_path):
    """--out pointing at an existing file is refused, and the file is left alone."""
    target = _write(tmp_path / "taken", "keep me\n")
    res = run_cli("search", "--limit", "2", "--simulations", "50", "--out", target, *FAST)
    assert_one_line_error(res, str(target), "not a directory")
    assert target.read_text() == "keep me\n"


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["search", "--bogus"], "--bogus"),
        (["search", "--simulations", "many"], "--simulations"),
    ],
    ids=["unknown-flag", "non-integer"],
)
def test_error_usage(run_cli, argv, needle):
    """Usage errors (unknown flag, a non-number) end as one line and exit 2."""
    res = run_cli(*argv)
    assert_one_line_error(res, needle)


# ------------------------------------------------------------------------- query
def test_query_table_has_column_names(run_cli, game24_store):
    """Table output: a header line with the column names and a row count."""
    res = run_cli("query", game24_store, "SELECT task_id, count(*) AS nodes FROM nodes GROUP BY task_id ORDER BY task_id")
    assert res.rc == 0, res.err
    lines = res.out.splitlines()
    assert lines[0].split() == ["task_id", "nodes"]
    assert [ln.split()[0] for ln in lines[2:5]] == ["24-0", "24-1", "24-2"]
    assert lines[-1] == "(3 rows)"


def test_query_csv_parses(run_cli, game24_store):
    """--format csv parses with the csv module and agrees with plain DuckDB."""
    res = run_cli("query", game24_store, "SELECT task_id, count(*) AS nodes FROM nodes GROUP BY task_id ORDER BY task_id",
                  "--format", "csv")
    assert res.rc == 0, res.err
    rows = list(csv.reader(io.StringIO(res.out)))
    expected = plain_duckdb(game24_store, "nodes", "task_id, count(*)", "GROUP BY task_id ORDER BY task_id").fetchall()
    assert rows[0] == ["task_id", "nodes"]
    assert rows[1:] == [[t, str(n)] for t, n in expected]


def test_query_json_is_list_of_dicts(run_cli, game24_store):
    """--format json gives a list of objects keyed by column name."""
    res = run_cli("query", game24_store, "SELECT task_id, env, solved FROM trees ORDER BY task_id", "--format", "json")
    assert res.rc == 0, res.err
    rows = json.loads(res.out)
    assert isinstance(rows, list) and all(isinstance(r, dict) for r in rows)
    assert [r["task_id"] for r in rows] == ["24-0", "24-1", "24-2"]
    assert {r["env"] for r in rows} == {"game24"}
    assert all(isinstance(r["solved"], bool) for r in rows)


def test_query_group_by_state_key(run_cli, game24_store):
    """The GROUP BY state_key example returns the 3 most shared states, counts descending."""
    sql = "SELECT state_key, count(*) n FROM nodes GROUP BY state_key ORDER BY n DESC LIMIT 3"
    res = run_cli("query", game24_store, sql, "--format", "json")
    assert res.rc == 0, res.err
    rows = json.loads(res.out)
    assert len(rows) == 3 and list(rows[0]) == ["state_key", "n"]
    counts = [r["n"] for r in rows]
    assert counts == sorted(counts, reverse=True)
    top = rows[0]["state_key"].replace("'", "''")
    direct = plain_duckdb(game24_store, "nodes", "count(*)", f"WHERE state_key = '{top}'").fetchall()[0][0]
    assert counts[0] == direct


def test_query_error_not_a_store(run_cli, tmp_path):
    """query on a directory without nodes/trees/runs is refused by name."""
    (tmp_path / "plain").mkdir()
    res = run_cli("query", tmp_path / "plain", "SELECT 1")
    assert_one_line_error(res, str(tmp_path / "plain"), "not a treeq output directory")


def test_query_error_bad_sql(run_cli, game24_store):
    """A SQL syntax error is one line naming the failing query."""
    res = run_cli("query", game24_store, "SELEC * FROM nodes")
    assert_one_line_error(res, "query failed", "SELEC")


def test_query_error_corrupt_parquet(run_cli, game24_store, tmp_path):
    """A nodes shard overwritten with garbage: one line that names the nodes files."""
    store = tmp_path / "store"
    shutil.copytree(game24_store, store)
    victim = sorted((store / "nodes").rglob("*.parquet"))[0]
    victim.write_bytes(b"this is not parquet " * 50)
    res = run_cli("query", store, "SELECT count(*) FROM trees")
    line = assert_one_line_error(res, "nodes")
    assert victim.name in line or str(store) in line


# ------------------------------------------------------------------------- no command = the main job
@pytest.mark.parametrize("argv", [[], ["search"]], ids=["no-command", "search"])
def test_no_command_runs_search_with_the_config_defaults(run_cli, monkeypatch, argv):
    """`treeq` alone and `treeq search` build exactly SearchJobConfig() (one source of defaults)."""
    import treeq.pipelines.search as job
    from treeq.pipelines.config import SearchJobConfig

    seen = []

    def fake_run_search(cfg, resume=False):
        seen.append(cfg)
        return job.SearchSummary("r", cfg.out, cfg.env, 0, 0, 0, 0, 1.0)

    monkeypatch.setattr(job, "run_search", fake_run_search)
    res = run_cli(*argv)
    assert res.rc == 0, res.err
    assert seen == [SearchJobConfig()]
    assert res.out.startswith("searched 0 game24 tasks")


# ------------------------------------------------------------------------- more user errors
@pytest.mark.parametrize("sql", ["", "   ", "/* nothing */"])
def test_query_error_empty(run_cli, game24_store, sql):
    """An empty or comment-only query is one line, not a traceback."""
    assert_one_line_error(run_cli("query", game24_store, sql), "empty")


def test_query_error_comment_only_after_double_dash(run_cli, game24_store):
    """A query starting with `--` goes after `--` on the command line; comment-only is still one line."""
    assert_one_line_error(run_cli("query", game24_store, "--", "-- only a comment"), "empty")


def test_query_error_trees_folder_cannot_be_opened(run_cli, game24_store, tmp_path):
    """trees/ that cannot be opened (a dangling link, so even root cannot): one line, never 0 rows."""
    store = tmp_path / "store"
    shutil.copytree(game24_store, store)
    shutil.rmtree(store / "trees")
    (store / "trees").symlink_to(tmp_path / "nowhere")
    assert_one_line_error(run_cli("query", store, "SELECT count(*) FROM trees"), "cannot read", "trees")


def as_user_without_dac_override() -> list[str]:
    """A command prefix under which chmod binds: none for a normal user; for root, root without
    the capabilities that bypass file permissions (setpriv); None where neither is possible."""
    import os

    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    drop = "-dac_override,-dac_read_search"
    prefix = [setpriv, f"--inh-caps={drop}", f"--bounding-set={drop}"]
    if subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
        return None
    return prefix


def test_chmod_read_only_nodes_and_unreadable_trees(game24_store, tmp_path):
    """nodes/ chmod 0o500 (a new run cannot make its partition) and trees/ chmod 0: each one line, exit 2."""
    prefix = as_user_without_dac_override()
    if prefix is None:
        pytest.skip("running as root without setpriv: chmod does not bind")
    cli = [*prefix, sys.executable, str(Path(treeq.__file__).parent / "cli.py")]
    store = tmp_path / "store"
    shutil.copytree(game24_store, store)

    def run(*argv):
        proc = subprocess.run([*cli, *map(str, argv)], capture_output=True, text=True, timeout=120)
        return SimpleNamespace(rc=proc.returncode, out=proc.stdout, err=proc.stderr)

    (store / "nodes").chmod(0o500)
    try:
        for workers in ("1", "2"):
            res = run("search", "--limit", "2", "--simulations", "40", "--seed", "9", "--out", store,
                      "--no-progress", "--workers", workers)
            assert_one_line_error(res, "cannot write", "nodes", "Permission denied")
    finally:
        (store / "nodes").chmod(0o755)
    (store / "trees").chmod(0)
    try:
        assert_one_line_error(run("query", store, "SELECT count(*) FROM trees"), "cannot read", "trees")
    finally:
        (store / "trees").chmod(0o755)
    assert not list(store.rglob("*.tmp"))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_search_error_nodes_partition_cannot_be_written(run_cli, tmp_path, workers):
    """The run's nodes/ partition is a file (it cannot be opened as a folder): one line, exit 2."""
    out = tmp_path / "out"
    argv = ["search", "--limit", "2", "--simulations", "50", "--out", out, "--no-progress", "--workers", workers]
    assert run_cli(*argv).rc == 0
    (part,) = (out / "nodes").iterdir()
    shutil.rmtree(part)
    part.write_text("in the way")
    assert_one_line_error(run_cli(*argv), "cannot write", part.name)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_search_error_nodes_folder_cannot_be_opened(run_cli, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "nodes").symlink_to(tmp_path / "nowhere")
    res = run_cli("search", "--limit", "1", "--simulations", "50", "--out", out, *FAST)
    assert_one_line_error(res, "cannot create output directory", str(out))


def test_error_max_nodes_1(run_cli, tmp_path):
    res = run_cli("search", "--limit", "1", "--max-nodes", "1", "--out", tmp_path / "o", *FAST)
    line = assert_one_line_error(res, "max_nodes")
    assert "got 1" in line


# ------------------------------------------------------------------------- issue 19: query, exports, version
def _tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("sql", [
    "COPY (SELECT * FROM nodes) TO '{dir}/copy.csv'",
    "COPY (SELECT 1 AS a) TO '{store}/nodes/{shard}'",  # onto a shard: every later command would break
    "EXPLAIN ANALYZE COPY (SELECT 1 AS a) TO '{store}/nodes/{shard}'",
    "ATTACH '{dir}/new.duckdb' AS other",
    "INSTALL httpfs",
    "CREATE TABLE t AS SELECT * FROM nodes",
    "INSERT INTO nodes SELECT * FROM nodes",
    "EXPORT DATABASE '{dir}/export'",
    "SET enable_external_access = true",
    "SELECT 1; COPY (SELECT 1) TO '{dir}/second.csv'",
])
def test_query_is_read_only(run_cli, game24_store, tmp_path, sql):
    """A statement that could write is one line and exit 2; nothing is written, the store reads as before."""
    shard = next((game24_store / "nodes").rglob("*.parquet")).relative_to(game24_store / "nodes")
    before = _tree(game24_store)
    res = run_cli("query", game24_store, sql.format(dir=tmp_path, store=game24_store, shard=shard))
    assert_one_line_error(res, "read-only")
    assert list(tmp_path.iterdir()) == [] and _tree(game24_store) == before
    assert run_cli("query", game24_store, "SELECT count(*) AS n FROM nodes", "--format", "csv").rc == 0


@pytest.mark.parametrize("sql", ["SELECT * FROM read_csv('{outside}')", "SELECT * FROM glob('{dir}/*')",
                                 "SELECT * FROM read_parquet('https://example.com/x.parquet')"])
def test_query_reads_nothing_outside_the_store(run_cli, game24_store, tmp_path, sql):
    """DuckDB's file and network access ends at the store's folder (its own files still read)."""
    outside = tmp_path / "secret.csv"
    outside.write_text("a\n1\n")
    line = assert_one_line_error(run_cli("query", game24_store, sql.format(outside=outside, dir=tmp_path)))
    assert "disabled by configuration" in line
    res = run_cli("query", game24_store, f"SELECT count(*) AS n FROM glob('{game24_store}/nodes/**/*.parquet')",
                  "--format", "csv")
    assert res.rc == 0 and res.out.split() == ["n", "3"]


def test_query_describe_show_summarize_and_explain_run(run_cli, game24_store):
    for sql in ("DESCRIBE nodes", "SHOW TABLES", "SUMMARIZE trees", "EXPLAIN SELECT count(*) FROM nodes",
                "WITH d AS (SELECT depth FROM nodes) FROM d SELECT max(depth)"):
        res = run_cli("query", game24_store, sql)
        assert res.rc == 0 and res.out and not res.err, (sql, res.err)


def test_query_sql_may_begin_with_a_comment(run_cli, game24_store):
    """SQL that starts with `--` is the SQL, not an unknown option; --format still works, before or after it."""
    sql = "-- how many trees\nSELECT count(*) AS n FROM trees"
    for argv in (["query", game24_store, sql, "--format", "csv"], ["query", "--format", "csv", game24_store, sql]):
        res = run_cli(*argv)
        assert res.rc == 0, res.err
        assert res.out.split() == ["n", "3"]
    assert_one_line_error(run_cli("query", game24_store, "-- nothing else"), "empty")


def test_exports_refuse_an_out_inside_a_tree_store(run_cli, game24_store, tmp_path):
    """export-dpo, export-prm-data, export-rewards, rollouts and score-steps --output write no file among the shards."""
    before = _tree(game24_store)
    rollouts = tmp_path / "r.parquet"
    assert run_cli("rollouts", "--limit", "1", "--group-size", "2", "--out", rollouts, "--no-progress").rc == 0
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"prompt": "p", "steps": ["a"]}\n')
    for out in (game24_store / "x.parquet", game24_store / "nodes" / "x.parquet"):
        for argv in (["export-dpo", game24_store, "--out", out, "--no-progress"],
                     ["export-prm-data", game24_store, "--out", out, "--no-progress"],
                     ["export-rewards", rollouts, "--out", out, "--no-progress"],
                     ["rollouts", "--limit", "1", "--out", out, "--no-progress"],
                     ["score-steps", tmp_path / "no-model", "--input", rows, "--output", out.with_suffix(".jsonl")]):
            assert_one_line_error(run_cli(*argv), "inside the tree store", str(game24_store))
    assert _tree(game24_store) == before


def test_version_flag(run_cli):
    from importlib.metadata import version

    res = run_cli("--version")
    assert res.rc == 0 and res.out == f"treeq {version('treeq')}\n" and not res.err


def test_make_textworld_games_negative_jobs_message_matches_the_help(run_cli, tmp_path):
    line = assert_one_line_error(run_cli("make-textworld-games", tmp_path / "g", "--jobs", "-1"), "--jobs")
    assert ">= 0" in line and "one per core" in line


def test_score_steps_bad_batch_size_is_one_line(run_cli, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"prompt": "p", "steps": ["a"]}\n')
    for size in ("0", "-1"):
        assert_one_line_error(run_cli("score-steps", tmp_path / "m", "--input", rows, "--batch-size", size),
                              "--batch-size", ">= 1")


@pytest.mark.parametrize("content, needle", [(b"", "no rows in it"), (b'{"prompt": "\xff"}\n', "not UTF-8"),
                                             (b"\x00\n", "NUL byte")])
def test_score_steps_input_errors_speak_of_the_input_rows(run_cli, tmp_path, content, needle):
    """--input is a JSONL of rows, not a task file: the message names the file and line, and no 'task'."""
    rows = tmp_path / "rows.jsonl"
    rows.write_bytes(content)
    line = assert_one_line_error(run_cli("score-steps", tmp_path / "m", "--input", rows), str(rows), needle)
    assert "task" not in line


@pytest.fixture(scope="module")
def tiny_prm(game24_store, tmp_path_factory):
    """A PRM of one training step (its scores do not matter here)."""
    out = tmp_path_factory.mktemp("prm") / "model"
    assert treeq.cli.main(["train-prm", str(game24_store), "--out", str(out), "--max-steps", "1", "--hidden-size", "16",
                           "--layers", "1", "--heads", "1", "--vocab-size", "300", "--best-of-n", "0",
                           "--eval-paths", "1", "--no-progress"]) == 0
    return out


@pytest.mark.slow
def test_score_steps_row_errors_name_the_row(run_cli, tiny_prm, tmp_path):
    """A path longer than the model reads, or a step holding the separator: the message names file and line."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"prompt": "p", "steps": ["a"]}\n' + json.dumps({"prompt": "p", "steps": ["a b c " * 2000]}) + "\n")
    assert_one_line_error(run_cli("score-steps", tiny_prm, "--input", rows), f"{rows}:2:", "tokens")
    rows.write_text('{"prompt": "p", "steps": ["a"]}\n{"prompt": "p", "steps": ["a<|step|>b"]}\n')
    assert_one_line_error(run_cli("score-steps", tiny_prm, "--input", rows), f"{rows}:2:", "separator")


@pytest.mark.parametrize("command", ["show", "plot"])
@pytest.mark.parametrize("kind", ["runtime", "duckdb"])
def test_ctrl_c_in_any_duckdb_query_is_exit_130(command, kind, game24_store, run_cli, monkeypatch):
    """A DuckDB interrupt raised where no `interruptible()` wraps the query still ends as Ctrl-C: one line, 130."""
    def interrupted(*_a, **_k):
        raise RuntimeError("Query interrupted") if kind == "runtime" else duckdb.InterruptException("INTERRUPT")

    class Connection:
        def execute(self, *_a, **_k):
            interrupted()

        def close(self):
            pass

        def __getattr__(self, name):
            return interrupted

    module = __import__(f"treeq.pipelines.{command}", fromlist=["connect"])
    monkeypatch.setattr(module, "connect", lambda *_a, **_k: Connection())
    argv = ["show", game24_store, "--task", "24-0"] if command == "show" else ["plot", game24_store]
    res = run_cli(*argv, "--out", str(game24_store.parent / f"x.{'svg' if command == 'show' else 'png'}"))
    assert res.rc == 130 and res.err.strip() == "interrupted", (res.rc, res.err)
