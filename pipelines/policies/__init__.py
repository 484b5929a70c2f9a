"""Policies handed to the search as hooks, by name (random rollout, zero, bound, uniform priors).

HF transformers policies, an OpenAI-compatible server and a trained PRM as the value
function register here with one :func:`register_evaluator` / :func:`register_proposer`
call each.
"""

from .registry import (
    DEFAULT_PROPOSER,
    EVALUATORS,
    PROPOSERS,
    Hook,
    HookFactory,
    check_name,
    make_hooks,
    register_evaluator,
    register_proposer,
)

__all__ = [
    "Hook", "HookFactory", "EVALUATORS", "PROPOSERS", "DEFAULT_PROPOSER", "register_evaluator",
    "register_proposer", "check_name", "make_hooks",
]
