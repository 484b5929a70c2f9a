"""The llm-steps env: open-text steps, exact answer checkers, task files, keys across processes.

Every expected verdict below is computed by hand (noted next to the case).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from fractions import Fraction as F

import numpy as np
import pytest

from treeq.envs.base import Env, Task, is_success
from treeq.envs.checker import EnvCheckError, check_env
from treeq.envs.llm_steps import (
    MAX_NESTING,
    LLMStepsEnv,
    LLMStepsState,
    check_expression,
    check_numeric,
    clean_step,
    extract_answer,
    parse_number_text,
)
from treeq.envs.registry import ENV_NAMES, make_env
from treeq.errors import ActionError, ConfigError, TaskFileError


def puzzle(text: str, env: LLMStepsEnv | None = None) -> LLMStepsState:
    env = env or LLMStepsEnv()
    return env.reset(env.task_from_text(text))


def answer(text: str, state: LLMStepsState, env: LLMStepsEnv | None = None):
    return (env or LLMStepsEnv()).step(state, f"Answer: {text}")


# ----------------------------------------------------------------------------- puzzles
@pytest.mark.parametrize("numbers, expr", [
    ("4 6 8 8", "(4+8)*(8-6)"),          # 12 * 2 = 24
    ("4 6 8 8", "(8 - 6) * (8 + 4)"),    # 2 * 12 = 24, other order
    ("1 1 4 6", "6*4*1*1"),              # 24
    ("1 1 4 6", "6*4+1-1"),              # 24 + 1 - 1 = 24
    ("3 3 8 8", "8/(3-8/3)"),            # 3 - 8/3 = 1/3; 8 / (1/3) = 24 (floats give 23.999999999999986)
    ("1 5 5 5", "5*(5-1/5)"),            # 5 - 1/5 = 24/5; 5 * 24/5 = 24
    ("4 4 10 10", "(10*10-4)/4"),        # 96 / 4 = 24
    ("4 4 10 10", "(10 × 10 − 4) ÷ 4"),  # the same with unicode operators
    ("4 6 8 8", "(4+8)*(8-6) = 24"),     # trailing "= 24"
    ("4 6 8 8", "((((4+8))))*((8-6))"),  # redundant parentheses
    ("4 6 8 8", "**(4 + 8) * (8 - 6).**"),  # markdown bold and a final period around it
])
def test_correct_expressions_score_1(numbers, expr):
    step = answer(expr, puzzle(numbers))
    assert (step.reward, step.terminated, step.truncated) == (1.0, True, False)
    assert step.info["success"] is True and is_success(step)


@pytest.mark.parametrize("numbers, expr, reason", [
    ("4 6 8 8", "(8-6)*8+8", "uses 6 8 8 8"),       # = 24, but three 8s and no 4
    ("4 6 8 8", "4+6+8+8", "evaluates to 26"),      # 26
    ("1 1 4 6", "6*4+1+1", "evaluates to 26"),      # 26
    ("3 3 8 8", "8/(3-8)/3", "evaluates to -8/15"),  # 8 / -5 / 3 = -8/15
    ("3 3 8 8", "8*3", "uses 3 8"),                 # 3 and 8 missing
    ("3 3 8 8", "8*3*(8/8)", "uses 3 8 8 8"),       # 8 reused, a 3 missing
    ("4 6 8 8", "(4+8)*(8-6)*1", "uses 1 4 6 8 8"),  # an extra number
    ("4 6 8 8", "4*6/(8-8)", "division by zero"),   # the right numbers, 8 - 8 = 0 below the bar
    ("4 6 8 8", "4*6/(8-8) = 24", "division by zero"),
    ("4 6 8 8", "(4+8)*(8-6) = 25", "states '= 25'"),  # the expression is right, the stated value is not
    ("4 6 8 8", "(4+8)*(8-6) = 24 = 24", "more than one '='"),
    ("4 6 8 8", "twenty-four", "malformed"),
    ("4 6 8 8", "", "malformed expression: empty"),
    ("4 6 8 8", "(4+8)*(8-6", "unbalanced"),
    ("4 6 8 8", "(4+8)*(8-6))", "unexpected ')'"),
    ("4 6 8 8", "(4+8)**(8-6)", "expected a number"),
    ("4 6 8 8", "4 8 8 6", "after a complete expression"),
    ("4 6 8 8", "(4+8)*(8-6)^1", "unexpected"),
    ("4 6 8 8", "-(4-8)*(8-6)*... ", "malformed"),
    ("4 6 8 8", "24", "uses 24"),
    ("4 6 8 8", "(4.0+8)*(8-6)", "malformed"),      # integers only
])
def test_wrong_or_malformed_expressions_score_0(numbers, expr, reason):
    step = answer(expr, puzzle(numbers))
    assert (step.reward, step.terminated) == (0.0, True)
    assert step.info["success"] is False and not is_success(step)
    assert reason in step.info["reason"], step.info


def test_deep_brackets_fail_cleanly():
    state = puzzle("4 6 8 8")
    for text in ["(" * 5000 + "4", "(" * 4999 + "4" + ")" * 4999, "(" * 5000]:
        step = answer(text, state)
        assert step.reward == 0.0 and f"deeper than {MAX_NESTING}" in step.info["reason"]
    nested = "(" * MAX_NESTING + "4+8" + ")" * MAX_NESTING + "*(8-6)"  # exactly at the limit: fine
    assert answer(nested, state).reward == 1.0


def test_huge_numbers_and_long_answers_fail_cleanly():
    state = puzzle("4 6 8 8")
    assert answer("9" * 5000, state).info["reason"] == "malformed expression: a number with too many digits"
    assert "longer than" in answer("4+" * 6000 + "4", state).info["reason"]


def test_countdown_puzzle_and_negative_literals():
    env = LLMStepsEnv()
    state = env.reset(env.task_from_text("30 100 93 -> 23"))
    assert state.question == "Use the numbers 30 100 93 and + - * / to make 23."
    assert env.step(state, "Answer: 100 - 93 + 30 - 14").reward == 0.0  # 14 is not a number of the puzzle
    assert env.step(state, "Answer: 30 - (100 - 93)").reward == 1.0      # 30 - 7 = 23
    neg = env.reset(Task("n", {"numbers": ["-4", "6"], "target": "2"}))
    assert env.step(neg, "Answer: -4 + 6").reward == 1.0                  # a negative number as a literal
    assert env.step(neg, "Answer: 6 - -4").info["reason"] == "evaluates to 10, not 2"


def test_check_expression_directly():
    nums = (F(4), F(6), F(8), F(8))
    assert check_expression("(4+8)*(8-6)", nums, F(24)) == (True, "correct")
    assert check_expression("(4+8)*(8-6)", nums, F(25))[0] is False


# ----------------------------------------------------------------------------- numeric questions
QA_ROWS = [
    {"question": "What is 3 divided by 4?", "answer": "3/4"},
    {"question": "Half of 5?", "answer": 2.5},
    {"question": "How many?", "answer": "1,234,567"},
    {"question": "Below zero?", "answer": -7, "id": "neg"},
    {"question": "A tenth?", "answer": 0.1},
    {"question": "Exact decimal?", "answer": "0.1"},
]


@pytest.fixture
def qa_env(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in QA_ROWS) + "\n", encoding="utf-8")
    env = LLMStepsEnv()
    return env, {t.task_id: env.reset(t) for t in env.load_tasks(str(path))}


def test_qa_tasks_load_with_ids(qa_env):
    _, states = qa_env
    assert list(states) == ["qa-1", "qa-2", "qa-3", "neg", "qa-5", "qa-6"]
    assert states["qa-1"].expected == F(3, 4) and states["neg"].expected == F(-7)
    assert states["qa-2"].expected == 2.5 and isinstance(states["qa-2"].expected, float)
    assert states["qa-6"].expected == F(1, 10)  # a decimal string is exact
    assert states["qa-1"].question == "What is 3 divided by 4?" and states["qa-1"].numbers is None


@pytest.mark.parametrize("task_id, text, ok", [
    ("qa-1", "0.75", True),             # 3/4 exactly
    ("qa-1", "6/8 of it", True),        # 6/8 = 3/4
    ("qa-1", "3 / 4", True),
    ("qa-1", "0.7500000001", False),    # exact for rationals: no tolerance
    ("qa-1", "3/0", False),             # zero denominator: unusable
    ("qa-2", "5/2", True),              # 2.5
    ("qa-2", "2.5.", True),
    ("qa-2", "2.5000000001", True),     # float: 4e-11 relative error < 1e-9
    ("qa-2", "2.51", False),
    ("qa-3", "1,234,567 apples", True),
    ("qa-3", "$1,234,567.00", True),
    ("qa-3", "1234567", True),
    ("qa-3", "1,234", False),           # 1234
    ("neg", "-7", True),
    ("neg", "\u22127", True),            # unicode minus
    ("neg", "x = -7", True),
    ("neg", "7", False),
    ("neg", "minus seven", False),      # no number
    ("qa-5", "0.1", True),
    ("qa-5", "0.10000000000001", True),  # 1e-13 relative
    ("qa-5", "0.1000001", False),       # 1e-6 relative
    ("qa-5", "1e-1", True),
    ("qa-6", "1/10", True),
    ("qa-6", "0.10000000000001", False),  # exact decimal: no tolerance
])
def test_numeric_answers(qa_env, task_id, text, ok):
    env, states = qa_env
    step = env.step(states[task_id], f"Answer: {text}")
    assert step.terminated and step.info["success"] is ok and step.reward == (1.0 if ok else 0.0), step.info


def test_parse_number_text():
    assert parse_number_text("The answer is -1,234.5 cm") == F(-2469, 2)
    assert parse_number_text("about .5") == F(1, 2)
    assert parse_number_text("3-4") == F(3)       # a minus after a digit is an operator
    assert parse_number_text("1,2345") == F(1)    # not a thousands group
    assert parse_number_text("none") is None
    assert parse_number_text("2.5e3 m") == 2500 and parse_number_text("1e-3") == F(1, 1000)
    assert parse_number_text("1e999999") is None       # exponents past 999 are refused, not computed
    assert check_numeric("1e999999", 1.0) == (False, "no usable number in the answer")
    assert check_numeric("9" * 400, 1.0)[0] is False   # too big for a float: False, no OverflowError


# ----------------------------------------------------------------------------- steps and the episode
def test_step_appends_and_answer_ends():
    env = LLMStepsEnv()
    s0 = puzzle("4 6 8 8", env)
    s1 = env.step(s0, "  4 + 8 = 12  ")
    assert (s1.reward, s1.terminated, s1.truncated, s1.info) == (0.0, False, False, {})
    assert s1.state.steps == ("4 + 8 = 12",) and s0.steps == ()  # stripped; s0 unchanged
    s2 = env.step(s1.state, "8 - 6 = 2")
    last = env.step(s2.state, "So the answer: 12 * 2")  # the marker anywhere, any case
    assert last.terminated and last.reward == 0.0 and "uses 2 12" in last.info["reason"]
    done = env.step(s2.state, "ANSWER: (4+8)*(8-6)")
    assert done.reward == 1.0 and done.info["answer"] == "(4+8)*(8-6)"
    with pytest.raises(ActionError, match="episode is over"):
        env.step(done.state, "more")


@pytest.mark.parametrize("bad, match", [("", "empty"), ("   \n ", "empty"), ("4 + 8 = 12\n8 - 6 = 2", "line break"),
                                        ("a\rb", "line break"), ("a\u2028b", "line break"), (None, "must be text")])
def test_bad_actions_raise(bad, match):
    with pytest.raises(ActionError, match=match):
        LLMStepsEnv().step(puzzle("4 6 8 8"), bad)


def test_step_limit():
    env = LLMStepsEnv(max_steps=2)
    s1 = env.step(puzzle("4 6 8 8", env), "think")
    assert not s1.terminated
    end = env.step(s1.state, "think more")
    assert (end.reward, end.terminated, end.info) == (0.0, True, {"success": False, "reason": "step limit"})
    with pytest.raises(ActionError):
        env.step(end.state, "Answer: (4+8)*(8-6)")
    answered = env.step(s1.state, "Answer: (4+8)*(8-6)")  # an answer on the last allowed step is checked
    assert answered.reward == 1.0
    assert LLMStepsEnv().max_steps == 6
    assert env.value_bound(end.state, 1.0) == 0.0 and env.value_bound(s1.state, 1.0) == 1.0


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "6"])
def test_bad_max_steps(bad):
    with pytest.raises(ConfigError, match="max_steps"):
        make_env("llm-steps", max_steps=bad)


def test_protocol_parts_and_determinism():
    env = make_env("llm-steps")
    assert isinstance(env, LLMStepsEnv) and isinstance(env, Env) and "llm-steps" in ENV_NAMES
    assert (env.deterministic, env.default_gamma, env.prefer_transpositions, env.default_evaluator) == (
        True, 1.0, False, "zero")
    with pytest.raises(ConfigError, match="bad options"):
        make_env("llm-steps", nope=1)
    task = env.task_from_text("4 6 8 8")
    a, b = env.reset(task), env.reset(task, np.random.default_rng(1))
    assert a == b and hash(a) == hash(b) and env.state_key(a) == env.state_key(b)
    assert env.legal_actions(a) is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.steps = ("x",)
    # restore after divergence: the state object alone carries everything
    first = env.step(a, "4 + 8 = 12")
    env.step(a, "8 - 6 = 2")
    again = env.step(a, "4 + 8 = 12", np.random.default_rng(5))
    assert first == again and env.state_key(first.state) == env.state_key(again.state)
    assert env.state_key(first.state) != env.state_key(a)
    # open text: the base playout stops at once (no legal actions to draw from)
    assert env.playout(a, lambda: 0.5, 1.0, 50, np.random.default_rng(0)) == 0.0


def test_check_env_walks_open_text_with_a_script():
    """check_env needs a script of candidate steps for an open-text env, and passes with one
    (determinism, restore after divergence, keys across processes)."""
    env = LLMStepsEnv()
    task = env.task_from_text("4 6 8 8")
    with pytest.raises(EnvCheckError, match="open-text env: give check_env a script"):
        check_env(env, task, steps=3)
    script = ["4 + 8 = 12", "8 - 6 = 2", "12 * 2 = 24", "Answer: (4+8)*(8-6)", "Answer: 4*6*8*8"]
    check_env(env, task, steps=6, seed=1, env_spec=("llm-steps", {}), script=script)

def test_render_and_instructions():
    env = LLMStepsEnv()
    s = puzzle("4 6 8 8", env)
    assert env.render(s) == "Use the numbers 4 6 8 8 and + - * / to make 24."
    s = env.step(env.step(s, "4 + 8 = 12").state, "8 - 6 = 2").state
    assert env.render(s) == ("Use the numbers 4 6 8 8 and + - * / to make 24.\n"
                             "Step 1: 4 + 8 = 12\nStep 2: 8 - 6 = 2")
    text = LLMStepsEnv.instructions
    assert "Answer:" in text and "one step" in text and len(text) < 500
    assert extract_answer("Answer: (4 + 8) * (8 - 6)") == "(4 + 8) * (8 - 6)"  # the instructions' own example
    assert answer("(4 + 8) * (8 - 6)", puzzle("4 6 8 8")).reward == 1.0


def test_clean_step_and_extract_answer():
    assert clean_step("\n\n  4 + 8 = 12 \nmore text") == "4 + 8 = 12"
    assert clean_step(" \n ") is None
    assert extract_answer("no marker here") is None
    assert extract_answer("Final answer: `42`.") == "42"


# ----------------------------------------------------------------------------- state keys
KEY_SCRIPT = """
import json, sys
from treeq.envs.registry import make_env
env = make_env("llm-steps")
keys = []
for text, steps in json.loads(sys.argv[1]):
    s = env.reset(env.task_from_text(text))
    for a in steps:
        s = env.step(s, a).state
    keys.append(env.state_key(s))
