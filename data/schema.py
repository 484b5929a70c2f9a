"""Parquet tree store, schema v3: the one module that owns the table layouts.

Tables (docs/store.md): ``nodes`` (one row per node), ``trees`` (one row per searched
task) and ``runs`` (one row per run). Every file carries ``treeq.schema_version`` and
``treeq.table`` in its key-value metadata.

Schemas v2 and v3 add nullable columns only (:data:`ADDED_IN_V2`, :data:`ADDED_IN_V3`), so
an older file is a newer file with those columns missing: the readers
(``treeq.data.store.connect``) read every version and show the missing columns as null.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "SCHEMA_VERSION", "READABLE_VERSIONS", "NODES", "TREES", "RUNS", "SCHEMAS", "VERSION_KEY", "TABLE_KEY",
    "ADDED_IN_V2", "ADDED_IN_V3", "BACKUPS", "STATUSES", "schema_of_version",
]

SCHEMA_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
VERSION_KEY = b"treeq.schema_version"
TABLE_KEY = b"treeq.table"

BACKUPS = ("mean", "max")  # trees.backup: tree mode, graph mode (docs/architecture.md, Q semantics)
STATUSES = ("ok", "error", "timeout")  # trees.status


def _schema(name: str, fields: list[pa.Field], version: int = SCHEMA_VERSION) -> pa.Schema:
    return pa.schema(fields, metadata={VERSION_KEY: str(version).encode(), TABLE_KEY: name.encode()})


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
        pa.field("feedback", pa.float64()),  # v2: a model's AI-feedback score of the action; null without one
        # v3: what the env answered to the action (Env.observe); null at the root and where the env says none
        pa.field("step_observation", pa.string()),
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
        pa.field("best_action", pa.string()),  # the root child with the highest coalesce(proven, q)
        pa.field("solved", pa.bool_(), nullable=False),
        pa.field("seconds", pa.float64(), nullable=False),
        pa.field("backup", pa.string()),  # v2: 'mean' (tree mode) or 'max' (graph mode); null without a search
        pa.field("status", pa.string()),  # v2: 'ok', 'error' or 'timeout'
        pa.field("error", pa.string()),  # v2: what went wrong; null when ok
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

ADDED_IN_V2 = {"nodes": ("feedback",), "trees": ("backup", "status", "error"), "runs": ()}
ADDED_IN_V3 = {"nodes": ("step_observation",), "trees": (), "runs": ()}


def schema_of_version(table: str, version: int) -> pa.Schema:
    """The layout of ``table`` as schema ``version`` wrote it (1, 2 or 3), with that version's metadata."""
    if version not in READABLE_VERSIONS:
        raise ValueError(f"no schema version {version!r}; known: {READABLE_VERSIONS}")
    later = [ADDED_IN_V2[table]] * (version < 2) + [ADDED_IN_V3[table]] * (version < 3)
    dropped = {name for names in later for name in names}
    return _schema(table, [f for f in SCHEMAS[table] if f.name not in dropped], version)
