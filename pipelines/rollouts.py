"""Trajectory groups (``rollouts``): G complete trajectories per task from a registered policy.

The groups GRPO and GiGPO train on: for each task, ``group_size`` trajectories from the
same start state (the task's generator seeds the start and the sampling, so the same
seed gives the same rows), each action drawn from the policy's priors (the registered
proposer; ``uniform`` gives every legal action the same weight). Any env, stochastic
ones included: the env samples its outcomes with the task's generator.

One Parquet row per step: ``trajectory_id`` (verl-agent's ``traj_uid``), ``group_id``
(its ``uid``: the task), ``task_id``, ``step``, ``state_key`` (the step's state: the
anchor state of GiGPO), ``next_state_key`` (the state the step led to), ``observation``
(the step's state rendered), ``action``, ``prior``, ``reward``, ``terminated``,
``truncated``, ``success`` (of the whole trajectory). The file's metadata holds the job's
settings (``treeq.rollouts``) and the env's discount (``gamma``), from which
``export-rewards`` replays the trajectories.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..data.store import RecordWriter
from ..envs.base import Env, Step, Task, is_success
from ..envs.registry import make_env
from ..mcts.config import SearchConfig, resolve_defaults
from .config import RolloutConfig
from .policies import PROPOSERS
from .policies.lm import LMConfig
from .search import task_rng

__all__ = ["run_rollouts", "play", "policy_chooser", "prior_probs", "iter_group", "sample_group", "group_rows", "ROLLOUT_SCHEMA", "CONFIG_KEY"]




def play(env: Env, state: Any, choose: Callable[[Any], tuple[str, float] | None], rng: np.random.Generator,
         max_steps: int) -> tuple[list[tuple[Any, str, float, Step]], bool]:
    """One trajectory from ``state``: ``choose(state)`` picks (action, prior), None when no action is left.

    Returns the transitions (state, action, prior, step) and whether the last step succeeded.
    """
    transitions: list[tuple[Any, str, float, Step]] = []
    for _ in range(max_steps):
        picked = choose(state)
        if picked is None:
            break
        action, prior = picked
        step = env.step(state, action, rng)
        transitions.append((state, action, prior, step))
        if step.terminated or step.truncated:
            return transitions, is_success(step)
        state = step.state
    return transitions, False


def prior_probs(options: list[tuple]) -> np.ndarray:
    """A proposer's priors of ``(action, prior, ...)`` options as probabilities: negatives as 0, then
    normalised; uniform where they sum to 0."""
    priors = np.array([max(float(o[1]), 0.0) for o in options], dtype=np.float64)
    return priors / priors.sum() if priors.sum() > 0 else np.full(len(options), 1.0 / max(len(options), 1))


def policy_chooser(env: Env, search_cfg: SearchConfig, policy: str, rng: np.random.Generator,
                   lm: LMConfig | None = None) -> Callable[[Any], tuple[str, float] | None]:
    """``choose(state)``: an action drawn from the registered proposer's priors, and its probability."""
    propose = PROPOSERS[policy].factory(env, search_cfg, rng, lm or LMConfig())

    def choose(state):
        (options,) = propose([state], search_cfg.proposals)
        if not options:
            return None
        priors = prior_probs(options)
        k = int(rng.choice(len(options), p=priors))
        return options[k][0], float(priors[k])

    return choose


def iter_group(env: Env, task: Task, cfg: RolloutConfig, search_cfg: SearchConfig
               ) -> Iterator[tuple[list[tuple[Any, str, float, Step]], bool]]:
    """The ``group_size`` trajectories of one task, one at a time: a function of (seed, task id) only.

    ``search_cfg``: the settings the policy's proposer is built with, the env's defaults
    resolved by the caller once per job."""
    rng = task_rng(cfg.seed, task.task_id)
    choose = policy_chooser(env, search_cfg, cfg.policy, rng, cfg.lm)
    start = env.reset(task, rng)
    for _ in range(cfg.group_size):
        yield play(env, start, choose, rng, cfg.max_steps)


