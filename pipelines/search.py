"""Batch search job: many tasks, one tree each, every tree written to Parquet.

Reads top to bottom: build the env, read the tasks, open the store, record the run,
search each task (in this process or in worker processes), write each task's shards
as soon as it finishes, close the run and return a summary. A task's randomness
comes from ``(seed, task_id)`` alone, so ``--workers`` never changes a row.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import re
import time
import zlib
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from typing import Any

import numpy as np

from ..data.schema import SCHEMA_VERSION
from ..data.store import TreeStore
from ..envs.base import Env, Task
from ..envs.registry import make_env
from ..errors import ConfigError, EnvFailure, TreeqError
from ..mcts.hooks import EVALUATORS, make_evaluator
from ..mcts.search import SearchConfig, SearchResult, resolve_defaults, search
from ..mcts.tree import ROOT

__all__ = ["SearchJobConfig", "SearchSummary", "run_search", "task_rng", "tree_columns"]


@dataclass(frozen=True)
class SearchJobConfig:
    """A batch search over a task set."""

    env: str = field(default="game24", metadata={"help": "Env name (game24, countdown, blocksworld, textworld, gym:<id>)."})
    env_kwargs: dict = field(default_factory=dict, metadata={"help": "Keyword options for the env (gym: passed to gymnasium.make)."})
    tasks: str | None = field(default=None, metadata={"help": "Task file, directory or glob (gym: start seeds); None: the env's default set."})
    limit: int | None = field(default=None, metadata={"help": "Search only the first N tasks."})
    search: SearchConfig = field(default_factory=SearchConfig, metadata={"help": "Per-task search settings."})
    evaluator: str | None = field(
        default=None,
        metadata={"help": "Leaf values: 'rollout' (one random playout), 'zero' or 'bound' (the env's optimistic value_bound); None: the env's default_evaluator (else rollout)."},
    )
    seed: int = field(default=0, metadata={"help": "Root seed; each task's RNG derives from (seed, task_id)."})
    out: str = field(default="treeq-out", metadata={"help": "Output directory of the tree store."})
    workers: int = field(default=0, metadata={"help": "Worker processes; 0: one per CPU core."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar over tasks."})

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be >= 1, got {self.limit!r}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed!r}")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers!r}")
        if self.evaluator is not None and self.evaluator not in EVALUATORS:
            raise ConfigError(f"evaluator must be one of {', '.join(EVALUATORS)}, got {self.evaluator!r}")
        if not isinstance(self.env_kwargs, dict):
            raise ConfigError(f"env_kwargs must be a JSON object, got {self.env_kwargs!r}")


@dataclass(frozen=True)
class SearchSummary:
    """What a finished job reports."""

    run_id: str
    out: str
    env: str
    tasks: int
    solved: int
    nodes: int
    simulations: int
    seconds: float

    @property
    def sims_per_second(self) -> float:
        return self.simulations / self.seconds if self.seconds > 0 else float("nan")


def task_rng(seed: int, task_id: str) -> np.random.Generator:
    """The RNG of one task: a function of the run seed and the task id only."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(task_id.encode("utf-8"))]))


def tree_columns(result: SearchResult, env: Env, run_id: str, task_id: str) -> dict[str, Any]:
    """The ``nodes`` columns of one searched tree (schema v1)."""
    tree = result.tree
    n = tree.size
    nan_to_none = lambda a: [None if np.isnan(x) else float(x) for x in a]  # noqa: E731
    return {
        "run_id": [run_id] * n,
        "task_id": [task_id] * n,
        "node_id": np.arange(n, dtype=np.int32),
        "parent_id": tree.parent[:n],
        "depth": tree.depth[:n],
        "action": [tree.action_text(i) for i in range(n)],
        "state_key": tree.state_keys,
        "observation": [env.render(s) for s in tree.states],
        "prior": tree.prior[:n],
        "visits": tree.visits[:n],
        "value_sum": tree.value_sum[:n],
        "q": nan_to_none(tree.q()),
        "reward": tree.reward[:n],
        "terminal": tree.terminal[:n],
        "proven": nan_to_none(tree.proven()),
    }


def _tree_row(result: SearchResult, env_name: str, run_id: str, task_id: str) -> dict[str, list]:
    tree = result.tree
    root_value = tree.label()[ROOT]
    best = tree.best_child(ROOT)
    return {
        "run_id": [run_id],
        "task_id": [task_id],
        "env": [env_name],
        "simulations": [result.simulations],
        "nodes": [tree.size],
        "root_value": [None if np.isnan(root_value) else float(root_value)],
        "best_action": [None if best is None else tree.action_text(best)],
        "solved": [result.solved],
        "seconds": [result.seconds],
    }


