"""Blocksworld (PlanBench) env: shipped data, actions, keys, task loading.

The PDDL reader is tested in ``test_pddl.py``, the exact oracle in ``test_blocksworld_exact.py``.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest
from blocksworld_cases import ENV, PLANS, PROBLEM, TASKS, reachable, run_actions, start_state

from treeq.envs.blocksworld import TASKS_DIR, atoms, exact_q, is_goal, optimal_plan_length, optimal_value, parse_action
from treeq.errors import ActionError, TaskFileError


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
    state = run_actions(state, "pick up the red block")
    assert ENV.render(state).endswith("[PLAN]\npick up the red block")


def test_observe_is_the_configuration_after_the_step():
    """What a PRM path reads after each action: the configuration in PlanBench's words, no goal, no plan."""
    state = run_actions(ENV.reset(TASKS["3"]["instance-2"]), "pick up the red block")
    assert ENV.observe(state) == (
        "I have that, the blue block is clear, the orange block is clear, the hand is currently holding red block, "
        "the blue block is on the table and the orange block is on the table.")
    state = run_actions(state, "stack the red block on top of the orange block")
    assert ENV.observe(state) == (
        "I have that, the red block is clear, the blue block is clear, the hand is empty, the red block is on top of "
        "the orange block, the blue block is on the table and the orange block is on the table.")


def _clauses(text: str) -> set[str]:
    """The facts of PlanBench sentences ("I have that, a, b and c. My goal is to have that d."), order aside."""
    out = set()
    for sentence in re.split(r"\.(?: |$)", text):
        if sentence:
            kind = "goal" if sentence.startswith("My goal") else "have"
            body = re.split(r"that,? ", sentence, maxsplit=1)[-1]
            out |= {f"{kind}: {fact}" for fact in re.split(r", | and (?=the )", body)}
    return out


@pytest.mark.parametrize("task_id", ["instance-7", "instance-12", "instance-400"])
def test_rename_is_the_same_path_of_the_renamed_task(tmp_path, task_id):
    """rename permutes the colours of a path (prompt and steps) by one permutation: the result
    is, fact for fact, the path of the task whose PDDL objects are so renamed, and every exact
    value along it is the original's (so PRM labels hold)."""
    task = TASKS["4-5"][task_id]
    state = ENV.reset(task)
    texts, states = [ENV.render(state)], [state]
    rng = np.random.default_rng(5)
    for _ in range(4):
        action = ENV.legal_actions(state)[int(rng.integers(len(ENV.legal_actions(state))))]
        state = ENV.step(state, action).state
        texts.append(action + "\n" + ENV.observe(state))
        states.append(state)
    colours = {"red": "a", "blue": "b", "orange": "c", "yellow": "d", "white": "e"}
    assert len({tuple(ENV.rename(texts, np.random.default_rng(seed))) for seed in range(4)}) > 1
    for seed in range(4):
        renamed = ENV.rename(texts, np.random.default_rng(seed))
        # the permutation, read off word by word, is one bijection over the path
        pairs = {(a, b) for t, u in zip(texts, renamed)
                 for a, b in zip(re.findall(r"\w+", t), re.findall(r"\w+", u)) if a != b or a in colours}
        forward = dict(pairs)
        assert len(forward) == len(pairs) and sorted(forward) == sorted(forward.values())
        # the renamed task: the PDDL file with its objects renamed the same way
        swap = {colours[a]: colours[b] for a, b in forward.items()}
        pddl = (TASKS_DIR / "4-5" / f"{task_id}.pddl").read_text()
        pddl = re.sub(r"(?<=[ (])([a-e])(?=[ )])", lambda m, swap=swap: swap.get(m.group(1), m.group(1)), pddl)
        (tmp_path / f"r{seed}.pddl").write_text(pddl)
        other = ENV.reset(ENV.load_tasks(tmp_path / f"r{seed}.pddl")[0])
        start, goal = ENV.render(other).split("\n")[:2]
        assert _clauses(start) == _clauses(renamed[0].split("\n")[0])
        assert _clauses(goal) == _clauses(renamed[0].split("\n")[1])
        for text, before in zip(renamed[1:], states[1:]):
            action, observation = text.split("\n")
            step = ENV.step(other, action)
            assert _clauses(ENV.observe(step.state)) == _clauses(observation)
            assert optimal_value(step.state, 0.95) == optimal_value(before, 0.95)
            other = step.state


