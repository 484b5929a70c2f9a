"""self-train: the loop end to end on a small split, its outputs, its refusals and its resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from treeq.envs.registry import make_env
from treeq.errors import ConfigError
from treeq.pipelines.config import SelfTrainConfig
from treeq.pipelines.self_train import ROUNDS_COLUMNS, greedy_pass1, rounds_markdown, split_tasks

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--env", "game24", "--limit", "6", "--holdout", "4", "--eval-limit", "3", "--rounds", "1",
         "--simulations", "30", "--eval-budgets", "2,8", "--prm-steps", "4", "--policy-steps", "2", "--workers", "1",
         "--no-progress"]


def test_the_split_holds_out_tasks_by_seed_and_never_overlaps():
    env = make_env("game24")
    train, held = split_tasks(env, SelfTrainConfig(holdout=200, split_seed=7))
    assert len(held) == 200 and len(train) == len(env.load_tasks(None)) - 200
    assert not {t.task_id for t in train} & {t.task_id for t in held}
    again, held2 = split_tasks(env, SelfTrainConfig(holdout=200, split_seed=7))
    assert [t.task_id for t in held2] == [t.task_id for t in held]
    assert [t.task_id for t in split_tasks(env, SelfTrainConfig(holdout=200, split_seed=8))[1]] != \
        [t.task_id for t in held]


def test_an_eval_set_that_overlaps_training_is_refused(tmp_path):
    """The same puzzle under another id is an overlap too (same start state)."""
    env = make_env("game24")
    (tmp_path / "eval.csv").write_text("Rank,Puzzles\n1,8 3 1 1\n")  # the shipped 1 1 3 8, reordered
    with pytest.raises(ConfigError, match="held-out tasks are training tasks too"):
        split_tasks(env, SelfTrainConfig(eval_tasks=str(tmp_path / "eval.csv")))


@pytest.mark.parametrize("argv,said", [
    (["--rounds", "0"], "rounds must be >= 1"),
    (["--model", "/no/such/model"], "/no/such/model"),
    (["--method", "ppo"], "method must be one of distill, sft, dpo"),
    (["--eval-budgets", "8,x"], "--eval-budgets must be integers"),
    (["--holdout", "5000"], "leaves none of the"),
])
def test_bad_input_is_one_line(run_cli, tmp_path, argv, said):
    got = run_cli("self-train", "--out", tmp_path / "o", "--no-progress", *argv)
    assert got.rc == 2, got.err
    assert said in got.err and len(got.err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_greedy_pass1_of_uniform_priors_takes_the_first_action_each_step():
    """Hand-checked: uniform priors tie, so the first legal action is taken; on 1 1 4 6 that is 1 + 1 = 2, then
    2 + 4 = 6 (left: 6 6), then 6 + 6 = 12: a loss. The share is over the tasks given."""
    env = make_env("game24")
    task = next(t for t in env.load_tasks(None) if env.render(env.reset(t)).endswith("Input: 1 1 4 6\nSteps:"))
    assert greedy_pass1(env, [task], None, 0) == 0.0


def test_rounds_markdown_has_a_line_per_round():
    rows = [dict(zip(ROUNDS_COLUMNS, (r, b, 4, s, s / 4, 3.0, 0.25, 0.8, 1.0, 2.0, 3.0, 4.0, "p", "prm")))
            for r, b, s in ((0, 8, 1), (0, 16, 2), (1, 8, 3), (1, 16, 4))]
    md = rounds_markdown(rows).splitlines()
    assert md[0].startswith("| round | solved@8 | solved@16 |") and len(md) == 4
    assert md[3].startswith("| 1 | 3/4 (75.0%) | 4/4 (100.0%) | 3.0 | 25.0% | 0.800 |")


@pytest.mark.slow
def test_a_killed_run_resumes_without_redoing_a_finished_stage(tmp_path):
    """SIGKILL once the first search is recorded; the rerun skips what was done and finishes every round."""
    out = tmp_path / "st"
    cmd = [sys.executable, str(ROOT / "cli.py"), "self-train", *SMALL, "--out", str(out)]
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    state = out / "self_train.json"
    deadline = time.time() + 300
    while time.time() < deadline:
        if state.exists() and "round 0 search" in json.loads(state.read_text())["stages"]:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = set(json.loads(state.read_text())["stages"])
    assert "round 0 search" in done and "round 1 eval" not in done
    got = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert got.returncode == 0, got.stderr[-2000:]
    for name in done:
        assert f"{name}: done before" in got.stdout
    table = pq.read_table(out / "rounds.parquet").to_pylist()
    assert [(r["round"], r["budget"]) for r in table] == [(0, 2), (0, 8), (1, 2), (1, 8)]
    assert all(r["tasks"] == 3 for r in table)
    assert (out / "rounds.png").stat().st_size > 1000
    md = (out / "rounds.md").read_text()
    assert md.count("\n") == 4 and "| 1 |" in md
    # a third run has nothing to do, and says so
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.count("done before") == len(json.loads(state.read_text())["stages"])
    other = subprocess.run(cmd[:-1] + [str(out), "--seed", "3"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert other.returncode == 2 and "other settings" in other.stderr
