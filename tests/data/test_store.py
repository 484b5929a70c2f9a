"""TreeStore writers and the DuckDB reader ``connect``: real Parquet files, real DuckDB."""

from __future__ import annotations

import datetime as dt
import os
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from treeq.data import store as store_mod
from treeq.data.schema import NODES, RUNS, SCHEMA_VERSION, TREES, VERSION_KEY
from treeq.data.store import TreeStore, connect
from treeq.errors import StoreError


def node_columns(task_id: str = "t", run_id: str = "r1") -> dict[str, list]:
    """A valid one-row (root only) nodes shard (schema v3)."""
    return {
        "run_id": [run_id], "task_id": [task_id], "node_id": [0], "parent_id": [-1], "depth": [0],
        "action": [None], "state_key": ["s0"], "observation": ["obs"], "prior": [1.0], "visits": [3],
        "value_sum": [1.5], "q": [0.5], "reward": [0.0], "terminal": [False], "proven": [None], "feedback": [None],
        "step_observation": [None],
    }


def run_columns(run_id: str = "r1") -> dict[str, list]:
    now = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    return {"run_id": [run_id], "config": ["{}"], "versions": ["{}"], "seed": [0],
            "started_at": [now], "ended_at": [None]}


def test_write_rejects_missing_column(tmp_path):
    """A nodes shard without `proven` is refused and names the column."""
    cols = node_columns()
    del cols["proven"]
    with pytest.raises(ValueError, match="proven"):
        TreeStore(tmp_path).write("nodes", "r1", cols, "t")
    assert not list(tmp_path.rglob("*.parquet"))


def test_write_rejects_extra_column(tmp_path):
    """A nodes shard with an unknown column is refused and names it."""
    cols = node_columns() | {"bonus": [1]}
    with pytest.raises(ValueError, match="bonus"):
        TreeStore(tmp_path).write("nodes", "r1", cols, "t")
    assert not list(tmp_path.rglob("*.parquet"))


def test_write_is_atomic_and_leaves_only_the_file(tmp_path):
    """After a write the partition folder holds exactly the shard: no temp file, v2 metadata, same row."""
    path = TreeStore(tmp_path).write("nodes", "r1", node_columns(), "t")
    assert path == tmp_path / "nodes" / "run_id=r1" / "t.parquet"
    assert sorted(os.listdir(path.parent)) == ["t.parquet"]
    assert pq.read_schema(path).metadata[VERSION_KEY] == str(SCHEMA_VERSION).encode()
    assert pq.read_table(path).to_pylist() == [
        {k: v[0] for k, v in node_columns().items()}
    ]


def test_failed_rename_keeps_old_file_and_no_temp(tmp_path, monkeypatch):
    """If the final rename fails, the old shard stays intact and the temp file is removed."""
    ts = TreeStore(tmp_path)
    path = ts.write("nodes", "r1", node_columns(), "t")
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(store_mod.os, "replace", broken_replace)
    newer = node_columns() | {"visits": [99]}
    with pytest.raises(OSError, match="disk gone"):
        ts.write("nodes", "r1", newer, "t")
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == ["t.parquet"]


def test_connect_rejects_other_schema_version(tmp_path):
    """A nodes file stamped schema version 4 makes connect raise StoreError naming the file."""
    ts = TreeStore(tmp_path)
    ts.write("nodes", "r1", node_columns("good"), "good")
    table = pa.Table.from_pylist([{k: v[0] for k, v in node_columns("future").items()}], schema=NODES)
    table = table.replace_schema_metadata({VERSION_KEY: b"4", b"treeq.table": b"nodes"})
    future = tmp_path / "nodes" / "run_id=r1" / "future.parquet"
    pq.write_table(table, future)
    with pytest.raises(StoreError, match="version 4") as info:
        connect(tmp_path)
    assert "future.parquet" in str(info.value)


def test_connect_rejects_parquet_without_treeq_metadata(tmp_path):
    """A foreign Parquet file (no treeq.schema_version) in trees/ is rejected."""
    TreeStore(tmp_path)
    foreign = tmp_path / "trees" / "run_id=r1" / "x.parquet"
    foreign.parent.mkdir(parents=True)
    pq.write_table(pa.table({"a": [1, 2]}), foreign)
    with pytest.raises(StoreError, match="x.parquet"):
        connect(tmp_path)


