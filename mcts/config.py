"""Settings and result of one search, and the one place an env's defaults are applied.

Kept apart from the engine so that ``pipelines/``, hooks and tests import the types
without the engine (no import cycle).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ..envs.base import Env
from ..errors import ConfigError
from .selection import RULES

if TYPE_CHECKING:
    from .tree import Tree

__all__ = ["SearchConfig", "SearchResult", "resolve_defaults", "SELECTIONS"]

SELECTIONS = RULES  # the selection rules, named where they are written


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass(frozen=True)
class SearchConfig:
    """Settings of one search (tree or graph mode; see ``treeq.mcts.search``)."""

    simulations: int = field(default=1000, metadata={"help": "Simulations per task (the search budget)."})
    gamma: float | None = field(
        default=None, metadata={"help": "Discount factor in [0, 1]; None: the env's default_gamma."})
    c: float | None = field(
        default=None, metadata={"help": "Exploration constant of UCT / PUCT; None: the env's default_c."})
    selection: str = field(default="uct", metadata={
        "help": "'uct' (UCB1 on trees), 'puct' (AlphaZero, uses priors) or 'gumbel' (Gumbel MuZero: Gumbel-top-k and "
                "Sequential Halving down to one action at the root, uses priors)."})
    fpu: float = field(default=0.0, metadata={"help": "PUCT only: Q assumed for actions not yet visited."})
    gumbel_k: int = field(default=16, metadata={
        "help": "gumbel only: most root actions sampled without replacement (Gumbel-top-k) for Sequential Halving; "
                "never more than the largest power of two at most sqrt(2 * simulations) (4 simulations: two "
                "actions, 8 to 31: four, 32 to 127: eight)."})
    gumbel_scale: float = field(default=0.0, metadata={
        "help": "gumbel only: scale of the root's Gumbel noise (mctx's gumbel_scale, 1 there); 0: the top k of the "
                "prior, deterministic, as mctx advises for evaluation in perfect-information games (measured: the "
                "noise costs a fifth of the puzzles at 4 simulations with a trained prior)."})
    random_untried: bool = field(
        default=True,
        metadata={"help": "UCT: try a node's unvisited actions from a random one on (as OpenSpiel's MCTSBot "
                          "shuffles children); False: in the order proposed."})
    solver: bool = field(
        default=True,
        metadata={"help": "MCTS-Solver: prove exact values where the env is deterministic (tree and graph mode)."})
    stop_on_solve: bool = field(
        default=False, metadata={"help": "Stop a task's search at its first solution instead of spending the budget."})
    max_nodes: int = field(default=1_000_000, metadata={"help": "Stop growing (and searching) at this many rows."})
    wave_size: int = field(
        default=1, metadata={"help": "Leaves per wave: one propose and one evaluate call serve the whole wave."})
    proposals: int = field(default=8, metadata={"help": "Actions asked of a policy per open-text state."})
    rollout_steps: int = field(default=200, metadata={"help": "Longest random rollout of the rollout evaluator."})
    transpositions: bool | None = field(
        default=None,
        metadata={"help": "Graph mode: equal state_keys share one node, max backup (MCGS); None: the env's preference."})
    max_depth: int = field(default=1000, metadata={"help": "Longest selection path; the node there is a leaf."})
    task_timeout: float | None = field(default=None, metadata={
        "help": "Seconds per task: the search stops after the wave that passes it and the task is recorded "
                "as 'timeout'; None: no limit."})

    def __post_init__(self) -> None:
        if not _is_int(self.simulations) or self.simulations < 1:
            raise ConfigError(f"simulations must be a positive integer, got {self.simulations!r}")
        if self.gamma is not None and not (isinstance(self.gamma, (int, float)) and 0.0 <= self.gamma <= 1.0):
            raise ConfigError(f"gamma must lie in [0, 1], got {self.gamma!r}")
        if self.c is not None and not (isinstance(self.c, (int, float)) and self.c >= 0.0 and math.isfinite(self.c)):
            raise ConfigError(f"c must be a finite number >= 0, got {self.c!r}")
        if self.selection not in SELECTIONS:
            raise ConfigError(f"selection must be {' or '.join(repr(r) for r in SELECTIONS)}, got {self.selection!r}")
        if not math.isfinite(self.fpu):
            raise ConfigError(f"fpu must be a finite number, got {self.fpu!r}")
        if not _is_int(self.gumbel_k) or self.gumbel_k < 1:
            raise ConfigError(f"gumbel_k must be a positive integer, got {self.gumbel_k!r}")
        if not (isinstance(self.gumbel_scale, (int, float)) and math.isfinite(self.gumbel_scale)
                and self.gumbel_scale >= 0):
            raise ConfigError(f"gumbel_scale must be a finite number >= 0, got {self.gumbel_scale!r}")
        if not _is_int(self.max_nodes) or self.max_nodes < 2:
            raise ConfigError(f"max_nodes must be an integer >= 2 (the root and one child), got {self.max_nodes!r}")
        if not _is_int(self.wave_size) or self.wave_size < 1:
            raise ConfigError(f"wave_size must be a positive integer, got {self.wave_size!r}")
        if not _is_int(self.proposals) or self.proposals < 1:
            raise ConfigError(f"proposals must be a positive integer, got {self.proposals!r}")
        if not _is_int(self.max_depth) or self.max_depth < 1:
            raise ConfigError(f"max_depth must be a positive integer, got {self.max_depth!r}")
        if self.task_timeout is not None and not (isinstance(self.task_timeout, (int, float)) and self.task_timeout > 0):
            raise ConfigError(f"task_timeout must be a number of seconds > 0, got {self.task_timeout!r}")
        if not _is_int(self.rollout_steps) or self.rollout_steps < 0:
            raise ConfigError(f"rollout_steps must be an integer >= 0, got {self.rollout_steps!r}")


@dataclass
class SearchResult:
    """A finished search.

    Attributes:
        tree: The exported rows (read-only from here on).
        simulations: Simulations run.
        solved: Whether a successful terminal transition was reached.
        stop_reason: ``budget``, ``exhausted`` (no root action left to search: all
            proven, or dead ends), ``solved`` (``stop_on_solve``), ``max_nodes`` or
            ``timeout`` (``task_timeout``).
        seconds: Wall-clock time of the search, export included.
        backup: ``mean`` (tree mode) or ``max`` (graph mode), as ``trees.backup`` records.
        waves: Waves run (each made at most one propose and one evaluate call).
    """

    tree: Tree
    simulations: int
    solved: bool
    stop_reason: str
    seconds: float
    backup: str = "mean"
    waves: int = 0


def resolve_defaults(config: SearchConfig, env: Env) -> SearchConfig:
    """Fill the settings left open (None) from the env's declared defaults.

    The one place this happens: the job runner and :func:`treeq.mcts.search` both call
    it, and what ``runs.config`` records is its output. ``gamma`` from
    ``env.default_gamma``, ``c`` from ``env.default_c``, ``transpositions`` from
    ``env.prefer_transpositions``.
    """
    gamma = config.gamma if config.gamma is not None else float(env.default_gamma)
    c = config.c if config.c is not None else float(env.default_c)
    trans = config.transpositions if config.transpositions is not None else bool(env.prefer_transpositions)
    return replace(config, gamma=float(gamma), c=float(c), transpositions=trans)
