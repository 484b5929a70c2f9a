"""treeq command line: thin typer commands over ``treeq.pipelines``.

Every user error ends as one line on stderr and exit code 2; Ctrl-C as one line and
exit code 130. The ``search`` options, their defaults and help texts come from the
config dataclasses (``SearchJobConfig``, ``SearchConfig``), the one source that the
code, ``search --help`` and the option table of docs/search.md share.

Why one module over 400 lines: the product card fixes the command line as ``cli.py``; each
command is a thin typer function over ``treeq.pipelines``, and splitting them by command would
scatter the shared option helpers (``_opt``, ``_help``) and the one error/exit-code wrapper.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import shlex
import signal
import sys
import threading
from dataclasses import MISSING, fields
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from treeq.mcts.config import SearchConfig
from treeq.pipelines.command_config import (
    CompactConfig,
    ExportFileConfig,
    PlotConfig,
    QueryConfig,
    ReplayConfig,
    ScoreConfig,
    SearchRunConfig,
    ShowConfig,
    TextWorldGamesConfig,
    number_list,
)
from treeq.pipelines.config import (
    CreditBenchConfig,
    DPOConfig,
    PRMJobConfig,
    RewardsConfig,
    RolloutConfig,
    SearchJobConfig,
    SelfTrainConfig,
    TinyLMConfig,
)
from treeq.pipelines.policies.lm import LMConfig
from treeq.pipelines.prm_bench import BenchConfig, BenchEvalConfig
from treeq.pipelines.train_policy import PolicyTrainConfig
from treeq.prm.config import StepDatasetConfig, TinyModelConfig, TrainConfig

# typer >= 0.29 ships its own copy of click; older releases raise click's own classes.
try:
    import click as _click

    _USAGE_ERRORS: tuple[type[BaseException], ...] = (_click.ClickException, typer.TyperException)
    _EXITS: tuple[type[BaseException], ...] = (_click.exceptions.Exit, typer.Exit)
    _ABORTS: tuple[type[BaseException], ...] = (_click.exceptions.Abort, typer.Abort, KeyboardInterrupt)
except ImportError:  # pragma: no cover - click is a dependency of typer < 0.29 only
    _USAGE_ERRORS, _EXITS, _ABORTS = (typer.TyperException,), (typer.Exit,), (typer.Abort, KeyboardInterrupt)

app = typer.Typer(
    name="treeq",
    help="MCTS search and process-reward data for agent RL.",
    add_completion=False,
    no_args_is_help=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class OutFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


def _help(config: type, name: str) -> str:
    """The help text of ``config``'s field ``name``."""
    return next(f for f in fields(config) if f.name == name).metadata["help"]


def _opt(config: type, name: str, *decls: str, **kw: Any) -> Any:
    """A ``typer.Option`` whose default and help are those of ``config``'s field ``name``.

    A help text ``"...; None: the env's default_gamma."`` becomes the help ``"..."`` and the
    shown default ``the env's default_gamma``. ``required=True``: no default, the option must be given.
    """
    f = next(f for f in fields(config) if f.name == name)
    default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
    if isinstance(default, dict):  # given on the command line as JSON
        default = json.dumps(default)
    elif isinstance(default, tuple):  # a repeated option
        default = list(default)
    text, _, when_none = f.metadata["help"].partition("; None: ")
    if kw.pop("required", False):  # a command's input: the field's None stands for "not given yet"
        default = ...
    elif default is None:
        kw.setdefault("show_default", when_none.rstrip(".") or False)
    return typer.Option(default, *decls, help=text, **kw)


def _json_object(text: str, flag: str) -> dict:
    """Parse a JSON object given on the command line (never eval)."""
    from treeq.errors import ConfigError

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{flag} is not valid JSON ({exc.msg}): {text!r}") from None
    except RecursionError:
        raise ConfigError(f"{flag} is nested too deeply") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{flag} must be a JSON object like '{{\"is_slippery\": false}}', got {text!r}")
    return value


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context,
          version: bool = typer.Option(False, "--version", help="Print treeq's version and exit.")) -> None:
    """MCTS search and process-reward data for agent RL. With no command: `search` with its defaults."""
    if version:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as installed

        try:
            typer.echo(f"treeq {installed('treeq')}")
        except PackageNotFoundError:  # a checkout on sys.path, not installed
            from treeq import __version__

            typer.echo(f"treeq {__version__}")
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        command = ctx.command.get_command(ctx, "search")  # type: ignore[attr-defined]
        with command.make_context("search", [], parent=ctx) as sub:
            command.invoke(sub)


_J, _S = SearchJobConfig, SearchConfig


