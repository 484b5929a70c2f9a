"""Trajectory groups (``rollouts``): G complete trajectories per task from a registered policy.

The groups GRPO and GiGPO train on: for each task, ``group_size`` trajectories from the
same start state (the task's generator seeds the start and the sampling, so the same
seed gives the same rows), each action drawn from the policy's priors (the registered
proposer; ``uniform`` gives every legal action the same weight). Any env, stochastic
ones included: the env samples its outcomes with the task's generator.

One Parquet row per step: ``trajectory_id`` (verl-agent's ``traj_uid``), ``group_id``
(its ``uid``: the task), ``task_id``, ``step``, ``state_key`` (the step's state: the
anchor state of GiGPO), ``observation`` (its rendered text), ``action``, ``prior``,
``reward``, ``terminated``, ``truncated``, ``success`` (of the whole trajectory).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from ..data.store import write_parquet_atomic
from ..envs.base import Env, Step, is_success
from ..envs.registry import make_env
from ..mcts.config import SearchConfig, resolve_defaults
from .config import RolloutConfig
from .policies import PROPOSERS
from .search import task_rng

__all__ = ["run_rollouts", "play"]




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


def run_rollouts(cfg: RolloutConfig) -> tuple[Path, int, int]:
    """Sample the groups and write them; return the path, the number of trajectories and of steps."""
    from tqdm import tqdm

    env = make_env(cfg.env, **cfg.env_kwargs)
    tasks = list(env.load_tasks(cfg.tasks))[: cfg.limit]
    search_cfg = resolve_defaults(SearchConfig(), env)
    rows: dict[str, list] = {k: [] for k in ("trajectory_id", "group_id", "task_id", "step", "state_key",
                                             "observation", "action", "prior", "reward", "terminated",
                                             "truncated", "success")}
    trajectories = 0
    for task in tqdm(tasks, desc=f"rollouts {env.name}", unit="task", disable=not cfg.progress, dynamic_ncols=True):
        rng = task_rng(cfg.seed, task.task_id)
        propose = PROPOSERS[cfg.policy].factory(env, search_cfg, rng)
        start = env.reset(task, rng)
        def choose(state):
            (options,) = propose([state], search_cfg.proposals)
            if not options:
                return None
            priors = np.array([max(p, 0.0) for _, p in options], dtype=np.float64)
            priors = priors / priors.sum() if priors.sum() > 0 else np.full(len(options), 1.0 / len(options))
            k = int(rng.choice(len(options), p=priors))
            return options[k][0], float(priors[k])

        for g in range(cfg.group_size):
            transitions, success = play(env, start, choose, rng, cfg.max_steps)
            for t, (state, action, prior, step) in enumerate(transitions):
                cut = t == cfg.max_steps - 1 and not step.terminated
                for name, value in (("trajectory_id", f"{task.task_id}/{g}"), ("group_id", task.task_id),
                                    ("task_id", task.task_id), ("step", t), ("state_key", env.state_key(state)),
                                    ("observation", env.render(state)), ("action", action), ("prior", prior),
                                    ("reward", float(step.reward)), ("terminated", bool(step.terminated)),
                                    ("truncated", bool(step.truncated or cut)), ("success", success)):
                    rows[name].append(value)
            trajectories += 1
    out = Path(cfg.out)
    write_parquet_atomic(pa.table(rows), out)
    return out, trajectories, len(rows["step"])
