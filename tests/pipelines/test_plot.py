"""plot: budgets by hand, the convergence curve ends at the stored root value, the PNG, errors."""

from __future__ import annotations

import duckdb
import pytest

from treeq.pipelines.plot import budgets, convergence, solved_table


def test_budgets():
    assert budgets(1) == [1]
    assert budgets(100) == [1, 2, 5, 10, 20, 50, 100]
    assert budgets(30) == [1, 2, 5, 10, 20, 30]


def test_curves_end_at_the_recorded_trees_and_the_png(tmp_path, run_cli):
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    assert run_cli("search", "--limit", "3", "--simulations", "60", "--no-solver", "--out", out, "--no-progress",
                   "--workers", "1").rc == 0
    run, curves = convergence(out, tasks=2)
    assert list(curves) == ["24-0", "24-1"]
    stored = dict(duckdb.sql(f"SELECT task_id, coalesce(proven, q) FROM read_parquet('{out}/nodes/**/*.parquet') "
                             f"WHERE node_id = 0").fetchall())
    for task_id, points in curves.items():
        assert [s for s, _ in points] == [1, 2, 5, 10, 20, 50, 60]
        assert points[-1][1] == pytest.approx(stored[task_id])  # same seed, same search
    assert solved_table(out)[0]["tasks"] == 3
    png = tmp_path / "p.png"
    res = run_cli("plot", out, "--out", png, "--tasks", "1")
    assert res.rc == 0 and png.read_bytes()[:4] == b"\x89PNG"
    res = run_cli("plot", out, "--out", tmp_path / "p.jpg")
    assert res.rc == 2 and ".png" in res.err
    res = run_cli("plot", tmp_path / "none")
    assert res.rc == 2