def sample_group(env: Env, task: Task, cfg: RolloutConfig, search_cfg: SearchConfig
                 ) -> list[tuple[list[tuple[Any, str, float, Step]], bool]]:
    """The ``group_size`` trajectories of one task, as a list."""
    return list(iter_group(env, task, cfg, search_cfg))


def group_rows(env: Env, task: Task, group, max_steps: int, first: int = 0) -> dict[str, list]:
    """The rows of trajectories ``first``, ``first + 1``, ... of a group: one per step, in trajectory and step order."""
    rows: dict[str, list] = {f.name: [] for f in ROLLOUT_SCHEMA}
    for g, (transitions, success) in enumerate(group, start=first):
        for t, (state, action, prior, step) in enumerate(transitions):
            cut = t == max_steps - 1 and not step.terminated
            for name, value in (("trajectory_id", f"{task.task_id}/{g}"), ("group_id", task.task_id),
                                ("task_id", task.task_id), ("step", t), ("state_key", env.state_key(state)),
                                ("next_state_key", env.state_key(step.state)),
                                ("observation", env.render(state)), ("action", action), ("prior", prior),
                                ("step_observation", env.observe(step.state)),
                                ("reward", float(step.reward)), ("terminated", bool(step.terminated)),
                                ("truncated", bool(step.truncated or cut)), ("success", success)):
                rows[name].append(value)
    return rows


ROLLOUT_SCHEMA = pa.schema([
    ("trajectory_id", pa.string()), ("group_id", pa.string()), ("task_id", pa.string()), ("step", pa.int64()),
    ("state_key", pa.string()), ("next_state_key", pa.string()), ("observation", pa.string()),
    ("action", pa.string()), ("prior", pa.float64()), ("reward", pa.float64()), ("terminated", pa.bool_()),
    ("truncated", pa.bool_()), ("success", pa.bool_()),
    ("step_observation", pa.string()),  # what the env answered to the action (Env.observe; null: the step says it)
])
CONFIG_KEY = "treeq.rollouts"  # Parquet metadata: the RolloutConfig as JSON (export-rewards replays from it)
_CHUNK = 256  # trajectories per write


def run_rollouts(cfg: RolloutConfig) -> tuple[Path, int, int]:
    """Sample the groups and write them; return the path, the number of trajectories and of steps.

    The bar counts trajectories (one group can be large), and a group goes to the file
    ``_CHUNK`` trajectories at a time, so memory does not grow with ``group_size``.
    """
    from tqdm import tqdm

    env = make_env(cfg.env, **cfg.env_kwargs)
    tasks = list(env.load_tasks(cfg.tasks))[: cfg.limit]
    search_cfg = resolve_defaults(SearchConfig(), env)  # the env's defaults, resolved once for the job
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("out", "progress")}
    meta = {CONFIG_KEY: json.dumps({**settings, "gamma": search_cfg.gamma})}  # export-rewards reads the gamma
    with RecordWriter(cfg.out, ROLLOUT_SCHEMA, meta) as writer, tqdm(
            total=len(tasks) * cfg.group_size, desc=f"rollouts {env.name}", unit="traj", disable=not cfg.progress,
            dynamic_ncols=True) as bar:
        for task in tasks:
            chunk: list = []
            for g, trajectory in enumerate(iter_group(env, task, cfg, search_cfg)):
                chunk.append(trajectory)
                bar.update()
                if len(chunk) == _CHUNK or g == cfg.group_size - 1:
                    writer.write(pa.table(group_rows(env, task, chunk, cfg.max_steps, g + 1 - len(chunk)),
                                          schema=ROLLOUT_SCHEMA))
                    chunk = []
    return writer.path, len(tasks) * cfg.group_size, writer.rows
