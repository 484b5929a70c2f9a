"""Blocksworld (PlanBench) env: PDDL reader, actions, exact values, task loading."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest

from treeq.envs.base import Task
from treeq.envs.blocksworld import (
    TASKS_DIR,
    BlocksworldEnv,
    BlocksworldState,
    atoms,
    exact_q,
    is_goal,
    optimal_plan_length,
    optimal_value,
    parse_action,
    parse_problem,
    plan_length_lower_bound,
)
from treeq.errors import ActionError, TaskFileError

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


def _start(text: str = PROBLEM) -> BlocksworldState:
    return ENV.reset(Task("t", parse_problem(text)))


def _run(state: BlocksworldState, *actions: str) -> BlocksworldState:
    for a in actions:
        state = ENV.step(state, a).state
    return state


def _reachable(state: BlocksworldState) -> list[BlocksworldState]:
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


# ----------------------------------------------------------------------------- shipped data
def test_every_shipped_instance_parses():
    assert len(TASKS["3"]) == 101 and len(TASKS["4-5"]) == 501
    assert list(TASKS["3"])[:3] == ["instance-1", "instance-2", "instance-3"]  # natural order
    sizes = [len(t.payload["blocks"]) for t in TASKS["4-5"].values()]
    assert (sizes.count(4), sizes.count(5)) == (446, 55)
    for t in TASKS["3"].values():
        assert t.payload["blocks"] == ["red", "blue", "orange"]
        assert t.payload["objects"] == ["a", "b", "c"]
        json.dumps(t.payload)  # JSON-friendly
        assert not is_goal(ENV.reset(t, np.random.default_rng(0)))


@pytest.mark.parametrize("key", ["3", "4-5"])
def test_bfs_length_equals_planbench_optimum_and_plans_replay(key):
    plans = PLANS[key]
    assert len(plans) == len(TASKS[key]) - 1  # instance-1 is PlanBench's prompt example only
    for task_id, rec in plans.items():
        state = ENV.reset(TASKS[key][task_id])
        assert optimal_plan_length(state) == rec["length"] == len(rec["plan"]), task_id
        for i, action in enumerate(rec["plan"]):
            # every step of an optimal plan is an optimal action
            assert exact_q(state, action, 0.95) == pytest.approx(optimal_value(state, 0.95))
            step = ENV.step(state, action)
            last = i == len(rec["plan"]) - 1
            assert (step.reward, step.terminated) == ((1.0, True) if last else (0.0, False)), (task_id, i)
            state = step.state
        assert step.info == {"success": True}
        assert list(state.steps) == rec["plan"]
        assert ENV.render(state).endswith("[PLAN END]")
        assert ENV.legal_actions(state) == []


def test_render_is_planbench_statement_then_plan():
    state = ENV.reset(TASKS["3"]["instance-2"])
    assert ENV.render(state) == (
        "As initial conditions I have that, the red block is clear, the blue block is clear, the orange block is "
        "clear, the hand is empty, the red block is on the table, the blue block is on the table and the orange "
        "block is on the table.\n"
        "My goal is to have that the red block is on top of the orange block and the blue block is on top of the "
        "red block.\n\nMy plan is as follows:\n\n[PLAN]"
    )
    state = _run(state, "pick up the red block")
    assert ENV.render(state).endswith("[PLAN]\npick up the red block")


def test_pddl_form_actions_replay_with_colours_and_letters():
    rec = PLANS["3"]["instance-3"]
    letter = {"red": "a", "blue": "b", "orange": "c"}
    for use_letters in (False, True):
        state = ENV.reset(TASKS["3"]["instance-3"])
        for action in rec["plan"]:
            p = parse_action(action)
            args = [p.block] + ([p.other] if p.other else [])
            args = [letter[a] for a in args] if use_letters else args
            step = ENV.step(state, f"({p.op} {' '.join(args)})")
            state = step.state
        assert list(state.steps) == rec["plan"]  # stored in canonical phrasing
        assert step.reward == 1.0


# ----------------------------------------------------------------------------- reader errors
@pytest.mark.parametrize(
    "text, line, words",
    [
        (PROBLEM.replace("(on b a))", "(on b a)))"), 18, "')' closes nothing"),
        (PROBLEM.replace("(clear c)", "(clear c"), 1, "never closed"),
        (PROBLEM.replace("(ontable b)", "(ontop b)"), 7, "unknown predicate 'ontop'"),
        (PROBLEM.replace("(:goal\n(and\n(on a c)\n(on b a))\n)", ""), 1, "no (:goal ...) section"),
        (PROBLEM.replace("(on b a))", "(on b z))"), 16, "unknown object 'z'"),
        (PROBLEM.replace("(on a c)", "(on a)"), 15, "on takes 2 argument(s), got 1"),
        (PROBLEM.replace("(and\n(on a c)", "(or\n(on a c)"), 14, "unsupported goal connective 'or'"),
        (PROBLEM.replace("(:objects a b c )", "(:objects a b a )"), 3, "declared twice"),
        (PROBLEM.replace("(ontable c)", "(ontable c)\n(on c a)"), 9, "placed twice"),
        (PROBLEM.replace("(clear c)\n", ""), 4, "clear atoms disagree"),
        (PROBLEM.replace("(handempty)\n", ""), 4, "neither says (handempty) nor holds"),
        (PROBLEM.replace("(on a c)\n(on b a)", "(ontable a)"), 13, "goal already holds"),
        (PROBLEM.replace("(:init", "(:metric minimize (total-cost))\n(:init"), 4, "unsupported section ':metric'"),
        ("\n; only a comment\n", 1, "empty file"),
        ("(define (domain blocksworld-4ops))", 1, "domain definition, not a problem"),
    ],
)
def test_malformed_pddl_names_file_and_line(tmp_path, text, line, words):
    path = tmp_path / "bad.pddl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TaskFileError) as exc:
        ENV.load_tasks(path)
    assert f"bad.pddl:{line}:" in str(exc.value)
    assert words in str(exc.value)


def test_reader_accepts_comments_case_types_and_single_atom_goal():
    text = (
        "; a comment (with parentheses)\n(DEFINE (PROBLEM p) (:domain bw)\n"
        "(:objects x y - block) ; trailing\n"
        "(:init (handempty) (ontable x) (on y x) (clear y))\n(:goal (on x y)))"
    )
    payload = parse_problem(text, "inline")
    assert payload["blocks"] == ["x", "y"]  # not PlanBench letters: names kept
    assert payload["goal"] == ["on x y"] and payload["init"][0] == "handempty"
    state = ENV.reset(Task("p", payload))
    assert optimal_plan_length(state) == 4


def test_bad_payload_in_reset():
    payload = dict(parse_problem(PROBLEM), goal=["on red purple"])
    with pytest.raises(TaskFileError, match="task t: bad atom 'on red purple'"):
        ENV.reset(Task("t", payload))


# ----------------------------------------------------------------------------- actions
def test_legal_actions_are_deterministic_and_complete():
    s = _start()
    assert ENV.legal_actions(s) == ["pick up the blue block", "pick up the orange block", "pick up the red block"]
    s = _run(s, "pick up the blue block")
    assert ENV.legal_actions(s) == [
        "put down the blue block",
        "stack the blue block on top of the orange block",
        "stack the blue block on top of the red block",
    ]
    for state in _reachable(_start()):
        acts = ENV.legal_actions(state)
        assert acts == ENV.legal_actions(replace(state, steps=("x",))) and len(set(acts)) == len(acts)
        for a in acts:
            ENV.step(state, a)


@pytest.mark.parametrize(
    "setup, action, message",
    [
        ((), "jump over the red block", "cannot parse action"),
        ((), "pick up the purple block", "unknown block 'purple'"),
        ((), "(pick-up red blue)", "pick-up takes 1 block(s), got 2"),
        ((), "(fly red)", "cannot parse action"),
        ((), "put down the red block", "the red block is not being held (the hand is empty)"),
        ((), "unstack the red block from on top of the blue block",
         "not on top of the blue block (it is on the table)"),
        (("pick up the red block",), "pick up the blue block", "the hand is not empty (it is holding the red block)"),
        (("pick up the red block",), "stack the red block on top of the red block", "on top of itself"),
        (("pick up the red block", "stack the red block on top of the orange block"), "pick up the orange block",
         "the orange block is not clear (the red block is on top of it)"),
        (("pick up the red block", "stack the red block on top of the orange block"),
         "unstack the orange block from on top of the red block", "the orange block is not on top of the red block"),
        (("pick up the red block", "stack the red block on top of the orange block", "pick up the blue block"),
         "stack the blue block on top of the orange block", "the orange block is not clear"),
    ],
)  # fmt: skip
def test_illegal_or_unknown_actions_raise(setup, action, message):
    state = _run(_start(), *setup)
    with pytest.raises(ActionError) as exc:
        ENV.step(state, action)
    assert message in str(exc.value)
    assert repr(action) in str(exc.value) or "unknown block" in str(exc.value) or "cannot parse" in str(exc.value)


def test_no_action_after_the_goal():
    done = _run(_start(), *PLANS["3"]["instance-2"]["plan"])
    with pytest.raises(ActionError, match="episode is over"):
        ENV.step(done, "unstack the blue block from on top of the red block")


def test_lenient_spelling_maps_to_canonical_text():
    s = _start()
    assert ENV.step(s, "  Pick up  the RED block. ").state.steps == ("pick up the red block",)
    assert ENV.step(s, "(PICK-UP a)").state.steps == ("pick up the red block",)


# ----------------------------------------------------------------------------- keys
def test_state_key_is_canonical_across_paths_and_tasks():
    a = _run(_start(), "pick up the red block", "stack the red block on top of the blue block",
             "pick up the orange block", "put down the orange block")  # fmt: skip
    b = _run(_start(), "pick up the orange block", "put down the orange block",
             "pick up the red block", "stack the red block on top of the blue block")  # fmt: skip
    assert a.steps != b.steps and a.world == b.world
    assert ENV.state_key(a) == ENV.state_key(b) == (
        "blue on table; orange on table; red on blue; hand empty | goal: on blue red; on red orange"
    )
    # another task, same goal, starting from a different configuration
    other = PROBLEM.replace("(ontable a)", "(on a b)").replace("(clear b)\n", "")
    c = _run(_start(other), "pick up the orange block", "put down the orange block")
    assert ENV.state_key(c) == ENV.state_key(a)
    # the goal is part of the key: the same configuration under another goal differs
    d = _run(_start(other.replace("(on b a))", "(on b c))")), "pick up the orange block", "put down the orange block")
    assert ENV.state_key(d) != ENV.state_key(a)
    assert ENV.state_key(_run(_start(), "pick up the red block")).startswith("blue on table; orange on table; red held")
    assert atoms(a) == {"on red blue", "ontable blue", "ontable orange", "clear red", "clear orange", "handempty"}


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
                configurations[start.blocks] = [s.world for s in _reachable(replace(start, goal=never))]
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
        for s in _reachable(state):
            d = optimal_plan_length(s)
            if d is not None:
                assert plan_length_lower_bound(s) <= d, (goal, s.world)
                checked += 1
    assert checked > 1000


def test_exact_values():
    s = _start()
    assert optimal_plan_length(s) == 4
    assert optimal_value(s, 0.9) == pytest.approx(0.9**3)
    q = {a: exact_q(s, a, 0.9) for a in ENV.legal_actions(s)}
    assert q["pick up the red block"] == pytest.approx(0.9**3)  # red goes onto orange first
    assert q["pick up the blue block"] == pytest.approx(0.9**5)  # blue must come down again
    one_left = _run(
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


# ----------------------------------------------------------------------------- loading
def test_load_tasks_file_dir_glob_and_default():
    assert [t.task_id for t in ENV.load_tasks(None)] == list(TASKS["3"])
    one = ENV.load_tasks(str(TASKS_DIR / "4-5" / "instance-12.pddl"))
    assert [t.task_id for t in one] == ["instance-12"]
    assert one[0].payload["path"].endswith("instance-12.pddl")
    globbed = ENV.load_tasks(str(TASKS_DIR / "4-5" / "instance-1*.pddl"))
    ids = [t.task_id for t in globbed]
    assert ids[:4] == ["instance-1", "instance-10", "instance-11", "instance-12"]
    assert ids[-1] == "instance-199" and len(ids) == 1 + 10 + 100  # 1, 10-19, 100-199
    assert ids == sorted(ids, key=lambda s: int(s.split("-")[1]))


def test_load_tasks_skips_domain_files_in_directories(tmp_path):
    (tmp_path / "domain.pddl").write_text((TASKS_DIR / "generated_domain.pddl").read_text())
    (tmp_path / "p10.pddl").write_text(PROBLEM)
    (tmp_path / "p9.pddl").write_text(PROBLEM)
    assert [t.task_id for t in ENV.load_tasks(tmp_path)] == ["p9", "p10"]
    with pytest.raises(TaskFileError, match="domain definition"):
        ENV.load_tasks(tmp_path / "domain.pddl")


def test_load_tasks_errors(tmp_path):
    cases = [
        (tmp_path / "missing.pddl", "task file not found"),
        (str(tmp_path / "nothing-*.pddl"), "no files match"),
        (tmp_path, "no .pddl files in directory"),
    ]
    for path, message in cases:
        with pytest.raises(TaskFileError, match=re.escape(message)):
            ENV.load_tasks(path)
    (tmp_path / "p.txt").write_text(PROBLEM)
    with pytest.raises(TaskFileError, match="expected a .pddl problem file"):
        ENV.load_tasks(tmp_path / "p.txt")
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "p.pddl").write_text(PROBLEM)
    with pytest.raises(TaskFileError, match="task id 'p' comes from two files"):
        ENV.load_tasks(str(tmp_path / "*" / "p.pddl"))


def test_env_satisfies_protocol():
    from treeq.envs.base import Env

    assert isinstance(ENV, Env)
    assert ENV.name == "blocksworld" and ENV.deterministic is True