# ---------------------------------------------------------------------------- one task
_ENV_CACHE: dict[str, Env] = {}


def _env(name: str, kwargs: dict) -> Env:
    """One env object per (name, options) and process: envs keep caches and live simulators."""
    key = json.dumps([name, kwargs], sort_keys=True)
    env = _ENV_CACHE.get(key)
    if env is None:
        env = _ENV_CACHE[key] = make_env(name, **kwargs)
    return env


def _search_task(env_name: str, env_kwargs: dict, task: Task, search_cfg: SearchConfig, evaluator: str,
                 seed: int, run_id: str, out: str) -> dict:
    """Search one task and write its shards; runs in the parent or in a worker."""
    env = _env(env_name, env_kwargs)
    try:
        rng = task_rng(seed, task.task_id)
        search_cfg = resolve_defaults(search_cfg, env)
        evaluate = make_evaluator(evaluator, env, rng, search_cfg.gamma, search_cfg.rollout_steps)
        result = search(env, env.reset(task, rng), search_cfg, rng, evaluate=evaluate)
    except TreeqError as exc:
        raise EnvFailure(f"task {task.task_id}: {exc}") from None
    except Exception as exc:  # an env that raises must not take finished work with it
        raise EnvFailure(f"task {task.task_id}: env {env_name!r} raised {type(exc).__name__}: {exc}") from None
    store = TreeStore(out)
    store.write("nodes", run_id, tree_columns(result, env, run_id, task.task_id), task.task_id)
    store.write("trees", run_id, _tree_row(result, env.name, run_id, task.task_id), task.task_id)
    return {"solved": result.solved, "nodes": result.tree.size, "simulations": result.simulations}


# ---------------------------------------------------------------------------- the job
def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "schema": str(SCHEMA_VERSION)}
    for pkg in ("treeq", "numpy", "pyarrow", "duckdb"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def _run_id(cfg: SearchJobConfig, env_name: str, tasks: list[Task]) -> str:
    """Same env, tasks, search settings and seed give the same run id (and rows)."""
    ident = {
        "env": env_name,
        "env_kwargs": cfg.env_kwargs,
        "evaluator": cfg.evaluator,
        "search": asdict(cfg.search),
        "seed": cfg.seed,
        "tasks": [[t.task_id, t.payload] for t in tasks],
    }
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', env_name)}-{digest}"


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def run_search(cfg: SearchJobConfig) -> SearchSummary:
    """Search every task of ``cfg`` and write the tree store.

    Raises:
        TreeqError: bad env, task file, output directory or a failing env; every task
            finished before the failure is already on disk.
    """
    from tqdm import tqdm

    env = _env(cfg.env, cfg.env_kwargs)
    evaluator = cfg.evaluator or getattr(env, "default_evaluator", "rollout")
    tasks = list(env.load_tasks(cfg.tasks))[: cfg.limit]
    store = TreeStore(cfg.out)
    run_id = _run_id(cfg, env.name, tasks)
    started = _utcnow()
    effective = asdict(cfg) | {"env": env.name, "evaluator": evaluator, "search": asdict(resolve_defaults(cfg.search, env))}
    run_row = {
        "run_id": [run_id],
        "config": [json.dumps(effective, sort_keys=True, default=str)],
        "versions": [json.dumps(_versions(), sort_keys=True)],
        "seed": [cfg.seed],
        "started_at": [started],
        "ended_at": [None],
    }
    store.write("runs", run_id, run_row)

    workers = min(cfg.workers or os.cpu_count() or 1, len(tasks))
    args = [(cfg.env, cfg.env_kwargs, t, cfg.search, evaluator, cfg.seed, run_id, cfg.out) for t in tasks]
    totals = {"solved": 0, "nodes": 0, "simulations": 0}
    t0 = time.perf_counter()
    bar = tqdm(total=len(tasks), desc=f"search {env.name}", unit="task", disable=not cfg.progress, dynamic_ncols=True)

    def collect(res: dict) -> None:
        for k in totals:
            totals[k] += int(res[k])
        bar.update(1)
        bar.set_postfix(solved=totals["solved"], refresh=False)

    try:
        if workers <= 1:
            for a in args:
                collect(_search_task(*a))
        else:
            with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
                pending = {pool.submit(_search_task, *a) for a in args}
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        if fut.exception() is not None:
                            for p in pending:
                                p.cancel()
                            raise fut.exception()
                        collect(fut.result())
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    run_row["ended_at"] = [_utcnow()]
    store.write("runs", run_id, run_row)
    return SearchSummary(run_id, str(cfg.out), env.name, len(tasks), totals["solved"], totals["nodes"], totals["simulations"], seconds)
