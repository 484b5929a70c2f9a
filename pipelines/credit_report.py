"""``credit-bench``'s report: a markdown table shaped like the surveys' method table, and two plots.

The table has one row per estimator at the largest group size and largest budget: what
it needs (a critic, extra rollouts, memory), the env steps it spent, and its measured
precision against A^pi and A*, each a mean over seeds with its 95% interval. The plots:
quality against env steps spent (one line per estimator), and GiGPO's anchor coverage
and quality against the group size.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from .credit_metrics import interval

__all__ = ["write_report", "summarise"]


def _fmt(mean: float, half: float, digits: int = 2) -> str:
    if mean is None or math.isnan(mean):
        return "n/a"
    return f"{mean:.{digits}f} ± {half:.{digits}f}" if half else f"{mean:.{digits}f}"


def summarise(results: list[dict]) -> dict[tuple, dict[str, tuple[float, float]]]:
    """(estimator, group_size, rollouts, reference) -> metric -> (mean over seeds, 95% half-width); env_steps too."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in results:
        groups[(r["estimator"], r["group_size"], r["rollouts"], r["reference"])].append(r)
    out = {}
    for key, rows in groups.items():
        out[key] = {m: interval([r[m] for r in rows])
                    for m in ("spearman", "kendall", "auroc", "sign_agreement", "nmse", "coverage", "env_steps")}
    return out


def _headline(summary, estimator: str, g: int, budgets: dict[str, int]) -> tuple | None:
    b = budgets.get(estimator, 0)
    a_pi, a_star = summary.get((estimator, g, b, "a_pi")), summary.get((estimator, g, b, "a_star"))
    return (b, a_pi, a_star) if a_pi and a_star else None


# the GiGPO variants whose anchor coverage the report draws against group size, and what their anchor is
_ANCHORS = (("gigpo", "state key"), ("gigpo_obs", "observation text"), ("gigpo_sim", "similar observations"))


def write_report(results: list[dict], out: Path, cfg, seconds: float, env_name: str) -> list[str]:
    """Write ``table.md``, ``quality_vs_steps.png`` and ``gigpo_group_size.png``; return the summary lines."""
    from ..data.store import write_text_atomic
    from .credit_bench import ESTIMATORS

    summary = summarise(results)
    g_max = max(cfg.group_sizes)
    budgets = {"mc": max(cfg.mc_rollouts), "gae": max(cfg.mc_rollouts), "mcts_q": max(cfg.simulations),
               "mcts_q_or_gigpo": max(cfg.simulations)}
    head = (f"credit-bench {env_name}, policy {cfg.policy_label}, {cfg.limit or 'all'} tasks x {cfg.seeds} seeds, "
            f"group size {g_max}, horizon {cfg.max_steps}")
    lines = [f"# {head}", "",
             "| estimator | needs a critic | extra rollouts | memory | env steps | Spearman vs A^pi | "
             "Kendall tau-b vs A* | within-state AUROC vs A* | sign agreement vs A* | nMSE vs A^pi | coverage |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    ranked = []
    for name in cfg.estimators:
        h = _headline(summary, name, g_max, budgets)
        if h is None:
            continue
        b, a_pi, a_star = h
        critic, extra, memory = ESTIMATORS[name]
        label = f"{name}@{b}" if b else name
        lines.append(f"| {label} | {critic} | {extra} | {memory} | {a_pi['env_steps'][0]:,.0f} | "
                     f"{_fmt(*a_pi['spearman'])} | {_fmt(*a_star['kendall'])} | {_fmt(*a_star['auroc'])} | "
                     f"{_fmt(*a_star['sign_agreement'])} | {_fmt(*a_pi['nmse'])} | {_fmt(*a_pi['coverage'])} |")
        ranked.append((a_star["auroc"][0], label, a_pi["spearman"][0]))
    lines += ["", f"± : 95% interval over {cfg.seeds} seeds. Metrics at group size {g_max}; mc at K = "
              f"{budgets['mc']} (gae too), mcts_q at S = {budgets['mcts_q']} simulations.", ""]
    for name, anchor in _ANCHORS:
        curve = [(g, summary.get((name, g, 0, "a_pi")), summary.get((name, g, 0, "a_star"))) for g in cfg.group_sizes]
        if all(a and b for _, a, b in curve):
            lines.append(f"{name} ({anchor}) against group size: " + "; ".join(
                f"G={g}: coverage {a['coverage'][0]:.2f}, Spearman vs A^pi {a['spearman'][0]:.2f}, "
                f"AUROC vs A* {b['auroc'][0]:.2f}" for g, a, b in curve))
    write_text_atomic(out / "table.md", "\n".join(lines) + "\n")
    _plots(summary, cfg, out, env_name)
    ranked = [r for r in ranked if not math.isnan(r[0])]
    ranked.sort(reverse=True)
    printed = [line for line in lines[2:] if line.startswith("|")] + [
        f"wrote {out}/results.parquet, steps.parquet, table.md and two plots in {seconds:.0f} s"]
    if ranked:
        best = ranked[0]
        printed.append(f"best within-state AUROC vs A*: {best[1]} {best[0]:.3f} (Spearman vs A^pi {best[2]:.3f})")
    return printed


def _plots(summary, cfg, out: Path, env_name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plot import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, (ref, metric, title) in zip(axes, (("a_pi", "spearman", "Spearman vs A^pi"),
                                                ("a_star", "auroc", "within-state AUROC vs A*"))):
        for name in cfg.estimators:
            if name in ("mc", "gae"):
                series = [summary.get((name, max(cfg.group_sizes), k, ref)) for k in cfg.mc_rollouts]
            elif name.startswith("mcts_q"):
                series = [summary.get((name, max(cfg.group_sizes), s, ref)) for s in cfg.simulations]
            else:
                series = [summary.get((name, g, 0, ref)) for g in cfg.group_sizes]
            pts = [(s["env_steps"][0], s[metric][0]) for s in series if s and not math.isnan(s[metric][0])]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=name)
        ax.set_xscale("log")
        ax.set_xlabel("env steps spent")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize=8)
    fig.suptitle(f"{env_name}: advantage estimators against exact advantages ({cfg.policy_label})")
    fig.tight_layout()
    save_figure(fig, out / "quality_vs_steps.png", dpi=100)

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for (name, anchor), color in zip(_ANCHORS, ("C0", "C1", "C2")):
        rows = [(g, summary.get((name, g, 0, "a_pi"))) for g in cfg.group_sizes]
        rows = [(g, s) for g, s in rows if s]
        if rows:
            gs = [g for g, _ in rows]
            ax.plot(gs, [s["spearman"][0] for _, s in rows], marker="o", color=color,
                    label=f"{name}: Spearman vs A^pi")
            ax.plot(gs, [s["coverage"][0] for _, s in rows], marker="s", ls="--", color=color,
                    label=f"{name}: coverage ({anchor})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("group size G")
    ax.set_ylim(-0.05, 1.05)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.set_title(f"{env_name}: GiGPO against group size")
    fig.tight_layout()
    save_figure(fig, out / "gigpo_group_size.png", dpi=100)
