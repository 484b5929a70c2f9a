"""The PDDL reader (``treeq.envs.blocksworld.pddl``): malformed files name file and line; nesting is bounded."""

from __future__ import annotations

import pytest
from blocksworld_cases import ENV, PROBLEM

from treeq.envs.base import Task
from treeq.envs.blocksworld.exact import optimal_plan_length
from treeq.envs.blocksworld.pddl import parse_problem
from treeq.envs.taskfiles import MAX_DEPTH
from treeq.errors import TaskFileError


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



def test_nesting_past_the_limit_is_refused_not_recursed(tmp_path):
    path = tmp_path / "deep.pddl"
    path.write_text("(" * 5000 + ")" * 5000, encoding="utf-8")
    with pytest.raises(TaskFileError, match=rf"deep.pddl:1: parentheses nested deeper than {MAX_DEPTH} levels"):
        ENV.load_tasks(path)
    lines = "(define (problem p)\n" + "(\n" * 5000
    with pytest.raises(TaskFileError, match=rf"inline:{MAX_DEPTH + 1}: parentheses nested deeper"):
        parse_problem(lines, "inline")


def test_nesting_up_to_the_limit_is_read():
    """At the limit the reader goes on, and the file fails for what it says, not its depth."""
    at_limit = "(" * MAX_DEPTH + ")" * MAX_DEPTH
    with pytest.raises(TaskFileError, match="expected") as exc:
        parse_problem(at_limit, "inline")
    assert "nested" not in str(exc.value)
    with pytest.raises(TaskFileError, match="nested deeper"):
        parse_problem("(" + at_limit + ")", "inline")
