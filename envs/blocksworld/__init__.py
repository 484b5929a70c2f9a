"""Blocksworld (PlanBench): the env (:mod:`.env`), its rules (:mod:`.rules`), the PDDL reader
(:mod:`.pddl`) and the exact oracle (:mod:`.exact`). Only the names below are public."""

from .env import TASKS_DIR, BlocksworldEnv
from .exact import MAX_EXACT_BLOCKS, exact_q, optimal_plan_length, optimal_value, plan_length_lower_bound
from .pddl import PLANBENCH_COLOURS, DomainFileError, parse_problem
from .rules import PREDICATES, BlocksworldState, ParsedAction, atoms, canonical_action, is_goal, parse_action

__all__ = [
    "BlocksworldEnv", "BlocksworldState", "TASKS_DIR", "PLANBENCH_COLOURS", "PREDICATES", "ParsedAction",
    "DomainFileError", "MAX_EXACT_BLOCKS", "atoms", "canonical_action", "is_goal", "parse_action", "parse_problem",
    "plan_length_lower_bound", "optimal_plan_length", "optimal_value", "exact_q",
]
