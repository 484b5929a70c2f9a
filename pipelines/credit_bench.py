"""``credit-bench``: per-step advantage estimators measured against exact advantages.

Read top to bottom, one seed at a time:

1. For each task, the sampling policy's exact values by dynamic programming over the
   states reachable within the horizon (:class:`~treeq.pipelines.policy_values.PolicyValues`),
   so every step has two references: A^pi = Q^pi - V^pi (what GRPO, GiGPO, LOOP and Monte
   Carlo estimate) and A* = Q* - V* (``Env.exact_q``, ``Env.exact_value``: what a user wants).
2. A group of ``max(group_sizes)`` trajectories per task from the policy; a group of size G
   is its first G trajectories, so the group sizes share their samples.
3. The estimators that need more than the group, once per seed: Monte Carlo (``mc``: per
   step K rollouts after the action and K from the state, A = Q_mc - V_mc, every K of
   ``mc_rollouts`` read from the first K of the same samples) and ``mcts_q`` (a search of
   the task with S simulations, Q(s, a) - V(s) of the tree where it holds the step).
4. Per group size, the group estimators of ``export-rewards`` and their combinations,
   then every metric of :mod:`~treeq.pipelines.credit_metrics` against both references.

Every env step an estimator spends is counted (the group's own steps included), so each
figure sits beside its cost. ``steps.parquet`` holds every step with every estimator's
value and both references, from which ``results.parquet`` is recomputed exactly.
"""

from __future__ import annotations

import json
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..envs.base import Env, Task
from ..errors import ConfigError
from . import advantages as adv
from .credit_metrics import score
from .policy_values import PolicyFn, PolicyValues

__all__ = ["ESTIMATORS", "GROUP_ESTIMATORS", "BENCH_ESTIMATORS", "column_name", "run_credit_bench", "bench_env",
           "results_from_steps"]

# name -> (needs a critic, extra rollouts, memory): the survey's method-table columns
ESTIMATORS: dict[str, tuple[str, str, str]] = {
    "grpo": ("no", "no", "group returns"),
    "grpo_step": ("no", "no", "group returns, per step row"),
    "loop": ("no", "no", "group returns"),
    "turn": ("no", "no", "the trajectory"),
    "gigpo": ("no", "no", "group + anchor-state table"),
    "gigpo_mean": ("no", "no", "group + anchor-state table"),
    "gigpo+turn": ("no", "no", "group + anchor-state table"),
    "mc": ("no", "K rollouts from each step and each action", "the rollouts' returns"),
    "mcts_q": ("search tree as critic", "S simulations per task", "the search tree"),
    "mcts_q_or_gigpo": ("search tree as critic", "S simulations per task", "tree + anchor-state table"),
}
GROUP_ESTIMATORS = ("grpo", "grpo_step", "loop", "gigpo", "gigpo_mean", "gigpo+turn", "mcts_q_or_gigpo")
BENCH_ESTIMATORS = tuple(ESTIMATORS)
_GIGPO = ("gigpo", "gigpo_mean", "gigpo+turn")
REFERENCES = ("a_pi", "a_star")


def column_name(estimator: str, budget: int) -> str:
    """The steps.parquet column of an estimator at a budget: ``mc@16``, ``mcts_q@200``; the name itself otherwise."""
    return f"{estimator}@{budget}" if estimator in ("mc", "mcts_q", "mcts_q_or_gigpo") else estimator


@dataclass
class _Trajectory:
    states: list[Any]
    actions: list[str]
    rewards: list[float]
    keys: list[str]
    a_pi: list[float]
    a_star: list[float]
    steps_left: list[int]


class _Counted:
    """An env whose ``step`` calls are counted (random playouts step through it too)."""

    def __init__(self, env: Env) -> None:
        self._env, self.steps = env, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)

    def step(self, state, action, rng=None):
        self.steps += 1
        return self._env.step(state, action, rng)

    def playout(self, state, draw, gamma, max_steps, rng):
        return Env.playout(self, state, draw, gamma, max_steps, rng)


def _rng(seed: int, task_id: str, purpose: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(task_id.encode()), purpose]))


def _chooser(policy: PolicyFn, rng: np.random.Generator) -> Callable[[Any], tuple[str, float] | None]:
    def choose(state):
        (options,) = policy([state])
        if not options:
            return None
        p = np.asarray([w for _, w in options])
        k = int(rng.choice(len(options), p=p / p.sum()))
        return options[k][0], float(p[k])
    return choose