@app.command()
def search(
    ctx: typer.Context,
    env: str = _opt(_J, "env"),
    env_kwargs: str = _opt(_J, "env_kwargs", "--env-kwargs"),
    tasks: str | None = _opt(_J, "tasks"),
    limit: int | None = _opt(_J, "limit"),
    simulations: int = _opt(_S, "simulations"),
    gamma: float | None = _opt(_S, "gamma"),
    c: float | None = _opt(_S, "c", "--c"),
    selection: str = _opt(_S, "selection"),
    fpu: float = _opt(_S, "fpu"),
    gumbel_k: int = _opt(_S, "gumbel_k"),
    gumbel_scale: float = _opt(_S, "gumbel_scale"),
    random_untried: bool = _opt(_S, "random_untried"),
    evaluator: str | None = _opt(_J, "evaluator"),
    proposer: str | None = _opt(_J, "proposer", "--proposer", "--policy"),
    proposals: int = _opt(_S, "proposals"),
    model: str | None = _opt(LMConfig, "model"),
    backend: str = _opt(LMConfig, "backend"),
    base_url: str | None = _opt(LMConfig, "base_url"),
    lm_mode: str = _opt(LMConfig, "lm_mode"),
    temperature: float = _opt(LMConfig, "temperature"),
    max_new_tokens: int = _opt(LMConfig, "max_new_tokens"),
    feedback: bool = _opt(LMConfig, "feedback"),
    timeout: float = _opt(LMConfig, "timeout"),
    device: str | None = _opt(LMConfig, "device"),
    max_batch_tokens: int = _opt(LMConfig, "max_batch_tokens"),
    prm: str | None = _opt(LMConfig, "prm"),
    value_mix: float = _opt(LMConfig, "value_mix"),
    prm_batch_size: int = _opt(LMConfig, "prm_batch_size"),
    rollout_steps: int = _opt(_S, "rollout_steps"),
    solver: bool = _opt(_S, "solver"),
    transpositions: bool | None = _opt(_S, "transpositions", "--transpositions/--no-transpositions"),
    stop_on_solve: bool = _opt(_S, "stop_on_solve"),
    max_nodes: int = _opt(_S, "max_nodes"),
    max_depth: int = _opt(_S, "max_depth"),
    wave_size: int = _opt(_S, "wave_size"),
    task_timeout: float | None = _opt(_S, "task_timeout"),
    seed: int = _opt(_J, "seed"),
    out: Path = _opt(_J, "out"),
    workers: int = _opt(_J, "workers"),
    executor: str = _opt(_J, "executor"),
    address: str | None = _opt(_J, "address"),
    progress: bool = _opt(_J, "progress"),
    config: Path | None = _opt(SearchRunConfig, "config"),
    resume: bool = _opt(SearchRunConfig, "resume"),
) -> None:
    """Search every task with MCTS and write the trees to Parquet."""
    from treeq.pipelines.search import run_search

    values = {k: v for k, v in locals().items() if k not in ("ctx", "config", "resume")}
    given = {k for k in values if _from_command_line(ctx, k)}
    if resume:  # the recorded settings fill what the command line leaves open
        from treeq.pipelines.search import latest_settings

        _fill(values, given, latest_settings(str(out)), "the run recorded in --out")
    if config is not None:
        _fill(values, given, _toml_settings(config), str(config))
    job = _search_job(values)
    s = run_search(job, resume=resume)
    pct = 100.0 * s.solved / s.tasks if s.tasks else 0.0
    solved = f"solved {s.solved} ({pct:.1f}%)"
    if s.timeouts:  # their trees are written, cut short: the line says so, and where they are marked
        solved += f", {s.timeouts} timed out (--task-timeout; trees.status = 'timeout')"
    if s.tasks and s.skipped == s.tasks:
        typer.echo(f"all {s.tasks} {s.env} tasks were on disk already, nothing to search: {solved}, "
                   f"{s.nodes:,} nodes, {s.simulations:,} simulations")
    else:
        skipped = f"; {s.skipped} were on disk already" if s.skipped else ""
        typer.echo(
            f"searched {s.tasks} {s.env} tasks in {s.seconds:.1f} s{skipped}: {solved}, "
            f"{s.nodes:,} nodes, {s.simulations:,} simulations ({s.sims_per_second:,.0f} sim/s)"
        )
    typer.echo(f"wrote {s.out} (run {s.run_id}); try:")
    sql = "SELECT depth, count(*) AS nodes, avg(coalesce(proven, q)) AS label FROM nodes GROUP BY depth ORDER BY depth"
    typer.echo(f"  python cli.py query {shlex.quote(s.out)} {shlex.quote(sql)}")


def _from_command_line(ctx: typer.Context, name: str) -> bool:
    """Whether the option ``name`` of the running command was given on the command line."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT")


def _fill(values: dict, given: set[str], settings: dict, where: str) -> None:
    """Take ``settings`` for every option not given on the command line (or by a source before)."""
    from treeq.errors import ConfigError

    for key, value in settings.items():
        name = key.replace("-", "_")
        if name not in values:
            raise ConfigError(f"{where}: unknown setting {key!r} (the keys are the search flags, e.g. simulations)")
        if name not in given:
            values[name] = json.dumps(value) if name == "env_kwargs" and isinstance(value, dict) else value
            given.add(name)


def _toml_settings(path: Path) -> dict:
    """The settings of a TOML run file (never evaluated: a TOML parser reads it)."""
    import tomllib

    from treeq.errors import ConfigError

    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"--config: {path} not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"--config: {path} is not a readable TOML file: {' '.join(str(exc).split())}") from None


def _search_job(v: dict) -> SearchJobConfig:
    """The job the ``search`` options describe."""
    search_cfg = SearchConfig(**{f.name: v[f.name] for f in fields(SearchConfig)})
    lm = LMConfig(**{f.name: v[f.name] for f in fields(LMConfig)})
    env_kwargs = v["env_kwargs"]
    return SearchJobConfig(**{f.name: v[f.name] for f in fields(SearchJobConfig) if f.name not in ("search", "lm")}
                           | {"env_kwargs": _json_object(env_kwargs, "--env-kwargs") if isinstance(env_kwargs, str)
                              else env_kwargs, "search": search_cfg, "lm": lm, "out": str(v["out"])})


# SQL may begin with a comment ("-- note ..."): an argument that is no known option is the SQL
@app.command(context_settings={"ignore_unknown_options": True})
def query(
    out: Path = typer.Argument(..., help="Output directory of a search."),
    sql: str = typer.Argument(..., help="SQL over the views nodes, trees, runs (read-only: SELECT, EXPLAIN)."),
    format: OutFormat = _opt(QueryConfig, "format", "--format"),
) -> None:
    """Run read-only SQL (DuckDB) over a tree store's views `nodes`, `trees` and `runs`."""
    from treeq.data.store import run_query
    from treeq.pipelines.formatting import format_rows

    columns, rows = run_query(out, sql)
    typer.echo(format_rows(columns, rows, format.value))


