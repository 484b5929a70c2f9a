"""Shared Blocksworld test data: the shipped tasks, a 3-block problem and state walkers."""

from __future__ import annotations

import json

from treeq.envs.base import Task
from treeq.envs.blocksworld import TASKS_DIR, BlocksworldEnv, BlocksworldState, parse_problem

PLANS = json.loads((TASKS_DIR / "optimal_plans.json").read_text(encoding="utf-8"))
ENV = BlocksworldEnv()
TASKS = {key: {t.task_id: t for t in ENV.load_tasks(TASKS_DIR / key)} for key in ("3", "4-5")}

PROBLEM = """\
(define (problem BW-rand-3)
(:domain blocksworld-4ops)
(:objects a b c )
(:init
(handempty)
(ontable a)
(ontable b)
(ontable c)
(clear a)
(clear b)
(clear c)
)
(:goal
(and
(on a c)
(on b a))
)
)
"""


def start_state(text: str = PROBLEM) -> BlocksworldState:
    return ENV.reset(Task("t", parse_problem(text)))


def run_actions(state: BlocksworldState, *actions: str) -> BlocksworldState:
    for a in actions:
        state = ENV.step(state, a).state
    return state


def reachable(state: BlocksworldState) -> list[BlocksworldState]:
    """Every state reachable from ``state`` without passing through the goal."""
    seen = {state.world: state}
    todo = [state]
    while todo:
        s = todo.pop()
        for a in ENV.legal_actions(s):
            nxt = ENV.step(s, a).state
            if nxt.world not in seen:
                seen[nxt.world] = nxt
                todo.append(nxt)
    return list(seen.values())