def test_empty_store_has_empty_views_with_columns(tmp_path):
    """Only a runs row written: nodes and trees are empty views with the v2 columns."""
    TreeStore(tmp_path).write("runs", "r1", run_columns())
    con = connect(tmp_path)
    try:
        for name, schema in (("nodes", NODES), ("trees", TREES)):
            cur = con.execute(f"SELECT * FROM {name}")
            assert [d[0] for d in cur.description] == schema.names
            assert cur.fetchall() == []
        cur = con.execute("SELECT * FROM runs")
        assert [d[0] for d in cur.description] == RUNS.names
        assert [r[0] for r in cur.fetchall()] == ["r1"]
    finally:
        con.close()


def test_odd_task_ids_get_safe_distinct_names(tmp_path):
    """Ids with '/', '..', spaces or a leading dot stay inside the partition folder, distinct, readable."""
    ts = TreeStore(tmp_path)
    ids = ["a/b", "a_b", "../x", "_x", ".hidden", "sp ace", "ü"]
    folder = tmp_path / "nodes" / "run_id=r1"
    paths = [ts.path("nodes", "r1", t) for t in ids]
    for t, p in zip(ids, paths):
        assert p.parent == folder, (t, p)
        assert p.suffix == ".parquet" and not p.name.startswith("."), (t, p)
        assert "/" not in p.name and ".." not in p.stem, (t, p)
    assert len({p.name for p in paths}) == len(ids)
    assert ts.path("nodes", "r1", "a_b").name == "a_b.parquet"  # plain ids keep their name

    for t in ids:
        assert ts.write("nodes", "r1", node_columns(t), t) in paths
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in paths)
    con = connect(tmp_path)
    try:
        got = sorted(r[0] for r in con.execute("SELECT task_id FROM nodes").fetchall())
    finally:
        con.close()
    assert got == sorted(ids)


def test_long_task_id_gets_a_writable_name(tmp_path):
    """A 300-character task id (legal in a JSONL task file) still maps to a writable shard."""
    task_id = "x" * 300
    path = TreeStore(tmp_path).write("nodes", "r1", node_columns(task_id), task_id)
    assert path.parent == tmp_path / "nodes" / "run_id=r1"
    assert pq.read_table(path).column("task_id").to_pylist() == [task_id]


@pytest.mark.parametrize(
    "dirname",
    [
        "plain dir",
        "run[1]",
        "it's",
    ],
)
def test_connect_store_under_unusual_directory_name(tmp_path, dirname):
    """A valid store opens whatever characters its directory name holds."""
    root = tmp_path / dirname
    ts = TreeStore(root)
    ts.write("nodes", "r1", node_columns(), "t")
    ts.write("runs", "r1", run_columns())
    con = connect(root)
    try:
        assert con.execute("SELECT count(*) FROM nodes").fetchall() == [(1,)]
    finally:
        con.close()


# ------------------------------------------------------------------------- staging
def tree_columns(task_id: str = "t", run_id: str = "r1", **over) -> dict[str, list]:
    """A valid trees row (schema v2)."""
    row = {"run_id": run_id, "task_id": task_id, "env": "e", "simulations": 5, "nodes": 1, "root_value": 0.5,
           "best_action": None, "solved": False, "seconds": 0.1, "backup": "mean", "status": "ok", "error": None}
    return {k: [v] for k, v in (row | over).items()}


def test_stage_is_invisible_until_commit_and_discard_removes_it(tmp_path):
    """A staged shard is a hidden temp file (not *.parquet); commit renames it, discard drops it."""
    ts = TreeStore(tmp_path)
    tmp, final = ts.stage("nodes", "r1", node_columns(), "t")
    assert tmp.exists() and not final.exists() and not tmp.name.endswith(".parquet")
    assert connect(tmp_path).execute("SELECT count(*) FROM nodes").fetchall() == [(0,)]
    ts.commit([(tmp, final)])
    assert final.exists() and not tmp.exists()

    staged = [ts.stage(t, "r1", cols, "u") for t, cols in (("nodes", node_columns("u")), ("trees", tree_columns("u")))]
    ts.discard("r1", "u", os.getpid())
    assert not any(tmp.exists() or final.exists() for tmp, final in staged)
    assert not list(tmp_path.rglob("*.tmp"))


