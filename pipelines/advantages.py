"""Advantage estimators of agent RL on one group of trajectories (pure numpy, no I/O).

A *group* is the trajectories sampled from one task (verl-agent's ``uid``); each
trajectory is a sequence of steps with an env reward each. Every function returns plain
lists (one value per trajectory, or one list per trajectory with a value per step), so
that ``treeq.pipelines.rewards`` can put each estimator in its own column. The formulas,
with their sources, are written out in docs/exports.md.

Conventions shared with verl / verl-agent, whose code these follow:

* the episode return is the undiscounted sum of the step rewards;
* ``std`` is the unbiased (n - 1) standard deviation, ``EPSILON = 1e-6`` is added to it;
* a normalisation group of one member has mean 0 and std 1 at the episode level
  (verl's ``compute_grpo_outcome_advantage``) and mean = its own value at the step
  level (verl-agent's ``step_norm_reward``), so a singleton anchor-state group gives 0.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Sequence

import numpy as np

__all__ = [
    "EPSILON", "GIGPO_MODES", "discounted_returns", "episode_returns", "grpo", "grpo_steps", "loop", "gigpo", "turn",
    "gae", "normalise_over_steps", "similarity_anchors", "tree_grpo", "subtree_values", "hiper", "mig",
]

EPSILON = 1e-6
GIGPO_MODES = ("mean_std_norm", "mean_norm")


def discounted_returns(rewards: Sequence[float], gamma: float) -> list[float]:
    """G_t = sum_k gamma^(k-t) r_k over the rest of the trajectory (verl-agent Eq. 5)."""
    out = [0.0] * len(rewards)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = float(rewards[t]) + gamma * running
        out[t] = running
    return out


def episode_returns(rewards: Sequence[Sequence[float]]) -> list[float]:
    """R_i: the undiscounted sum of each trajectory's rewards."""
    return [float(sum(r)) for r in rewards]


def _normalise(scores: Sequence[float], groups: Sequence[Hashable], std: bool, singleton_mean_zero: bool) -> list[float]:
    """(x - mean_g) or (x - mean_g) / (std_g + eps) within each group g (verl's loops)."""
    members: dict[Hashable, list[float]] = defaultdict(list)
    for x, g in zip(scores, groups):
        members[g].append(float(x))
    stats = {}
    for g, xs in members.items():
        if len(xs) == 1:
            stats[g] = (0.0 if singleton_mean_zero else xs[0], 1.0)
        else:
            stats[g] = (float(np.mean(xs)), float(np.std(xs, ddof=1)))
    out = []
    for x, g in zip(scores, groups):
        mean, sd = stats[g]
        out.append((x - mean) / (sd + EPSILON) if std else x - mean)
    return out


def grpo(rewards: Sequence[Sequence[float]], std: bool = True) -> list[float]:
    """GRPO (DeepSeekMath; verl ``compute_grpo_outcome_advantage``): (R_i - mean R) / (std R + eps).

    One value per trajectory, the same for each of its steps. A group of one gives R_i.
    """
    returns = episode_returns(rewards)
    return _normalise(returns, [0] * len(returns), std, singleton_mean_zero=True)


def grpo_steps(rewards: Sequence[Sequence[float]], std: bool = True) -> list[list[float]]:
    """Multi-turn GRPO over step rows (verl-agent's batches): every step row carries its trajectory's return
    R_i and is normalised against all step rows of the group, so a longer trajectory weighs more.

    :func:`grpo` normalises over trajectories (one R_i each), as verl does for single-turn data.
    """
    return normalise_over_steps([[float(sum(r))] * len(r) for r in rewards], std)


def normalise_over_steps(values: Sequence[Sequence[float]], std: bool = True) -> list[list[float]]:
    """Per-step values standardised over every step row of the group: (x - mean) / (std + eps)."""
    flat = [float(x) for row in values for x in row]
    normed = _normalise(flat, [0] * len(flat), std, singleton_mean_zero=True)
    out, k = [], 0
    for row in values:
        out.append(normed[k : k + len(row)])
        k += len(row)
    return out