def _sample(env: Env, start: Any, pv: PolicyValues, policy: PolicyFn, rng: np.random.Generator, n: int,
            horizon: int, gamma: float) -> list[_Trajectory]:
    from .rollouts import play

    choose = _chooser(policy, rng)
    v_star: dict[str, float] = {}
    out = []
    for _ in range(n):
        transitions, _ok = play(env, start, choose, rng, horizon)
        t = _Trajectory([], [], [], [], [], [], [])
        for i, (state, action, _prior, step) in enumerate(transitions):
            key = env.state_key(state)
            if key not in v_star:
                v_star[key] = env.exact_value(state, gamma)
            q_star = env.exact_q(state, action, gamma)
            t.states.append(state)
            t.actions.append(action)
            t.rewards.append(float(step.reward))
            t.keys.append(key)
            t.steps_left.append(horizon - i)
            t.a_pi.append(pv.advantage(state, action, horizon - i))
            t.a_star.append(float(q_star) - float(v_star[key]))
        out.append(t)
    return out


def _monte_carlo(env: Env, trajs: list[_Trajectory], policy: PolicyFn, rng: np.random.Generator, k_max: int,
                 gamma: float) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]]]:
    """Per step: K returns after the action minus K returns from the state (arrays of k_max), and their env steps."""
    from .rollouts import play

    choose = _chooser(policy, rng)

    def ret(state, budget: int) -> tuple[float, int]:
        if budget <= 0:
            return 0.0, 0
        transitions, _ = play(env, state, choose, rng, budget)
        return sum(gamma ** i * float(s.reward) for i, (_, _, _, s) in enumerate(transitions)), len(transitions)

    diffs, costs = [], []
    for t in trajs:
        d_row, c_row = [], []
        for state, action, left in zip(t.states, t.actions, t.steps_left):
            q = np.empty(k_max)
            v = np.empty(k_max)
            c = np.empty(k_max)
            for k in range(k_max):
                step = env.step(state, action, rng)
                after, n_after = (0.0, 0) if step.terminated or step.truncated else ret(step.state, left - 1)
                q[k] = float(step.reward) + gamma * after
                v[k], n_v = ret(state, left)
                c[k] = 1 + n_after + n_v
            d_row.append(np.cumsum(q) / np.arange(1, k_max + 1) - np.cumsum(v) / np.arange(1, k_max + 1))
            c_row.append(np.cumsum(c))
        diffs.append(d_row)
        costs.append(c_row)
    return diffs, costs


def _tree_values(tree, graph: bool) -> tuple[dict[tuple[str, str], float], dict[str, float]]:
    """Q(s, a) per (state key, action) and V(s) per state key of one searched tree.

    The same semantics as ``export-rewards``' ``mcts_q``: a child's value is
    ``coalesce(proven, q)``, rows of one (state, action) merge visit-weighted and a proof
    wins; V(s) is exact where the solver proved the state, else the max (graph search) or
    the visit-weighted mean (tree search) of its tried actions.
    """
    keys = tree.state_keys
    label, proven, visits = tree.label(), tree.proven(), tree.visits
    edge: dict[tuple[str, str], list[float]] = {}
    state_exact: dict[str, float] = {}
    for row in range(tree.size):
        if not np.isnan(tree.solved_v[row]):
            state_exact[keys[row]] = float(tree.solved_v[row])
        parent = int(tree.parent[row])
        if parent < 0:
            continue
        e = edge.setdefault((keys[parent], tree.action_text(row)), [0.0, 0.0, np.nan])
        if not np.isnan(proven[row]):
            e[2] = float(proven[row])
        elif visits[row] > 0 and not np.isnan(label[row]):
            e[0] += float(label[row]) * float(visits[row])
            e[1] += float(visits[row])
    q = {k: (e[2] if not np.isnan(e[2]) else e[0] / e[1]) for k, e in edge.items() if not np.isnan(e[2]) or e[1] > 0}
    weights = {k: (edge[k][1] if np.isnan(edge[k][2]) else max(edge[k][1], 1.0)) for k in q}
    by_state: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for (s, _a), value in q.items():
        by_state[s].append((value, weights[(s, _a)]))
    v = {}
    for s, vals in by_state.items():
        if s in state_exact:
            v[s] = state_exact[s]
        elif graph:
            v[s] = max(x for x, _ in vals)
        else:
            v[s] = sum(x * w for x, w in vals) / sum(w for _, w in vals)
    return q, v


