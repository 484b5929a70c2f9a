"""The exact Blocksworld oracle (``treeq.envs.blocksworld.exact``): the admissible bound
and BFS values, checked over every configuration of the shipped instances."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from blocksworld_cases import ENV, PROBLEM, TASKS, reachable, run_actions, start_state

from treeq.envs.base import Task
from treeq.envs.blocksworld.exact import exact_q, optimal_plan_length, optimal_value, plan_length_lower_bound
from treeq.envs.blocksworld.pddl import parse_problem
from treeq.errors import TaskFileError


# ----------------------------------------------------------------------------- values
def test_value_bound_never_below_exact_value():
    """Every configuration of every shipped instance (105,602 states), several gammas."""
    configurations: dict[tuple[str, ...], list] = {}
    checked = tight = 0
    for tasks in TASKS.values():
        for task in tasks.values():
            start = ENV.reset(task)
            if start.blocks not in configurations:  # one state space per block set
                never = ("handempty", f"holding {start.blocks[0]}")  # a goal no state meets: no stop
                configurations[start.blocks] = [s.world for s in reachable(replace(start, goal=never))]
            for world in configurations[start.blocks]:
                state = replace(start, world=world)
                d, h = optimal_plan_length(state), plan_length_lower_bound(state)
                assert h <= d and (h == 0) == (d == 0), (task.task_id, world)
                for gamma in (1.0, 0.95, 0.5, 0.0):
                    assert ENV.value_bound(state, gamma) >= optimal_value(state, gamma) - 1e-12
                checked, tight = checked + 1, tight + (h == d)
    assert checked == 101 * 22 + 446 * 125 + 55 * 866
    assert tight / checked > 0.99  # nearly exact, so the MCTS-Solver proves nodes early


def test_value_bound_admissible_for_other_goal_atoms():
    """Random goals, including clear / holding / handempty atoms, from random 4-block starts."""
    rng = np.random.default_rng(0)
    names = ["red", "blue", "orange", "yellow"]
    start = parse_problem(PROBLEM.replace("(:objects a b c )", "(:objects a b c d)")
                          .replace("(clear c)", "(clear c)\n(ontable d)\n(clear d)"))  # fmt: skip
    checked = 0
    for _ in range(200):
        pool = [f"on {x} {y}" for x in names for y in names if x != y]
        pool += [f"{p} {x}" for p in ("ontable", "clear", "holding") for x in names] + ["handempty"]
        goal = sorted(set(rng.choice(pool, size=int(rng.integers(1, 4)), replace=False).tolist()))
        try:
            state = ENV.reset(Task("r", dict(start, goal=goal)))
        except TaskFileError:
            continue  # the goal holds at the start
        for s in reachable(state):
            d = optimal_plan_length(s)
            if d is not None:
                assert plan_length_lower_bound(s) <= d, (goal, s.world)
                checked += 1
    assert checked > 1000


def test_exact_values():
    s = start_state()
    assert optimal_plan_length(s) == 4
    assert optimal_value(s, 0.9) == pytest.approx(0.9**3)
    q = {a: exact_q(s, a, 0.9) for a in ENV.legal_actions(s)}
    assert q["pick up the red block"] == pytest.approx(0.9**3)  # red goes onto orange first
    assert q["pick up the blue block"] == pytest.approx(0.9**5)  # blue must come down again
    one_left = run_actions(
        s, "pick up the red block", "stack the red block on top of the orange block", "pick up the blue block"
    )
    assert optimal_value(one_left, 0.9) == 1.0
    assert exact_q(one_left, "stack the blue block on top of the red block", 0.9) == 1.0
    assert exact_q(one_left, "put down the blue block", 0.9) == pytest.approx(0.9**2)


def test_search_proves_the_optimal_value():
    from treeq.mcts.search import SearchConfig, search
    from treeq.mcts.tree import ROOT

    state = ENV.reset(TASKS["3"]["instance-3"])
    result = search(ENV, state, SearchConfig(simulations=3000, gamma=0.95), np.random.default_rng(0))
    assert result.solved
    assert result.tree.solved_v[ROOT] == pytest.approx(optimal_value(state, 0.95))


