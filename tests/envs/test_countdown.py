"""Game of 24 / Countdown env: actions, parser, solver, task files."""

from __future__ import annotations

import itertools
from fractions import Fraction as F
from functools import cache

import numpy as np
import pytest

from treeq.envs.base import Task
from treeq.envs.countdown import (
    CountdownEnv,
    Game24Env,
    exact_q,
    optimal_value,
    parse_step,
    solution,
    solvable,
)
from treeq.errors import ActionError, TaskFileError


def _state(env, numbers, target=24):
    return env.reset(Task("t", {"numbers": [str(x) for x in numbers], "target": str(target)}))


@cache
def _brute(numbers: tuple, target: F) -> bool:
    """Independent brute force: every ordered pair, both subtraction orders, negatives allowed."""
    if len(numbers) == 1:
        return numbers[0] == target
    for i, j in itertools.permutations(range(len(numbers)), 2):
        a, b = numbers[i], numbers[j]
        rest = [x for k, x in enumerate(numbers) if k not in (i, j)]
        results = [a + b, a - b, a * b] + ([a / b] if b != 0 else [])
        if any(_brute(tuple(sorted(rest + [r])), target) for r in results):
            return True
    return False


def test_legal_actions_are_distinct_and_in_tot_format():
    env = Game24Env()
    s = _state(env, [4, 4, 6, 8])
    acts = env.legal_actions(s)
    assert len(acts) == len(set(acts))
    assert "4 + 8 = 12 (left: 4 6 12)" in acts
    assert "8 + 4 = 12 (left: 4 6 12)" not in acts  # commutative ops appear once
    assert "8 / 6 = 4/3 (left: 4/3 4 4)" in acts and "6 / 8 = 3/4 (left: 3/4 4 4)" in acts
    # value pairs (4,4) (4,6) (4,8) (6,8): + - * and two divisions each, (4,4) one division
    assert len(acts) == 4 + 3 * 5


def test_step_reward_and_terminal():
    env = Game24Env()
    s = _state(env, [4, 5, 6, 10])
    for a in ["4 * 5 = 20 (left: 6 10 20)", "10 - 6 = 4 (left: 4 20)"]:
        st = env.step(s, a)
        assert (st.reward, st.terminated) == (0.0, False)
        s = st.state
    win = env.step(s, "4 + 20 = 24 (left: 24)")
    assert (win.reward, win.terminated) == (1.0, True)
    lose = env.step(s, "20 - 4 = 16 (left: 16)")
    assert (lose.reward, lose.terminated) == (0.0, True)
    assert env.legal_actions(win.state) == []


def test_state_key_is_canonical_across_paths_and_tasks():
    env = Game24Env()
    a = env.step(_state(env, [1, 2, 3, 4]), "1 + 2 = 3 (left: 3 3 4)").state
    b = env.step(_state(env, [3, 3, 4, 9]), "3 * 3 = 9 (left: 4 9 9)").state
    b2 = env.step(_state(env, [3, 3, 4, 0]), "0 + 3 = 3 (left: 3 3 4)").state
    assert env.state_key(a) == env.state_key(b2) == "target=24 left=3 3 4"
    assert env.state_key(a) != env.state_key(b)
    assert a.steps != b2.steps  # the path differs, the key does not


@pytest.mark.parametrize(
    "text, canonical",
    [
        ("8 + 4 = 12", "4 + 8 = 12 (left: 4 6 12)"),
        ("4+8=12 (left: 12 6 4)", "4 + 8 = 12 (left: 4 6 12)"),
        ("8 x 4 = 32", "4 * 8 = 32 (left: 4 6 32)"),
        ("8 / 6 = 4/3", "8 / 6 = 4/3 (left: 4/3 4 4)"),
        ("  6 - 4 = 2 (left: 2 4 8) ", "6 - 4 = 2 (left: 2 4 8)"),
    ],
)
def test_outside_text_maps_to_canonical_action(text, canonical):
    env = Game24Env()
    s = _state(env, [4, 4, 6, 8])
    assert env.canonical_action(s, text) == canonical
    assert env.step(s, text).state == env.step(s, canonical).state


@pytest.mark.parametrize(
    "text, words",
    [
        ("", "cannot parse"),
        ("4 + 8", "cannot parse"),
        ("__import__('os').system('x')", "cannot parse"),
        ("4 + 8 = 13", "wrong arithmetic"),
        ("4 / 0 = 0", "division by zero"),
        ("5 + 4 = 9", "not among the numbers left"),
        ("8 + 8 = 16", "not among the numbers left"),
        ("4 - 8 = -4", "negative"),
        ("4 + 8 = 12 (left: 4 6)", "expected 4 6 12"),
        ("8 / 3/0 = 1", "bad number"),
    ],
)
def test_malformed_or_illegal_text_raises_action_error(text, words):
    env = Game24Env()
    with pytest.raises(ActionError, match=words):
        env.step(_state(env, [4, 4, 6, 8]), text)


def test_parse_step_exact_fractions():
    p = parse_step("8/3 * 9 = 24 (left: 24)")
    assert (p.a, p.op, p.b, p.result, p.left) == (F(8, 3), "*", F(9), F(24), (F(24),))


