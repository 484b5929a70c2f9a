"""Parquet tree store, schema v1: the one module that owns the table layouts.

Tables (DESIGN.md): ``nodes`` (one row per node), ``trees`` (one row per searched
task) and ``runs`` (one row per run). Every file carries ``treeq.schema_version`` and
``treeq.table`` in its key-value metadata.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = ["SCHEMA_VERSION", "NODES", "TREES", "RUNS", "SCHEMAS", "VERSION_KEY", "TABLE_KEY"]

SCHEMA_VERSION = 1
VERSION_KEY = b"treeq.schema_version"
TABLE_KEY = b"treeq.table"


def _schema(name: str, fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(fields, metadata={VERSION_KEY: str(SCHEMA_VERSION).encode(), TABLE_KEY: name.encode()})


NODES = _schema(
    "nodes",
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("task_id", pa.string(), nullable=False),
        pa.field("node_id", pa.int32(), nullable=False),
        pa.field("parent_id", pa.int32(), nullable=False),  # -1 at the root
        pa.field("depth", pa.int32(), nullable=False),
        pa.field("action", pa.string()),  # null at the root
        pa.field("state_key", pa.string(), nullable=False),
        pa.field("observation", pa.string()),
        pa.field("prior", pa.float64()),
        pa.field("visits", pa.int64(), nullable=False),
        pa.field("value_sum", pa.float64(), nullable=False),
        pa.field("q", pa.float64()),  # value_sum / visits; null at zero visits
        pa.field("reward", pa.float64(), nullable=False),
        pa.field("terminal", pa.bool_(), nullable=False),
        pa.field("proven", pa.float64()),  # the solver's exact value; null where unproven
    ],
)

TREES = _schema(
    "trees",
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("task_id", pa.string(), nullable=False),
        pa.field("env", pa.string(), nullable=False),
        pa.field("simulations", pa.int64(), nullable=False),
        pa.field("nodes", pa.int64(), nullable=False),
        pa.field("root_value", pa.float64()),
        pa.field("best_action", pa.string()),
        pa.field("solved", pa.bool_(), nullable=False),
        pa.field("seconds", pa.float64(), nullable=False),
    ],
)

RUNS = _schema(
    "runs",
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("config", pa.string(), nullable=False),  # JSON
        pa.field("versions", pa.string(), nullable=False),  # JSON: package -> version
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("started_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("ended_at", pa.timestamp("us", tz="UTC")),  # null while running
    ],
)

SCHEMAS = {"nodes": NODES, "trees": TREES, "runs": RUNS}
