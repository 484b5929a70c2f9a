"""The Parquet tree store (schema v2, reads v1 too) and its DuckDB views."""

from .schema import NODES, READABLE_VERSIONS, RUNS, SCHEMA_VERSION, SCHEMAS, TREES, schema_of_version
from .store import (
    RecordWriter,
    Staged,
    TreeStore,
    connect,
    iter_store_tasks,
    run_query,
    write_parquet_atomic,
    write_text_atomic,
)

__all__ = [
    "SCHEMA_VERSION", "READABLE_VERSIONS", "NODES", "TREES", "RUNS", "SCHEMAS", "schema_of_version",
    "TreeStore", "Staged", "connect", "iter_store_tasks", "run_query", "RecordWriter", "write_parquet_atomic",
    "write_text_atomic",
]
