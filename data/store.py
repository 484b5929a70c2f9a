"""Atomic Parquet writers and DuckDB readers for the tree store.

Layout (hive-partitioned by run, one file per task shard)::

    OUT/nodes/run_id=<run>/<task>.parquet
    OUT/trees/run_id=<run>/<task>.parquet
    OUT/runs/run_id=<run>/run.parquet

so plain DuckDB reads ``read_parquet('OUT/nodes/**/*.parquet')``. Each file is first
*staged*: written to a hidden temporary name in its final folder (``.<name>.<pid>.tmp``,
which does not match ``*.parquet``) and synced; *committing* renames it over the
target. A crash leaves either the old file or the new one, never half a file. A job
stages a task's shards and commits them together, so a task is on disk whole or not
at all; whoever ends a writer before it commits removes its staged files
(:meth:`TreeStore.discard`).

Why one module over 400 lines: the staging/commit protocol (temporary names, syncs, renames,
stale-temp removal) and the readers that must never see a staged file are one contract; kept
together, the file-name rules they share are written once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError, OutputError, StoreError
from .schema import ADDED_IN_V3, BACKUPS, READABLE_VERSIONS, SCHEMAS, STATUSES, VERSION_KEY

__all__ = ["EXPORT_MEMORY", "PART_PREFIX", "TreeStore", "Staged", "write_parquet_atomic", "write_text_atomic", "RecordWriter", "check_record_path",
           "check_outside_store", "task_ranges", "group_batches", "iter_tasks", "iter_store_tasks", "shard_names", "connect",
           "interruptible", "is_interrupt", "run_query"]

_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_MAX_STEM = 100  # file names stay far below the usual 255-byte limit, temp suffix included

Staged = tuple[Path, Path]  # (temporary file, final path)

# name start of the large files `compact` merges a run's task shards into (nodes/run_id=R/part-R-00000.parquet)
PART_PREFIX = "part-"

# DuckDB's memory cap in the streaming exports: a bigger sort spills to disk instead of growing
EXPORT_MEMORY = os.environ.get("TREEQ_EXPORT_MEMORY", "512MB")


def _temp_path(path: Path, pid: int | None = None) -> Path:
    return path.with_name(f".{path.name}.{os.getpid() if pid is None else pid}.tmp")


def _remove(path: Path) -> None:
    """Remove a temporary file if it is there (a folder that refused it held none)."""
    with contextlib.suppress(OSError):
        path.unlink()


def _stage(table: pa.Table | str, path: Path) -> Staged:
    """Write ``table`` (or text) next to ``path`` under a temporary name and sync it."""
    tmp = _temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(table, str):
            tmp.write_text(table, encoding="utf-8")
        else:
            pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    except BaseException as exc:  # KeyboardInterrupt included: never leave a temp file behind
        _remove(tmp)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    return tmp, path


def _commit(staged: Iterable[Staged]) -> None:
    """Rename staged files over their targets (each rename is atomic)."""
    for tmp, path in staged:
        try:
            os.replace(tmp, path)
        except OSError as exc:
            _remove(tmp)
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` via a temporary file and an atomic rename.

    Raises:
        OutputError: the file cannot be written (the old file, if any, is left intact).
    """
    _commit([_stage(table, path)])


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` via a temporary file and an atomic rename.

    Raises:
        OutputError: the file cannot be written (the old file, if any, is left intact).
    """
    _commit([_stage(text, Path(path))])


def check_record_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path if it ends in ``.parquet`` or ``.jsonl`` (the two record formats), outside any tree store.

    Raises:
        ConfigError: another extension.
        OutputError: ``path`` lies inside a tree store.
    """
    path = Path(path)
    if path.suffix not in (".parquet", ".jsonl"):
        raise ConfigError(f"--out must end in .parquet or .jsonl, got {str(path)!r}")
    check_outside_store(path)
    return path


def _is_store(folder: Path) -> bool:
    """Whether ``folder`` holds a tree store: a ``nodes/``, ``trees/`` or ``runs/`` with a run's folder in it."""
    return any(p.is_dir() for t in SCHEMAS for p in (folder / t).glob("run_id=*"))


def check_outside_store(path: str | os.PathLike, flag: str = "--out") -> None:
    """Refuse an output file inside a tree store: a file among the shards breaks the readers of the store.

    Raises:
        OutputError: a folder above ``path`` holds a tree store.
    """
    for folder in Path(path).resolve().parents:
        if _is_store(folder):
            raise OutputError(f"{flag} {path} lies inside the tree store {folder}: write it outside the store")


class RecordWriter:
    """Write a ``.parquet`` or ``.jsonl`` file batch by batch, atomically.

    Batches go to a hidden temporary file next to ``path``; :meth:`close` syncs it and
    renames it over ``path``, so a reader sees the old file or the whole new one. Used as
    a context manager, an exception (Ctrl-C included) removes the temporary file and
    leaves ``path`` as it was. Memory holds one buffered row group at a time.

    Args:
        path: the output file; its extension picks the format.
        schema: the Arrow schema of every batch (Parquet); None: the first batch's.
        metadata: key-value metadata of the Parquet file (ignored for JSON Lines).

    Raises:
        ConfigError: the extension is neither ``.parquet`` nor ``.jsonl``.
        OutputError: the file cannot be written.
    """

    ROW_GROUP = 65536  # rows buffered before a write

    def __init__(self, path: str | os.PathLike, schema: pa.Schema | None = None,
                 metadata: Mapping[str, str] | None = None) -> None:
        self.path = check_record_path(path)
        self.rows = 0
        if schema is not None and metadata:
            schema = schema.with_metadata({**(schema.metadata or {}), **{k.encode(): v.encode() for k, v in metadata.items()}})
        self._schema, self._metadata = schema, metadata
        self._tmp = _temp_path(self.path)
        self._parquet: pq.ParquetWriter | None = None
        self._text = None
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.suffix == ".jsonl":
                self._text = open(self._tmp, "w", encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def write(self, table: pa.Table | Sequence[Mapping[str, Any]]) -> None:
        """Append rows (an Arrow table, or a list of dicts).

        Small tables are buffered up to :attr:`ROW_GROUP` rows: a Parquet row group per
        call would bloat the footer (and the memory that holds it) on many small writes.
        """
        if not isinstance(table, pa.Table):
            table = pa.Table.from_pylist(list(table), schema=self._schema)
        if self._schema is None:
            self._schema = table.schema
            if self._metadata:
                self._schema = self._schema.with_metadata({k.encode(): v.encode() for k, v in self._metadata.items()})
        if table.num_rows == 0:
            return
        self._buffer.append(table.select(self._schema.names).cast(self._schema))
        self._buffered += table.num_rows
        self.rows += table.num_rows
        if self._buffered >= self.ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        import json

        if not self._buffer:
            return
        table = pa.concat_tables(self._buffer)
        self._buffer, self._buffered = [], 0
        try:
            if self._text is not None:
                self._text.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in table.to_pylist()))
            else:
                if self._parquet is None:
                    self._parquet = pq.ParquetWriter(self._tmp, self._schema, compression="zstd")
                self._parquet.write_table(table)
        except OSError as exc:
            self.abort()
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def close(self) -> Path:
        """Finish the file and move it into place; return its path."""
        self._flush()
        try:
            if self._text is not None:
                self._text.close()
            else:
                if self._parquet is None:  # no rows: still a valid file with the schema
                    self._parquet = pq.ParquetWriter(self._tmp, self._schema or pa.schema([]), compression="zstd")
                self._parquet.close()
            with open(self._tmp, "rb") as f:
                os.fsync(f.fileno())
        except OSError as exc:
            self.abort()
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        _commit([(self._tmp, self.path)])
        return self.path

    def abort(self) -> None:
        """Drop what was written; ``path`` stays as it was."""
        with contextlib.suppress(Exception):
            if self._text is not None:
                self._text.close()
            elif self._parquet is not None:
                self._parquet.close()
        _remove(self._tmp)

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _shard_name(task_id: str) -> str:
    safe = _SAFE.sub("_", task_id)
    if safe != task_id or not safe or safe.startswith(".") or len(safe) > _MAX_STEM:
        safe = f"{safe.lstrip('.')[:_MAX_STEM]}-{hashlib.sha1(task_id.encode()).hexdigest()[:8]}"
    return safe + ".parquet"


def _check_values(table: str, columns: Mapping[str, Sequence[Any]]) -> None:
    allowed = {"backup": BACKUPS, "status": STATUSES} if table == "trees" else {}
    for name, values in allowed.items():
        bad = {v for v in columns[name] if v is not None and v not in values}
        if bad:
            raise ValueError(f"{table}.{name} must be one of {', '.join(values)} or null, got {sorted(bad)}")


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

    def stage(self, table: str, run_id: str, columns: Mapping[str, Sequence[Any]],
              task_id: str | None = None) -> Staged:
        """Validate ``columns`` against the schema of ``table`` and write them to a temporary file.

        Nothing is visible under ``*.parquet`` until :meth:`commit`. The columns schema v3
        added (:data:`~treeq.data.schema.ADDED_IN_V3`) may be left out: they are written null.

        Raises:
            ValueError: columns missing or unexpected, or a value outside its column's domain.
            OutputError: the file cannot be written.
        """
        schema = SCHEMAS[table]
        optional = [name for name in ADDED_IN_V3[table] if name not in columns]
        if optional:
            rows = len(next(iter(columns.values()), ()))
            columns = {**columns, **{name: [None] * rows for name in optional}}
        missing = set(schema.names) - set(columns)
        extra = set(columns) - set(schema.names)
        if missing or extra:
            raise ValueError(f"{table}: columns missing {sorted(missing)}, unexpected {sorted(extra)}")
        _check_values(table, columns)
        arrays = [pa.array(columns[f.name], type=f.type, from_pandas=True) for f in schema]
        return _stage(pa.Table.from_arrays(arrays, schema=schema), self.path(table, run_id, task_id))

    commit = staticmethod(_commit)

    @staticmethod
    def abandon(staged: Iterable[Staged]) -> None:
        """Remove staged files that will not be committed."""
        for tmp, _ in staged:
            _remove(tmp)

    def write(self, table: str, run_id: str, columns: Mapping[str, Sequence[Any]], task_id: str | None = None) -> Path:
        """Stage and commit one shard; return its path."""
        staged = self.stage(table, run_id, columns, task_id)
        _commit([staged])
        return staged[1]

    def discard(self, run_id: str, task_id: str, pid: int) -> None:
        """Remove what process ``pid`` staged for a task and never committed (after it was ended)."""
        for table in SCHEMAS:
            _remove(_temp_path(self.path(table, run_id, task_id), pid))

    def remove_stale(self, run_id: str) -> int:
        """Remove the run's temporary files whose writer is gone (a killed job's); return how many.

        Readers never see them (hidden names, no ``.parquet`` suffix); a resumed run tidies up.
        """
        removed = 0
        for table in SCHEMAS:
            folder = self.root / table / f"run_id={run_id}"
            for tmp in folder.glob(".*.tmp") if folder.is_dir() else []:
                pid = tmp.name.rsplit(".", 2)[-2]
                if pid.isdigit() and not _alive(int(pid)):
                    _remove(tmp)
                    removed += 1
        return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    try:  # a killed worker that nobody has reaped yet is a zombie: gone for our purposes
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):  # no /proc (not Linux): the signal test stands
        return True


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _parquet_files(folder: Path) -> list[Path]:
    """Every ``*.parquet`` below ``folder``; a folder that cannot be listed is an error, never 'no files'."""
    out: list[Path] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir():
                    out += _parquet_files(Path(entry.path))
                elif entry.name.endswith(".parquet"):
                    out.append(Path(entry.path))
    except OSError as exc:
        raise StoreError(f"cannot read {folder}: {exc.strerror or exc}") from None
    return sorted(out)


def _check_versions(con: duckdb.DuckDBPyConnection, files: list[Path]) -> None:
    names = [str(f) for f in files]
    rows = con.execute(
        "SELECT file_name, decode(value) FROM parquet_kv_metadata(?) WHERE decode(key) = ?",
        [names, VERSION_KEY.decode()],
    ).fetchall()
    versions = dict(rows)
    readable = {str(v) for v in READABLE_VERSIONS}
    for name in names:
        if versions.get(name) not in readable:
            raise StoreError(f"{name}: treeq schema version {versions.get(name, 'none')}, this treeq reads "
                             f"versions {', '.join(sorted(readable))}")


def is_interrupt(exc: BaseException) -> bool:
    """Whether ``exc`` is DuckDB's answer to Ctrl-C: ``RuntimeError("Query interrupted")`` for a
    pending SIGINT, ``InterruptException`` (a ``duckdb.Error``) for ``interrupt()``."""
    return isinstance(exc, duckdb.InterruptException) or (
        isinstance(exc, RuntimeError) and str(exc) == "Query interrupted")


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Ctrl-C inside a DuckDB query ends as ``KeyboardInterrupt`` (exit 130), never as a traceback
    or a store error (:func:`is_interrupt`; callers would report a ``duckdb.Error`` as a broken store)."""
    try:
        yield
    except (duckdb.InterruptException, RuntimeError) as exc:
        if not is_interrupt(exc):
            raise
        raise KeyboardInterrupt from None


def connect(root: str | os.PathLike | Sequence[str | os.PathLike], memory_limit: str | None = None,
            shards: Collection[str] | None = None, database: str = ":memory:") -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with views ``nodes``, ``trees`` and ``runs``.

    ``root`` is one tree store or several (their files are read together). Files of
    every readable schema version are read together (by column name); each view has the
    current schema's columns, in its order, and a column a file's version lacks reads as
    null. ``memory_limit`` (e.g. ``"1GB"``) caps DuckDB's memory: sorts and joins beyond
    it spill to a temporary folder instead of growing (the streaming exports set it).
    ``shards``: only the ``nodes`` and ``trees`` files of these shard names (task files;
    :func:`iter_store_tasks` reads a store a few tasks at a time this way). ``database``:
    a DuckDB file for the tables a caller creates (on disk, they count against the cap).

    Raises:
        StoreError: a root is not a tree store, a folder cannot be listed, a file is
            corrupt or of an unknown schema version.
    """
    roots = [Path(root)] if isinstance(root, (str, os.PathLike)) else [Path(r) for r in root]
    for r in roots:
        if not r.is_dir() or not any((r / t).is_dir() for t in SCHEMAS):
            raise StoreError(f"{r} is not a treeq output directory (no nodes/, trees/ or runs/ inside)")
    con = duckdb.connect(database)
    if memory_limit:
        import tempfile

        con.execute(f"SET memory_limit = '{memory_limit}'")
        con.execute(f"SET temp_directory = '{tempfile.gettempdir()}/treeq-duckdb-{os.getpid()}'")
        con.execute("SET preserve_insertion_order = false")
    for table, schema in SCHEMAS.items():
        files = [f for r in roots if os.path.lexists(r / table) for f in _parquet_files(r / table)
                 if shards is None or table == "runs" or f.name in shards
                 or (table == "trees" and f.name == "run.parquet")]  # a run-wide trees file: joined by task
        con.register(f"_empty_{table}", schema.empty_table())
        if not files:
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM _empty_{table}")
            continue
        # explicit file lists, not a glob: a folder named 'run[1]' or "it's" must still work
        sql_list = "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"
        where = roots[0] if len(roots) == 1 else ", ".join(map(str, roots))
        try:
            with interruptible():
                _check_versions(con, files)
                con.execute(
                    f"CREATE VIEW {table} AS SELECT * FROM _empty_{table} "
                    f"UNION ALL BY NAME SELECT * FROM read_parquet({sql_list}, union_by_name = true)"
                )
                con.execute(f"SELECT count(*) FROM {table}").fetchall()  # reads every footer now
        except duckdb.Error as exc:
            raise StoreError(f"cannot read {table} files under {where}: {_one_line(exc)}") from None
    return con


def task_ranges(columns: Mapping[str, Sequence[Any]], keys: Sequence[str] = ("run_id", "task_id")
                ) -> Iterable[tuple[int, int]]:
    """``(start, end)`` of each run of equal ``keys`` values (a task's rows, sorted by run and task)."""
    cols = [columns[k] for k in keys]
    start, n = 0, len(cols[0])
    while start < n:
        end = start + 1
        while end < n and all(c[end] == c[start] for c in cols):
            end += 1
        yield start, end
        start = end


def group_batches(batches: Iterable[pa.RecordBatch], keys: Sequence[str]) -> Iterator[dict[str, list]]:
    """Column lists of each run of equal ``keys`` values across a stream of record batches.

    Memory holds one batch and one group.
    """
    pending: dict[str, list] | None = None
    for batch in batches:
        cols = {name: batch.column(name).to_pylist() for name in batch.schema.names}
        if pending is not None:
            cols = {k: pending[k] + cols[k] for k in cols}
        spans = list(task_ranges(cols, keys))
        if not spans:
            continue
        for start, end in spans[:-1]:
            yield {k: v[start:end] for k, v in cols.items()}
        start, end = spans[-1]
        pending = {k: v[start:end] for k, v in cols.items()}
    if pending is not None:
        yield pending


def iter_tasks(con: duckdb.DuckDBPyConnection, sql: str, keys: Sequence[str] = ("run_id", "task_id"),
               batch_rows: int = 65536) -> Iterator[dict[str, list]]:
    """The rows of ``sql`` (sorted by ``keys``), one task (one value of ``keys``) at a time, as column lists.

    Streams Arrow batches from DuckDB: memory holds one batch and one task.

    Raises:
        StoreError: the query fails (a corrupt file found mid-way, say).
    """
    try:
        with interruptible():
            rel = con.sql(sql)
            reader = rel.to_arrow_reader(batch_rows) if hasattr(rel, "to_arrow_reader") else rel.fetch_arrow_reader(batch_rows)
            yield from group_batches(reader, keys)
    except duckdb.Error as exc:
        raise StoreError(f"cannot read the store: {_one_line(exc)}") from None


def shard_names(root: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """The task shard file names under ``nodes/`` of every root, sorted, each once.

    A task's shard has the same name in every run and store, so one name gathers all of
    a task's trees.

    Raises:
        StoreError: a root is not a tree store or a folder cannot be listed.
    """
    roots = [Path(root)] if isinstance(root, (str, os.PathLike)) else [Path(r) for r in root]
    names: set[str] = set()
    for r in roots:
        if not r.is_dir() or not any((r / t).is_dir() for t in SCHEMAS):
            raise StoreError(f"{r} is not a treeq output directory (no nodes/, trees/ or runs/ inside)")
        if os.path.lexists(r / "nodes"):
            names.update(f.name for f in _parquet_files(r / "nodes"))
    return sorted(names)


def iter_store_tasks(roots: Sequence[str | os.PathLike], sql: str, tasks_per_query: int = 64,
                     memory_limit: str | None = EXPORT_MEMORY, keys: Sequence[str] = ("run_id", "task_id"),
                     ) -> Iterator[dict[str, list]]:
    """The rows of ``sql`` over the stores, one task at a time, reading ``tasks_per_query`` task shards per query.

    ``sql`` sees views ``nodes``, ``trees`` and ``runs`` (of those shards) and must sort by
    ``keys``. Memory holds the rows of a few tasks, never the store: a single sort over
    millions of rows would keep hundreds of megabytes whatever DuckDB's cap.
    """
    names = shard_names(roots)
    for start in range(0, len(names), tasks_per_query):
        con = connect(list(roots), memory_limit=memory_limit, shards=set(names[start : start + tasks_per_query]))
        try:
            yield from iter_tasks(con, sql, keys=keys)
        finally:
            con.close()


def _read_only(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    """Lock ``con`` down for a user's SQL: files only under ``root`` (the views read them), no extension
    installed or loaded, every setting fixed from now on."""
    folder = str(root.resolve()).replace("'", "''")
    con.execute(f"SET allowed_directories = ['{folder}{os.sep}']")
    for setting in ("enable_external_access", "autoinstall_known_extensions", "autoload_known_extensions"):
        con.execute(f"SET {setting} = false")
    con.execute("SET lock_configuration = true")


def _writes(statement: Any) -> bool:
    """Whether a statement may change anything: all but SELECT (DESCRIBE, SHOW, SUMMARIZE included) and a
    plain EXPLAIN (EXPLAIN ANALYZE runs the statement)."""
    if statement.type == duckdb.StatementType.SELECT:
        return False
    if statement.type != duckdb.StatementType.EXPLAIN:
        return True
    text = statement.query
    return any(kind == duckdb.token_type.keyword and text[pos:pos + 7].upper() in ("ANALYZE", "ANALYSE")
               for pos, kind in duckdb.tokenize(text))


def run_query(root: str | os.PathLike, sql: str) -> tuple[list[str], list[tuple]]:
    """Run read-only ``sql`` over the store's views; return column names and rows.

    The connection reads no file outside the store, installs and loads no extension and
    takes no setting, and a statement that could write (COPY, ATTACH, INSERT, SET, ...) is
    refused before anything runs: ``query`` never changes the store or anything else.

    Raises:
        StoreError: the store cannot be read, the SQL is empty, fails or could write.
    """
    con = connect(root)
    try:
        _read_only(con, Path(root))
        statements = con.extract_statements(sql)
        if not statements:
            raise StoreError("the query is empty (nothing but white space or comments): give a SQL statement")
        writer = next((s for s in statements if _writes(s)), None)
        if writer is not None:
            raise StoreError(f"query is read-only: SELECT (WITH, FROM, DESCRIBE, SHOW, SUMMARIZE) and EXPLAIN only, "
                             f"got {writer.type.name} ({' '.join(writer.query.split())[:80]})")
        with interruptible():
            cur = con.execute(sql)
            if cur.description is None:
                return [], []
            return [d[0] for d in cur.description], cur.fetchall()
    except duckdb.Error as exc:
        raise StoreError(f"query failed: {_one_line(exc)}") from None
    finally:
        con.close()
