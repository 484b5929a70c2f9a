"""Settings of a batch search job: the one source of the ``search`` command's options and defaults.

Kept apart from the job (``pipelines.search``) so that the CLI reads the defaults and
help texts without importing the store (pyarrow, DuckDB).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError
from ..mcts.config import SearchConfig
from .policies import DEFAULT_PROPOSER, EVALUATORS, PROPOSERS, check_name

__all__ = ["SearchJobConfig"]


@dataclass(frozen=True)
class SearchJobConfig:
    """A batch search over a task set.

    The ``help`` metadata is the CLI's help text (``cli.py`` builds its options from
    these fields); ``; None: ...`` says what an open (None) default means.
    """

    env: str = field(default="game24", metadata={"help": "Env: game24, countdown, blocksworld, textworld or gym:<id>."})
    env_kwargs: dict = field(
        default_factory=dict,
        metadata={"help": "Env options as a JSON object, e.g. '{\"is_slippery\": false}' for gym envs."})
    tasks: str | None = field(
        default=None,
        metadata={"help": "Task file, directory or glob (gym: start seeds 'A:B' or 'A,B'); "
                          "None: the env's shipped set."})
    limit: int | None = field(default=None, metadata={"help": "Search only the first N tasks; None: all."})
    search: SearchConfig = field(default_factory=SearchConfig, metadata={"help": "Per-task search settings."})
    evaluator: str | None = field(
        default=None,
        metadata={"help": "Leaf values: " + ", ".join(f"{h.name} ({h.help})" for h in EVALUATORS.values())
                  + "; None: the env's default_evaluator."})
    proposer: str | None = field(
        default=None,
        metadata={"help": "Actions and priors: " + ", ".join(f"{h.name} ({h.help})" for h in PROPOSERS.values())
                  + f"; None: {DEFAULT_PROPOSER}."})
    seed: int = field(default=0, metadata={"help": "Root seed; each task's RNG derives from (seed, task_id)."})
    out: str = field(default="treeq-out", metadata={"help": "Output directory of the tree store."})
    workers: int = field(
        default=0, metadata={"help": "Worker processes; 0: one per CPU core. The rows do not depend on it."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar over tasks."})

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be >= 1, got {self.limit!r}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed!r}")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers!r}")
        if self.evaluator is not None:
            check_name("evaluator", self.evaluator)
        if self.proposer is not None:
            check_name("proposer", self.proposer)
        if not isinstance(self.env_kwargs, dict):
            raise ConfigError(f"env_kwargs must be a JSON object, got {self.env_kwargs!r}")