print(json.dumps(keys))
"""


def test_state_keys_equal_across_processes():
    cases = [("4 6 8 8", []), ("4 6 8 8", ["4 + 8 = 12", "8 − 6 = 2 ✓"]), ("3 3 8 8", ["8 / 3 = 8/3"])]
    arg = json.dumps(cases)
    runs = [subprocess.run([sys.executable, "-c", KEY_SCRIPT, arg], check=False, capture_output=True, text=True, timeout=120)
            for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    there = [json.loads(r.stdout) for r in runs]
    env = LLMStepsEnv()
    here = []
    for text, steps in cases:
        s = env.reset(env.task_from_text(text))
        for a in steps:
            s = env.step(s, a).state
        here.append(env.state_key(s))
    assert there[0] == there[1] == here
    assert len(set(here)) == 3
    assert all(k.startswith("llm-steps:") and len(k) == len("llm-steps:") + 32 for k in here)


# ----------------------------------------------------------------------------- task files
def test_default_tasks_are_the_game24_set():
    from treeq.envs.countdown import Game24Env

    tasks = LLMStepsEnv().load_tasks(None)
    g24 = Game24Env().load_tasks(None)
    assert [t.task_id for t in tasks] == [t.task_id for t in g24] and len(tasks) == 1362
    assert LLMStepsEnv().reset(tasks[0]).question == "Use the numbers 1 1 4 6 and + - * / to make 24."


def test_puzzle_files_and_mixed_directories(tmp_path):
    (tmp_path / "p.csv").write_text("Rank,Puzzles\n1,4 6 8 8\n2,3 3 8 8\n", encoding="utf-8")
    (tmp_path / "d1.jsonl").write_text('{"input": "30,100,93", "output": "23"}\n', encoding="utf-8")
    (tmp_path / "q.jsonl").write_text('\n{"question": "2+2?", "answer": 4}\n', encoding="utf-8")
    env = LLMStepsEnv()
    tasks = env.load_tasks(str(tmp_path))
    assert [t.task_id for t in tasks] == ["d1-0", "p-0", "p-1", "qa-2"]  # natural order; blank line 1 skipped
    states = [env.reset(t) for t in tasks]
    assert states[0].target == 23 and states[3].expected == 4
    assert env.step(states[1], "Answer: (4+8)*(8-6)").reward == 1.0
    assert env.step(states[3], "Answer: 4").reward == 1.0


@pytest.mark.parametrize("lines, match", [
    (['{"question": "a", "answer": 1}', '{"question": "b"}'], r"q\.jsonl:2: missing 'answer'"),
    (['{"question": "a", "answer": 1}', '{"question": "b", "answer": "lots"}'], r"q\.jsonl:2: 'answer' must be a number"),
    (['{"question": "a", "answer": 1}', '{"question": "b", "answer": true}'], r"q\.jsonl:2: 'answer' must be a number"),
    (['{"question": "a", "answer": 1}', '{"question": "b", "answer": NaN}'], r"q\.jsonl:2: 'answer' must be a number"),
    (['{"question": "a", "answer": 1}', '{"question": "", "answer": 1}'], r"q\.jsonl:2: 'question' must be"),
    (['{"question": "a", "answer": 1}', "", '{"question": "b", "answer": 1'], r"q\.jsonl:3: not valid JSON"),
    (['{"question": "a", "answer": 1}', '[1, 2]'], r"q\.jsonl:2: expected a JSON object"),
    (['{"question": "a", "answer": 1}', '{"question": "b", "answer": 2, "id": []}'], r"q\.jsonl:2: 'id' must be"),
    (['{"question": "a", "answer": 1, "id": "x"}', '{"question": "b", "answer": 2, "id": "x"}'], "'x' appears twice"),
    (['{"question": "a", "answer": 1}', "[" * 5000], r"q\.jsonl:2: JSON nested deeper"),
    (['{"numbers": [4, 6, 8, 8], "target": 24}', '{"numbers": [4, "x"], "target": 24}'], r"q\.jsonl:2: bad number"),
    (['{"input": "4,6,8,8", "output": "24"}', '{"question": "b", "answer": 2}'], r"q\.jsonl:2: expected 'numbers'"),
])
def test_bad_task_lines_name_the_line(tmp_path, lines, match):
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(TaskFileError, match=match):
        LLMStepsEnv().load_tasks(str(path))


def test_bad_task_files(tmp_path):
    env = LLMStepsEnv()
    with pytest.raises(TaskFileError, match="not found"):
        env.load_tasks(str(tmp_path / "missing.jsonl"))
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(TaskFileError, match="empty"):
        env.load_tasks(str(tmp_path / "empty.jsonl"))
    bad_csv = tmp_path / "b.csv"
    bad_csv.write_text("Rank,Puzzles\n1,4 6 8 8\n2,4 six 8 8\n", encoding="utf-8")
    with pytest.raises(TaskFileError, match=r"b\.csv:3: bad number"):
        env.load_tasks(str(bad_csv))
    two = tmp_path / "two"
    two.mkdir()
    for name in ("a.jsonl", "b.jsonl"):
        (two / name).write_text('{"question": "q", "answer": 1}\n', encoding="utf-8")
    with pytest.raises(TaskFileError, match="'qa-1' appears twice"):
        env.load_tasks(str(two))


def test_task_from_text():
    env = LLMStepsEnv()
    t = env.task_from_text("4 6 8 8")
    assert t == Task("4 6 8 8", {"numbers": ["4", "6", "8", "8"], "target": "24"})
    assert env.task_from_text("What is 2 + 2?") is None
    with pytest.raises(TaskFileError):
        env.task_from_text("4 6 8")  # Game of 24 takes four numbers; write '4 6 8 -> 24' for Countdown
    assert env.reset(env.task_from_text("4 6 8 -> 24")).numbers == (4, 6, 8)


# ----------------------------------------------------------------------------- with the search engine
def test_search_with_a_scripted_policy_finds_the_answer():
    """A stand-in for an LLM policy: fixed proposals per depth, zero leaf values."""
    from treeq.mcts import SearchConfig, search, zero_evaluate

    env = LLMStepsEnv(max_steps=3)
    script = {0: ["4 + 8 = 12", "Answer: 4*6*8/8"], 1: ["8 - 6 = 2"], 2: ["Answer: 12 * 2", "Answer: (4+8)*(8-6)"]}

    def propose(states, k):
        return [[(a, 1.0 / len(script[len(s.steps)])) for a in script[len(s.steps)]] for s in states]

    result = search(env, puzzle("4 6 8 8", env), SearchConfig(simulations=30), np.random.default_rng(0),
                    propose=propose, evaluate=zero_evaluate)
    assert result.solved  # 4*6*8/8 = 24 uses 4 6 8 8: solved at depth 1
