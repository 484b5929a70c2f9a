"""Monte Carlo tree (and graph) search over reversible envs: one batched engine."""

from .config import SearchConfig, SearchResult, resolve_defaults
from .hooks import bound_evaluate, random_rollout, uniform_propose, uniform_stream, zero_evaluate
from .search import search
from .tree import NO_PARENT, ROOT, Tree

__all__ = [
    "SearchConfig", "SearchResult", "search", "resolve_defaults", "Tree", "ROOT", "NO_PARENT",
    "uniform_propose", "random_rollout", "zero_evaluate", "bound_evaluate",
    "uniform_stream",
]