def test_interrupt_while_writing_leaves_no_temp_file(tmp_path, monkeypatch):
    """Ctrl-C inside the Parquet writer: the temp file is removed, the exception goes on."""
    real = pq.write_table

    def half_then_interrupt(table, where, **kw):
        real(table, where, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(store_mod.pq, "write_table", half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        TreeStore(tmp_path).write("nodes", "r1", node_columns(), "t")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("column, value", [("status", "fine"), ("backup", "median")])
def test_write_rejects_status_or_backup_outside_domain(tmp_path, column, value):
    with pytest.raises(ValueError, match=f"trees.{column}.*{value}"):
        TreeStore(tmp_path).write("trees", "r1", tree_columns(**{column: value}), "t")


def test_unwritable_partition_is_an_output_error(tmp_path):
    """A partition path that cannot be a folder: OutputError naming the shard, nothing left behind."""
    from treeq.errors import OutputError

    ts = TreeStore(tmp_path)
    (tmp_path / "nodes" / "run_id=r1").write_text("in the way")
    with pytest.raises(OutputError, match="cannot write .*run_id=r1"):
        ts.write("nodes", "r1", node_columns(), "t")


# ------------------------------------------------------------------------- schema v1 files read beside v2
V1_NODES = pa.schema(
    [pa.field(n, t, nullable=nn) for n, t, nn in [
        ("run_id", pa.string(), False), ("task_id", pa.string(), False), ("node_id", pa.int32(), False),
        ("parent_id", pa.int32(), False), ("depth", pa.int32(), False), ("action", pa.string(), True),
        ("state_key", pa.string(), False), ("observation", pa.string(), True), ("prior", pa.float64(), True),
        ("visits", pa.int64(), False), ("value_sum", pa.float64(), False), ("q", pa.float64(), True),
        ("reward", pa.float64(), False), ("terminal", pa.bool_(), False), ("proven", pa.float64(), True),
    ]],
    metadata={VERSION_KEY: b"1", b"treeq.table": b"nodes"},
)
V1_TREES = pa.schema(
    [pa.field(n, t, nullable=nn) for n, t, nn in [
        ("run_id", pa.string(), False), ("task_id", pa.string(), False), ("env", pa.string(), False),
        ("simulations", pa.int64(), False), ("nodes", pa.int64(), False), ("root_value", pa.float64(), True),
        ("best_action", pa.string(), True), ("solved", pa.bool_(), False), ("seconds", pa.float64(), False),
    ]],
    metadata={VERSION_KEY: b"1", b"treeq.table": b"trees"},
)


def write_v1_store(root, run_id: str = "old") -> None:
    """What treeq with schema v1 wrote: plain pyarrow, the v1 columns and metadata."""
    node = {k: v[0] for k, v in node_columns("v1task", run_id).items() if k not in ("feedback", "step_observation")}
    tree = {k: v[0] for k, v in tree_columns("v1task", run_id).items() if k not in ("backup", "status", "error")}
    for table, schema, row in (("nodes", V1_NODES, node), ("trees", V1_TREES, tree)):
        folder = root / table / f"run_id={run_id}"
        folder.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist([row], schema=schema), folder / "v1task.parquet")


def test_v1_files_read_beside_v2_files(tmp_path):
    """A v1 shard (written with plain pyarrow) and a v2 shard: one view, v2 columns null for v1 rows."""
    from treeq.data.schema import schema_of_version
    from treeq.data.store import run_query

    assert schema_of_version("nodes", 1).names == V1_NODES.names  # the module knows what v1 was
    assert schema_of_version("trees", 1).names == V1_TREES.names
    write_v1_store(tmp_path)
    ts = TreeStore(tmp_path)
    ts.write("nodes", "new", node_columns("v2task", "new") | {"feedback": [0.25]}, "v2task")
    ts.write("trees", "new", tree_columns("v2task", "new", backup="max"), "v2task")

    cols, rows = run_query(tmp_path, "SELECT task_id, feedback, visits FROM nodes ORDER BY task_id")
    assert cols == ["task_id", "feedback", "visits"]
    assert rows == [("v1task", None, 3), ("v2task", 0.25, 3)]
    cols, rows = run_query(tmp_path, "SELECT task_id, backup, status, error, simulations FROM trees ORDER BY task_id")
    assert rows == [("v1task", None, None, None, 5), ("v2task", "max", "ok", None, 5)]
    cols, _ = run_query(tmp_path, "SELECT * FROM nodes")
    assert cols == NODES.names


def test_v1_only_store_has_the_v2_columns(tmp_path):
    """A store holding only v1 files still offers the v2 columns (null), in schema order."""
    from treeq.data.store import run_query

    write_v1_store(tmp_path)
    cols, rows = run_query(tmp_path, "SELECT * FROM trees")
    assert cols == TREES.names
    assert rows[0][-3:] == (None, None, None)


# ------------------------------------------------------------------------- unreadable folders are errors
def test_trees_folder_that_cannot_be_opened_is_an_error(tmp_path):
    """trees/ a dangling link (a folder that cannot be opened, even by root): StoreError, not 0 rows."""
    TreeStore(tmp_path).write("nodes", "r1", node_columns(), "t")
    (tmp_path / "trees").rmdir()
    (tmp_path / "trees").symlink_to(tmp_path / "gone")
    with pytest.raises(StoreError, match="cannot read .*trees"):
        connect(tmp_path)


def test_trees_path_that_is_a_file_is_an_error(tmp_path):
    TreeStore(tmp_path).write("nodes", "r1", node_columns(), "t")
    (tmp_path / "trees").rmdir()
    (tmp_path / "trees").write_text("not a folder")
    with pytest.raises(StoreError, match="trees"):
        connect(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 folder anyway")
def test_unreadable_trees_partition_is_an_error(tmp_path):
    ts = TreeStore(tmp_path)
    ts.write("trees", "r1", tree_columns(), "t")
    part = tmp_path / "trees" / "run_id=r1"
    part.chmod(0)
    try:
        with pytest.raises(StoreError, match="cannot read"):
            connect(tmp_path)
    finally:
        part.chmod(0o755)


def test_empty_or_comment_only_query_is_an_error(tmp_path):
    from treeq.data.store import run_query

    TreeStore(tmp_path).write("runs", "r1", run_columns())
    for sql in ("", "   \n", "-- just a comment", "/* nothing */"):
        with pytest.raises(StoreError, match="empty"):
            run_query(tmp_path, sql)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="zombie detection reads /proc")
def test_a_killed_writer_not_yet_reaped_counts_as_gone(tmp_path):
    """A SIGKILLed worker whose parent is gone can linger as a zombie: its temps are stale."""
    import subprocess
    import sys

    from treeq.data.store import _alive

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    for _ in range(500):  # exited, not waited for: a zombie
        with open(f"/proc/{child.pid}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[-1].split()[0] == b"Z":
                break
        time.sleep(0.01)
    try:
        assert not _alive(child.pid)
        assert _alive(os.getpid())
    finally:
        child.wait()
    assert not _alive(child.pid)


def test_interrupting_a_store_query_is_a_keyboard_interrupt(tmp_path):
    """DuckDB's InterruptException (a duckdb.Error) is Ctrl-C, not a broken store: KeyboardInterrupt, exit 130."""
    import threading

    from treeq.data.store import iter_tasks

    TreeStore(tmp_path).write("nodes", "r1", node_columns(), "t")
    con = connect(tmp_path)
    done = threading.Event()

    def interrupt():
        while not done.wait(0.2):  # until the query has started and stopped
            con.interrupt()

    threading.Thread(target=interrupt, daemon=True).start()
    try:
        with pytest.raises(KeyboardInterrupt):
            list(iter_tasks(con, "SELECT n.run_id, n.task_id, sum(range) FROM nodes n, range(1000000000000000) "
                                 "GROUP BY ALL ORDER BY ALL"))
    finally:
        done.set()
        con.close()


def test_interruptible_turns_only_duckdbs_interrupts_into_keyboard_interrupt():
    from treeq.data.store import interruptible

    with pytest.raises(KeyboardInterrupt):
        with interruptible():
            raise RuntimeError("Query interrupted")  # what DuckDB's client raises on a pending SIGINT
    with pytest.raises(RuntimeError, match="other"):
        with interruptible():
            raise RuntimeError("other")


def test_outputs_inside_a_store_are_refused(tmp_path):
    from treeq.data.store import check_outside_store, check_record_path
    from treeq.errors import OutputError

    store = tmp_path / "store"
    TreeStore(store).write("runs", "r1", run_columns())
    for inside in (store / "x.parquet", store / "nodes" / "run_id=r1" / "x.jsonl"):
        with pytest.raises(OutputError, match="inside the tree store"):
            check_record_path(inside)
    check_record_path(tmp_path / "x.parquet")
    check_outside_store(tmp_path / "runs" / "x.jsonl")  # a folder named runs/ without a run is no store
    (tmp_path / "empty").mkdir()
    TreeStore(tmp_path / "empty")  # the empty folders of a store not written yet hold nothing to break
    check_outside_store(tmp_path / "empty" / "x.parquet")
