"""Batch jobs over the envs, the search and the store; the policy hook registry in ``policies``.

Names are imported on first use, so that reading a job's settings (``SearchJobConfig``,
as the CLI does for ``--help``) does not load the store's pyarrow and DuckDB.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "SearchJobConfig", "SearchSummary", "run_search", "task_rng", "tree_columns", "tree_row", "replay", "ReplayStep",
    "make_games", "PRMJobConfig", "train_prm", "score_steps", "export_prm_data", "DPOConfig",
    "export_dpo", "RolloutConfig", "run_rollouts", "RewardsConfig", "export_rewards",
]

_HOME = {
    "SearchJobConfig": "config", "SearchSummary": "search", "run_search": "search", "task_rng": "search",
    "tree_columns": "search", "tree_row": "search", "replay": "replay", "ReplayStep": "replay",
    "make_games": "textworld_games",
    "PRMJobConfig": "config", "train_prm": "prm", "score_steps": "prm", "export_prm_data": "prm",
    "DPOConfig": "config", "export_dpo": "dpo",
    "RolloutConfig": "config", "run_rollouts": "rollouts",
    "RewardsConfig": "config", "export_rewards": "rewards",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
