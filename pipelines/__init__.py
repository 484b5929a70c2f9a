"""Batch jobs over the envs, the search and the store."""

from .replay import ReplayStep, replay
from .search import SearchJobConfig, SearchSummary, run_search, task_rng, tree_columns
from .textworld_games import make_games

__all__ = ["SearchJobConfig", "SearchSummary", "run_search", "task_rng", "tree_columns", "replay", "ReplayStep", "make_games"]
