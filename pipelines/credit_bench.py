"""``credit-bench``: per-step advantage estimators measured against exact advantages.

Read top to bottom, one seed at a time:

1. For each task, the sampling policy's exact values by dynamic programming over the
   states reachable within the horizon (:class:`~treeq.pipelines.policy_values.PolicyValues`),
   so every step has two references: A^pi = Q^pi - V^pi (what GRPO, GiGPO, LOOP and Monte
   Carlo estimate) and A* = Q* - V* (``Env.exact_q``, ``Env.exact_value``: what a user wants).
2. A group of ``max(group_sizes)`` trajectories per task from the policy; a group of size G
   is its first G trajectories, so the group sizes share their samples. With ``mig``, a
   language model's log p(answer) after every prefix of each trajectory.
3. The estimators that need more than the group, once per seed: Monte Carlo (``mc``: per
   step K rollouts after the action and K from the state, A = Q_mc - V_mc, every K of
   ``mc_rollouts`` read from the first K of the same samples; ``gae`` from the same V),
   ``mcts_q`` (a search of the task with S simulations, Q(s, a) - V(s) of the tree where it
   holds the step) and, per group size, a forest sampled with the env steps of its G chains
   (``tree_grpo``, ``treepo``: the rows whose ``sampling`` is ``tree``).
4. Per group size, the group estimators of ``export-rewards``, their combinations and the
   hierarchical one, then every metric of :mod:`~treeq.pipelines.credit_metrics` against
   both references.

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
from dataclasses import asdict, dataclass, replace
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
    "gigpo_obs": ("no", "no", "group + observation-text table"),
    "gigpo_sim": ("no", "no", "group + similarity clusters of observations"),
    "hiper": ("no (group statistics stand in for HiPER's critic)", "no", "group + subtask boundaries"),
    "mig": ("no (a language model scores the answer)", "no (one LM forward per state)", "the trajectory"),
    "tree_grpo": ("no", "no (tree sampling: the env steps of G chains)", "the sampled trees"),
    "treepo": ("no", "no (tree sampling: the env steps of G chains)", "the sampled trees"),
    "mc": ("no", "K rollouts from each step and each action", "the rollouts' returns"),
    "gae": ("V from K rollouts of each state", "K rollouts from each step", "the rollouts' returns"),
    "mcts_q": ("search tree as critic", "S simulations per task", "the search tree"),
    "mcts_q_or_gigpo": ("search tree as critic", "S simulations per task", "tree + anchor-state table"),
}
GROUP_ESTIMATORS = ("grpo", "grpo_step", "loop", "gigpo", "gigpo_mean", "gigpo+turn", "gigpo_obs", "gigpo_sim", "hiper",
                    "tree_grpo", "treepo", "mcts_q_or_gigpo")
TREE_ESTIMATORS = ("tree_grpo", "treepo")  # scored on tree-sampled steps (steps.parquet ``sampling`` = "tree")
BENCH_ESTIMATORS = tuple(ESTIMATORS)
# which anchor's recurrence is an estimator's coverage (steps.parquet columns recurs, recurs_obs, recurs_sim)
_ANCHOR = {"gigpo": "recurs", "gigpo_mean": "recurs", "gigpo+turn": "recurs", "gigpo_obs": "recurs_obs",
           "gigpo_sim": "recurs_sim"}
REFERENCES = ("a_pi", "a_star")


def column_name(estimator: str, budget: int) -> str:
    """The steps.parquet column of an estimator at a budget: ``mc@16``, ``mcts_q@200``; the name itself otherwise."""
    return f"{estimator}@{budget}" if estimator in ("mc", "gae", "mcts_q", "mcts_q_or_gigpo") else estimator


@dataclass
class _Trajectory:
    states: list[Any]
    actions: list[str]
    rewards: list[float]
    keys: list[str]
    a_pi: list[float]
    a_star: list[float]
    steps_left: list[int]
    texts: list[str]  # the observation an agent reads in each state (GiGPO's text anchors)
    ends: list[bool]  # the step achieves a subgoal (Env.subtask_progress rises)
    final: Any = None  # the state after the last step
    mig: list[float] | None = None  # per step, where the bench runs a language model


@dataclass
class _Node:
    """One node of a tree-sampled forest; the edge into it is one step (``parent`` < its index)."""

    state: Any
    key: str
    tree: int
    parent: int = -1
    depth: int = 0
    action: str | None = None
    reward: float = 0.0
    leaf: bool = False  # the episode ended here (terminal, horizon, or no action left)
    children: int = 0
    a_pi: float = 0.0
    a_star: float = 0.0


class _Refs:
    """A^pi and A* of (state, action) at a number of steps left, V* cached per state key."""

    def __init__(self, env: Env, pv: PolicyValues, gamma: float) -> None:
        self.env, self.pv, self.gamma = env, pv, gamma
        self.v_star: dict[str, float] = {}
        self.q_star: dict[tuple[str, str], float] = {}

    def __call__(self, state, key: str, action: str, steps_left: int) -> tuple[float, float]:
        if key not in self.v_star:
            self.v_star[key] = float(self.env.exact_value(state, self.gamma))
        if (key, action) not in self.q_star:
            self.q_star[(key, action)] = float(self.env.exact_q(state, action, self.gamma))
        return self.pv.advantage(state, action, steps_left), self.q_star[(key, action)] - self.v_star[key]


def _anchor_text(env: Env, state) -> str:
    text = env.observe(state)
    return env.render(state) if text is None else text


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
    """``choose(state)``: an action drawn from the policy, and its probability. A policy whose
    probabilities depend on the state key alone says so with a ``state_key`` attribute (the
    Q* policies); its cumulative probabilities are then kept per key."""
    keyed = getattr(policy, "state_key", None)
    table: dict[str, tuple[list[tuple[str, float]], np.ndarray]] = {}

    def choose(state):
        key = keyed(state) if keyed is not None else None
        entry = table.get(key) if key is not None else None
        if entry is None:
            (options,) = policy([state])
            cum = np.cumsum([w for _, w in options]) if options else np.empty(0)
            entry = (options, cum)
            if key is not None:
                table[key] = entry
        options, cum = entry
        if not options:
            return None
        k = min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), len(options) - 1)
        return options[k][0], float(options[k][1] / cum[-1])
    return choose


def _sample(env: Env, start: Any, refs: _Refs, policy: PolicyFn, rng: np.random.Generator, n: int,
            horizon: int) -> list[_Trajectory]:
    from .rollouts import play

    choose = _chooser(policy, rng)
    subtasks = env.subtask_progress(start) is not None
    out = []
    for _ in range(n):
        transitions, _ok = play(env, start, choose, rng, horizon)
        t = _Trajectory([], [], [], [], [], [], [], [], [])
        for i, (state, action, _prior, step) in enumerate(transitions):
            key = env.state_key(state)
            a_pi, a_star = refs(state, key, action, horizon - i)
            t.states.append(state)
            t.actions.append(action)
            t.rewards.append(float(step.reward))
            t.keys.append(key)
            t.steps_left.append(horizon - i)
            t.a_pi.append(a_pi)
            t.a_star.append(a_star)
            t.texts.append(_anchor_text(env, state))
            t.ends.append(subtasks and env.subtask_progress(step.state) > env.subtask_progress(state))
        t.final = transitions[-1][3].state if transitions else start
        out.append(t)
    return out


def _sample_tree(env: Env, start: Any, refs: _Refs, policy: PolicyFn, rng: np.random.Generator, n_trees: int,
                 budget: int, horizon: int) -> list[_Node]:
    """Tree sampling (Tree-GRPO's rollout): ``n_trees`` chains from the start, then, until ``budget``
    env steps are spent, a uniformly drawn inner node is expanded by a new chain from it to an
    episode's end. Shared prefixes are stepped once, so the budget of G chains holds more leaves."""
    choose = _chooser(policy, rng)
    nodes: list[_Node] = []
    spent = 0

    def grow(i: int) -> None:
        nonlocal spent
        while True:
            node = nodes[i]
            picked = None if node.depth >= horizon else choose(node.state)
            if picked is None:
                node.leaf = node.children == 0
                return
            action = picked[0]
            step = env.step(node.state, action, rng)
            spent += 1
            a_pi, a_star = refs(node.state, node.key, action, horizon - node.depth)
            node.children += 1
            nodes.append(_Node(step.state, env.state_key(step.state), node.tree, i, node.depth + 1, action,
                               float(step.reward), a_pi=a_pi, a_star=a_star))
            i = len(nodes) - 1
            if step.terminated or step.truncated:
                nodes[i].leaf = True
                return

    for m in range(n_trees):
        nodes.append(_Node(start, env.state_key(start), m))
        grow(len(nodes) - 1)
    while spent < budget:
        inner = [i for i, nd in enumerate(nodes) if nd.children > 0]
        if not inner:
            break
        grow(inner[int(rng.integers(len(inner)))])
    return nodes


def _tree_columns(nodes: list[_Node], gamma: float, names: Sequence[str]) -> dict[str, list]:
    """``tree_grpo`` and ``treepo`` on each edge (non-root node) of one task's forest.

    tree_grpo: the mean, over the leaves under the edge, of each leaf's intra-tree plus
    inter-tree normalised return (what the leaves' gradients give the shared step, per leaf).
    treepo: r + gamma * V(child) - V(parent), V(n) the mean discounted return from n over the
    leaves under n (subtree averaging).
    """
    parent = [nd.parent for nd in nodes]
    leaves = [i for i, nd in enumerate(nodes) if nd.leaf]
    out: dict[str, list] = {}
    if "tree_grpo" in names:
        returns = []
        for i in leaves:  # the episode return: the undiscounted sum along the path, as GRPO's
            total, j = 0.0, i
            while j >= 0:
                total += nodes[j].reward
                j = parent[j]
            returns.append(total)
        per_leaf = adv.tree_grpo(returns, [nodes[i].tree for i in leaves])
        leaf_adv: list[float | None] = [None] * len(nodes)
        for i, a in zip(leaves, per_leaf):
            leaf_adv[i] = a
        mean_below = adv.subtree_values(parent, leaf_adv)
        out["tree_grpo"] = [mean_below[i] for i in range(len(nodes)) if parent[i] >= 0]
    if "treepo" in names:
        total = [0.0] * len(nodes)
        count = [0] * len(nodes)
        for i in leaves:  # the discounted return from every node on the leaf's path
            g, j = 0.0, i
            while j >= 0:
                total[j] += g
                count[j] += 1
                g = nodes[j].reward + gamma * g
                j = parent[j]
        v = [t / c if c else 0.0 for t, c in zip(total, count)]
        out["treepo"] = [nodes[i].reward + gamma * v[i] - v[parent[i]] for i in range(len(nodes)) if parent[i] >= 0]
    return out


@dataclass
class _MC:
    """Monte Carlo estimates per trajectory and step, each an array over K = 1..k_max (first K samples)."""

    adv: list[list[np.ndarray]]  # Q_mc - V_mc
    cost: list[list[np.ndarray]]  # env steps of both
    value: list[list[np.ndarray]]  # V_mc of the step's state
    value_cost: list[list[np.ndarray]]  # env steps of V_mc alone


def _monte_carlo(env: Env, trajs: list[_Trajectory], policy: PolicyFn, rng: np.random.Generator, k_max: int,
                 gamma: float) -> _MC:
    """Per step: K returns after the action and K returns from the state, as running means over K."""
    from .rollouts import play

    choose = _chooser(policy, rng)
    ks = np.arange(1, k_max + 1)

    def ret(state, budget: int) -> tuple[float, int]:
        if budget <= 0:
            return 0.0, 0
        transitions, _ = play(env, state, choose, rng, budget)
        return sum(gamma ** i * float(s.reward) for i, (_, _, _, s) in enumerate(transitions)), len(transitions)

    out = _MC([], [], [], [])
    for t in trajs:
        rows: tuple[list, list, list, list] = ([], [], [], [])
        for state, action, left in zip(t.states, t.actions, t.steps_left):
            q, v, c, cv = (np.empty(k_max) for _ in range(4))
            for k in range(k_max):
                step = env.step(state, action, rng)
                after, n_after = (0.0, 0) if step.terminated or step.truncated else ret(step.state, left - 1)
                q[k] = float(step.reward) + gamma * after
                v[k], n_v = ret(state, left)
                c[k], cv[k] = 1 + n_after + n_v, n_v
            v_mean = np.cumsum(v) / ks
            for row, x in zip(rows, (np.cumsum(q) / ks - v_mean, np.cumsum(c), v_mean, np.cumsum(cv))):
                row.append(x)
        for field_, row in zip((out.adv, out.cost, out.value, out.value_cost), rows):
            field_.append(row)
    return out


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


def _group_columns(trajs: list[_Trajectory], gamma: float, cfg, names: Sequence[str]) -> dict[str, list]:
    """The group estimators over one group (flat, trajectory by trajectory), and each anchor's recurrence."""
    rewards = [t.rewards for t in trajs]
    anchors = [t.keys for t in trajs]
    out: dict[str, list] = {}

    def flat(rows):
        return [a for row in rows for a in row]

    def per_step(values):
        return [a for a, t in zip(values, trajs) for _ in t.actions]

    if "grpo" in names:
        out["grpo"] = per_step(adv.grpo(rewards))
    if "grpo_step" in names:
        out["grpo_step"] = flat(adv.grpo_steps(rewards))
    if "loop" in names:
        out["loop"] = per_step(adv.loop(rewards))
    if "turn" in names or "gigpo+turn" in names:
        turn = [adv.turn(r, gamma) for r in rewards]
        out["turn"] = flat(turn)
    if {"gigpo", "gigpo+turn", "mcts_q_or_gigpo"} & set(names):
        out["gigpo"] = flat(adv.gigpo(rewards, anchors, gamma, cfg.weight, "mean_std_norm"))
    if "gigpo_mean" in names:
        out["gigpo_mean"] = flat(adv.gigpo(rewards, anchors, gamma, cfg.weight, "mean_norm"))
    if "gigpo+turn" in names:
        out["gigpo+turn"] = [g + t for g, t in zip(out["gigpo"], flat(adv.normalise_over_steps(turn)))]
    texts = [t.texts for t in trajs]
    if "gigpo_obs" in names:
        out["gigpo_obs"] = flat(adv.gigpo(rewards, texts, gamma, cfg.weight, "mean_std_norm"))
    clusters = None
    if "gigpo_sim" in names:
        ids = iter(adv.similarity_anchors(flat(texts), cfg.similarity))
        clusters = [[next(ids) for _ in row] for row in texts]
        out["gigpo_sim"] = flat(adv.gigpo(rewards, clusters, gamma, cfg.weight, "mean_std_norm"))
    if "hiper" in names:
        out["hiper"] = flat(adv.hiper(rewards, [t.ends for t in trajs], gamma))
    if "mig" in names:
        out["mig"] = flat(t.mig for t in trajs)
    for col, groups in (("recurs", anchors), ("recurs_obs", texts), ("recurs_sim", clusters)):
        if groups is not None:
            counts = Counter(k for row in groups for k in row)
            out[col] = [counts[k] > 1 for row in groups for k in row]
    return out


def bench_env(env: Env, tasks: Sequence[Task], policy: PolicyFn, cfg, gamma: float,
              progress: Callable[[int], object] | None = None,
              answer_logp: Callable[[Sequence[Any]], list[float]] | None = None) -> tuple[list[dict], dict[str, list]]:
    """Run the bench on one env: the result rows and the per-step columns (see the module docstring).

    ``cfg`` is a :class:`~treeq.pipelines.config.CreditBenchConfig` (its env fields are not read);
    ``answer_logp(states)``: log p(answer | state) under a language model, for ``mig``.

    Raises:
        ConfigError: the env has no exact values or no model of its transitions.
    """
    names = cfg.estimators
    g_max, k_max = max(cfg.group_sizes), max(cfg.mc_rollouts)
    want_mc, want_tree = bool({"mc", "gae"} & set(names)), bool({"mcts_q", "mcts_q_or_gigpo"} & set(names))
    want_forest = bool(set(TREE_ESTIMATORS) & set(names))
    steps: dict[str, list] = defaultdict(list)
    results: list[dict] = []
    starts, refs = {}, {}
    for task in tasks:
        start = env.reset(task, _rng(0, task.task_id, 0))
        if env.exact_value(start, gamma) is None:
            raise ConfigError(f"{env.name} has no exact values for task {task.task_id!r}: credit-bench scores "
                              f"estimators against exact advantages (envs with an exact solver only)")
        starts[task.task_id] = start
        refs[task.task_id] = _Refs(env, PolicyValues(env, start, policy, gamma, cfg.max_steps), gamma)
    for seed in range(cfg.seeds):
        per_task = []
        for task in tasks:
            start, ref = starts[task.task_id], refs[task.task_id]
            trajs = _sample(env, start, ref, policy, _rng(seed, task.task_id, 1), g_max, cfg.max_steps)
            if "mig" in names:
                if answer_logp is None:
                    raise ConfigError("mig needs a language model: give --model")
                logps = iter(answer_logp([s for t in trajs for s in (*t.states, t.final)]))
                for t in trajs:
                    t.mig = adv.mig([next(logps) for _ in range(len(t.states) + 1)])
            mc = (_monte_carlo(env, trajs[: cfg.mc_trajectories], policy, _rng(seed, task.task_id, 2), k_max, gamma)
                  if want_mc else None)
            tree = _mcts(env, task, start, seed, cfg.simulations) if want_tree else None
            forests = {}
            if want_forest:  # per group size, a forest with the env steps of its G chains
                for g in cfg.group_sizes:
                    budget = sum(len(t.actions) for t in trajs[:g])
                    forests[g] = _sample_tree(env, start, ref, policy, _rng(seed, task.task_id, 4 + g),
                                              max(1, -(-g // 4)), budget, cfg.max_steps)
            per_task.append((task, trajs, mc, tree, forests))
            if progress is not None:
                progress(1)
        for g in cfg.group_sizes:
            cols: dict[str, list] = defaultdict(list)
            cost: Counter = Counter()
            for task, trajs, mc, tree, forests in per_task:
                group = trajs[:g]
                n_sampled = sum(len(t.actions) for t in group)
                chain_cols = _group_columns(group, gamma, cfg, names)
                tree_cols = {}
                forest = forests.get(g, [])
                if forest:
                    tree_cols = _tree_columns(forest, gamma, names)
                    for name in tree_cols:
                        cost[name] += len(forest) - sum(nd.parent < 0 for nd in forest)
                n_chain = n_sampled
                n_tree = sum(nd.parent >= 0 for nd in forest)
                for t_i, t in enumerate(group):
                    for i in range(len(t.actions)):
                        _row(cols, task.task_id, f"{task.task_id}/{t_i}", i, t.keys[i], t.actions[i], t.rewards[i],
                             t.steps_left[i], t.a_pi[i], t.a_star[i], "chain")
                for nd in forest:
                    if nd.parent >= 0:
                        up = forest[nd.parent]
                        _row(cols, task.task_id, f"{task.task_id}/tree{nd.tree}", up.depth, up.key, nd.action,
                             nd.reward, cfg.max_steps - up.depth, nd.a_pi, nd.a_star, "tree")
                blank_chain, blank_tree = [None] * n_tree, [None] * n_chain
                for name in (*names, "recurs", "recurs_obs", "recurs_sim"):
                    if name in chain_cols:
                        cols[name].extend(chain_cols[name] + blank_chain)
                    elif name in tree_cols:
                        cols[name].extend(blank_tree + tree_cols[name])
                for name in names:
                    if name not in ("mc", "gae", "mcts_q", "mcts_q_or_gigpo", *TREE_ESTIMATORS):
                        cost[column_name(name, 0)] += n_sampled
                if mc is not None:
                    unscored = [None] * sum(len(t.actions) for t in group[len(mc.adv):])  # past mc_trajectories
                    for k in cfg.mc_rollouts:
                        if "mc" in names:
                            col = column_name("mc", k)
                            cols[col].extend([float(d[k - 1]) for row in mc.adv[:g] for d in row] + unscored
                                             + blank_chain)
                            cost[col] += n_sampled + int(sum(c[k - 1] for row in mc.cost[:g] for c in row))
                        if "gae" in names:  # V after the last step is 0: the episode ended or the horizon did
                            col = column_name("gae", k)
                            cols[col].extend([a for t, row in zip(group, mc.value[:g])
                                              for a in adv.gae(t.rewards, [float(v[k - 1]) for v in row], 0.0, gamma,
                                                               cfg.lam)] + unscored + blank_chain)
                            cost[col] += n_sampled + int(sum(c[k - 1] for row in mc.value_cost[:g] for c in row))
                if tree is not None:
                    for s in cfg.simulations:
                        q, v, spent = tree[s]
                        tree_adv = [q[(key, a)] - v[key] if (key, a) in q and key in v else None
                                    for t in group for key, a in zip(t.keys, t.actions)]
                        cols[column_name("mcts_q", s)].extend(tree_adv + blank_chain)  # mcts_q_or_gigpo's coverage
                        cost[column_name("mcts_q", s)] += n_sampled + spent
                        if "mcts_q_or_gigpo" in names:
                            col = column_name("mcts_q_or_gigpo", s)
                            mixed = [x if x is not None else gg for x, gg in zip(tree_adv, chain_cols["gigpo"])]
                            cols[col].extend(mixed + blank_chain)
                            cost[col] += n_sampled + spent
            n = len(cols["step"])
            for key in list(cols):
                if len(cols[key]) < n:  # an estimator absent from every task of the block
                    cols[key].extend([None] * (n - len(cols[key])))
            cols["env"] = [env.name] * n
            cols["seed"] = [seed] * n
            cols["group_size"] = [g] * n
            cols["gamma"] = [gamma] * n
            for key, vals in cols.items():
                steps[key].extend(vals)
            results.extend(_score_block(cols, env.name, cfg, seed, g, dict(cost)))
    return results, dict(steps)


def _row(cols, task_id, trajectory_id, step, key, action, reward, steps_left, a_pi, a_star, sampling) -> None:
    for name, value in (("task_id", task_id), ("trajectory_id", trajectory_id), ("step", step), ("state_key", key),
                        ("action", action), ("reward", reward), ("steps_left", steps_left), ("a_pi", a_pi),
                        ("a_star", a_star), ("sampling", sampling)):
        cols[name].append(value)


def _estimator_columns(cols: dict[str, list], cfg) -> list[tuple[str, int, str]]:
    """(estimator, budget, column) of every estimator column present."""
    out = []
    for name in cfg.estimators:
        budgets = (cfg.mc_rollouts if name in ("mc", "gae") else cfg.simulations if name in ("mcts_q", "mcts_q_or_gigpo")
                   else (0,))
        for b in budgets:
            col = column_name(name, b)
            if col in cols:
                out.append((name, b, col))
    return out


def _coverage(name: str, budget: int, cols: dict[str, list], rows: list[int]) -> float:
    """GiGPO: the share of steps whose anchor (state, observation text or similarity cluster) recurs
    in their group; MCTS-Q: the share of steps the tree holds; 1 for the rest."""
    if name in _ANCHOR:
        recurs = [cols[_ANCHOR[name]][i] for i in rows] if _ANCHOR[name] in cols else []
        return float(np.mean(recurs)) if recurs else float("nan")
    if name in ("mcts_q", "mcts_q_or_gigpo"):
        tree = cols.get(column_name("mcts_q", budget)) or []
        return float(np.mean([tree[i] is not None for i in rows])) if tree else float("nan")
    return 1.0


def _score_block(cols: dict[str, list], env_name: str, cfg, seed: int, g: int, cost: dict[str, int]) -> list[dict]:
    """The result rows of one (seed, group size) block of steps: each estimator on its own sampling's rows."""
    rows = []
    by_sampling = defaultdict(list)
    for i, sampling in enumerate(cols["sampling"]):
        by_sampling[sampling].append(i)
    for name, budget, col in _estimator_columns(cols, cfg):
        own = by_sampling["tree" if name in TREE_ESTIMATORS else "chain"]
        values = cols[col]
        keep = [i for i in own if values[i] is not None]
        x = [values[i] for i in keep]
        states = [cols["state_key"][i] for i in keep]
        actions = [cols["action"][i] for i in keep]
        coverage = _coverage(name, budget, cols, own)
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
        out.extend(_score_block(cols, env_name, cfg, seed, g, {}))
    return out


def _answer_scorer(env: Env, backend) -> Callable[[Sequence[Any]], list[float]]:
    """``answer_logp(states)``: log p(answer | Env.answer_prompt(state)) under ``backend``'s model,
    through its chat template where it has one; one value per distinct prompt is computed."""
    memo: dict[str, float] = {}

    def answer_logp(states):
        prompts = [backend.format_prompt(env.answer_prompt(s)) for s in states]
        todo = {p: s for p, s in zip(prompts, states) if p not in memo}
        if todo:
            keys = list(todo)
            scored = backend.score(keys, [[backend.joiner + env.answer_text(todo[p])] for p in keys])
            for p, (res,) in zip(keys, scored):
                memo[p] = float(res[0])
        return [memo[p] for p in prompts]

    return answer_logp


def run_credit_bench(cfg) -> tuple[Path, list[str]]:
    """Run the bench of ``cfg`` (:class:`~treeq.pipelines.config.CreditBenchConfig`) and write its outputs.

    Returns the output directory and the summary lines printed by the command.

    Raises:
        ConfigError: bad settings, or an env without exact values or a known model.
    """
    import pyarrow as pa
    from tqdm import tqdm

    from ..data.store import RecordWriter, write_text_atomic
    from ..envs.registry import make_env
    from ..mcts.config import SearchConfig, resolve_defaults
    from .config import CREDIT_BENCH_DEFAULT_ESTIMATORS
    from .policies import PROPOSERS, check_name
    from .policies.lm import LMConfig, get_backend
    from .policies.qstar import qstar_probs
    from .rollouts import prior_probs

    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file: give a directory")
    env = make_env(cfg.env, **cfg.env_kwargs)
    gamma = env.default_gamma if cfg.gamma is None else cfg.gamma
    tasks = list(env.load_tasks(cfg.tasks))[: cfg.limit]
    if not tasks:
        raise ConfigError(f"no tasks for {env.name}")
    by_default = cfg.estimators == CREDIT_BENCH_DEFAULT_ESTIMATORS  # estimators an env cannot run are then left out
    first = env.reset(tasks[0], _rng(0, tasks[0].task_id, 0))
    if "hiper" in cfg.estimators and env.subtask_progress(first) is None:
        if not by_default:
            raise ConfigError(f"hiper needs subtask boundaries and {env.name} declares none (Env.subtask_progress): "
                              f"Blocksworld and TextWorld do")
        cfg = replace(cfg, estimators=tuple(e for e in cfg.estimators if e != "hiper"))
    answer_logp = None
    if "mig" in cfg.estimators:
        why = ("mig scores the task's answer and {env} has none (Env.answer_text: Countdown and Game of 24 do)"
               if env.answer_text(first) is None else "mig needs a language model: give --model" if cfg.model is None
               else None)
        if why is not None:
            if not by_default:
                raise ConfigError(why.format(env=env.name))
            cfg = replace(cfg, estimators=tuple(e for e in cfg.estimators if e != "mig"))
        else:
            answer_logp = _answer_scorer(env, get_backend(LMConfig(model=cfg.model)))
    if cfg.policy in ("softmax-qstar", "epsilon-qstar"):
        kind, param = ("softmax", cfg.temperature) if cfg.policy == "softmax-qstar" else ("epsilon", cfg.epsilon)

        memo: dict[str, list[tuple[str, float]]] = {}  # Q* depends on the state key alone

        def policy(states):
            probs = []
            for s in states:
                key = env.state_key(s)
                if key not in memo:
                    memo[key] = qstar_probs(env, s, gamma, kind, param)
                probs.append(memo[key])
            return probs

        policy.state_key = env.state_key  # type: ignore[attr-defined]  # see _chooser
    else:
        search_cfg = resolve_defaults(SearchConfig(gamma=gamma), env)
        propose = PROPOSERS[check_name("proposer", cfg.policy)].factory(env, search_cfg, _rng(0, "policy", 9),
                                                                       LMConfig(model=cfg.model))

        def policy(states):
            return [[(o[0], float(p)) for o, p in zip(options, prior_probs(options))]
                    for options in propose(states, search_cfg.proposals)]
    started = time.perf_counter()
    with tqdm(total=cfg.seeds * len(tasks), desc=f"credit-bench {env.name}", unit="task", disable=not cfg.progress,
              dynamic_ncols=True) as bar:
        results, steps = bench_env(env, tasks, policy, cfg, gamma, bar.update, answer_logp)
    seconds = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    with RecordWriter(out / "steps.parquet") as w:
        w.write(pa.table(steps))
    with RecordWriter(out / "results.parquet") as w:
        w.write(pa.table({k: [r[k] for r in results] for k in results[0]}))
    from .credit_report import write_report

    lines = write_report(results, out, cfg, seconds, env.name)
    settings = {k: v for k, v in asdict(cfg).items() if k != "progress"}
    write_text_atomic(out / "credit_bench.json", json.dumps(settings, indent=2) + "\n")
    return out, lines

