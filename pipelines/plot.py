"""Plots of a store (``plot``): root-value convergence over simulations and the solved-rate table.

The store keeps each tree as it ended, not how it grew; but a search is a function of
its seed, and a search with a smaller budget is exactly the first simulations of the
larger one (same generator, same waves). So the convergence curve of a task is read by
searching it again with budgets 1, 2, 5, 10, 20, ... up to the recorded one and taking
the root's value (``coalesce(proven, q)``) after each: the exact curve of the recorded
search, at the cost of about twice one search per task (``--tasks``, the first tasks of
the run in the search's order: 24-2 before 24-10). The table counts, per run: tasks,
solved, solved rate, mean simulations and nodes, and failed or timed-out tasks. One PNG
(matplotlib, no display needed), the table as high as its rows, long run ids elided.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ..data.store import connect
from ..errors import ConfigError, StoreError

__all__ = ["budgets", "convergence", "solved_table", "figure", "plot"]


def budgets(total: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, ... below ``total``, then ``total``."""
    out, base = [], 1
    while base < total:
        out += [b for b in (base, 2 * base, 5 * base) if b < total]
        base *= 10
    return out + [total]


def solved_table(out: str | Path) -> list[dict[str, Any]]:
    """Per run: env, tasks, solved, rate, mean simulations and nodes, errors and timeouts."""
    con = connect(out)
    try:
        rows = con.execute(
            "SELECT run_id, any_value(env), count(*), sum(solved::INT), avg(simulations), avg(nodes), "
            "sum((status = 'error')::INT), sum((status = 'timeout')::INT) FROM trees GROUP BY run_id ORDER BY run_id"
        ).fetchall()
    finally:
        con.close()
    return [{"run": r, "env": e, "tasks": n, "solved": s or 0, "rate": (s or 0) / n if n else 0.0,
             "simulations": sims or 0.0, "nodes": nodes or 0.0, "errors": err or 0, "timeouts": to or 0}
            for r, e, n, s, sims, nodes, err, to in rows]


def convergence(out: str | Path, tasks: int = 4, run_id: str | None = None) -> tuple[str, dict[str, list]]:
    """``(run_id, {task_id: [(simulations, root value), ...]})`` for the first ``tasks`` tasks of a run
    (first in the order the search took them) that ended ``ok``."""
    from ..data.runs import recorded_runs
    from ..envs.registry import make_env
    from ..mcts.search import search
    from ..mcts.tree import ROOT
    from .policies import make_hooks
    from .search import job_from_record, task_rng

    runs = recorded_runs(out)
    if not runs:
        raise StoreError(f"{out} records no run")
    if run_id is None:
        run_id, config, _ = runs[-1]
    else:
        match = [r for r in runs if r[0] == run_id]
        if not match:
            raise StoreError(f"no run {run_id!r} in {out} (runs there: {', '.join(r[0] for r in runs)})")
        config = match[0][1]
    job = job_from_record(config)
    env = make_env(job.env, **job.env_kwargs)
    all_tasks = {t.task_id: t for t in env.load_tasks(job.tasks)}
    con = connect(out)
    try:
        ok = {t for (t,) in con.execute("SELECT task_id FROM trees WHERE run_id = ? AND status = 'ok'",
                                        [run_id]).fetchall()}
    finally:
        con.close()
    # the search's own task order (24-2 before 24-10), not the ids' string order
    done = [t for t in all_tasks if t in ok][:tasks]
    curves: dict[str, list] = {}
    for task_id in done:
        task = all_tasks[task_id]
        points = []
        for b in budgets(job.search.simulations):
            cfg = replace(job.search, simulations=b)
            rng = task_rng(job.seed, task_id)
            propose, evaluate = make_hooks(env, cfg, rng, job.evaluator, job.proposer, job.lm)
            result = search(env, env.reset(task, rng), cfg, rng, propose=propose, evaluate=evaluate)
            value = float(result.tree.label()[ROOT])
            points.append((result.simulations, value))
            if result.simulations < b:  # the search ended early (proven, stopped): the curve is complete
                break
        curves[task_id] = points
    return run_id, curves


def _fit(text: str, width: int = 34) -> str:
    """``text`` in at most ``width`` characters: the middle elided (a run id keeps its env and hash)."""
    return text if len(text) <= width else text[: width // 2 - 1] + "\u2026" + text[-(width - width // 2):]


def figure(run: str, curves: dict[str, list], table: list[dict[str, Any]]):
    """The matplotlib figure: the curves over the table, the table's height following its rows."""
    import matplotlib.pyplot as plt

    rows = len(table) + 1
    fig, (ax, tab) = plt.subplots(2, 1, figsize=(9, 5.2 + 0.3 * rows), layout="constrained",
                                  gridspec_kw={"height_ratios": [5.2, 0.3 * rows]})
    for task_id, points in curves.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", ms=3, label=task_id)
    ax.set_xscale("log")
    ax.set_xlabel("simulations")
    ax.set_ylabel("root value, coalesce(proven, q)")
    ax.set_title(f"root value as the search grows (run {_fit(run, 60)})")
    if curves:
        ax.legend(fontsize=8, title="task")
    tab.axis("off")
    cells = [[_fit(r["run"]), _fit(r["env"], 24), f"{r['tasks']:,}", f"{r['solved']:,}", f"{100 * r['rate']:.1f}%",
              f"{r['simulations']:,.0f}", f"{r['nodes']:,.0f}", f"{r['errors']} / {r['timeouts']}"] for r in table]
    if cells:
        t = tab.table(cellText=cells, colLabels=["run", "env", "tasks", "solved", "rate", "mean sims", "mean nodes",
                                                 "errors / timeouts"], bbox=(0, 0, 1, 1))
        t.auto_set_font_size(False)
        t.set_fontsize(8)
        t.auto_set_column_width(list(range(len(cells[0]))))  # each column as wide as its text
    return fig


def plot(out: str | Path, path: str | Path = "treeq-plot.png", tasks: int = 4, run_id: str | None = None
         ) -> tuple[Path, list[dict[str, Any]]]:
    """Write the PNG; return its path and the solved-rate rows.

    Raises:
        ConfigError: ``tasks`` < 1 or ``path`` not a ``.png``.
        StoreError: the store cannot be read or records no run.
    """
    if tasks < 1:
        raise ConfigError(f"--tasks must be >= 1, got {tasks}")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"--out must end in .png, got {str(path)!r}")
    import matplotlib

    matplotlib.use("Agg")

    table = solved_table(out)
    fig = figure(*convergence(out, tasks, run_id), table)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=110)
    return path, table


def save_figure(fig, path: Path, **savefig_kwargs) -> None:
    """Save a matplotlib figure whole or not at all (a temporary file, then a rename), and close it."""
    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, **savefig_kwargs)
    finally:
        plt.close(fig)
    tmp.replace(path)
