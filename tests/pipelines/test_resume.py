"""Resume: SIGKILL at random moments, rerun, and the rows equal an uninterrupted run's; --resume and
--config settings; a per-task time limit recorded as 'timeout'."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

import treeq

CLI = Path(treeq.__file__).parent / "cli.py"


def nodes(out: Path) -> list[tuple]:
    return duckdb.sql(f"SELECT task_id, node_id, parent_id, action, visits, value_sum, prior, proven "
                      f"FROM read_parquet('{out}/nodes/**/*.parquet') ORDER BY task_id, node_id").fetchall()


def every_file_whole(out: Path) -> None:
    """What a reader can see (``*.parquet``) is complete; staged files are hidden (``.name.pid.tmp``)."""
    for f in out.rglob("*.parquet"):
        pq.read_table(f)


@pytest.mark.slow
def test_sigkill_five_times_then_the_rows_equal_an_uninterrupted_run(tmp_path, run_cli):
    # tasks of different sizes: the solver off, budgets met in full; two workers
    argv = ["search", "--limit", "120", "--simulations", "40000", "--no-solver", "--no-progress", "--workers", "2"]
    ref = tmp_path / "ref"
    assert run_cli(*argv, "--out", ref).rc == 0
    out = tmp_path / "out"
    rng = np.random.default_rng(7)
    kills = 0
    for _ in range(5):
        # killed mid-job whatever the machine's speed: once this run has written a shard of
        # its own, after a random further 0 to 0.3 s
        before = len(list(out.rglob("*.parquet")))
        proc = subprocess.Popen([sys.executable, str(CLI), *argv, "--out", str(out)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while proc.poll() is None and len(list(out.rglob("*.parquet"))) <= before and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(float(rng.uniform(0.0, 0.3)))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        every_file_whole(out)
    assert kills == 5
    res = run_cli(*argv, "--out", out)
    assert res.rc == 0, res.err
    assert nodes(out) == nodes(ref)
    assert not list(out.rglob("*.tmp"))  # the resumed run removed what the killed ones had staged
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{out}/runs/**/*.parquet')").fetchall() == [(1,)]


def test_rerun_skips_finished_tasks_and_resume_checks_settings(tmp_path, run_cli):
    out = tmp_path / "out"
    assert run_cli("search", "--limit", "3", "--simulations", "80", "--out", out, "--no-progress",
                   "--workers", "1").rc == 0
    res = run_cli("search", "--out", out, "--resume", "--no-progress")  # the recorded settings
    assert res.rc == 0 and "all 3 game24 tasks were on disk already" in res.out
    res = run_cli("search", "--out", out, "--resume", "--simulations", "40", "--no-progress")
    assert res.rc == 2 and "simulations: 40 here, 80 recorded" in res.err and len(res.err.splitlines()) == 1
    res = run_cli("search", "--out", tmp_path / "empty", "--resume")
    assert res.rc == 2 and "no run is recorded" in res.err
    manifest = next(out.glob("runs/*/manifest.json")).read_text()
    assert '"24-0"' in manifest and '"24-2"' in manifest


def test_toml_config_and_flags_override(tmp_path, run_cli):
    cfg = tmp_path / "run.toml"
    cfg.write_text('simulations = 60\nlimit = 2\nenv-kwargs = {}\nselection = "puct"\n')
    out = tmp_path / "out"
    res = run_cli("search", "--config", cfg, "--simulations", "70", "--out", out, "--no-progress", "--workers", "1")
    assert res.rc == 0, res.err
    (config,) = duckdb.sql(f"SELECT config FROM read_parquet('{out}/runs/**/*.parquet')").fetchall()[0]
    assert '"simulations": 70' in config and '"selection": "puct"' in config and '"limit": 2' in config
    cfg.write_text("simulatons = 60\n")
    res = run_cli("search", "--config", cfg, "--out", out)
    assert res.rc == 2 and "unknown setting 'simulatons'" in res.err
    cfg.write_text("simulations = \n")
    res = run_cli("search", "--config", cfg, "--out", out)
    assert res.rc == 2 and "not a readable TOML file" in res.err
    res = run_cli("search", "--config", tmp_path / "nope.toml", "--out", out)
    assert res.rc == 2 and "not found" in res.err


def test_task_timeout_is_recorded_and_the_run_goes_on(tmp_path, run_cli):
    out = tmp_path / "out"
    res = run_cli("search", "--limit", "2", "--simulations", "1000000", "--no-solver", "--task-timeout", "0.3",
                  "--out", out, "--no-progress", "--workers", "1")
    assert res.rc == 0, res.err
    rows = duckdb.sql(f"SELECT task_id, status, error, simulations FROM read_parquet('{out}/trees/**/*.parquet') "
                      f"ORDER BY task_id").fetchall()
    assert [(t, s) for t, s, _, _ in rows] == [("24-0", "timeout"), ("24-1", "timeout")]
    assert all("--task-timeout" in e and 0 < n < 1000000 for _, _, e, n in rows)
    res = run_cli("search", "--task-timeout", "0", "--out", out)
    assert res.rc == 2 and "task_timeout" in res.err
