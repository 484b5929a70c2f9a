"""rollouts: G complete trajectories per task, one row per step, same seed same rows."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from treeq.envs.countdown import Game24Env


def test_game24_groups(tmp_path, run_cli):
    """3 tasks x 4: twelve trajectories of exactly 3 steps each, ending terminated, with keys and priors."""
    out = tmp_path / "r.parquet"
    res = run_cli("rollouts", "--limit", "3", "--group-size", "4", "--out", out, "--no-progress")
    assert res.rc == 0, res.err
    rows = pq.read_table(out).to_pylist()
    assert len({r["trajectory_id"] for r in rows}) == 12 and len({r["group_id"] for r in rows}) == 3
    env = Game24Env()
    for tid in {r["trajectory_id"] for r in rows}:
        steps = [r for r in rows if r["trajectory_id"] == tid]
        assert [r["step"] for r in steps] == [0, 1, 2]
        assert [r["terminated"] for r in steps] == [False, False, True]
        assert len({r["success"] for r in steps}) == 1  # the trajectory's outcome on each of its rows
        assert steps[-1]["success"] == (steps[-1]["reward"] == 1.0)
        first = steps[0]
        start = env.reset(env.task_from_text(first["state_key"].split("left=")[1]))
        assert first["prior"] == pytest.approx(1.0 / len(env.legal_actions(start)))


def test_same_seed_same_rows_and_stochastic_envs(tmp_path, run_cli):
    args = ["rollouts", "--env", "gym:FrozenLake-v1", "--tasks", "0:2", "--group-size", "3", "--max-steps", "20",
            "--no-progress"]
    assert run_cli(*args, "--out", tmp_path / "a.parquet").rc == 0
    assert run_cli(*args, "--out", tmp_path / "b.parquet").rc == 0
    a, b = pq.read_table(tmp_path / "a.parquet"), pq.read_table(tmp_path / "b.parquet")
    assert a.equals(b)
    rows = a.to_pylist()
    for tid in {r["trajectory_id"] for r in rows}:
        last = [r for r in rows if r["trajectory_id"] == tid][-1]
        assert last["terminated"] or last["truncated"]


def test_bad_input(tmp_path, run_cli):
    res = run_cli("rollouts", "--group-size", "0", "--out", tmp_path / "x.parquet")
    assert res.rc == 2 and "group_size" in res.err
    res = run_cli("rollouts", "--policy", "oracle", "--out", tmp_path / "x.parquet")
    assert res.rc == 2 and "proposer must be one of" in res.err
    res = run_cli("rollouts", "--out", tmp_path / "x.csv")
    assert res.rc == 2 and ".parquet" in res.err


def test_progress_bar_counts_trajectories(tmp_path, run_cli):
    """One task of a large group: the bar moves by trajectories, not once per task."""
    res = run_cli("rollouts", "--limit", "1", "--group-size", "300", "--out", tmp_path / "r.parquet")
    assert res.rc == 0, res.err
    assert "300/300" in res.err and "traj" in res.err


def test_a_large_group_is_written_in_chunks_as_one_group(tmp_path, run_cli):
    """A group beyond one write (600 trajectories) gives the rows of the whole group, ids 0..599 in order."""
    import pyarrow as pa

    from treeq.mcts import SearchConfig, resolve_defaults
    from treeq.pipelines.config import RolloutConfig
    from treeq.pipelines.rollouts import ROLLOUT_SCHEMA, group_rows, sample_group

    out = tmp_path / "r.parquet"
    assert run_cli("rollouts", "--limit", "1", "--group-size", "600", "--out", out, "--no-progress").rc == 0
    env = Game24Env()
    task = next(iter(env.load_tasks(None)))
    cfg = RolloutConfig(env="game24", limit=1, group_size=600, out=str(out))
    whole = pa.table(group_rows(env, task, sample_group(env, task, cfg, resolve_defaults(SearchConfig(), env)), cfg.max_steps), schema=ROLLOUT_SCHEMA)
    assert pq.read_table(out).cast(ROLLOUT_SCHEMA).equals(whole)
    assert whole["trajectory_id"][-1].as_py() == f"{task.task_id}/599"