def _mcts(env: Env, task: Task, start: Any, seed: int, budgets: Sequence[int]) -> dict[int, tuple[dict, dict, int]]:
    """Per budget S: the tree's Q and V tables and the env steps the search spent."""
    from ..mcts.config import SearchConfig, resolve_defaults
    from ..mcts.search import search
    from .policies import make_hooks

    out = {}
    for s in budgets:
        counted = _Counted(env)
        cfg = resolve_defaults(SearchConfig(simulations=s), env)
        rng = _rng(seed, task.task_id, 3 + s)
        propose, evaluate = make_hooks(counted, cfg, rng)
        result = search(counted, start, cfg, rng, propose, evaluate)
        q, v = _tree_values(result.tree, bool(cfg.transpositions))
        out[s] = (q, v, counted.steps)
    return out


def _group_columns(trajs: list[_Trajectory], gamma: float, weight: float, names: Sequence[str]) -> dict[str, list]:
    """The group estimators over one group (flat, trajectory by trajectory), and the anchor recurrence."""
    rewards = [t.rewards for t in trajs]
    anchors = [t.keys for t in trajs]
    out: dict[str, list] = {}
    if "grpo" in names:
        out["grpo"] = [a for a, t in zip(adv.grpo(rewards), trajs) for _ in t.actions]
    if "grpo_step" in names:
        out["grpo_step"] = [a for row in adv.grpo_steps(rewards) for a in row]
    if "loop" in names:
        out["loop"] = [a for a, t in zip(adv.loop(rewards), trajs) for _ in t.actions]
    if "turn" in names or "gigpo+turn" in names:
        turn = [adv.turn(r, gamma) for r in rewards]
        out["turn"] = [a for row in turn for a in row]
    if {"gigpo", "gigpo+turn", "mcts_q_or_gigpo"} & set(names):
        out["gigpo"] = [a for row in adv.gigpo(rewards, anchors, gamma, weight, "mean_std_norm") for a in row]
    if "gigpo_mean" in names:
        out["gigpo_mean"] = [a for row in adv.gigpo(rewards, anchors, gamma, weight, "mean_norm") for a in row]
    if "gigpo+turn" in names:
        turn_norm = [a for row in adv.normalise_over_steps(turn) for a in row]
        out["gigpo+turn"] = [g + t for g, t in zip(out["gigpo"], turn_norm)]
    counts = Counter(k for row in anchors for k in row)
    out["_recurs"] = [counts[k] > 1 for row in anchors for k in row]
    return out