@app.command()
def replay(
    env: str = _opt(_J, "env"),
    action: list[str] = _opt(ReplayConfig, "action", "--action", "-a"),
    tasks: str | None = _opt(_J, "tasks"),
    task_id: str | None = _opt(ReplayConfig, "task_id"),
    env_kwargs: str = _opt(_J, "env_kwargs", "--env-kwargs"),
    seed: int = _opt(ReplayConfig, "seed"),
) -> None:
    """Apply actions written as text to a task and print what the env answers."""
    from treeq.pipelines.replay import replay as run_replay

    kwargs = _json_object(env_kwargs, "--env-kwargs")
    task, start, steps = run_replay(env, list(action), tasks, task_id, kwargs, seed)
    typer.echo(f"task {task}\n{start}")
    total = 0.0
    for i, st in enumerate(steps, start=1):
        total += st.reward
        flags = " terminated" if st.terminated else (" truncated" if st.truncated else "")
        typer.echo(f"\n[{i}] {st.action} -> reward {st.reward:g}{flags} (key {st.state_key})\n{st.observation}")
    typer.echo(f"\n{len(steps)} actions, total reward {total:g}")


@app.command()
def show(
    out: Path = typer.Argument(..., help="Output directory of a search."),
    task: str = _opt(ShowConfig, "task", "--task", required=True),
    file: Path | None = _opt(ShowConfig, "out", "--out"),
    format: str | None = _opt(ShowConfig, "format"),
    run: str | None = _opt(ShowConfig, "run"),
    min_visits: int = _opt(ShowConfig, "min_visits"),
    max_depth: int | None = _opt(ShowConfig, "max_depth"),
    columns: int | None = _opt(ShowConfig, "columns"),
) -> None:
    """Draw one task's tree: nodes sized by visits, coloured by value, the best path highlighted."""
    from treeq.pipelines.show import show as run_show

    path, drawn, total = run_show(out, task, file, format, run, min_visits, max_depth, columns)
    typer.echo(f"wrote {path} ({total:,} nodes)" if drawn == total else
               f"wrote {path} ({drawn:,} of {total:,} nodes: the best path and the most visited; --columns 0 draws all)")


@app.command()
def compact(
    out: Path = typer.Argument(..., help="Output directory of a search."),
    rows_per_file: int = _opt(CompactConfig, "rows_per_file"),
    row_group: int = _opt(CompactConfig, "row_group"),
) -> None:
    """Merge the per-task shards of finished runs into large files (fast DuckDB scans on millions of nodes)."""
    from treeq.data.compact import compact as run_compact

    counts = run_compact(out, rows_per_file, row_group)
    typer.echo("compacted " + ", ".join(f"{t}: {b:,} files -> {a:,}" for t, (b, a) in counts.items()) + f" in {out}")


@app.command()
def plot(
    out: Path = typer.Argument(..., help="Output directory of a search."),
    file: Path = _opt(PlotConfig, "out", "--out"),
    tasks: int = _opt(PlotConfig, "tasks"),
    run: str | None = _opt(PlotConfig, "run"),
) -> None:
    """Plot root-value convergence over simulations and the solved-rate table (matplotlib PNG)."""
    from treeq.pipelines.plot import plot as run_plot

    path, table = run_plot(out, file, tasks, run)
    for r in table:
        typer.echo(f"{r['run']}: {r['solved']:,}/{r['tasks']:,} solved ({100 * r['rate']:.1f}%)")
    typer.echo(f"wrote {path}")


@app.command("make-textworld-games")
def make_textworld_games(
    out: Path = typer.Argument(..., help="Directory for the games (<prefix>-<seed>.z8 plus .json)."),
    seeds: str = _opt(TextWorldGamesConfig, "seeds"),
    quest_length: int = _opt(TextWorldGamesConfig, "quest_length"),
    world_size: int = _opt(TextWorldGamesConfig, "world_size"),
    nb_objects: int = _opt(TextWorldGamesConfig, "nb_objects"),
    jobs: int = _opt(TextWorldGamesConfig, "jobs"),
    force: bool = _opt(TextWorldGamesConfig, "force", "--force"),
) -> None:
    """Generate TextWorld games offline with TextWorld's own tw-make (fixed seeds, cached)."""
    from treeq.pipelines.textworld_games import make_games

    cfg = TextWorldGamesConfig(seeds=seeds, quest_length=quest_length, world_size=world_size, nb_objects=nb_objects,
                               jobs=jobs, force=force)
    paths = make_games(out, cfg.seed_list(), quest_length=quest_length, world_size=world_size, nb_objects=nb_objects,
                       jobs=jobs or None, force=force)
    for p in paths:
        typer.echo(str(p))
    typer.echo(f"{len(paths)} games in {out}; search them with: python cli.py search --env textworld --tasks {shlex.quote(str(out))}")


