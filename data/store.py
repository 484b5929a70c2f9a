"""Atomic Parquet writers and DuckDB readers for the tree store.

Layout (hive-partitioned by run, one file per task shard)::

    OUT/nodes/run_id=<run>/<task>.parquet
    OUT/trees/run_id=<run>/<task>.parquet
    OUT/runs/run_id=<run>/run.parquet

so plain DuckDB reads ``read_parquet('OUT/nodes/**/*.parquet')``. Each file is written
to a hidden temporary name in its final folder, synced, then renamed over the target:
a crash leaves either the old file or the new one, never half a file, and the
temporary name does not match ``*.parquet``.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import OutputError, StoreError
from .schema import SCHEMA_VERSION, SCHEMAS, VERSION_KEY

__all__ = ["TreeStore", "write_parquet_atomic", "connect", "run_query"]

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` via a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


_MAX_STEM = 100  # file names stay far below the usual 255-byte limit, temp suffix included


def _shard_name(task_id: str) -> str:
    safe = _SAFE.sub("_", task_id)
    if safe != task_id or not safe or safe.startswith(".") or len(safe) > _MAX_STEM:
        safe = f"{safe.lstrip('.')[:_MAX_STEM]}-{hashlib.sha1(task_id.encode()).hexdigest()[:8]}"
    return safe + ".parquet"


class TreeStore:
    """An output directory holding the three tables.

    Raises:
        OutputError: ``root`` exists and is not a directory, or cannot be created.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise OutputError(f"output path {self.root} exists and is not a directory")
        try:
            for name in SCHEMAS:
                (self.root / name).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create output directory {self.root}: {exc.strerror or exc}") from None

    def path(self, table: str, run_id: str, task_id: str | None = None) -> Path:
        """File of one shard (``task_id`` None: the run's own file)."""
        name = "run.parquet" if task_id is None else _shard_name(task_id)
        return self.root / table / f"run_id={run_id}" / name

    def write(self, table: str, run_id: str, columns: Mapping[str, Sequence[Any]], task_id: str | None = None) -> Path:
        """Validate ``columns`` against the schema of ``table`` and write one shard."""
        schema = SCHEMAS[table]
        missing = set(schema.names) - set(columns)
        extra = set(columns) - set(schema.names)
        if missing or extra:
            raise ValueError(f"{table}: columns missing {sorted(missing)}, unexpected {sorted(extra)}")
        arrays = [pa.array(columns[f.name], type=f.type, from_pandas=True) for f in schema]
        tbl = pa.Table.from_arrays(arrays, schema=schema)
        path = self.path(table, run_id, task_id)
        write_parquet_atomic(tbl, path)
        return path


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def connect(root: str | os.PathLike) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with views ``nodes``, ``trees`` and ``runs``.

    Raises:
        StoreError: ``root`` is not a tree store, a file is corrupt or of another
            schema version.
    """
    root = Path(root)
    if not root.is_dir() or not any((root / t).is_dir() for t in SCHEMAS):
        raise StoreError(f"{root} is not a treeq output directory (no nodes/, trees/ or runs/ inside)")
    con = duckdb.connect()
    for table, schema in SCHEMAS.items():
        files = sorted((root / table).glob("**/*.parquet"))
        if not files:
            con.register(f"_empty_{table}", schema.empty_table())
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM _empty_{table}")
            continue
        # explicit file lists, not a glob: a folder named 'run[1]' or "it's" must still work
        names = [str(f) for f in files]
        sql_list = "[" + ", ".join("'" + n.replace("'", "''") + "'" for n in names) + "]"
        try:
            rows = con.execute(
                "SELECT file_name, decode(value) FROM parquet_kv_metadata(?) WHERE decode(key) = ?",
                [names, VERSION_KEY.decode()],
            ).fetchall()
            versions = dict(rows)
            for f in files:
                if versions.get(str(f)) != str(SCHEMA_VERSION):
                    found = versions.get(str(f), "none")
                    raise StoreError(
                        f"{f}: treeq schema version {found}, this treeq reads version {SCHEMA_VERSION}"
                    )
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet({sql_list}, union_by_name = true)")
            con.execute(f"SELECT count(*) FROM {table}").fetchall()  # reads every footer now
        except duckdb.Error as exc:
            raise StoreError(f"cannot read {table} files under {root}: {_one_line(exc)}") from None
    return con


def run_query(root: str | os.PathLike, sql: str) -> tuple[list[str], list[tuple]]:
    """Run ``sql`` over the store's views; return column names and rows.

    Raises:
        StoreError: the store cannot be read or the SQL fails.
    """
    con = connect(root)
    try:
        cur = con.execute(sql)
        if cur.description is None:
            return [], []
        return [d[0] for d in cur.description], cur.fetchall()
    except duckdb.Error as exc:
        raise StoreError(f"query failed: {_one_line(exc)}") from None
    finally:
        con.close()