def bench_env(env: Env, tasks: Sequence[Task], policy: PolicyFn, cfg, gamma: float,
              progress: Callable[[int], object] | None = None) -> tuple[list[dict], dict[str, list]]:
    """Run the bench on one env: the result rows and the per-step columns (see the module docstring).

    ``cfg`` is a :class:`~treeq.pipelines.config.CreditBenchConfig` (its env fields are not read).

    Raises:
        ConfigError: the env has no exact values or no model of its transitions.
    """
    names = cfg.estimators
    g_max, k_max = max(cfg.group_sizes), max(cfg.mc_rollouts)
    want_mc, want_tree = "mc" in names, bool({"mcts_q", "mcts_q_or_gigpo"} & set(names))
    steps: dict[str, list] = defaultdict(list)
    results: list[dict] = []
    starts = {}
    values = {}
    for task in tasks:
        start = env.reset(task, _rng(0, task.task_id, 0))
        if env.exact_value(start, gamma) is None:
            raise ConfigError(f"{env.name} has no exact values for task {task.task_id!r}: credit-bench scores "
                              f"estimators against exact advantages (envs with an exact solver only)")
        starts[task.task_id] = start
        values[task.task_id] = PolicyValues(env, start, policy, gamma, cfg.max_steps)
    for seed in range(cfg.seeds):
        per_task = []
        for task in tasks:
            start, pv = starts[task.task_id], values[task.task_id]
            counted = _Counted(env)
            trajs = _sample(counted, start, pv, policy, _rng(seed, task.task_id, 1), g_max, cfg.max_steps, gamma)
            mc = _monte_carlo(env, trajs, policy, _rng(seed, task.task_id, 2), k_max, gamma) if want_mc else None
            tree = _mcts(env, task, start, seed, cfg.simulations) if want_tree else None
            per_task.append((task, trajs, mc, tree))
            if progress is not None:
                progress(1)
        for g in cfg.group_sizes:
            cols: dict[str, list] = defaultdict(list)
            cost: Counter = Counter()
            for task, trajs, mc, tree in per_task:
                group = trajs[:g]
                n_sampled = sum(len(t.actions) for t in group)
                group_cols = _group_columns(group, gamma, cfg.weight, names)
                for t_i, t in enumerate(group):
                    for i in range(len(t.actions)):
                        cols["task_id"].append(task.task_id)
                        cols["trajectory_id"].append(f"{task.task_id}/{t_i}")
                        cols["step"].append(i)
                        cols["state_key"].append(t.keys[i])
                        cols["action"].append(t.actions[i])
                        cols["reward"].append(t.rewards[i])
                        cols["steps_left"].append(t.steps_left[i])
                        cols["a_pi"].append(t.a_pi[i])
                        cols["a_star"].append(t.a_star[i])
                for name, vals in group_cols.items():
                    if name in names or name == "_recurs":
                        cols[name].extend(vals)
                for name in names:
                    if name not in ("mc", "mcts_q", "mcts_q_or_gigpo"):
                        cost[column_name(name, 0)] += n_sampled
                if mc is not None:
                    diffs, costs = mc
                    for k in cfg.mc_rollouts:
                        col = column_name("mc", k)
                        cols[col].extend(float(d[k - 1]) for row in diffs[:g] for d in row)
                        cost[col] += n_sampled + int(sum(c[k - 1] for row in costs[:g] for c in row))
                if tree is not None:
                    for s in cfg.simulations:
                        q, v, spent = tree[s]
                        tree_adv = [q[(key, a)] - v[key] if (key, a) in q and key in v else None
                                    for t in group for key, a in zip(t.keys, t.actions)]
                        cols[column_name("mcts_q", s)].extend(tree_adv)  # mcts_q_or_gigpo's coverage reads it too
                        cost[column_name("mcts_q", s)] += n_sampled + spent
                        if "mcts_q_or_gigpo" in names:
                            col = column_name("mcts_q_or_gigpo", s)
                            cols[col].extend(x if x is not None else gg for x, gg in zip(tree_adv, group_cols["gigpo"]))
                            cost[col] += n_sampled + spent
            n = len(cols["step"])
            cols["env"] = [env.name] * n
            cols["seed"] = [seed] * n
            cols["group_size"] = [g] * n
            cols["gamma"] = [gamma] * n
            for key, vals in cols.items():
                steps[key].extend(vals)
            results.extend(_score_block(cols, env.name, cfg, seed, g, dict(cost)))
    return results, dict(steps)


def _estimator_columns(cols: dict[str, list], cfg) -> list[tuple[str, int, str]]:
    """(estimator, budget, column) of every estimator column present."""
    out = []
    for name in cfg.estimators:
        budgets = cfg.mc_rollouts if name == "mc" else cfg.simulations if name in ("mcts_q", "mcts_q_or_gigpo") else (0,)
        for b in budgets:
            col = column_name(name, b)
            if col in cols:
                out.append((name, b, col))
    return out


def _coverage(name: str, budget: int, cols: dict[str, list]) -> float:
    """GiGPO: the share of steps whose state recurs in their group (anchor coverage); MCTS-Q: the share of
    steps the tree holds; 1 for the rest."""
    if name in _GIGPO:
        recurs = cols.get("_recurs") or []
        return float(np.mean(recurs)) if recurs else float("nan")
    if name in ("mcts_q", "mcts_q_or_gigpo"):
        tree = cols.get(column_name("mcts_q", budget)) or []
        return float(np.mean([x is not None for x in tree])) if tree else float("nan")
    return 1.0