_P, _D, _T, _M = PRMJobConfig, StepDatasetConfig, TrainConfig, TinyModelConfig


@app.command("train-prm")
def train_prm(
    sources: list[Path] = typer.Argument(..., help="Search output directories (their trees are the training data)."),
    out: Path = _opt(_P, "out"),
    model: str | None = _opt(_P, "model"),
    loss: str = _opt(_T, "loss"),
    epochs: float = _opt(_T, "epochs"),
    max_steps: int | None = _opt(_T, "max_steps"),
    batch_size: int = _opt(_T, "batch_size"),
    lr: float | None = _opt(_T, "lr"),
    min_visits: int = _opt(_D, "min_visits"),
    threshold: float = _opt(_D, "threshold"),
    val_fraction: float = _opt(_D, "val_fraction"),
    observations: bool = _opt(_D, "observations"),
    proven_steps: bool = _opt(_D, "proven_steps"),
    labels: str = _opt(_D, "labels"),
    save_every: int = _opt(_T, "save_every"),
    rewrite: float = _opt(_T, "rewrite"),
    rewordings: int = _opt(_T, "rewordings"),
    first_passes: int = _opt(_T, "first_passes"),
    positive_passes: int = _opt(_T, "positive_passes"),
    lm_weight: float = _opt(_T, "lm_weight"),
    hidden_size: int = _opt(_M, "hidden_size"),
    layers: int = _opt(_M, "layers"),
    heads: int = _opt(_M, "heads"),
    vocab_size: int = _opt(_M, "vocab_size"),
    window: int | None = _opt(_M, "window"),
    max_length: int = _opt(_M, "max_length"),
    best_of_n: int = _opt(_P, "best_of_n"),
    eval_paths: int = _opt(_P, "eval_paths"),
    seed: int = _opt(_T, "seed"),
    progress: bool = _opt(_P, "progress"),
) -> None:
    """Train a process reward model (a step verifier) on the trees' Q values."""
    from treeq.pipelines.prm import train_prm as run

    job = _P(
        sources=tuple(str(s) for s in sources), out=str(out), model=model, best_of_n=best_of_n, eval_paths=eval_paths,
        progress=progress,
        dataset=_D(min_visits=min_visits, threshold=threshold, val_fraction=val_fraction, seed=seed,
                   observations=observations, labels=labels, proven_steps=proven_steps),
        train=_T(loss=loss, epochs=epochs, max_steps=max_steps, batch_size=batch_size, lr=lr, save_every=save_every, rewrite=rewrite,
                 rewordings=rewordings, first_passes=first_passes,
                 positive_passes=positive_passes, lm_weight=lm_weight, seed=seed),
        tiny=_M(hidden_size=hidden_size, layers=layers, heads=heads, vocab_size=vocab_size, window=window,
                max_length=max_length),
    )
    m = run(job)
    typer.echo(_prm_summary(m))
    typer.echo(f"{out}: model, tokenizer, treeq_prm.json, metrics.json")


def _prm_summary(m: dict) -> str:
    def f(x: Any) -> str:
        return f"{x:.4f}" if isinstance(x, float) else str(x)

    total = m.get("total_seconds", m["train_seconds"])
    resumed = f" after resuming from {m['resumed_from']}" if m.get("resumed_from") else ""
    lines = [f"trained in {m['train_seconds']} s{resumed}, evaluated in {round(total - m['train_seconds'], 1)} s "
             f"({total} s in all) on {m['train_paths']:,} paths; validation: {m.get('val_paths', 0):,} paths"]
    for key in ("eval_loss", "auroc_hard", "spearman_q", "auroc_exact", "auroc_exact_within_depth_mean",
                "auroc_exact_within_parent_mean"):
        if key in m:
            lines.append(f"  {key}: {f(m[key])}")
    if "auroc_exact_by_depth" in m:
        lines.append("  auroc_exact_by_depth: " + ", ".join(f"{d}: {v:.4f}" for d, v in m["auroc_exact_by_depth"].items()))
    elif "exact" in m:
        lines.append(f"  exact labels: {m['exact']}")
    fit = m.get("train_fit")
    if isinstance(fit, dict) and fit.get("auroc_hard_by_depth"):
        lines.append("  fit on training paths (auroc_hard by depth): "
                     + ", ".join(f"{d}: {v:.4f}" for d, v in fit["auroc_hard_by_depth"].items() if v is not None))
    bon = m.get("best_of_n")
    if isinstance(bon, dict):
        lines.append(f"  best-of-{int(bon['n'])} on {int(bon['tasks'])} tasks: prm(min) {bon['prm_min']:.3f}, "
                     f"prm(product) {bon['prm_product']:.3f}, random {bon['random']:.3f}, oracle {bon['oracle']:.3f}")
    elif bon:
        lines.append(f"  best-of-N: {bon}")
    return "\n".join(lines)


@app.command("score-steps")
def score_steps(
    model_dir: Path = typer.Argument(..., help="A directory written by train-prm."),
    input: Path = _opt(ScoreConfig, "input", "--input", required=True),
    output: Path | None = _opt(ScoreConfig, "output", "--output"),
    tasks: str | None = _opt(ScoreConfig, "tasks"),
    batch_size: int = _opt(ScoreConfig, "batch_size"),
) -> None:
    """Score every step of each row with a trained PRM (one forward pass per path)."""
    from treeq.data.store import check_outside_store, write_text_atomic
    from treeq.pipelines.prm import score_steps as run
    from treeq.pipelines.prm_rows import read_rows

    if output is not None:
        check_outside_store(output, "--output")
    rows = run(str(model_dir), read_rows(input), tasks, batch_size)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if output is None:
        sys.stdout.write(text)
    else:
        write_text_atomic(output, text)
        typer.echo(f"scored {len(rows)} rows, {sum(len(r['scores']) for r in rows)} steps -> {output}")


