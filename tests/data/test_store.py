"""TreeStore writers and the DuckDB reader ``connect``: real Parquet files, real DuckDB."""

from __future__ import annotations

import datetime as dt
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from treeq.data import store as store_mod
from treeq.data.schema import NODES, RUNS, SCHEMA_VERSION, TREES, VERSION_KEY
from treeq.data.store import TreeStore, connect
from treeq.errors import StoreError


def node_columns(task_id: str = "t", run_id: str = "r1") -> dict[str, list]:
    """A valid one-row (root only) nodes shard."""
    return {
        "run_id": [run_id], "task_id": [task_id], "node_id": [0], "parent_id": [-1], "depth": [0],
        "action": [None], "state_key": ["s0"], "observation": ["obs"], "prior": [1.0], "visits": [3],
        "value_sum": [1.5], "q": [0.5], "reward": [0.0], "terminal": [False], "proven": [None],
    }


def run_columns(run_id: str = "r1") -> dict[str, list]:
    now = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
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
    """After a write the partition folder holds exactly the shard: no temp file, v1 metadata, same row."""
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
    """A nodes file stamped schema version 2 makes connect raise StoreError naming the file."""
    ts = TreeStore(tmp_path)
    ts.write("nodes", "r1", node_columns("good"), "good")
    table = pa.Table.from_pylist([{k: v[0] for k, v in node_columns("future").items()}], schema=NODES)
    table = table.replace_schema_metadata({VERSION_KEY: b"2", b"treeq.table": b"nodes"})
    future = tmp_path / "nodes" / "run_id=r1" / "future.parquet"
    pq.write_table(table, future)
    with pytest.raises(StoreError, match="version 2") as info:
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
    """Only a runs row written: nodes and trees are empty views with the v1 columns."""
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
