"""Batch search job: many tasks, one tree each, every tree written to Parquet.

Reads top to bottom (the settings, :class:`SearchJobConfig`, live in
``pipelines.config``): the rows a searched task becomes, searching one task (in this
process or a worker), then the job itself: build the env, read the tasks, open the
store, record the run, search the tasks, commit each task's shards as it finishes,
close the run and return a summary.

A task's randomness comes from ``(seed, task_id)`` alone, so ``--workers`` never
changes a row. Whoever searches a task stages its shards (temporary files); the job
commits them (two renames, with Ctrl-C held back meanwhile), so a task is on disk
whole or not at all. Ctrl-C ends the run at once: the workers are ended, what they
had staged is removed, ``runs.ended_at`` is written and :class:`Interrupted` says how
many tasks were written. A failing task is recorded as a ``trees`` row with
``status = 'error'`` and stops the job (every task finished before it stays).
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
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from ..data.schema import SCHEMA_VERSION
from ..data.store import Staged, TreeStore
from ..envs.base import Env, Task
from ..envs.registry import make_env
from ..errors import EnvFailure, Interrupted, TreeqError
from ..mcts.config import SearchResult, resolve_defaults
from ..mcts.search import search
from ..mcts.tree import ROOT
from .config import SearchJobConfig
from .policies import DEFAULT_PROPOSER, make_hooks
from .workers import Inline, Workers, WorkerDied, sigint_deferred, sigint_ignored

__all__ = ["SearchJobConfig", "SearchSummary", "run_search", "task_rng", "tree_columns", "tree_row"]


# ---------------------------------------------------------------------------- results
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


# ---------------------------------------------------------------------------- rows of a task
def _nan_to_none(a: np.ndarray) -> list[float | None]:
    return [None if np.isnan(x) else float(x) for x in a]


def tree_columns(result: SearchResult, env: Env, run_id: str, task_id: str) -> dict[str, Any]:
    """The ``nodes`` columns of one searched tree (schema v2)."""
    tree = result.tree
    n = tree.size
    return {
        "run_id": [run_id] * n,
        "task_id": [task_id] * n,
        "node_id": np.arange(n, dtype=np.int32),
        "parent_id": tree.parent,
        "depth": tree.depth,
        "action": [tree.action_text(i) for i in range(n)],
        "state_key": tree.state_keys,
        "observation": [env.render(s) for s in tree.states],
        "prior": tree.prior,
        "visits": tree.visits,
        "value_sum": tree.value_sum,
        "q": _nan_to_none(tree.q()),
        "reward": tree.reward,
        "terminal": tree.terminal,
        "proven": _nan_to_none(tree.proven()),
        "feedback": _nan_to_none(tree.feedback),
    }


def tree_row(env_name: str, run_id: str, task_id: str, result: SearchResult | None = None,
             error: str | None = None, seconds: float = 0.0) -> dict[str, list]:
    """The ``trees`` row of a searched task (``result``) or of one that failed (``error``).

    ``best_action`` is the root child ranked first by :meth:`Tree.best_child`: the highest
    ``coalesce(proven, q)``, not the most visits (the solver never revisits a proven child).
    """
    row: dict[str, Any] = {
        "run_id": run_id, "task_id": task_id, "env": env_name, "simulations": 0, "nodes": 0, "root_value": None,
        "best_action": None, "solved": False, "seconds": seconds, "backup": None, "status": "error", "error": error,
    }
    if result is not None:
        tree = result.tree
        best = tree.best_child(ROOT)
        root_value = float(tree.label()[ROOT])
        row |= {
            "simulations": result.simulations, "nodes": tree.size, "solved": result.solved, "seconds": result.seconds,
            "root_value": None if np.isnan(root_value) else root_value, "backup": result.backup, "status": "ok",
            "best_action": None if best is None else tree.action_text(best),
        }
    return {k: [v] for k, v in row.items()}


# ---------------------------------------------------------------------------- one task
_ENV_CACHE: dict[str, Env] = {}


def _env(name: str, kwargs: dict) -> Env:
    """One env object per (name, options) and process: envs keep caches and live simulators."""
    key = json.dumps([name, kwargs], sort_keys=True)
    env = _ENV_CACHE.get(key)
    if env is None:
        env = _ENV_CACHE[key] = make_env(name, **kwargs)
    return env


@dataclass(frozen=True)
class _Done:
    """A searched task as its searcher hands it back: counts, staged shards, or the error."""

    solved: bool
    nodes: int
    simulations: int
    staged: list[Staged]
    error: str | None = None


def _search_task(job: SearchJobConfig, run_id: str, task: Task) -> _Done:
    """Search one task (``job`` has the env's defaults resolved) and stage its shards."""
    env = _env(job.env, job.env_kwargs)
    store = TreeStore(job.out)
    t0 = time.perf_counter()
    try:
        rng = task_rng(job.seed, task.task_id)
        propose, evaluate = make_hooks(env, job.search, rng, job.evaluator, job.proposer, job.lm)
        result = search(env, env.reset(task, rng), job.search, rng, propose=propose, evaluate=evaluate)
    except Exception as exc:  # an env that raises must not take finished work with it
        what = str(exc) if isinstance(exc, TreeqError) else f"env {job.env!r} raised {type(exc).__name__}: {exc}"
        error = " ".join(f"task {task.task_id}: {what}".split())
        row = tree_row(env.name, run_id, task.task_id, error=error, seconds=time.perf_counter() - t0)
        return _Done(False, 0, 0, [store.stage("trees", run_id, row, task.task_id)], error)
    staged: list[Staged] = []
    try:
        staged.append(store.stage("nodes", run_id, tree_columns(result, env, run_id, task.task_id), task.task_id))
        staged.append(store.stage("trees", run_id, tree_row(env.name, run_id, task.task_id, result), task.task_id))
    except BaseException:
        store.abandon(staged)
        raise
    return _Done(result.solved, result.tree.size, result.simulations, staged)


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


def _run_id(job: SearchJobConfig, env_name: str, tasks: list[Task]) -> str:
    """Same env, tasks, effective search settings, hooks and seed give the same run id (and rows)."""
    ident = {
        "env": env_name,
        "env_kwargs": job.env_kwargs,
        "evaluator": job.evaluator,
        "proposer": job.proposer,
        "search": asdict(job.search),
        "seed": job.seed,
        "tasks": [[t.task_id, t.payload] for t in tasks],
    }
    if job.proposer == "hf":  # another model, another run (where it is served and how fast do not count)
        ident["lm"] = {k: v for k, v in asdict(job.lm).items()
                       if k not in ("base_url", "timeout", "device", "max_batch_tokens")}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', env_name)}-{digest}"


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _run_row(job: SearchJobConfig, env_name: str, run_id: str) -> dict[str, list]:
    """The ``runs`` row as a run starts: the effective settings; ``ended_at`` null until it ends."""
    return {
        "run_id": [run_id],
        "config": [json.dumps(asdict(job) | {"env": env_name}, sort_keys=True, default=str)],
        "versions": [json.dumps(_versions(), sort_keys=True)],
        "seed": [job.seed],
        "started_at": [_utcnow()],
        "ended_at": [None],
    }


def run_search(cfg: SearchJobConfig) -> SearchSummary:
    """Search every task of ``cfg`` and write the tree store.

    Raises:
        TreeqError: bad env, task file, output directory or a failing env; every task
            finished before the failure is on disk, the failing one as an error row.
        Interrupted: Ctrl-C (a ``KeyboardInterrupt``); the tasks finished before it are
            on disk, nothing half-written is left, ``runs.ended_at`` is set.
    """
    from tqdm import tqdm

    env = _env(cfg.env, cfg.env_kwargs)
    tasks = list(env.load_tasks(cfg.tasks))[: cfg.limit]
    job = replace(cfg, search=resolve_defaults(cfg.search, env), evaluator=cfg.evaluator or env.default_evaluator,
                  proposer=cfg.proposer or DEFAULT_PROPOSER)
    store = TreeStore(cfg.out)
    run_id = _run_id(job, env.name, tasks)
    run_row = _run_row(job, env.name, run_id)
    store.write("runs", run_id, run_row)

    workers = min(cfg.workers or os.cpu_count() or 1, len(tasks))
    runner: Inline | Workers = Inline(_search_task)
    totals = {"written": 0, "solved": 0, "nodes": 0, "simulations": 0}
    t0 = time.perf_counter()
    bar = tqdm(total=len(tasks), desc=f"search {env.name}", unit="task", disable=not cfg.progress, dynamic_ncols=True)
    interrupted = finished = False
    try:
        if workers > 1:
            runner = Workers(_search_task, workers)
        for _, done in runner.map_unordered([(job, run_id, t) for t in tasks]):
            with sigint_deferred():  # a task's shards land together, and the count says so
                store.commit(done.staged)
                totals["written"] += 1
            if done.error is not None:
                raise EnvFailure(done.error)
            totals["solved"] += done.solved
            totals["nodes"] += done.nodes
            totals["simulations"] += done.simulations
            bar.update(1)
            bar.set_postfix(solved=totals["solved"], refresh=False)
        finished = True
    except WorkerDied as exc:
        raise EnvFailure(f"task {tasks[exc.index].task_id}: {exc}") from None
    except KeyboardInterrupt:
        interrupted = True
    finally:
        with sigint_ignored():  # a second Ctrl-C must not cut the clean-up short
            runner.close()
            for pid, i in runner.in_flight():
                store.discard(run_id, tasks[i].task_id, pid)
            bar.leave = finished  # else the bar makes way for the one line that says why
            bar.close()
            store.write("runs", run_id, run_row | {"ended_at": [_utcnow()]})
    if interrupted:
        raise Interrupted(f"{totals['written']} of {len(tasks)} tasks finished and were written to {cfg.out} "
                          f"(run {run_id}); rerun the same command to redo the rest")
    seconds = time.perf_counter() - t0
    return SearchSummary(run_id, str(cfg.out), env.name, len(tasks), totals["solved"], totals["nodes"],
                         totals["simulations"], seconds)