@app.command("prm-bench")
def prm_bench(
    env: str = _opt(BenchConfig, "env"),
    env_kwargs: str = _opt(BenchConfig, "env_kwargs", "--env-kwargs"),
    tasks: str | None = _opt(BenchConfig, "tasks"),
    limit: int | None = _opt(BenchConfig, "limit"),
    per_task: int = _opt(BenchConfig, "per_task"),
    gamma: float | None = _opt(BenchConfig, "gamma"),
    max_steps: int = _opt(BenchConfig, "max_steps"),
    seed: int = _opt(BenchConfig, "seed"),
    out: str = _opt(BenchConfig, "out", "--out", required=True),
    progress: bool = _opt(BenchConfig, "progress"),
) -> None:
    """Write a ProcessBench-format set whose labels (the earliest wrong step) are exact."""
    from treeq.pipelines.prm_bench import write_bench

    cfg = BenchConfig(env=env, env_kwargs=_json_object(env_kwargs, "--env-kwargs"), tasks=tasks, limit=limit,
                      per_task=per_task, gamma=gamma, max_steps=max_steps, seed=seed, out=out, progress=progress)
    path, meta = write_bench(cfg)
    skipped = ", ".join(f"{n} {why}" for why, n in meta["skipped"].items() if n)
    typer.echo(f"wrote {meta['rows']:,} samples ({meta['flawed']:,} flawed) of {meta['tasks_used']:,} tasks to {path}"
               + (f"; skipped tasks: {skipped}" if skipped else ""))


@app.command("prm-eval")
def prm_eval(
    model: str | None = typer.Argument(None, help="A directory written by train-prm (with --backend openai: the "
                                                   "served model's name, optional)."),
    bench: str = _opt(BenchEvalConfig, "bench", "--bench", required=True),
    threshold: float = _opt(BenchEvalConfig, "threshold"),
    batch_size: int = _opt(BenchEvalConfig, "batch_size"),
    backend: str = _opt(BenchEvalConfig, "backend"),
    base_url: str | None = _opt(BenchEvalConfig, "base_url"),
    max_tokens: int = _opt(BenchEvalConfig, "max_tokens"),
    out: str | None = _opt(BenchEvalConfig, "out"),
) -> None:
    """Score a PRM (or an LLM judge) on a prm-bench set: first-error F1, within-depth AUROC, best-of-N."""
    from treeq.pipelines.prm_bench import evaluate_bench

    cfg = BenchEvalConfig(bench=bench, threshold=threshold, batch_size=batch_size, backend=backend,
                          base_url=base_url, max_tokens=max_tokens, out=out)
    m, _ = evaluate_bench(model, cfg)
    typer.echo(_bench_summary(m))


def _bench_summary(m: dict) -> str:
    def f(x: Any) -> str:
        return "n/a" if not isinstance(x, float) or x != x else f"{x:.3f}"

    lines = [f"{m['env']}: {m['samples']:,} samples ({m['flawed']:,} flawed), threshold {m['threshold']}"
             + (f", {m['cut']} cut to the steps the model reads" if m.get("cut") else "")
             + (f", {m['unscored']} whose first step it cannot read (counted wrong)" if m.get("unscored") else ""),
             f"  accuracy on flawed samples {f(m['accuracy_flawed'])}, on correct samples {f(m['accuracy_correct'])}"]
    if m.get("auroc_by_depth"):
        lines.append("  AUROC by depth: " + ", ".join(f"{d}: {v:.3f}" for d, v in m["auroc_by_depth"].items()))
    bon = m.get("best_of_n")
    if bon:
        lines.append(f"  best-of-{bon['n']:g} on {bon['tasks']} tasks (lowest step score highest): picks a flawless "
                     f"sample {f(bon['picked_flawless'])} (random {f(bon['random_flawless'])}), a success "
                     f"{f(bon['picked_success'])} (random {f(bon['random_success'])})")
    cal = m.get("calibrated")
    if cal:
        lines.append(f"  at a threshold fitted on the other half of the tasks ({', '.join(f'{t:.3f}' for t in cal['thresholds'])}"
                     f"): first-error F1 {f(cal['first_error_f1'])} (flawed {f(cal['accuracy_flawed'])}, correct "
                     f"{f(cal['accuracy_correct'])})")
    lines.append(f"first-error F1 {f(m['first_error_f1'])}, within-depth AUROC {f(m['within_depth_auroc'])}")
    return "\n".join(lines)


