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

Why one module over 400 lines: the job reads top to bottom as one flow (cleanrl's habit):
the rows, one task, then the job with its resume and Ctrl-C handling, which share the run
record and the commit protocol.
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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from ..data.runs import finished_tasks, recorded_runs
from ..data.schema import SCHEMA_VERSION
from ..data.store import Staged, TreeStore
from ..envs.base import Env, Task
from ..envs.registry import make_env
from ..errors import ConfigError, EnvFailure, Interrupted, TreeqError
from ..mcts.config import SearchResult, resolve_defaults
from ..mcts.search import search
from ..mcts.tree import ROOT
from .config import SearchJobConfig
from .policies import DEFAULT_PROPOSER, make_hooks
from .workers import Inline, WorkerDied, Workers, sigint_deferred, sigint_ignored

__all__ = ["SearchJobConfig", "SearchSummary", "run_search", "task_rng", "tree_columns", "tree_row",
           "job_from_record", "latest_settings"]


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
    skipped: int = 0  # tasks already on disk (a resumed run)
    searched_simulations: int = 0  # simulations run by this call
    timeouts: int = 0  # tasks stopped by --task-timeout (trees.status = 'timeout')

    @property
    def sims_per_second(self) -> float:
        """Simulations per second of the searching this call did (a resumed run's earlier tasks aside)."""
        return self.searched_simulations / self.seconds if self.seconds > 0 else float("nan")


def task_rng(seed: int, task_id: str) -> np.random.Generator:
    """The RNG of one task: a function of the run seed and the task id only."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(task_id.encode("utf-8"))]))


# ---------------------------------------------------------------------------- rows of a task
def _nan_to_none(a: np.ndarray) -> list[float | None]:
    return [None if np.isnan(x) else float(x) for x in a]


def tree_columns(result: SearchResult, env: Env, run_id: str, task_id: str) -> dict[str, Any]:
    """The ``nodes`` columns of one searched tree (schema v3)."""
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
        "step_observation": [None] + [env.observe(s) for s in tree.states[1:]],
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
            "root_value": None if np.isnan(root_value) else root_value, "backup": result.backup,
            "status": "timeout" if result.stop_reason == "timeout" else "ok",
            "error": (f"stopped after {result.seconds:.1f} s (--task-timeout), {result.simulations} simulations"
                      if result.stop_reason == "timeout" else None),
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
    timeout: bool = False


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
    return _Done(result.solved, result.tree.size, result.simulations, staged, timeout=result.stop_reason == "timeout")


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


_LM_PLACE = ("base_url", "timeout", "device", "max_batch_tokens", "prm_batch_size")  # where and how fast
_PRM_VALUE = ("prm", "value_mix")  # the prm evaluator's settings, recorded with it


def _settings(job: SearchJobConfig, env_name: str) -> dict[str, Any]:
    """What makes a run's rows: env, options, hooks, search settings, seed (not where or how fast it runs)."""
    ident = {
        "env": env_name,
        "env_kwargs": job.env_kwargs,
        "evaluator": job.evaluator,
        "proposer": job.proposer,
        "search": asdict(job.search),
        "seed": job.seed,
    }
    if job.proposer == "hf":  # another model, another run (where it is served and how fast do not count)
        ident["lm"] = {k: v for k, v in asdict(job.lm).items() if k not in _LM_PLACE + _PRM_VALUE}
    if job.evaluator == "prm":  # another PRM (its training data), another run
        from .policies.prm_value import prm_fingerprint

        ident["lm"] = ident.get("lm", {}) | {k: getattr(job.lm, k) for k in _PRM_VALUE}
        ident["prm_data"] = prm_fingerprint(job.lm.prm)
    return ident


def _run_id(job: SearchJobConfig, env_name: str, tasks: list[Task]) -> str:
    """Same env, tasks, effective search settings, hooks and seed give the same run id (and rows)."""
    ident = _settings(job, env_name) | {"tasks": [[t.task_id, t.payload] for t in tasks]}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', env_name)}-{digest}"


def _flat_settings(job: SearchJobConfig, env_name: str) -> dict[str, Any]:
    """:func:`_settings` plus the task selection, flat: keyed by the search flags' names."""
    out: dict[str, Any] = {}
    for k, v in (_settings(job, env_name) | {"tasks": job.tasks, "limit": job.limit}).items():
        if k != "prm_data":  # the PRM's identity, not a flag
            out |= v if k in ("search", "lm") else {k: v}
    return out


def latest_settings(out: str | os.PathLike) -> dict[str, Any]:
    """The settings of the latest run recorded in ``out``, keyed by the search flags' names.

    Raises:
        ConfigError: no run is recorded there.
    """
    runs = recorded_runs(out)
    if not runs:
        raise ConfigError(f"--resume: no run is recorded in {out}; start one without --resume")
    config = runs[-1][1]
    return _flat_settings(job_from_record(config), config.get("env", ""))


def job_from_record(config: dict) -> SearchJobConfig:
    """The job a ``runs.config`` records (the effective settings), as a config again."""
    from ..mcts.config import SearchConfig
    from .policies.lm import LMConfig

    fields = SearchJobConfig.__dataclass_fields__
    kw = {k: v for k, v in config.items() if k in fields and k not in ("search", "lm")}
    kw["search"] = SearchConfig(**{k: v for k, v in (config.get("search") or {}).items()
                                   if k in SearchConfig.__dataclass_fields__})
    kw["lm"] = LMConfig(**{k: v for k, v in (config.get("lm") or {}).items() if k in LMConfig.__dataclass_fields__})
    return SearchJobConfig(**kw)


def _check_resume(out: str, run_id: str, job: SearchJobConfig, env_name: str) -> None:
    """``--resume``: the run must be in ``out``, with these settings.

    Raises:
        ConfigError: no run to resume there, or the recorded settings differ (the line names them).
    """
    runs = recorded_runs(out)
    if any(r == run_id for r, _, _ in runs):
        return
    ours, theirs = _flat_settings(job, env_name), latest_settings(out)
    diff = [f"{k}: {ours.get(k)!r} here, {theirs.get(k)!r} recorded" for k in sorted(set(ours) | set(theirs))
            if ours.get(k) != theirs.get(k)]
    raise ConfigError(f"--resume: the settings differ from run {runs[-1][0]} recorded in {out} ("
                      f"{'; '.join(diff[:4]) or 'the task set changed'}): rerun with its settings, or give another --out")


def _check_policy(job: SearchJobConfig, env: Env, tasks: list[Task]) -> None:
    """An env of open-text actions (``legal_actions`` None: llm-steps) needs a language model that
    proposes them; without one every task would fail, so the job refuses before it makes the store.

    Raises:
        ConfigError: the built-in proposers without a model, on such an env.
    """
    lm = job.lm
    if job.proposer not in ("uniform", "hf") or (job.proposer == "hf" and (lm.model or lm.backend != "hf")):
        return  # a model, or a registered proposer that may write text itself
    if not tasks or env.legal_actions(env.reset(tasks[0], task_rng(job.seed, tasks[0].task_id))) is not None:
        return
    raise ConfigError(f"env {env.name!r} has open-text actions: a language model must propose them: "
                      f"--policy hf --model DIR (a local model; `python cli.py make-tiny-model` makes a tiny one), "
                      f"or --policy hf --backend openai --base-url URL for a served one")


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


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


def run_search(cfg: SearchJobConfig, resume: bool = False, tasks: Sequence[Task] | None = None) -> SearchSummary:
    """Search every task of ``cfg`` and write the tree store.

    ``tasks``: these tasks instead of ``cfg.tasks`` and ``cfg.limit`` (a library caller's
    split of a task file, as ``self-train`` makes; ``runs.config`` still names the file).

    Rerunning the same job into the same ``out`` resumes it: tasks already on disk are
    skipped (:func:`~treeq.data.runs.finished_tasks`), the rest searched. ``resume`` insists on that: the run must
    be recorded there with the same settings. A task that fails is recorded (``trees``
    row, ``status = 'error'``) and the run goes on; the job then ends with an error that
    counts the failures. A manifest of the run's tasks lies beside its ``runs`` row
    (``runs/run_id=<id>/manifest.json``).

    Raises:
        TreeqError: bad env, task file or output directory, a ``resume`` that does not
            match, or failed tasks (every other task is on disk).
        Interrupted: Ctrl-C (a ``KeyboardInterrupt``); the tasks finished before it are
            on disk, nothing half-written is left, ``runs.ended_at`` is set.
    """
    from tqdm import tqdm

    from ..data.store import write_text_atomic

    env = _env(cfg.env, cfg.env_kwargs)
    tasks = list(env.load_tasks(cfg.tasks))[: cfg.limit] if tasks is None else list(tasks)
    job = replace(cfg, search=resolve_defaults(cfg.search, env), evaluator=cfg.evaluator or env.default_evaluator,
                  proposer=cfg.proposer or DEFAULT_PROPOSER)
    _check_policy(job, env, tasks)
    if job.evaluator == "prm":  # a PRM that cannot serve this env fails every task: refuse before the store
        from .policies.prm_value import check_prm

        check_prm(job.lm.prm, env.name)
    run_id = _run_id(job, env.name, tasks)
    if resume:
        _check_resume(str(cfg.out), run_id, job, env.name)
    store = TreeStore(cfg.out)
    store.remove_stale(run_id)  # what a killed earlier attempt left staged
    done_before = finished_tasks(store, run_id)
    sims_before = sum(v[2] for v in done_before.values())
    previous = [r for r in recorded_runs(cfg.out) if r[0] == run_id]
    run_row = _run_row(job, env.name, run_id)
    if previous:  # a resumed run keeps the time it first started
        run_row["started_at"] = [previous[0][2]]
    store.write("runs", run_id, run_row)
    manifest = store.path("runs", run_id).with_name("manifest.json")
    if not manifest.exists():
        write_text_atomic(manifest, json.dumps({"run_id": run_id, "env": env.name,
                                                "tasks": [t.task_id for t in tasks]}, indent=1) + "\n")
    todo = [t for t in tasks if t.task_id not in done_before]

    workers = min(cfg.workers or os.cpu_count() or 1, max(len(todo), 1))
    runner: Any = Inline(_search_task)
    totals = {"written": len(done_before), "solved": sum(v[0] for v in done_before.values()),
              "nodes": sum(v[1] for v in done_before.values()), "simulations": sims_before,
              "timeouts": sum(v[3] for v in done_before.values())}
    failed: list[str] = []
    t0 = time.perf_counter()
    bar = tqdm(total=len(tasks), initial=len(done_before), desc=f"search {env.name}", unit="task",
               disable=not cfg.progress, dynamic_ncols=True)
    interrupted = finished = False
    try:
        if cfg.executor == "ray":
            from .ray_runner import RayRunner

            runner = RayRunner(_search_task, cfg.address, cfg.workers or None)
        elif workers > 1:
            runner = Workers(_search_task, workers)
        for _, done in runner.map_unordered([(job, run_id, t) for t in todo]):
            with sigint_deferred():  # a task's shards land together, and the count says so
                store.commit(done.staged)
                totals["written"] += 1
            if done.error is not None:
                failed.append(done.error)
            totals["solved"] += done.solved
            totals["nodes"] += done.nodes
            totals["simulations"] += done.simulations
            totals["timeouts"] += done.timeout
            bar.update(1)
            bar.set_postfix(solved=totals["solved"], failed=len(failed), refresh=False)
        finished = True
    except WorkerDied as exc:
        raise EnvFailure(f"task {todo[exc.index].task_id}: {exc}") from None
    except KeyboardInterrupt:
        interrupted = True
    finally:
        with sigint_ignored():  # a second Ctrl-C must not cut the clean-up short
            runner.close()
            for pid, i in runner.in_flight():
                store.discard(run_id, todo[i].task_id, pid)
            # again: a killed earlier attempt's worker still dying (in an fsync) when this run began
            store.remove_stale(run_id)
            bar.leave = finished  # else the bar makes way for the one line that says why
            bar.close()
            store.write("runs", run_id, run_row | {"ended_at": [_utcnow()]})
    if interrupted:
        raise Interrupted(f"{totals['written']} of {len(tasks)} tasks finished and were written to {cfg.out} "
                          f"(run {run_id}); rerun the same command to redo the rest")
    if failed:
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        timed_out = f" ({totals['timeouts']} of them timed out: status 'timeout')" if totals["timeouts"] else ""
        raise EnvFailure(f"{failed[0]}{more}; {len(failed)} of {len(tasks)} tasks failed and are recorded in trees "
                         f"with status 'error', the other {len(tasks) - len(failed)} were written to {cfg.out}"
                         f"{timed_out}; rerun the same command to retry the failed ones")
    seconds = time.perf_counter() - t0
    return SearchSummary(run_id, str(cfg.out), env.name, len(tasks), totals["solved"], totals["nodes"],
                         totals["simulations"], seconds, len(done_before),
                         totals["simulations"] - sims_before, totals["timeouts"])
