"""benchmarks/prm_lookup_probe.py: its rule labels, hand-checked, and a smoke run whose last line has the
documented form; trees of another env get one line and exit 2.

No wall-clock figure and no AUROC level is asserted.
"""

from __future__ import annotations

import re
import runpy
from pathlib import Path

from treeq.envs.blocksworld import TASKS_DIR
from treeq.prm.dataset import StepExample

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "prm_lookup_probe.py"


def _module():
    return runpy.run_path(str(SCRIPT), run_name="prm_lookup_probe")


def test_rule_labels_read_the_action_and_the_goal():
    prompt = ("As initial conditions I have that, ...\nMy goal is to have that the red block is on top of the blue "
              "block and the blue block is on top of the yellow block.\n\nMy plan is as follows:\n\n[PLAN]")
    steps = ["pick up the red block\nI have that, the hand is currently holding red block.",
             "stack the red block on top of the orange block\nI have that, the hand is empty.",
             "unstack the orange block from on top of the red block\nI have that, the hand is currently holding "
             "orange block.",
             "put down the blue block\nI have that, the red block is on top of the blue block."]
    ex = StepExample(task_id="t", env="blocksworld", prompt=prompt, steps=steps, labels=[0.0] * 4, visits=[1] * 4,
                     owned=[True] * 4, nodes=[0, 1, 2, 3], parents=[-1, 0, 1, 2])
    relabel = _module()["relabel"]
    fmt = "action+observation"
    assert relabel(ex, "kind", fmt).labels == [1.0, 0.0, 0.0, 0.0]
    assert relabel(ex, "red", fmt).labels == [1.0, 1.0, 0.0, 0.0]  # the block moved, not a block named
    assert relabel(ex, "goal-subject", fmt).labels == [1.0, 1.0, 0.0, 1.0]  # red and blue are subjects


def test_probe_smoke_and_foreign_trees(run_cli, tmp_path, capsys):
    trees = tmp_path / "trees"
    assert run_cli("search", "--env", "blocksworld", "--tasks", TASKS_DIR / "4-5", "--limit", "10", "--simulations",
                   "60", "--workers", "1", "--no-progress", "--out", trees).rc == 0
    main = _module()["main"]
    assert main([str(trees), "--label", "red", "--steps", "2", "--window", "16", "--seed", "1"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"label red, window 16, 2 steps: AUROC \S+ \((\w+ \S+, )*\w+ \S+\)", last), last
    g24 = tmp_path / "g24"
    assert run_cli("search", "--limit", "3", "--simulations", "300", "--workers", "1", "--no-progress",
                   "--out", g24).rc == 0
    capsys.readouterr()
    assert main([str(g24)]) == 2
    assert capsys.readouterr().err.strip() == "error: this script reads Blocksworld trees only"
    assert main([str(trees), "--steps", "0"]) == 2  # refused before any training
    assert capsys.readouterr().err.strip() == "error: max_steps must be >= 1, got 0"
    assert main([str(trees), "--val-paths", "-1"]) == 2  # not a slice from the end
    assert capsys.readouterr().err.strip() == "error: --val-paths must be >= 1, got -1"
