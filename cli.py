"""treeq command line: thin typer commands over ``treeq.pipelines``.

Every user error ends as one line on stderr and exit code 2.
"""

from __future__ import annotations

import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

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


def _json_object(text: str, flag: str) -> dict:
    """Parse a JSON object given on the command line (never eval)."""
    import json

    from treeq.errors import ConfigError

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{flag} is not valid JSON ({exc.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{flag} must be a JSON object like '{{\"is_slippery\": false}}', got {text!r}")
    return value


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context) -> None:
    """MCTS search and process-reward data for agent RL. With no command: `search` with its defaults."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(search)


@app.command()
def search(
    env: str = typer.Option("game24", help="Env: game24, countdown, blocksworld, textworld or gym:<id> (e.g. gym:FrozenLake-v1)."),
    env_kwargs: str = typer.Option("{}", "--env-kwargs", help='Env options as a JSON object, e.g. \'{"is_slippery": false}\' for gym envs.'),
    tasks: Optional[str] = typer.Option(None, help="Task file, directory or glob (gym: start seeds 'A:B' or 'A,B'); default: the env's shipped set."),
    limit: Optional[int] = typer.Option(None, help="Search only the first N tasks."),
    simulations: int = typer.Option(1000, help="Simulations per task."),
    gamma: Optional[float] = typer.Option(None, help="Discount in [0, 1]; default: the env's (1 for game24/countdown, 0.95 otherwise)."),
    c: Optional[float] = typer.Option(None, "--c", help="Exploration constant of UCT / PUCT; default: the env's (1; 0.1 for textworld)."),
    selection: str = typer.Option("uct", help="uct or puct."),
    evaluator: Optional[str] = typer.Option(None, help="Leaf values: rollout, zero or bound (the env's optimistic value bound); default: the env's (rollout; zero for gym envs with step costs; bound for textworld)."),
    seed: int = typer.Option(0, help="Root seed (same seed, same trees)."),
    out: Path = typer.Option(Path("treeq-out"), help="Output directory (Parquet tree store)."),
    workers: int = typer.Option(0, help="Worker processes; 0 = one per CPU core. Output does not depend on it."),
    solver: bool = typer.Option(True, "--solver/--no-solver", help="MCTS-Solver: prove exact values (deterministic tree search)."),
    transpositions: Optional[bool] = typer.Option(
        None, "--transpositions/--no-transpositions",
        help="Search the state graph (equal state keys share statistics); default: on for gym envs, off otherwise.",
    ),
    stop_on_solve: bool = typer.Option(False, "--stop-on-solve", help="Stop each search at its first solution."),
    max_nodes: int = typer.Option(1_000_000, help="Node bound per tree."),
    batch_size: int = typer.Option(1, help="Leaves per wave given to the policy hooks."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar over tasks."),
) -> None:
    """Search every task with MCTS and write the trees to Parquet."""
    from treeq.mcts.search import SearchConfig
    from treeq.pipelines.search import SearchJobConfig, run_search

    kwargs = _json_object(env_kwargs, "--env-kwargs")
    search_cfg = SearchConfig(
        simulations=simulations, gamma=gamma, c=c, selection=selection, solver=solver,
        transpositions=transpositions, stop_on_solve=stop_on_solve, max_nodes=max_nodes, batch_size=batch_size,
    )
    job = SearchJobConfig(
        env=env, env_kwargs=kwargs, tasks=tasks, limit=limit, search=search_cfg, evaluator=evaluator,
        seed=seed, out=str(out), workers=workers, progress=progress,
    )
    s = run_search(job)
    pct = 100.0 * s.solved / s.tasks if s.tasks else 0.0
    typer.echo(
        f"searched {s.tasks} {s.env} tasks in {s.seconds:.1f} s: solved {s.solved} ({pct:.1f}%), "
        f"{s.nodes:,} nodes, {s.simulations:,} simulations ({s.sims_per_second:,.0f} sim/s)"
    )
    typer.echo(f"wrote {s.out} (run {s.run_id}); try:")
    sql = "SELECT depth, count(*) AS nodes, avg(coalesce(proven, q)) AS label FROM nodes GROUP BY depth ORDER BY depth"
    typer.echo(f"  python cli.py query {shlex.quote(s.out)} {shlex.quote(sql)}")


@app.command()
def query(
    out: Path = typer.Argument(..., help="Output directory of a search."),
    sql: str = typer.Argument(..., help="SQL over the views nodes, trees, runs."),
    format: OutFormat = typer.Option(OutFormat.table, "--format", help="table, csv or json."),
) -> None:
    """Run SQL (DuckDB) over a tree store's views `nodes`, `trees` and `runs`."""
    from treeq.data.store import run_query
    from treeq.pipelines.formatting import format_rows

    columns, rows = run_query(out, sql)
    typer.echo(format_rows(columns, rows, format.value))


@app.command()
def replay(
    env: str = typer.Option("game24", help="Env name, as for search."),
    action: list[str] = typer.Option([], "--action", "-a", help="An action as text; repeat for a sequence."),
    tasks: Optional[str] = typer.Option(None, help="Task file, directory or glob; default: the env's shipped set."),
    task_id: Optional[str] = typer.Option(None, help="Which task (default: the first)."),
    env_kwargs: str = typer.Option("{}", "--env-kwargs", help="Env options as a JSON object."),
    seed: int = typer.Option(0, help="Seed for reset and stochastic steps."),
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


@app.command("make-textworld-games")
def make_textworld_games(
    out: Path = typer.Argument(..., help="Directory for the games (<prefix>-<seed>.z8 plus .json)."),
    seeds: str = typer.Option("0:5", help="Seeds as 'A:B' (A..B-1) or 'A,B,C'; one game per seed."),
    quest_length: int = typer.Option(3, help="Actions the quest needs."),
    world_size: int = typer.Option(3, help="Rooms in the world."),
    nb_objects: int = typer.Option(5, help="Minimum number of objects."),
    jobs: int = typer.Option(0, help="tw-make processes at once; 0 = one per core."),
    force: bool = typer.Option(False, "--force", help="Remake games that exist."),
) -> None:
    """Generate TextWorld games offline with TextWorld's own tw-make (fixed seeds, cached)."""
    from treeq.envs.base import parse_seed_spec
    from treeq.errors import ConfigError
    from treeq.pipelines.textworld_games import make_games

    seed_list = parse_seed_spec(seeds)
    if seed_list is None:
        raise ConfigError(f"--seeds must look like 'A:B' or 'A,B,C', got {seeds!r}")
    paths = make_games(out, seed_list, quest_length=quest_length, world_size=world_size, nb_objects=nb_objects,
                       jobs=jobs or None, force=force)
    for p in paths:
        typer.echo(str(p))
    typer.echo(f"{len(paths)} games in {out}; search them with: python cli.py search --env textworld --tasks {shlex.quote(str(out))}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning user errors into one line and exit code 2."""
    from treeq.errors import TreeqError

    command = typer.main.get_command(app)
    try:
        rv = command.main(args=argv, prog_name="treeq", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except _EXITS as exc:
        return int(getattr(exc, "exit_code", 0) or 0)
    except _USAGE_ERRORS as exc:  # bad flag, bad value, missing argument
        print(f"error: {' '.join(exc.format_message().split())}", file=sys.stderr)
        return 2
    except TreeqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except _ABORTS:
        print("interrupted: tasks finished so far are on disk", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
