"""Merge a store's per-task shards into large files (``compact``): fast DuckDB scans on millions of nodes.

A search writes one file per task and table (``nodes/run_id=R/<task>.parquet``), which is
what makes a task land whole or not at all, and resuming cheap; but a scan over tens
of thousands of small files spends its time opening them. ``compact`` rewrites each run
partition of ``nodes`` and ``trees`` as a few files (``part-<run>-00000.parquet`` ...) of
``--rows-per-file`` rows, shard after shard (a task's rows stay in node order), in row
groups of ``--row-group`` rows, with the current schema and its metadata (a v1 shard's
missing columns become nulls).

Safety: the new partition is written complete into a hidden sibling folder
(``.run_id=R.compact``), each file synced; then the old folder is renamed aside
(``.run_id=R.old``), the new one into place, and only then is the old one removed.
No reader ever sees a partial file; a crash leaves either the old partition or the
new one in place (the next ``compact`` finishes or discards what it finds aside).
Only finished runs are compacted (``runs.ended_at`` set): a running job's partition
keeps its shards. A compacted run still resumes (its tasks count as on disk) and
still exports.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError, OutputError, StoreError
from .schema import SCHEMAS
from .store import PART_PREFIX, connect

__all__ = ["compact"]

def _finish_interrupted(table_dir: Path) -> None:
    """Complete or undo what a crashed compaction left beside the partitions."""
    for aside in table_dir.glob(".run_id=*.compact"):
        final = table_dir / aside.name[1:-len(".compact")]
        old = table_dir / f".{final.name}.old"
        if (aside / ".complete").exists() and not final.exists():
            os.replace(aside, final)  # crashed between the two renames: the new one goes in
            (final / ".complete").unlink()
            shutil.rmtree(old, ignore_errors=True)
        else:
            shutil.rmtree(aside, ignore_errors=True)  # never finished: the old partition stands
    for old in table_dir.glob(".run_id=*.old"):
        final = table_dir / old.name[1:-len(".old")]
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, final)


def _compact_partition(part: Path, table: str, run_id: str, rows_per_file: int, row_group: int) -> tuple[int, int]:
    """Rewrite one partition; return (files before, files after)."""
    files = sorted(part.glob("*.parquet"))
    if len(files) <= 1 and all(f.name.startswith(PART_PREFIX) for f in files):
        return len(files), len(files)
    schema = SCHEMAS[table]
    aside = part.with_name(f".{part.name}.compact")
    shutil.rmtree(aside, ignore_errors=True)
    aside.mkdir()
    out_files = rows_in_file = 0
    writer = None
    pending: list[pa.Table] = []
    pending_rows = 0

    def flush() -> None:  # shards gathered into one row group
        nonlocal pending, pending_rows
        if pending:
            writer.write_table(pa.concat_tables(pending), row_group_size=max(row_group, pending_rows))
            pending, pending_rows = [], 0

    try:
        for f in files:  # one shard at a time (a task each, in node order): memory holds a row group
            t = pq.read_table(f)
            for c in schema.names:
                if c not in t.column_names:  # a v1 shard: the columns v2 added are null
                    t = t.append_column(schema.field(c), pa.nulls(t.num_rows, schema.field(c).type))
            t = t.select(schema.names).cast(schema)
            if writer is None or rows_in_file >= rows_per_file:
                if writer is not None:
                    flush()
                    writer.close()
                writer = pq.ParquetWriter(aside / f"{PART_PREFIX}{run_id}-{out_files:05d}.parquet", schema,
                                          compression="zstd")
                out_files += 1
                rows_in_file = 0
            pending.append(t)
            pending_rows += t.num_rows
            rows_in_file += t.num_rows
            if pending_rows >= row_group:
                flush()
        if writer is not None:
            flush()
            writer.close()
            writer = None
        for f in aside.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        (aside / ".complete").write_text("ok\n")
    except BaseException:
        if writer is not None:
            writer.close()
        shutil.rmtree(aside, ignore_errors=True)
        raise
    old = part.with_name(f".{part.name}.old")
    os.replace(part, old)
    os.replace(aside, part)
    (part / ".complete").unlink()
    shutil.rmtree(old, ignore_errors=True)
    return len(files), out_files


def compact(out: str | Path, rows_per_file: int = 2_000_000, row_group: int = 262_144) -> dict[str, tuple[int, int]]:
    """Compact every finished run of the store ``out``; return per table (files before, files after).

    Raises:
        ConfigError: non-positive sizes.
        StoreError: ``out`` is not a readable store.
        OutputError: a partition cannot be rewritten (the old one stays).
    """
    if rows_per_file < 1 or row_group < 1:
        raise ConfigError("--rows-per-file and --row-group must be >= 1")
    out = Path(out)
    con = connect(out)  # checks the store (schema versions, readable files) first
    try:
        finished = {r for (r,) in con.execute("SELECT run_id FROM runs WHERE ended_at IS NOT NULL").fetchall()}
    finally:
        con.close()
    counts: dict[str, tuple[int, int]] = {}
    try:
        for table in ("nodes", "trees"):
            table_dir = out / table
            if not table_dir.is_dir():
                continue
            _finish_interrupted(table_dir)
            before = after = 0
            for part in sorted(table_dir.glob("run_id=*")):
                run_id = part.name[len("run_id="):]
                if run_id not in finished or not part.is_dir():
                    continue
                b, a = _compact_partition(part, table, run_id, rows_per_file, row_group)
                before, after = before + b, after + a
            counts[table] = (before, after)
    except OSError as exc:
        raise OutputError(f"cannot compact {out}: {exc.strerror or exc}") from None
    except pa.ArrowException as exc:
        raise StoreError(f"cannot compact {out}: {' '.join(str(exc).split())[:200]}") from None
    return counts
