"""benchmarks/prm_lookup_probe.py: its rule labels and the oracle's step features, hand-checked, and smoke
runs (training, and ``--oracle``) whose output has the documented form; trees of another env get one line
and exit 2.

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


def _path(prompt: str, steps: list[str]) -> StepExample:
    n = len(steps)
    return StepExample(task_id="t", env="blocksworld", prompt=prompt, steps=steps, labels=[0.0] * n, visits=[1] * n,
                       owned=[True] * n, nodes=list(range(n)), parents=list(range(-1, n - 1)))


def test_rule_labels_read_the_action_and_the_goal():
    prompt = ("As initial conditions I have that, ...\nMy goal is to have that the red block is on top of the blue "
              "block and the blue block is on top of the yellow block.\n\nMy plan is as follows:\n\n[PLAN]")
    steps = ["pick up the red block\nI have that, the hand is currently holding red block.",
             "stack the red block on top of the orange block\nI have that, the hand is empty.",
             "unstack the orange block from on top of the red block\nI have that, the hand is currently holding "
             "orange block.",
             "put down the blue block\nI have that, the red block is on top of the blue block."]
    ex = _path(prompt, steps)
    relabel = _module()["relabel"]
    fmt = "action+observation"
    assert relabel(ex, "kind", fmt).labels == [1.0, 0.0, 0.0, 0.0]
    assert relabel(ex, "red", fmt).labels == [1.0, 1.0, 0.0, 0.0]  # the block moved, not a block named
    assert relabel(ex, "goal-subject", fmt).labels == [1.0, 1.0, 0.0, 1.0]  # red and blue are subjects


GOAL = "My goal is to have that the red block is on top of the blue block and the blue block is on top of the yellow block."


def test_step_features_read_the_state_before_and_after():
    prompt = ("As initial conditions I have that, the red block is clear, the blue block is clear, the hand is empty, "
              "the red block is on top of the yellow block, the blue block is on the table and the yellow block is on "
              f"the table.\n{GOAL}\n\nMy plan is as follows:\n\n[PLAN]")
    steps = ["unstack the red block from on top of the yellow block\nI have that, the hand is currently holding red "
             "block, the blue block is on the table and the yellow block is on the table.",
             "put down the red block\nI have that, the hand is empty, the red block is on the table, the blue block "
             "is on the table and the yellow block is on the table.",
             "pick up the blue block\nI have that, the hand is currently holding blue block, the red block is on the "
             "table and the yellow block is on the table.",
             "stack the blue block on top of the yellow block\nI have that, the hand is empty, the blue block is on "
             "top of the yellow block, the red block is on the table and the yellow block is on the table.",
             "pick up the red block\nI have that, the hand is currently holding red block, the blue block is on top "
             "of the yellow block and the yellow block is on the table.",
             "stack the red block on top of the blue block\nI have that, the hand is empty, the red block is on top "
             "of the blue block, the blue block is on top of the yellow block and the yellow block is on the table."]
    features = _module()["step_features"](_path(prompt, steps), "action+observation")
    # (kind, goal subject, target in its final place, goal atom built or broken, moved block in its final place)
    assert features == [
        ("unstack", True, True, False, False),  # yellow has no goal atom and rests on the table: placed
        ("put", True, True, False, False),  # the table is always placed; red belongs on blue
        ("pick", True, True, False, False),
        ("stack", True, True, True, True),  # builds blue-on-yellow, and blue is then placed
        ("pick", True, True, False, False),
        ("stack", True, True, True, True),
    ]
    # a target that is not in its final place: red rests on the table but belongs on blue
    prompt2 = ("As initial conditions I have that, the blue block is clear, the yellow block is clear, the hand is "
               "empty, the blue block is on top of the red block, the red block is on the table and the yellow block "
               f"is on the table.\n{GOAL}\n\nMy plan is as follows:\n\n[PLAN]")
    step = ("unstack the blue block from on top of the red block\nI have that, the hand is currently holding blue "
            "block, the red block is on the table and the yellow block is on the table.")
    assert _module()["step_features"](_path(prompt2, [step]), "action+observation") == [
        ("unstack", True, False, False, False)]


def test_probe_smoke_and_foreign_trees(run_cli, tmp_path, capsys):
    trees = tmp_path / "trees"
    assert run_cli("search", "--env", "blocksworld", "--tasks", TASKS_DIR / "4-5", "--limit", "10", "--simulations",
                   "60", "--workers", "1", "--no-progress", "--out", trees).rc == 0
    main = _module()["main"]
    assert main([str(trees), "--label", "red", "--steps", "2", "--window", "16", "--seed", "1"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"label red, window 16, 2 steps: AUROC \S+ \((\w+ \S+, )*\w+ \S+\)", last), last
    assert main([str(trees), "--oracle", "--seed", "1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 7 and out[0].split() == ["features", "within-depth", "within-parent"]
    assert re.fullmatch(r"oracle: kind alone \S+, all features \S+ \(within-depth AUROC on [\d,]+ held-out steps\)",
                        out[-1]), out[-1]
    g24 = tmp_path / "g24"
    assert run_cli("search", "--limit", "3", "--simulations", "300", "--workers", "1", "--no-progress",
                   "--out", g24).rc == 0
    capsys.readouterr()
    for extra in ([], ["--oracle"]):
        assert main([str(g24), *extra]) == 2
        assert capsys.readouterr().err.strip() == "error: this script reads Blocksworld trees only"
    assert main([str(trees), "--steps", "0"]) == 2  # refused before any training
    assert capsys.readouterr().err.strip() == "error: max_steps must be >= 1, got 0"
    assert main([str(trees), "--val-paths", "-1"]) == 2  # not a slice from the end
    assert capsys.readouterr().err.strip() == "error: --val-paths must be >= 1, got -1"
