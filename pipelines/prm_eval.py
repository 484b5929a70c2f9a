"""PRM metrics that need the envs: exact step labels and best-of-N selection.

* **Exact labels.** A step (s, a) is *exactly good* when Q*(s, a) > 0 and
  Q*(s, a) = V*(s): it keeps success reachable, by an optimal margin. In Game of 24
  that is "24 is still reachable after the step" (every solvable step has Q* = 1); in
  Blocksworld, "the step is on a shortest plan". Q* comes from the env's exact solver
  (:meth:`Env.exact_value`), for deterministic envs that have one.
* **Best-of-N.** Per held-out task, N complete trajectories from the uniform random
  policy; the PRM picks one by its lowest step score (and by the product of scores);
  reported beside the expected success of a random pick and of the outcome oracle
  (success if any of the N succeeded).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..envs.base import Env, Task
from ..envs.registry import make_env
from ..errors import TreeqError
from .search import task_rng

__all__ = ["TaskSource", "exact_step_labels", "sample_trajectories", "best_of_n"]

Scorer = Callable[[list[tuple[str, list[str]]]], list[list[float] | None]]  # None: too long to score


class TaskSource:
    """Envs and tasks of the runs a dataset came from, rebuilt from each run's config."""

    def __init__(self, runs: dict[str, dict]) -> None:
        self._runs = runs
        self._cache: dict[str, tuple[Env, dict[str, Task], float] | str] = {}
        self._envs: dict[str, Env | None] = {}

    def env(self, run_id: str) -> Env | None:
        """The env of ``run_id`` (None if its run config is missing or names no buildable env)."""
        cfg = self._runs.get(run_id)
        if cfg is None:
            return None
        if run_id not in self._envs:
            try:
                self._envs[run_id] = make_env(cfg["env"], **cfg.get("env_kwargs", {}))
            except (TreeqError, KeyError):
                self._envs[run_id] = None
        return self._envs[run_id]

    def get(self, run_id: str) -> tuple[Env, dict[str, Task], float] | str:
        """(env, tasks by id, gamma) of ``run_id``, or why they cannot be had."""
        if run_id not in self._cache:
            self._cache[run_id] = self._load(run_id)
        return self._cache[run_id]

    def _load(self, run_id: str) -> tuple[Env, dict[str, Task], float] | str:
        cfg = self._runs.get(run_id)
        if cfg is None:
            return f"run {run_id} has no runs row"
        env = self.env(run_id)
        if env is None:
            return f"cannot build the env of run {run_id}"
        try:
            tasks = {t.task_id: t for t in env.load_tasks(cfg.get("tasks"))}
        except (TreeqError, KeyError, OSError) as exc:
            return f"cannot rebuild the tasks of run {run_id}: {exc}"
        gamma = cfg.get("search", {}).get("gamma")  # resolved by the search job
        if not isinstance(gamma, (int, float)):
            return f"run {run_id} records no gamma"
        return env, tasks, float(gamma)


def exact_step_labels(source: TaskSource, examples: Sequence, progress: Callable[[int], object] | None = None,
                      step_format: str = "action") -> tuple[list[list[bool]] | None, str]:
    """Per example, per step: exactly good or not; (None, why) where the env has no exact solver.

    ``step_format``: how the examples' steps are written (:data:`treeq.prm.format.STEP_FORMATS`);
    ``progress`` is called with 1 after each example.
    """
    from ..prm.format import step_action

    out: list[list[bool]] = []
    cache: dict[tuple[str, str], bool] = {}
    for ex in examples:
        got = source.get(ex.run_id)
        if isinstance(got, str):
            return None, got
        env, tasks, gamma = got
        if not env.deterministic:
            return None, f"{env.name} is stochastic: exact step labels need a deterministic env"
        task = tasks.get(ex.task_id)
        if task is None:
            return None, f"task {ex.task_id} is not in the task set of run {ex.run_id}"
        state = env.reset(task, task_rng(0, ex.task_id))
        labels = []
        for text in ex.steps:
            action = step_action(text, step_format)
            key = (env.state_key(state), action)
            step = env.step(state, action)
            if key not in cache:
                v = env.exact_value(state, gamma)
                if v is None:
                    return None, f"{env.name} has no exact solver for this state"
                after = 0.0 if step.terminated else env.exact_value(step.state, gamma)
                if after is None:
                    return None, f"{env.name} has no exact solver for this state"
                q = step.reward + gamma * after
                cache[key] = q > 1e-12 and q >= v - 1e-9
            labels.append(cache[key])
            state = step.state
        out.append(labels)
        if progress is not None:
            progress(1)
    return out, ""


