"""The Parquet tree store (schema v1) and its DuckDB views."""

from .schema import NODES, RUNS, SCHEMA_VERSION, SCHEMAS, TREES
from .store import TreeStore, connect, run_query, write_parquet_atomic

__all__ = ["SCHEMA_VERSION", "NODES", "TREES", "RUNS", "SCHEMAS", "TreeStore", "connect", "run_query", "write_parquet_atomic"]
