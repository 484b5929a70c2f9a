"""Settings of the smaller commands (``query``, ``replay``, ``show``, ``compact``, ``plot``,
``make-textworld-games``, ``score-steps``, the export files): one frozen dataclass each,
whose fields give the CLI its options' defaults and help texts (``cli.py`` reads them, as
it reads :mod:`treeq.pipelines.config` for the jobs). ``; None: ...`` says what an open
default means. The commands whose inputs need checks beyond the types check them in the
job they call (``show``, ``compact``, ``plot``, ``score-steps``, the exports), or here;
:func:`number_list` reads the comma-separated lists of numbers of every command and benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..envs.base import parse_seed_spec
from ..errors import ConfigError

__all__ = ["number_list", "SearchRunConfig", "QueryConfig", "ReplayConfig", "ShowConfig", "CompactConfig", "PlotConfig",
           "TextWorldGamesConfig", "ScoreConfig", "ExportFileConfig"]


def number_list(text: str, flag: str, kind: type = int) -> tuple:
    """A list given on the command line as numbers separated by commas (``2,4,8``; blanks
    skipped), each read by ``kind``. A word that is not one, or no number at all: ConfigError
    naming ``flag``."""
    try:
        values = tuple(kind(x) for x in text.split(",") if x.strip())
    except ValueError:
        values = ()
    if not values:
        what = "integers" if kind is int else "numbers"
        raise ConfigError(f"{flag} must be {what} separated by commas, got {text!r}")
    return values


@dataclass(frozen=True)
class SearchRunConfig:
    """How ``search`` takes its settings: a run file, or the run recorded in ``--out``."""

    config: str | None = field(default=None, metadata={
        "help": "A TOML file of search settings: the flags' names as keys (simulations = 500, env-kwargs = {...}); "
                "flags override it."})
    resume: bool = field(default=False, metadata={
        "help": "Resume the run recorded in --out: its settings unless flags are given, which must agree; "
                "finished tasks are skipped."})


@dataclass(frozen=True)
class QueryConfig:
    """``query``: read-only SQL over a tree store."""

    format: str = field(default="table", metadata={"help": "table, csv or json."})


@dataclass(frozen=True)
class ReplayConfig:
    """``replay``: actions written as text, applied to one task."""

    action: tuple[str, ...] = field(default=(), metadata={"help": "An action as text; repeat for a sequence."})
    task_id: str | None = field(default=None, metadata={"help": "Which task; None: the first."})
    seed: int = field(default=0, metadata={"help": "Seed for reset and stochastic steps."})


@dataclass(frozen=True)
class ShowConfig:
    """``show``: one searched tree drawn."""

    task: str | None = field(default=None, metadata={"help": "Task id whose tree to draw."})
    out: str | None = field(default=None, metadata={"help": "File to write; None: tree-<task>.<format>."})
    format: str | None = field(default=None, metadata={
        "help": "html (interactive), svg or dot; None: by --out's extension, else html."})
    run: str | None = field(default=None, metadata={"help": "Run id, where several runs searched the task."})
    min_visits: int = field(default=0, metadata={"help": "Draw only nodes with at least this many visits."})
    max_depth: int | None = field(default=None, metadata={"help": "Draw only nodes down to this depth; None: all."})
    columns: int | None = field(default=None, metadata={
        "help": "Breadth drawn: the best path, then the most visited nodes that fit this many columns, the other "
                "children as '+N'; 0: every node; None: 30 (svg, dot), the window's width (html)."})


@dataclass(frozen=True)
class CompactConfig:
    """``compact``: a store's shards merged into large files."""

    rows_per_file: int = field(default=2_000_000, metadata={"help": "Rows per merged file at most."})
    row_group: int = field(default=262_144, metadata={"help": "Rows per Parquet row group."})


@dataclass(frozen=True)
class PlotConfig:
    """``plot``: root-value convergence and the solved-rate table."""

    out: str = field(default="treeq-plot.png", metadata={"help": "PNG file to write."})
    tasks: int = field(default=4, metadata={
        "help": "Tasks whose root-value convergence is drawn (searched again, same seed)."})
    run: str | None = field(default=None, metadata={"help": "Run id; None: the latest run."})


@dataclass(frozen=True)
class TextWorldGamesConfig:
    """``make-textworld-games``: games made offline by TextWorld's own tw-make."""

    seeds: str = field(default="0:5", metadata={"help": "Seeds as 'A:B' (A..B-1) or 'A,B,C'; one game per seed."})
    quest_length: int = field(default=3, metadata={"help": "Actions the quest needs."})
    world_size: int = field(default=3, metadata={"help": "Rooms in the world."})
    nb_objects: int = field(default=5, metadata={"help": "Minimum number of objects."})
    jobs: int = field(default=0, metadata={"help": "tw-make processes at once; 0 = one per core."})
    force: bool = field(default=False, metadata={"help": "Remake games that exist."})

    def __post_init__(self) -> None:
        if self.jobs < 0:
            raise ConfigError(f"--jobs must be >= 0 (0: one per core), got {self.jobs}")
        self.seed_list()

    def seed_list(self) -> list[int]:
        """The seeds ``seeds`` names."""
        seeds = parse_seed_spec(self.seeds)
        if seeds is None:
            raise ConfigError(f"--seeds must look like 'A:B' or 'A,B,C', got {self.seeds!r}")
        return seeds


@dataclass(frozen=True)
class ScoreConfig:
    """``score-steps``: every step of each row scored by a trained PRM."""

    input: str | None = field(default=None, metadata={
        "help": "JSONL rows: {prompt, steps} or {env, task, steps}."})
    output: str | None = field(default=None, metadata={"help": "JSONL with a 'scores' list per row; None: stdout."})
    tasks: str | None = field(default=None, metadata={
        "help": "Task file for rows that name a task id; None: the env's shipped set."})
    batch_size: int = field(default=32, metadata={"help": "Paths per forward pass."})


@dataclass(frozen=True)
class ExportFileConfig:
    """Where an export writes (``export-prm-data``, ``export-dpo``)."""

    out: str | None = field(default=None, metadata={"help": "Output file: .parquet or .jsonl."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar over tasks."})