@app.command("export-prm-data")
def export_prm_data(
    sources: list[Path] = typer.Argument(..., help="Search output directories."),
    out: str = _opt(ExportFileConfig, "out", "--out", required=True),
    min_visits: int = _opt(_D, "min_visits"),
    threshold: float = _opt(_D, "threshold"),
    val_fraction: float = _opt(_D, "val_fraction"),
    observations: bool = _opt(_D, "observations"),
    proven_steps: bool = _opt(_D, "proven_steps"),
    labels: str = _opt(_D, "labels"),
    seed: int = _opt(_D, "seed"),
    progress: bool = _opt(ExportFileConfig, "progress"),
) -> None:
    """Write PRM rows in the stepwise format (prompt, completions, labels; hard labels beside).

    Labels are the steps' values scaled to [0, 1] by each env's value range, as train-prm's are.
    """
    from treeq.pipelines.prm import export_prm_data as run

    cfg = _D(min_visits=min_visits, threshold=threshold, val_fraction=val_fraction, seed=seed,
             observations=observations, labels=labels, proven_steps=proven_steps)
    path, rows, steps = run([str(s) for s in sources], out, cfg, progress=progress)
    typer.echo(f"wrote {rows:,} paths with {steps:,} labelled steps to {path}")


@app.command("export-dpo")
def export_dpo(
    sources: list[Path] = typer.Argument(..., help="Search output directories."),
    out: str = _opt(ExportFileConfig, "out", "--out", required=True),
    rule: str = _opt(DPOConfig, "rule"),
    theta: float = _opt(DPOConfig, "theta"),
    alpha: float = _opt(DPOConfig, "alpha"),
    delta: float = _opt(DPOConfig, "delta"),
    min_visits: int = _opt(DPOConfig, "min_visits"),
    format: str = _opt(DPOConfig, "format"),
    progress: bool = _opt(ExportFileConfig, "progress"),
) -> None:
    """Write DPO preference pairs (TRL's format) from sibling steps of the trees."""
    from treeq.pipelines.dpo import export_dpo as run

    cfg = DPOConfig(rule=rule, theta=theta, alpha=alpha, delta=delta, min_visits=min_visits, format=format)
    path, n = run([str(s) for s in sources], out, cfg, progress=progress)
    typer.echo(f"wrote {n:,} {rule} pairs to {path}")


@app.command()
def rollouts(
    env: str = _opt(RolloutConfig, "env"),
    env_kwargs: str = _opt(RolloutConfig, "env_kwargs", "--env-kwargs"),
    tasks: str | None = _opt(RolloutConfig, "tasks"),
    limit: int | None = _opt(RolloutConfig, "limit"),
    group_size: int = _opt(RolloutConfig, "group_size"),
    policy: str = _opt(RolloutConfig, "policy"),
    model: str | None = _opt(LMConfig, "model"),
    backend: str = _opt(LMConfig, "backend"),
    base_url: str | None = _opt(LMConfig, "base_url"),
    max_steps: int = _opt(RolloutConfig, "max_steps"),
    seed: int = _opt(RolloutConfig, "seed"),
    out: str = _opt(RolloutConfig, "out"),
    progress: bool = _opt(RolloutConfig, "progress"),
) -> None:
    """Sample G complete trajectories per task (the groups of GRPO / GiGPO) to Parquet, one row per step."""
    from treeq.pipelines.rollouts import run_rollouts

    cfg = RolloutConfig(env=env, env_kwargs=_json_object(env_kwargs, "--env-kwargs"), tasks=tasks, limit=limit,
                        group_size=group_size, policy=policy, max_steps=max_steps, seed=seed, out=out,
                        progress=progress, lm=LMConfig(model=model, backend=backend, base_url=base_url))
    path, n, steps = run_rollouts(cfg)
    typer.echo(f"wrote {n:,} trajectories ({steps:,} steps) to {path}")


@app.command("make-tiny-model")
def make_tiny_model(
    env: str = _opt(TinyLMConfig, "env"),
    env_kwargs: str = _opt(TinyLMConfig, "env_kwargs", "--env-kwargs"),
    tasks: str | None = _opt(TinyLMConfig, "tasks"),
    limit: int = _opt(TinyLMConfig, "limit"),
    hidden_size: int = _opt(TinyLMConfig, "hidden_size"),
    layers: int = _opt(TinyLMConfig, "layers"),
    heads: int = _opt(TinyLMConfig, "heads"),
    vocab_size: int = _opt(TinyLMConfig, "vocab_size"),
    seed: int = _opt(TinyLMConfig, "seed"),
    out: str = _opt(TinyLMConfig, "out"),
) -> None:
    """Build a tiny causal LM (random weights) with a tokenizer trained on the env's texts, for --model (offline)."""
    from treeq.pipelines.tiny_lm import make_tiny_model as run

    cfg = TinyLMConfig(env=env, env_kwargs=_json_object(env_kwargs, "--env-kwargs"), tasks=tasks, limit=limit,
                       hidden_size=hidden_size, layers=layers, heads=heads, vocab_size=vocab_size, seed=seed, out=out)
    path = run(cfg)
    typer.echo(f"wrote a {layers}-layer, {hidden_size}-wide causal LM to {path}; use it with --policy hf --model {path}")


_PT = PolicyTrainConfig