def loop(rewards: Sequence[Sequence[float]]) -> list[float]:
    """LOOP (arXiv 2502.01600) leave-one-out: R_i - mean_{j != i} R_j; a group of one gives 0."""
    returns = episode_returns(rewards)
    k = len(returns)
    if k == 1:
        return [0.0]
    total = sum(returns)
    return [r - (total - r) / (k - 1) for r in returns]


def gigpo(rewards: Sequence[Sequence[float]], anchors: Sequence[Sequence[Hashable]], gamma: float,
          weight: float = 1.0, mode: str = "mean_std_norm") -> list[list[float]]:
    """GiGPO (arXiv 2505.10978; verl-agent ``core_gigpo.compute_gigpo_outcome_advantage``).

    Episode part (Eq. 3, ``episode_norm_reward``): every step row carries its trajectory's
    return R_i and is normalised against all step rows of the group (verl-agent's default
    ``compute_mean_std_cross_steps=True``, so a longer trajectory weighs more).
    Step part (Eq. 5-7, ``step_norm_reward``): the discounted return G_t of each step,
    normalised within the steps of the group that share its anchor state (``anchors``,
    the state keys); a singleton anchor group gives 0. Result: episode + weight * step.
    ``mode``: ``mean_std_norm`` divides both parts by (std + eps), ``mean_norm`` only
    subtracts the means (verl-agent's ``algorithm.gigpo.mode``).
    """
    if mode not in GIGPO_MODES:
        raise ValueError(f"gigpo mode must be one of {', '.join(GIGPO_MODES)}, got {mode!r}")
    std = mode == "mean_std_norm"
    episode = [e for row in grpo_steps(rewards, std) for e in row]
    step_scores = [g for r in rewards for g in discounted_returns(r, gamma)]
    step_groups = [a for a in anchors for a in a]
    if len(step_groups) != len(step_scores):
        raise ValueError("anchors must give one state key per step")
    step = _normalise(step_scores, step_groups, std, singleton_mean_zero=False)
    joint = [e + weight * s for e, s in zip(episode, step)]
    out, k = [], 0
    for r in rewards:
        out.append(joint[k : k + len(r)])
        k += len(r)
    return out


def similarity_anchors(texts: Sequence[str], threshold: float) -> list[int]:
    """Anchor groups for states that never repeat exactly (verl-agent ``build_step_group`` with
    ``enable_similarity``): each text joins the first cluster whose first member it matches
    with a ``difflib.SequenceMatcher`` ratio >= ``threshold``, else opens a new cluster.
    Returns a cluster id per text (``threshold`` 1.0: exact matches only)."""
    from difflib import SequenceMatcher

    reps: list[str] = []
    exact: dict[str, int] = {}
    out = []
    for text in texts:
        cid = exact.get(text)
        if cid is None:
            matcher = SequenceMatcher(None, autojunk=False)
            matcher.set_seq2(text)
            for i, rep in enumerate(reps):
                matcher.set_seq1(rep)
                if (threshold < 1.0 and matcher.real_quick_ratio() >= threshold and matcher.quick_ratio() >= threshold
                        and matcher.ratio() >= threshold):
                    cid = i
                    break
            if cid is None:
                cid = len(reps)
                reps.append(text)
            exact[text] = cid
        out.append(cid)
    return out


def tree_grpo(leaf_returns: Sequence[float], leaf_tree: Sequence[Hashable], std: bool = True) -> list[float]:
    """Tree-GRPO (arXiv 2509.21240): per leaf of a forest of sampled trees, the intra-tree advantage
    (its return normalised among the leaves of its own tree) plus the inter-tree advantage (among
    every leaf of the task's trees)."""
    intra = _normalise(leaf_returns, leaf_tree, std, singleton_mean_zero=True)
    inter = _normalise(leaf_returns, [0] * len(leaf_returns), std, singleton_mean_zero=True)
    return [a + b for a, b in zip(intra, inter)]


def subtree_values(parent: Sequence[int], leaf_value: Sequence[float | None]) -> list[float]:
    """The mean of ``leaf_value`` over the leaves under each node of a forest (``parent[i] < i``, -1
    for a root; ``leaf_value`` is None at inner nodes): TreePO's subtree averaging."""
    total = [0.0 if v is None else float(v) for v in leaf_value]
    count = [0 if v is None else 1 for v in leaf_value]
    for i in range(len(parent) - 1, -1, -1):
        if parent[i] >= 0:
            total[parent[i]] += total[i]
            count[parent[i]] += count[i]
    return [t / c if c else float("nan") for t, c in zip(total, count)]