def _score_block(cols: dict[str, list], env_name: str, cfg, seed: int, g: int, cost: dict[str, int]) -> list[dict]:
    """The result rows of one (seed, group size) block of steps."""
    rows = []
    for name, budget, col in _estimator_columns(cols, cfg):
        values = cols[col]
        keep = [i for i, x in enumerate(values) if x is not None]
        x = [values[i] for i in keep]
        states = [cols["state_key"][i] for i in keep]
        actions = [cols["action"][i] for i in keep]
        coverage = _coverage(name, budget, cols)
        for ref in REFERENCES:
            y = [cols[ref][i] for i in keep]
            m = score(x, y, states, actions)
            rows.append({"env": env_name, "policy": cfg.policy_label, "estimator": name, "group_size": g,
                         "rollouts": budget, "env_steps": int(cost.get(col, 0)), "reference": ref, **m,
                         "coverage": coverage, "seed": seed})
    return rows


def results_from_steps(steps, cfg) -> list[dict]:
    """Recompute the metric columns of ``results.parquet`` from ``steps.parquet`` rows (a dict of columns).

    ``env_steps`` is not in the per-step rows (it counts rollouts no row holds): it comes out 0.
    """
    blocks: dict[tuple, list[int]] = defaultdict(list)
    for i, key in enumerate(zip(steps["env"], steps["seed"], steps["group_size"])):
        blocks[key].append(i)
    out = []
    for (env_name, seed, g), idx in blocks.items():
        cols = {k: [v[i] for i in idx] for k, v in steps.items()}
        cols["_recurs"] = cols.pop("recurs", cols.get("_recurs", []))
        out.extend(_score_block(cols, env_name, cfg, seed, g, {}))
    return out


def run_credit_bench(cfg) -> tuple[Path, list[str]]:
    """Run the bench of ``cfg`` (:class:`~treeq.pipelines.config.CreditBenchConfig`) and write its outputs.

    Returns the output directory and the summary lines printed by the command.

    Raises:
        ConfigError: bad settings, or an env without exact values or a known model.
    """
    import pyarrow as pa
    from tqdm import tqdm

    from ..data.store import RecordWriter
    from ..envs.registry import make_env
    from ..mcts.config import SearchConfig, resolve_defaults
    from .policies import PROPOSERS, check_name
    from .policies.lm import LMConfig
    from .policies.qstar import qstar_probs

    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file: give a directory")
    env = make_env(cfg.env, **cfg.env_kwargs)
    gamma = env.default_gamma if cfg.gamma is None else cfg.gamma
    tasks = list(env.load_tasks(cfg.tasks))[: cfg.limit]
    if not tasks:
        raise ConfigError(f"no tasks for {env.name}")
    if cfg.policy in ("softmax-qstar", "epsilon-qstar"):
        kind, param = ("softmax", cfg.temperature) if cfg.policy == "softmax-qstar" else ("epsilon", cfg.epsilon)

        def policy(states):
            return [qstar_probs(env, s, gamma, kind, param) for s in states]
    else:
        search_cfg = resolve_defaults(SearchConfig(gamma=gamma), env)
        propose = PROPOSERS[check_name("proposer", cfg.policy)].factory(env, search_cfg, _rng(0, "policy", 9),
                                                                       LMConfig(model=cfg.model))

        def policy(states):
            probs = []
            for options in propose(states, search_cfg.proposals):
                w = np.asarray([max(float(p), 0.0) for _, p, *_ in options])
                w = w / w.sum() if w.sum() > 0 else np.full(len(options), 1.0 / max(len(options), 1))
                probs.append([(o[0], float(p)) for o, p in zip(options, w)])
            return probs
    started = time.perf_counter()
    with tqdm(total=cfg.seeds * len(tasks), desc=f"credit-bench {env.name}", unit="task", disable=not cfg.progress,
              dynamic_ncols=True) as bar:
        results, steps = bench_env(env, tasks, policy, cfg, gamma, bar.update)
    seconds = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    steps["recurs"] = steps.pop("_recurs")
    with RecordWriter(out / "steps.parquet") as w:
        w.write(pa.table(steps))
    with RecordWriter(out / "results.parquet") as w:
        w.write(pa.table({k: [r[k] for r in results] for k in results[0]}))
    from .credit_report import write_report

    lines = write_report(results, out, cfg, seconds, env.name)
    settings = {k: v for k, v in asdict(cfg).items() if k != "progress"}
    (out / "credit_bench.json").write_text(json.dumps(settings, indent=2) + "\n")
    return out, lines

