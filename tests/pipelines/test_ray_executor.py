"""--executor ray: the same rows as the local workers, from a local Ray with two CPUs."""

from __future__ import annotations

import duckdb
import pytest

ray = pytest.importorskip("ray")

ARGS = ["search", "--limit", "4", "--simulations", "150", "--no-progress"]


def table(out, name, order):
    return duckdb.sql(f"SELECT * FROM read_parquet('{out}/{name}/**/*.parquet') ORDER BY {order}").fetchall()


@pytest.mark.slow
def test_ray_gives_the_rows_of_local_workers(tmp_path, run_cli):
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        res = run_cli(*ARGS, "--executor", "ray", "--out", tmp_path / "ray")
        assert res.rc == 0, res.err
    finally:
        ray.shutdown()
    (cfg,) = duckdb.sql(f"SELECT config FROM read_parquet('{tmp_path / 'ray'}/runs/**/*.parquet')").fetchall()[0]
    assert '"executor": "ray"' in cfg
    assert run_cli(*ARGS, "--workers", "2", "--out", tmp_path / "local").rc == 0
    assert table(tmp_path / "ray", "nodes", "task_id, node_id") == table(tmp_path / "local", "nodes", "task_id, node_id")
    keep = "task_id, simulations, nodes, root_value, best_action, solved, backup, status"
    assert duckdb.sql(f"SELECT {keep} FROM read_parquet('{tmp_path / 'ray'}/trees/**/*.parquet') ORDER BY task_id"
                      ).fetchall() == duckdb.sql(
        f"SELECT {keep} FROM read_parquet('{tmp_path / 'local'}/trees/**/*.parquet') ORDER BY task_id").fetchall()


def test_backend_names_the_language_model_only(tmp_path, run_cli):
    """--backend is the LM's backend (hf, openai); --backend ray points to --executor."""
    res = run_cli(*ARGS, "--backend", "ray", "--out", tmp_path / "o")
    assert res.rc == 2 and "--executor ray" in res.err and len(res.err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_bad_executor_and_address(tmp_path, run_cli):
    res = run_cli(*ARGS, "--executor", "dask", "--out", tmp_path / "o")
    assert res.rc == 2 and "executor must be local or ray" in res.err
    res = run_cli(*ARGS, "--executor", "ray", "--address", "ray://127.0.0.1:1", "--out", tmp_path / "o")
    assert res.rc == 2 and "cannot start or reach Ray" in res.err and len(res.err.splitlines()) == 1