def hiper(rewards: Sequence[Sequence[float]], ends_subtask: Sequence[Sequence[bool]], gamma: float,
          weights: Sequence[float] = (1.0, 1.0, 1.0), std: bool = True) -> list[list[float]]:
    """A critic-free, group-relative form of HiPER's hierarchical advantage (arXiv 2602.16165):
    w1 * A_task + w2 * A_subtask + w3 * A_action.

    ``ends_subtask[i][t]``: step t of trajectory i achieves a subgoal (the env's subtask
    boundary), so step t's subtask index k is the count of boundaries before it.
    A_task: the trajectory's return, normalised over the group (GRPO). A_subtask: the
    discounted return from the first step of the step's subtask, normalised among the
    subtasks of the group with the same index k (the planner's credit for the segment).
    A_action: the step's discounted return-to-go normalised among the group's steps with the
    same subtask index (the executor's credit within the stage). HiPER itself estimates
    both levels with a critic; this variant replaces the critic by group statistics.
    """
    w1, w2, w3 = weights
    task = grpo(rewards, std)
    seg_scores, seg_groups, act_scores, act_groups, where = [], [], [], [], []
    for i, (r, ends) in enumerate(zip(rewards, ends_subtask)):
        if len(ends) != len(r):
            raise ValueError("ends_subtask must give one flag per step")
        g = discounted_returns(r, gamma)
        k, seg = 0, -1
        for t in range(len(r)):
            if t == 0 or ends[t - 1]:
                k = 0 if t == 0 else k + 1
                seg_scores.append(g[t])
                seg_groups.append(k)
                seg = len(seg_scores) - 1
            act_scores.append(g[t])
            act_groups.append(k)
            where.append((i, seg))
    sub = _normalise(seg_scores, seg_groups, std, singleton_mean_zero=True)
    act = _normalise(act_scores, act_groups, std, singleton_mean_zero=True)
    out: list[list[float]] = [[] for _ in rewards]
    for (i, seg), a in zip(where, act):
        out[i].append(w1 * task[i] + w2 * sub[seg] + w3 * a)
    return out


def mig(answer_logps: Sequence[float]) -> list[float]:
    """Step-wise marginal information gain with the monotone watermark (arXiv 2602.01034).

    ``answer_logps``: log p(answer | steps < 1), ..., log p(answer | steps <= T) under a
    language model (T + 1 values for T steps). MIG_t = L_t - L_{t-1}; the reward of step t is
    MIG_t where it exceeds every earlier MIG of the trajectory (the first step's always
    counts), else 0.
    """
    out, best = [], -math.inf
    for before, after in zip(answer_logps, answer_logps[1:]):
        gain = float(after) - float(before)
        out.append(gain if gain > best else 0.0)
        best = max(best, gain)
    return out


def turn(rewards: Sequence[float], gamma: float) -> list[float]:
    """Turn-level return: the discounted sum of this and later step rewards, the final reward included."""
    return discounted_returns(rewards, gamma)


def gae(rewards: Sequence[float], values: Sequence[float | None], last_value: float | None, gamma: float,
        lam: float) -> list[float | None]:
    """GAE (Schulman et al. 2016): A_t = sum_l (gamma lam)^l delta_{t+l}, delta_t = r_t + gamma V_{t+1} - V_t.

    ``values[t]`` is V(s_t); ``last_value`` V of the state after the last step (0 when the
    episode terminated). A missing value makes every advantage that depends on it None.
    """
    n = len(rewards)
    vs = list(values) + [last_value]
    out: list[float | None] = [None] * n
    running: float | None = 0.0
    for t in range(n - 1, -1, -1):
        if vs[t] is None or vs[t + 1] is None or running is None:
            running = None
        else:
            delta = float(rewards[t]) + gamma * vs[t + 1] - vs[t]
            running = delta + gamma * lam * running
        out[t] = running
    return out
