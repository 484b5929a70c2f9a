"""Monte Carlo tree (and graph) search over reversible envs, on flat numpy arrays."""

from .hooks import EVALUATORS, bound_evaluate, make_evaluator, random_rollout, uniform_propose, zero_evaluate
from .search import SearchConfig, SearchResult, resolve_defaults, search
from .selection import puct_scores, uct_scores
from .tree import NO_PARENT, ROOT, Tree

__all__ = [
    "SearchConfig", "SearchResult", "search", "resolve_defaults", "Tree", "ROOT", "NO_PARENT",
    "uct_scores", "puct_scores", "uniform_propose", "random_rollout", "zero_evaluate", "bound_evaluate",
    "make_evaluator", "EVALUATORS",
]
