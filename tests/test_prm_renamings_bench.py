"""benchmarks/prm_renamings.py: the structure of an instance (the same for every renaming of its blocks,
different for a different instance), and a smoke run on a tiny PRM whose last line has the documented form.

No wall-clock figure is asserted.
"""

from __future__ import annotations

import re
import runpy
from pathlib import Path

from treeq.envs.blocksworld import TASKS_DIR, BlocksworldEnv

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "prm_renamings.py"
ENV = BlocksworldEnv()
PROBLEM = """(define (problem p) (:domain blocksworld-4ops) (:objects a b c d)
(:init (handempty) (on a b) (ontable b) (ontable c) (on d c) (clear a) (clear d))
(:goal (and (on b a) (on c d))))"""


def _structure(tmp_path, text, name):
    module = runpy.run_path(str(SCRIPT), run_name="prm_renamings")
    (tmp_path / f"{name}.pddl").write_text(text)
    return module["structure"](ENV.reset(ENV.load_tasks(tmp_path / f"{name}.pddl")[0]))


def test_structure_is_the_instance_up_to_a_renaming(tmp_path):
    base = _structure(tmp_path, PROBLEM, "p")
    swapped = """(define (problem p) (:domain blocksworld-4ops) (:objects a b c d)
(:init (handempty) (on c b) (ontable b) (ontable a) (on d a) (clear c) (clear d))
(:goal (and (on b c) (on a d))))"""  # a and c swapped
    assert _structure(tmp_path, swapped, "q") == base
    other = PROBLEM.replace("(on c d)", "(on d c)")  # a different goal
    assert _structure(tmp_path, other, "r") != base
    # hand-checked: a on b, d on c is two towers of two; the least labelling puts them first
    n, start, goal = base
    assert n == 4 and sorted(start).count(-1) == 2 and len(goal) == 2


def test_prm_renamings_smoke(run_cli, tmp_path, capsys):
    trees, prm = tmp_path / "trees", tmp_path / "prm"
    assert run_cli("search", "--env", "blocksworld", "--tasks", TASKS_DIR / "4-5", "--limit", "12", "--simulations",
                   "60", "--workers", "1", "--no-progress", "--out", trees).rc == 0
    assert run_cli("train-prm", trees, "--out", prm, "--max-steps", "5", "--val-fraction", "0.4", "--best-of-n", "0",
                   "--labels", "optimal", "--max-length", "1024", "--hidden-size", "32", "--layers", "1", "--heads",
                   "2", "--vocab-size", "300", "--no-progress").rc == 0
    module = runpy.run_path(str(SCRIPT), run_name="prm_renamings")
    rc = module["main"]([str(prm), "--trees", str(trees), "--val-fraction", "0.4", "--labels", "optimal"])
    out = capsys.readouterr().out
    assert rc == 0, out
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(r"within-depth AUROC: all \S+ \(\d+ instances\), renamings \S+ \(\d+ instances\), "
                        r"new structures \S+ \(\d+ instances\)", last), last