@app.command("train-policy")
def train_policy(
    sources: list[Path] = typer.Argument(..., help=_help(_PT, "sources")),
    model: str = _opt(_PT, "model", required=True),
    method: str = _opt(_PT, "method"),
    out: str = _opt(_PT, "out"),
    epochs: float = _opt(_PT, "epochs"),
    max_steps: int | None = _opt(_PT, "max_steps"),
    learning_rate: float | None = _opt(_PT, "learning_rate", "--lr"),
    batch_size: int = _opt(_PT, "batch_size"),
    min_visits: int = _opt(_PT, "min_visits"),
    temperature: float = _opt(_PT, "temperature"),
    beta: float = _opt(_PT, "beta"),
    seed: int = _opt(_PT, "seed"),
    max_length: int | None = _opt(_PT, "max_length"),
    save_every: int = _opt(_PT, "save_every"),
    device: str | None = _opt(_PT, "device"),
    progress: bool = _opt(_PT, "progress"),
) -> None:
    """Train a policy on searched trees (distill, sft or dpo); the directory serves --policy hf --model DIR."""
    from treeq.pipelines.train_policy import train_policy as run

    cfg = PolicyTrainConfig(sources=tuple(str(s) for s in sources), model=model, method=method, out=out,
                            epochs=epochs, max_steps=max_steps, learning_rate=learning_rate, batch_size=batch_size,
                            min_visits=min_visits, temperature=temperature, beta=beta, seed=seed,
                            max_length=max_length, save_every=save_every, device=device, progress=progress)
    s = run(cfg)
    typer.echo(f"trained {s.get('method')} on {s.get('examples', 0):,} examples in {s.get('steps', 0):,} steps "
               f"({s.get('seconds', 0.0):.1f} s, final loss {s.get('final_loss', float('nan')):.4f}); "
               f"wrote {out}: use it with --policy hf --model {out}")


_ST = SelfTrainConfig


@app.command("self-train")
def self_train(
    env: str = _opt(_ST, "env"),
    env_kwargs: str = _opt(_ST, "env_kwargs", "--env-kwargs"),
    tasks: str | None = _opt(_ST, "tasks"),
    limit: int | None = _opt(_ST, "limit"),
    eval_tasks: str | None = _opt(_ST, "eval_tasks"),
    holdout: int = _opt(_ST, "holdout"),
    split_seed: int = _opt(_ST, "split_seed"),
    eval_limit: int | None = _opt(_ST, "eval_limit"),
    rounds: int = _opt(_ST, "rounds"),
    model: str | None = _opt(_ST, "model"),
    method: str = _opt(_ST, "method"),
    selection: str = _opt(_ST, "selection"),
    simulations: int = _opt(_ST, "simulations"),
    eval_budgets: str = typer.Option(",".join(map(str, _ST.eval_budgets)), help=_help(_ST, "eval_budgets")),
    stop_on_solve: bool = _opt(_ST, "stop_on_solve"),
    wave_size: int = _opt(_ST, "wave_size"),
    prm_steps: int = _opt(_ST, "prm_steps"),
    policy_steps: int = _opt(_ST, "policy_steps"),
    seed: int = _opt(_ST, "seed"),
    workers: int = _opt(_ST, "workers"),
    out: str = _opt(_ST, "out"),
    progress: bool = _opt(_ST, "progress"),
) -> None:
    """Expert iteration: search, train the PRM and the policy on the trees, search with both; each round
    evaluated on held-out tasks (rounds.parquet, rounds.md, rounds.png)."""
    from treeq.pipelines.self_train import self_train as run

    budgets = number_list(eval_budgets, "--eval-budgets")
    cfg = SelfTrainConfig(env=env, env_kwargs=_json_object(env_kwargs, "--env-kwargs"), tasks=tasks, limit=limit,
                          eval_tasks=eval_tasks, holdout=holdout, split_seed=split_seed, eval_limit=eval_limit,
                          rounds=rounds, model=model, method=method, selection=selection, simulations=simulations,
                          eval_budgets=budgets, stop_on_solve=stop_on_solve, wave_size=wave_size, prm_steps=prm_steps,
                          policy_steps=policy_steps, seed=seed, workers=workers, out=out, progress=progress)
    rows = run(cfg, say=typer.echo)
    from treeq.pipelines.self_train import rounds_markdown

    typer.echo(rounds_markdown(rows), nl=False)
    typer.echo(f"wrote {out}/rounds.parquet, rounds.md and rounds.png")


@app.command("export-rewards")
def export_rewards(
    sources: list[Path] = typer.Argument(..., help="Trajectory files (Parquet) written by rollouts."),
    out: str = _opt(RewardsConfig, "out"),
    estimators: str = typer.Option(",".join(RewardsConfig.estimators), help=_help(RewardsConfig, "estimators")),
    gamma: float | None = _opt(RewardsConfig, "gamma"),
    lam: float = _opt(RewardsConfig, "lam"),
    weight: float = _opt(RewardsConfig, "weight"),
    gigpo_mode: str = _opt(RewardsConfig, "gigpo_mode"),
    mc_rollouts: int = _opt(RewardsConfig, "mc_rollouts"),
    value: str = _opt(RewardsConfig, "value"),
    trees: list[Path] | None = typer.Option(None, help=_help(RewardsConfig, "trees")),
    prm: str | None = _opt(RewardsConfig, "prm"),
    seed: int = _opt(RewardsConfig, "seed"),
    progress: bool = _opt(RewardsConfig, "progress"),
) -> None:
    """Write dense per-step rewards with advantage columns (grpo, gigpo, mc, turn, loop, gae, mcts_q, prm)."""
    from treeq.pipelines.rewards import export_rewards as run

    cfg = RewardsConfig(out=out, estimators=tuple(e.strip() for e in estimators.split(",") if e.strip()),
                        gamma=gamma, lam=lam, weight=weight, gigpo_mode=gigpo_mode, mc_rollouts=mc_rollouts,
                        value=value, trees=tuple(str(t) for t in trees or ()), prm=prm, seed=seed, progress=progress)
    path, rows, filled = run([str(s) for s in sources], cfg)
    partial = ", ".join(f"{k} {n:,}/{rows:,}" for k, n in filled.items() if n < rows)
    typer.echo(f"wrote {rows:,} steps ({', '.join(cfg.estimators)}) to {path}"
               + (f"; rows with a value: {partial}" if partial else ""))


