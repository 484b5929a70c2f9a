"""plot: budgets by hand, the convergence curve ends at the stored root value (tasks in the search's order),
the figure's table (text inside its cells, no empty band), the PNG, errors."""

from __future__ import annotations

import duckdb
import pytest

from treeq.pipelines.plot import budgets, convergence, figure, solved_table


def test_budgets():
    assert budgets(1) == [1]
    assert budgets(100) == [1, 2, 5, 10, 20, 50, 100]
    assert budgets(30) == [1, 2, 5, 10, 20, 30]


def test_curves_end_at_the_recorded_trees_and_the_png(tmp_path, run_cli):
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    assert run_cli("search", "--limit", "12", "--simulations", "60", "--no-solver", "--out", out, "--no-progress",
                   "--workers", "1").rc == 0
    run, curves = convergence(out, tasks=3)
    assert list(curves) == ["24-0", "24-1", "24-2"]  # the search's order, not the ids' ("24-10" < "24-2")
    stored = dict(duckdb.sql(f"SELECT task_id, coalesce(proven, q) FROM read_parquet('{out}/nodes/**/*.parquet') "
                             f"WHERE node_id = 0").fetchall())
    for task_id, points in curves.items():
        assert [s for s, _ in points] == [1, 2, 5, 10, 20, 50, 60]
        assert points[-1][1] == pytest.approx(stored[task_id])  # same seed, same search
    assert solved_table(out)[0]["tasks"] == 12
    png = tmp_path / "p.png"
    res = run_cli("plot", out, "--out", png, "--tasks", "1")
    assert res.rc == 0 and png.read_bytes()[:4] == b"\x89PNG"
    res = run_cli("plot", out, "--out", tmp_path / "p.jpg")
    assert res.rc == 2 and ".png" in res.err
    res = run_cli("plot", tmp_path / "none")
    assert res.rc == 2


def test_the_table_fits_its_cells_and_follows_the_curves():
    """A long run id and env stay inside their cells; the table sits right under the curves (no empty band)."""
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = "gym-FrozenLake-v1-with-a-long-name-4b3dfce5cec9"
    row = {"env": "gym:FrozenLake-with-a-long-name-v1", "tasks": 1362, "solved": 1361, "rate": 0.999,
           "simulations": 1000.0, "nodes": 12345.0, "errors": 0, "timeouts": 1}
    table = [dict(row, run=run), dict(row, run="game24-e89f3b6357dc", env="game24")]
    fig = figure(run, {"24-0": [(1, 0.0), (10, 0.5)]}, table)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax, tab = fig.axes
    cells = tab.tables[0].get_celld()
    assert len(cells) == 3 * 8
    for cell in cells.values():
        box, text = cell.get_window_extent(renderer), cell.get_text().get_window_extent(renderer)
        assert box.x0 <= text.x0 and text.x1 <= box.x1, cell.get_text().get_text()
    table_top = max(c.get_window_extent(renderer).y1 for c in cells.values())
    curves_bottom = ax.get_tightbbox(renderer).y0  # the x label included
    assert 0 <= curves_bottom - table_top < 0.05 * fig.bbox.height
    plt.close(fig)