def sample_trajectories(env: Env, task: Task, n: int, rng: np.random.Generator,
                        max_steps: int = 100, step_format: str = "action") -> list[tuple[list[str], bool]]:
    """``n`` uniformly random complete trajectories: (step texts, success), a step written in
    ``step_format`` (:func:`treeq.prm.format.step_text`)."""
    from ..prm.format import OBSERVED, step_text
    from .rollouts import play

    def choose(state):
        actions = env.legal_actions(state)
        return (actions[int(rng.integers(len(actions)))], 1.0 / len(actions)) if actions else None

    start = env.reset(task, rng)
    out = []
    for _ in range(n):
        transitions, success = play(env, start, choose, rng, max_steps)
        observe = step_format == OBSERVED
        out.append(([step_text(action, env.observe(step.state) if observe else None)
                     for _, action, _, step in transitions], success))
    return out


def best_of_n(source: TaskSource, task_refs: Sequence[tuple[str, str]], n: int, score: Scorer,
              seed: int, progress: Callable[[int], object] | None = None,
              step_format: str = "action") -> dict[str, float] | str:
    """Success rates of PRM selection among ``n`` random trajectories per task (see the module docstring).

    The trajectories' steps are written in ``step_format``, the PRM's. ``progress`` is
    called with ``n`` as each task starts.
    """
    picks: dict[str, list[float]] = {"prm_min": [], "prm_product": [], "random": [], "oracle": []}
    for run_id, task_id in task_refs:
        if progress is not None:
            progress(n)
        got = source.get(run_id)
        if isinstance(got, str):
            return got
        env, tasks, _ = got
        if task_id not in tasks:
            return f"task {task_id} is not in the task set of run {run_id}"
        if env.legal_actions(env.reset(tasks[task_id], task_rng(seed, task_id))) is None:
            return f"{env.name} has open text actions: best-of-N needs a proposing policy"
        trajectories = [t for t in sample_trajectories(env, tasks[task_id], n, task_rng(seed, task_id),
                                                       step_format=step_format) if t[0]]
        if not trajectories:
            continue
        prompt = env.render(env.reset(tasks[task_id], task_rng(seed, task_id)))
        scores = score([(prompt, steps) for steps, _ in trajectories])
        kept = [i for i, s in enumerate(scores) if s is not None]  # too long for the model: not a candidate
        if not kept:
            continue
        scores = [scores[i] for i in kept]
        success = np.array([trajectories[i][1] for i in kept], dtype=np.float64)
        lowest = np.array([min(s) for s in scores])
        product = np.array([float(np.prod(s)) for s in scores])
        picks["prm_min"].append(success[int(np.argmax(lowest))])
        picks["prm_product"].append(success[int(np.argmax(product))])
        picks["random"].append(float(success.mean()))
        picks["oracle"].append(float(success.max()))
    if not picks["random"]:
        return "no held-out task produced a trajectory"
    result = {k: float(np.mean(v)) for k, v in picks.items()}
    gap = result["oracle"] - result["random"]
    for rule in ("prm_min", "prm_product"):
        result[f"{rule}_gap_closed"] = (result[rule] - result["random"]) / gap if gap > 0 else float("nan")
    result["tasks"] = float(len(picks["random"]))
    result["n"] = float(n)
    return result