def test_solver_matches_brute_force():
    rng = np.random.default_rng(7)
    puzzles = [tuple(int(x) for x in rng.integers(1, 14, size=4)) for _ in range(150)]
    puzzles += [(1, 1, 1, 1), (3, 3, 8, 8), (1, 5, 5, 5), (0, 0, 0, 0)]
    for p in puzzles:
        assert solvable(p, 24) == _brute(tuple(sorted(F(x) for x in p)), F(24)), p
    for p in [(30, 100, 93), (2, 7, 9), (5, 5, 1)]:
        for target in (23, 1, 45):
            assert solvable(p, target) == _brute(tuple(sorted(F(x) for x in p)), F(target))


def test_solution_replays_to_the_target():
    env = Game24Env()
    for p in [(3, 3, 8, 8), (1, 5, 5, 5), (4, 5, 6, 10)]:
        s = _state(env, p)
        steps = solution(s)
        assert steps is not None and len(steps) == 3
        reward = 0.0
        for a in steps:
            st = env.step(s, a)
            s, reward = st.state, st.reward
        assert reward == 1.0
    assert solution(_state(env, [1, 1, 1, 1])) is None


def test_exact_q_and_optimal_value_with_discount():
    env = Game24Env()
    s = _state(env, [4, 5, 6, 10])
    assert optimal_value(s, 0.9) == pytest.approx(0.81)
    assert exact_q(s, "4 * 5 = 20 (left: 6 10 20)", 0.9) == pytest.approx(0.81)
    assert exact_q(s, "4 + 5 = 9 (left: 6 9 10)", 0.9) == (0.81 if solvable([6, 9, 10], 24) else 0.0)
    last = env.step(env.step(s, "4 * 5 = 20 (left: 6 10 20)").state, "10 - 6 = 4 (left: 4 20)").state
    assert exact_q(last, "4 + 20 = 24 (left: 24)", 0.9) == 1.0
    assert env.value_bound(s, 0.9) == pytest.approx(0.81)


def test_shipped_task_sets_load_and_are_solvable():
    g = Game24Env().load_tasks(None)
    assert len(g) == 1362 and g[900].task_id == "24-900"
    c = CountdownEnv().load_tasks(None)
    assert len(c) == 256 and c[0].payload == {"numbers": ["30", "100", "93"], "target": "23"}
    assert all(solvable([int(x) for x in t.payload["numbers"]], int(t.payload["target"])) for t in c)


def test_task_file_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "1,2,3", "output": "6"}\n\n{"input": "1,2" "output": 3}\n')
    with pytest.raises(TaskFileError, match=r"bad.jsonl:3: not valid JSON"):
        CountdownEnv().load_tasks(bad)
    csv_file = tmp_path / "p.csv"
    csv_file.write_text("Rank,Puzzles\n1,1 2 3 4\n2,1 2 3\n")
    with pytest.raises(TaskFileError, match=r"p.csv:3: game24 takes 4 numbers, got 3"):
        Game24Env().load_tasks(csv_file)
    with pytest.raises(TaskFileError, match="not found"):
        Game24Env().load_tasks(tmp_path / "missing.csv")
    wrong_target = tmp_path / "t.jsonl"
    wrong_target.write_text('{"numbers": [1, 2, 3, 4], "target": 10}\n')
    with pytest.raises(TaskFileError, match="use --env countdown"):
        Game24Env().load_tasks(wrong_target)
    dup = tmp_path / "d.jsonl"
    dup.write_text('{"task_id": "a", "numbers": [1, 2], "target": 3}\n{"task_id": "a", "numbers": [1, 2], "target": 2}\n')
    with pytest.raises(TaskFileError, match="appears twice"):
        CountdownEnv().load_tasks(dup)


def test_native_jsonl_and_d1_forms(tmp_path):
    f = tmp_path / "mixed.jsonl"
    f.write_text('{"task_id": "mine", "numbers": [4, 4, 6, 8], "target": 24}\n{"input": "30,100,93", "output": "23"}\n')
    tasks = CountdownEnv().load_tasks(f)
    assert [t.task_id for t in tasks] == ["mine", "mixed-1"]
    assert tasks[1].payload == {"numbers": ["30", "100", "93"], "target": "23"}


def test_negatives_option_adds_the_reversed_subtraction():
    """negatives=True: '4 - 8 = -4' is legal and its exact values match a solver over all four
    operations in both orders; without it the step is refused and the action set is unchanged."""
    from fractions import Fraction

    from treeq.envs.countdown import Game24Env, solvable
    from treeq.errors import ActionError

    neg, plain = Game24Env(negatives=True), Game24Env()
    task = plain.task_from_text("4 6 8 8")
    state = neg.reset(task)
    extra = set(neg.legal_actions(state)) - set(plain.legal_actions(plain.reset(task)))
    # pairs of different numbers: (4,6) (4,8) (6,8) -> three reversed subtractions
    assert extra == {"4 - 6 = -2 (left: -2 8 8)", "4 - 8 = -4 (left: -4 6 8)", "6 - 8 = -2 (left: -2 4 8)"}
    after = neg.step(state, "4 - 8 = -4 (left: -4 6 8)").state
    assert after.numbers == (Fraction(-4), Fraction(6), Fraction(8))
    assert neg.exact_value(after, 1.0) == 1.0  # 6 * (8 + -4) = 24
    assert solvable([-30, 6], 24, negatives=True) is False
    assert solvable([-4, 28], 24, negatives=True) is True
    with pytest.raises(ActionError, match="negative"):
        plain.step(plain.reset(task), "4 - 8 = -4 (left: -4 6 8)")