def test_rename_leaves_other_words_and_one_colour_paths_alone():
    text = ["the red block is on top of the table", "reddish blue"]
    out = ENV.rename(text, np.random.default_rng(0))
    assert out[0].endswith("block is on top of the table") and out[1].startswith("reddish ")
    assert ENV.rename(["the red block"], np.random.default_rng(1)) == ["the red block"]


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



# ----------------------------------------------------------------------------- actions
def test_legal_actions_are_deterministic_and_complete():
    s = start_state()
    assert ENV.legal_actions(s) == ["pick up the blue block", "pick up the orange block", "pick up the red block"]
    s = run_actions(s, "pick up the blue block")
    assert ENV.legal_actions(s) == [
        "put down the blue block",
        "stack the blue block on top of the orange block",
        "stack the blue block on top of the red block",
    ]
    for state in reachable(start_state()):
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
    state = run_actions(start_state(), *setup)
    with pytest.raises(ActionError) as exc:
        ENV.step(state, action)
    assert message in str(exc.value)
    assert repr(action) in str(exc.value) or "unknown block" in str(exc.value) or "cannot parse" in str(exc.value)


def test_no_action_after_the_goal():
    done = run_actions(start_state(), *PLANS["3"]["instance-2"]["plan"])
    with pytest.raises(ActionError, match="episode is over"):
        ENV.step(done, "unstack the blue block from on top of the red block")


def test_lenient_spelling_maps_to_canonical_text():
    s = start_state()
    assert ENV.step(s, "  Pick up  the RED block. ").state.steps == ("pick up the red block",)
    assert ENV.step(s, "(PICK-UP a)").state.steps == ("pick up the red block",)


# ----------------------------------------------------------------------------- keys
def test_state_key_is_canonical_across_paths_and_tasks():
    a = run_actions(start_state(), "pick up the red block", "stack the red block on top of the blue block",
             "pick up the orange block", "put down the orange block")  # fmt: skip
    b = run_actions(start_state(), "pick up the orange block", "put down the orange block",
             "pick up the red block", "stack the red block on top of the blue block")  # fmt: skip
    assert a.steps != b.steps and a.world == b.world
    assert ENV.state_key(a) == ENV.state_key(b) == (
        "blue on table; orange on table; red on blue; hand empty | goal: on blue red; on red orange"
    )
    # another task, same goal, starting from a different configuration
    other = PROBLEM.replace("(ontable a)", "(on a b)").replace("(clear b)\n", "")
    c = run_actions(start_state(other), "pick up the orange block", "put down the orange block")
    assert ENV.state_key(c) == ENV.state_key(a)
    # the goal is part of the key: the same configuration under another goal differs
    d = run_actions(start_state(other.replace("(on b a))", "(on b c))")), "pick up the orange block", "put down the orange block")
    assert ENV.state_key(d) != ENV.state_key(a)
    assert ENV.state_key(run_actions(start_state(), "pick up the red block")).startswith("blue on table; orange on table; red held")
    assert atoms(a) == {"on red blue", "ontable blue", "ontable orange", "clear red", "clear orange", "handempty"}


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
        (str(tmp_path / "nothing-*.pddl"), "no PDDL problem (*.pddl) matches"),
        (tmp_path, "no PDDL problem (*.pddl) in this directory"),
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
    with pytest.raises(TaskFileError, match=r"task id 'p' appears twice \(.*x/p.pddl and .*y/p.pddl\); task ids are file stems"):
        ENV.load_tasks(str(tmp_path / "*" / "p.pddl"))


def test_env_satisfies_protocol():
    from treeq.envs.base import Env

    assert isinstance(ENV, Env)
    assert ENV.name == "blocksworld" and ENV.deterministic is True