_CB = CreditBenchConfig


@app.command("credit-bench")
def credit_bench(
    env: str = _opt(_CB, "env"),
    env_kwargs: str = _opt(_CB, "env_kwargs", "--env-kwargs"),
    tasks: str | None = _opt(_CB, "tasks"),
    limit: int | None = _opt(_CB, "limit"),
    policy: str = _opt(_CB, "policy"),
    temperature: float = _opt(_CB, "temperature"),
    epsilon: float = _opt(_CB, "epsilon"),
    model: str | None = _opt(_CB, "model"),
    estimators: str = typer.Option(",".join(_CB.estimators), help=_help(_CB, "estimators")),
    group_sizes: str = typer.Option(",".join(map(str, _CB.group_sizes)), help=_help(_CB, "group_sizes")),
    mc_rollouts: str = typer.Option(",".join(map(str, _CB.mc_rollouts)), help=_help(_CB, "mc_rollouts")),
    mc_trajectories: int = _opt(_CB, "mc_trajectories"),
    simulations: str = typer.Option(",".join(map(str, _CB.simulations)), help=_help(_CB, "simulations")),
    seeds: int = _opt(_CB, "seeds"),
    max_steps: int = _opt(_CB, "max_steps"),
    gamma: float | None = _opt(_CB, "gamma"),
    weight: float = _opt(_CB, "weight"),
    lam: float = _opt(_CB, "lam"),
    similarity: float = _opt(_CB, "similarity"),
    out: str = _opt(_CB, "out"),
    progress: bool = _opt(_CB, "progress"),
) -> None:
    """Measure advantage estimators (GRPO, GiGPO, LOOP, HiPER, tree, MC, MCTS-Q ...) against exact A^pi and A*."""
    from treeq.pipelines.credit_bench import run_credit_bench

    cfg = CreditBenchConfig(
        env=env, env_kwargs=_json_object(env_kwargs, "--env-kwargs"), tasks=tasks, limit=limit, policy=policy,
        temperature=temperature, epsilon=epsilon, model=model,
        estimators=tuple(e.strip() for e in estimators.split(",") if e.strip()),
        group_sizes=number_list(group_sizes, "--group-sizes"), mc_rollouts=number_list(mc_rollouts, "--mc-rollouts"),
        mc_trajectories=mc_trajectories,
        simulations=number_list(simulations, "--simulations"), seeds=seeds, max_steps=max_steps, gamma=gamma,
        weight=weight, lam=lam, similarity=similarity, out=out, progress=progress)
    _path, lines = run_credit_bench(cfg)
    for line in lines:
        typer.echo(line)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app; a user error is one line and exit code 2, Ctrl-C one line and 130.

    The command runs in a context made here rather than through click's ``main``, which
    would turn Ctrl-C into ``Abort`` and print a stray empty line first. After Ctrl-C the
    program ignores further ones while it exits (a held key repeats); called with
    ``argv`` (in-process, as tests do) it restores the handler.
    """
    from treeq.errors import Interrupted, TreeqError

    command = _finite_floats(typer.main.get_command(app))
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        with command.make_context("treeq", args) as ctx:
            rv = command.invoke(ctx)
        return rv if isinstance(rv, int) else 0
    except _EXITS as exc:
        return int(getattr(exc, "exit_code", 0) or 0)
    except _USAGE_ERRORS as exc:  # bad flag, bad value, missing argument
        print(f"error: {' '.join(exc.format_message().split())}", file=sys.stderr)
        return 2
    except TreeqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except _ABORTS as exc:
        return _interrupted(f"interrupted: {exc}" if isinstance(exc, Interrupted) else "interrupted", argv)
    except BrokenPipeError:  # `treeq query ... | head`: the reader left; the work is done
        with contextlib.suppress(OSError):  # keep the interpreter's exit flush from failing again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # Ctrl-C inside any DuckDB query that no `interruptible()` block wraps
        if "duckdb" not in sys.modules:  # no query ran: not DuckDB's
            raise
        from treeq.data.store import is_interrupt

        if not is_interrupt(exc):
            raise
        return _interrupted("interrupted", argv)


def _interrupted(message: str, argv: list[str] | None) -> int:
    """Print the one Ctrl-C line and return 130, ignoring further Ctrl-C while the program exits."""
    previous = _ignore_sigint()
    print(message, file=sys.stderr)
    if argv is not None and previous is not None:
        signal.signal(signal.SIGINT, previous)
    return 130


def _finite_floats(command: Any) -> Any:
    """Make every option of every command refuse a float that is nan or ±inf (one line, exit 2).

    Python reads "nan" and "inf" as floats, and no range check catches nan (every comparison
    with it is false): one check here serves every float flag, present and future.
    """
    def finite(ctx: Any, param: Any, value: Any, then: Any = None) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            raise typer.BadParameter(f"{value} is not a finite number", ctx=ctx, param=param)
        return then(ctx, param, value) if then is not None else value

    for sub in [command, *getattr(command, "commands", {}).values()]:
        for param in sub.params:
            param.callback = functools.partial(finite, then=param.callback)
    return command


def _ignore_sigint() -> Any:
    """Ignore SIGINT from now on (main thread only); return the handler it replaced."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())
