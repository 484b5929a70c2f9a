"""credit-bench: exact policy values on a tiny MDP by hand, estimators converging, steps.parquet reproducing results."""

from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.test_cli import assert_one_line_error
from treeq.envs.base import Env, Step, Task
from treeq.pipelines import advantages as adv
from treeq.pipelines.config import CreditBenchConfig
from treeq.pipelines.credit_bench import bench_env, results_from_steps
from treeq.pipelines.credit_metrics import kendall, nmse, sign_agreement, spearman, within_state_auroc
from treeq.pipelines.policy_values import PolicyValues


class Tiny(Env):
    """s0 --a--> s1 (0) | --b--> end (0.3) | --e--> s2 (0.1); s1 --c--> end (1) | --d--> end (0.2);
    s2 --f--> end (0.6) | --g--> end (0). With ``slip``, a from s0 ends at once (reward 0) with that probability."""

    name = "tiny"
    prefer_transpositions = True
    MOVES = {"s0": {"a": ("s1", 0.0), "b": ("end", 0.3), "e": ("s2", 0.1)},
             "s1": {"c": ("end", 1.0), "d": ("end", 0.2)},
             "s2": {"f": ("end", 0.6), "g": ("end", 0.0)}}

    def __init__(self, slip: float = 0.0) -> None:
        self.slip = slip
        self.deterministic = slip == 0.0

    def reset(self, task, rng=None):
        return "s0"

    def legal_actions(self, state):
        return list(self.MOVES.get(state, {}))

    def step(self, state, action, rng=None):
        nxt, r = self.MOVES[state][action]
        if state == "s0" and action == "a" and self.slip and rng is not None and rng.random() < self.slip:
            nxt = "end"
        return Step(nxt, r, nxt == "end")

    def transitions(self, state, action):
        nxt, r = self.MOVES[state][action]
        if state == "s0" and action == "a" and self.slip:
            return [(1 - self.slip, Step(nxt, r, False)), (self.slip, Step("end", r, True))]
        return [(1.0, Step(nxt, r, nxt == "end"))]

    def state_key(self, state):
        return state

    def render(self, state):
        return state

    def load_tasks(self, path=None):
        return [Task("t0"), Task("t1")]

    def exact_q(self, state, action, gamma):
        return sum(p * (s.reward + (0.0 if s.terminated else gamma * self.exact_value(s.state, gamma)))
                   for p, s in self.transitions(state, action))

    def exact_value(self, state, gamma):
        if state == "end":
            return 0.0
        return max(self.exact_q(state, a, gamma) for a in self.legal_actions(state))


def uniform(env):
    def policy(states):
        out = []
        for s in states:
            acts = env.legal_actions(s)
            out.append([(a, 1.0 / len(acts)) for a in acts])
        return out
    return policy


# ----------------------------------------------------------------------------- exact references by hand
def test_policy_values_by_hand_deterministic():
    env = Tiny()
    pv = PolicyValues(env, "s0", uniform(env), gamma=0.9, horizon=3)
    # V^pi(s1) = (1 + 0.2)/2 = 0.6, V^pi(s2) = 0.3
    assert pv.value("s1", 1) == pytest.approx(0.6)
    assert pv.value("s2", 2) == pytest.approx(0.3)
    # Q^pi(s0,a) = 0.9 * 0.6 = 0.54, Q(b) = 0.3, Q(e) = 0.1 + 0.9 * 0.3 = 0.37; V = 1.21 / 3
    assert pv.q("s0", "a", 3) == pytest.approx(0.54)
    assert pv.q("s0", "e", 3) == pytest.approx(0.37)
    assert pv.value("s0", 3) == pytest.approx(1.21 / 3)
    assert pv.advantage("s0", "a", 3) == pytest.approx(0.54 - 1.21 / 3)
    assert pv.advantage("s1", "d", 2) == pytest.approx(-0.4)
    # one step left at s0: nothing after the step counts: Q(a) = 0, Q(b) = 0.3, Q(e) = 0.1
    assert pv.q("s0", "a", 1) == pytest.approx(0.0)
    assert pv.value("s0", 1) == pytest.approx(0.4 / 3)
    assert pv.advantage("s0", "b", 1) == pytest.approx(0.3 - 0.4 / 3)
    assert pv.value("s0", 0) == 0.0 and pv.q("s0", "a", 0) == 0.0  # zero steps left: zero value
    # A* = Q* - V*: V*(s1) = 1, V*(s2) = 0.6, Q*(s0,a) = 0.9, Q*(s0,e) = 0.1 + 0.54 = 0.64
    assert env.exact_q("s0", "a", 0.9) - env.exact_value("s0", 0.9) == pytest.approx(0.0)
    assert env.exact_q("s0", "e", 0.9) - env.exact_value("s0", 0.9) == pytest.approx(-0.26)
    assert env.exact_q("s1", "d", 0.9) - env.exact_value("s1", 0.9) == pytest.approx(-0.8)


def test_policy_values_by_hand_stochastic():
    env = Tiny(slip=0.5)
    pv = PolicyValues(env, "s0", uniform(env), gamma=1.0, horizon=2)
    # Q^pi(s0,a) = 0.5 * V^pi(s1) = 0.5 * 0.6 = 0.3, Q(b) = 0.3, Q(e) = 0.1 + 0.3 = 0.4; V = 1.0 / 3
    assert pv.q("s0", "a", 2) == pytest.approx(0.3)
    assert pv.value("s0", 2) == pytest.approx(1.0 / 3)
    assert pv.advantage("s0", "e", 2) == pytest.approx(0.4 - 1.0 / 3)
    # Q*(s0,a) = 0.5 * 1 = 0.5 < Q*(s0,e) = 0.1 + 0.6 = 0.7 = V*(s0)
    assert env.exact_q("s0", "a", 1.0) - env.exact_value("s0", 1.0) == pytest.approx(-0.2)


def test_policy_values_refuse_an_env_without_a_model():
    env = Tiny(slip=0.5)
    env.transitions = lambda state, action: None  # a stochastic env that does not give its model
    with pytest.raises(Exception, match="transition model"):
        PolicyValues(env, "s0", uniform(env), gamma=1.0, horizon=2)


# ----------------------------------------------------------------------------- metrics by hand
def test_metrics_by_hand():
    x, y = [0.1, 0.2, 0.3, 0.4], [1.0, 2.0, 3.0, 4.0]
    assert spearman(x, y) == pytest.approx(1.0)
    assert kendall([1, 2, 3, 4], [0, 0, 1, 1]) == pytest.approx(4 / math.sqrt(6 * 4))  # tau-b with ties in y
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))  # a constant column: undefined
    # two states: in s the estimate orders a > b as the reference does, in t it ties (a half)
    assert within_state_auroc([2, 1, 5, 5], [1, 0, 1, 0], ["s", "s", "t", "t"], ["a", "b", "a", "b"]) == 0.75
    assert math.isnan(within_state_auroc([1, 2], [0, 1], ["s", "t"], ["a", "a"]))  # no pair within a state
    assert sign_agreement([1, -1, 0, 5], [2, -3, 1, 0]) == pytest.approx(2 / 3)  # 0 estimate is wrong; ref 0 skipped
    assert nmse([2, 4], [1, 2]) == pytest.approx(0.0)  # scale is fitted
    assert nmse([-1, -2], [1, 2]) == pytest.approx(1.0)  # a negative scale is not allowed: no better than 0


def test_grpo_over_steps_weighs_long_trajectories():
    # returns 1 (3 steps) and 0 (1 step): over trajectories mean 0.5; over step rows mean 0.75
    traj = adv.grpo([[0, 0, 1], [0]], std=False)
    rows = adv.grpo_steps([[0, 0, 1], [0]], std=False)
    assert traj == pytest.approx([0.5, -0.5])
    assert rows == [pytest.approx([0.25] * 3), pytest.approx([-0.75])]


def test_similarity_anchors_cluster_near_duplicates():
    texts = ["You are in the kitchen. You see a knife.", "You are in the kitchen. You see a knife!", "A hallway.",
             "You are in the kitchen. You see a knife."]
    assert adv.similarity_anchors(texts, 0.95) == [0, 0, 1, 0]
    assert adv.similarity_anchors(texts, 1.0) == [0, 1, 2, 0]  # exact matches only


def test_tree_grpo_and_subtree_values_by_hand():
    # leaves with returns 1, 0 (tree 0) and 1 (tree 1): intra-tree +-0.5/(std 0.7071 + eps) and a singleton 1/(1 + eps);
    # inter-tree: mean 2/3, std sqrt(1/3)
    e = adv.EPSILON
    intra = [0.5 / (math.sqrt(0.5) + e), -0.5 / (math.sqrt(0.5) + e), 1 / (1 + e)]
    inter = [(1 / 3) / (math.sqrt(1 / 3) + e), (-2 / 3) / (math.sqrt(1 / 3) + e), (1 / 3) / (math.sqrt(1 / 3) + e)]
    assert adv.tree_grpo([1, 0, 1], [0, 0, 1]) == pytest.approx([a + b for a, b in zip(intra, inter)])
    # a root with children 1 (leaves 3, 4) and 2 (a leaf)
    assert adv.subtree_values([-1, 0, 0, 1, 1], [None, None, 3.0, 1.0, 2.0]) == pytest.approx([2.0, 1.5, 3.0, 1.0, 2.0])


def test_treepo_on_a_hand_built_forest():
    from treeq.pipelines.credit_bench import _Node, _tree_columns

    # s0 -a-> s1 -c-> end (1) and s1 -d-> end (0.2) (an expansion at s1); s0 -b-> end (0.3)
    nodes = [_Node("s0", "s0", 0), _Node("s1", "s1", 0, 0, 1, "a", 0.0), _Node("end", "end", 0, 1, 2, "c", 1.0, True),
             _Node("end", "end", 0, 1, 2, "d", 0.2, True), _Node("end", "end", 0, 0, 1, "b", 0.3, True)]
    cols = _tree_columns(nodes, 1.0, ("treepo", "tree_grpo"))
    # V(s1) = (1 + 0.2) / 2 = 0.6, V(s0) = (1 + 0.2 + 0.3) / 3 = 0.5; edges a, c, d, b
    assert cols["treepo"] == pytest.approx([0.1, 0.4, -0.4, -0.2])
    leaf = adv.tree_grpo([1.0, 0.2, 0.3], [0, 0, 0])
    assert cols["tree_grpo"] == pytest.approx([(leaf[0] + leaf[1]) / 2, leaf[0], leaf[1], leaf[2]])


def test_hiper_by_hand():
    # trajectory 0 ends a subtask at its first step; returns 1 and 0; gamma 1, means only
    out = adv.hiper([[0, 0, 1], [0, 0]], [[True, False, False], [False, False]], 1.0, std=False)
    # task +-0.5; subtask 0: G = 1, 0 -> +-0.5, subtask 1 (alone): 1; action: stage 0 G = 1, 0, 0 -> 2/3, -1/3, -1/3
    assert out[0] == pytest.approx([0.5 + 0.5 + 2 / 3, 0.5 + 1.0 + 0.0, 0.5 + 1.0 + 0.0])
    assert out[1] == pytest.approx([-0.5 - 0.5 - 1 / 3] * 2)


def test_blocksworld_declares_its_goal_facts_as_subtasks():
    from treeq.envs.blocksworld.env import BlocksworldEnv
    from treeq.envs.blocksworld.rules import is_goal

    env = BlocksworldEnv()
    task = env.load_tasks()[0]
    state = env.reset(task)
    counts = [env.subtask_progress(state)]
    while not is_goal(state):  # follow an optimal plan: the goal facts all hold at the end
        state = max(((a, env.step(state, a)) for a in env.legal_actions(state)),
                    key=lambda x: env.exact_q(state, x[0], 0.9))[1].state
        counts.append(env.subtask_progress(state))
    assert counts[-1] == len(state.goal) > counts[0]


def test_tree_sampling_spends_the_chain_budget():
    env = Tiny(slip=0.5)
    results, steps = _bench(env, estimators=("grpo", "tree_grpo", "treepo"), group_sizes=(4, 16), seeds=1, max_steps=3)
    by = {(r["estimator"], r["group_size"], r["reference"]): r for r in results}
    for g in (4, 16):
        chain = sum(1 for s, gs in zip(steps["sampling"], steps["group_size"]) if s == "chain" and gs == g)
        tree = sum(1 for s, gs in zip(steps["sampling"], steps["group_size"]) if s == "tree" and gs == g)
        assert by[("grpo", g, "a_pi")]["env_steps"] == chain
        assert by[("tree_grpo", g, "a_pi")]["env_steps"] == tree
        assert chain <= tree < chain + 2 * 3  # the last chain of each task may run past the budget
    assert all(v is None for v, s in zip(steps["grpo"], steps["sampling"]) if s == "tree")
    assert all(v is not None for v, s in zip(steps["treepo"], steps["sampling"]) if s == "tree")
    assert by[("treepo", 16, "a_pi")]["auroc"] > 0.5


def test_mig_by_hand():
    # L = -3, -1, -2, 0.5: MIG = 2, -1, 2.5; the second does not beat 2, the third does
    assert adv.mig([-3.0, -1.0, -2.0, 0.5]) == pytest.approx([2.0, 0.0, 2.5])
    assert adv.mig([-1.0, -2.0, -4.0]) == pytest.approx([-1.0, 0.0])  # the first step always counts
    assert adv.mig([-1.0, -2.0, -2.5]) == pytest.approx([-1.0, -0.5])  # -0.5 beats -1
    assert adv.mig([0.0]) == []


# ----------------------------------------------------------------------------- estimators converge to their references
def _bench(env, **kw):
    cfg = CreditBenchConfig(policy="uniform", limit=None, progress=False, **kw)
    return bench_env(env, env.load_tasks(), uniform(env), cfg, 0.9)


def test_mc_and_mcts_q_converge_to_their_references():
    env = Tiny()
    results, steps = _bench(env, estimators=("mc", "mcts_q"), group_sizes=(16,), mc_rollouts=(1, 1024),
                            mc_trajectories=16, simulations=(2, 200), seeds=1, max_steps=3)
    by = {(r["estimator"], r["rollouts"], r["reference"]): r for r in results}
    # MC draws a new estimate at every step, so repeats of one (state, action) tie in A^pi and not in the
    # estimate, which caps the pooled Spearman below 1 however large K is: its convergence is read on the
    # distinct (state, action, steps left) of the sample, its first estimate each
    first = {}
    for i, key in enumerate(zip(steps["state_key"], steps["action"], steps["steps_left"])):
        first.setdefault(key, i)
    rows = list(first.values())
    assert len(rows) >= 5
    ref = [steps["a_pi"][i] for i in rows]
    assert spearman([steps["mc@1024"][i] for i in rows], ref) >= 0.99
    assert spearman([steps["mc@1024"][i] for i in rows], ref) > spearman([steps["mc@1"][i] for i in rows], ref)
    assert by[("mc", 1024, "a_pi")]["spearman"] > by[("mc", 1, "a_pi")]["spearman"]
    assert by[("mcts_q", 200, "a_star")]["spearman"] >= 0.99
    assert by[("mcts_q", 200, "a_star")]["coverage"] > by[("mcts_q", 2, "a_star")]["coverage"]
    # more budget costs more env steps, and both pay for the group's own steps
    assert by[("mc", 1024, "a_pi")]["env_steps"] > by[("mc", 1, "a_pi")]["env_steps"] > sum(
        1 for g in steps["group_size"] if g == 16)


def test_gae_from_monte_carlo_values_converges():
    """gae@K: GAE with V from K rollouts of each state; with lambda 1 and exact values it is the return
    minus V^pi(s_t), so its ranking tends to A^pi's as K grows, and it costs the V rollouts only."""
    env = Tiny()
    results, steps = _bench(env, estimators=("gae", "mc"), group_sizes=(16,), mc_rollouts=(1, 512),
                            mc_trajectories=16, seeds=1, max_steps=3, lam=1.0)
    by = {(r["estimator"], r["rollouts"], r["reference"]): r for r in results}
    assert by[("gae", 512, "a_pi")]["spearman"] > by[("gae", 1, "a_pi")]["spearman"]
    assert by[("gae", 512, "a_pi")]["env_steps"] < by[("mc", 512, "a_pi")]["env_steps"]
    # the last step of every trajectory: r - V(s_T-1) (V after the end is 0), V near V^pi
    # uniform policy, gamma 0.9: V(s1) = 0.6, V(s2) = 0.3, V(s0) = (0.9 * 0.6 + 0.3 + 0.1 + 0.9 * 0.3) / 3
    v_pi = {"s0": 1.21 / 3, "s1": 0.6, "s2": 0.3}
    ids = steps["trajectory_id"]
    for i, traj in enumerate(ids):
        if i + 1 == len(ids) or ids[i + 1] != traj:  # a trajectory's last step
            v = steps["reward"][i] - steps["gae@512"][i]
            assert v == pytest.approx(v_pi[steps["state_key"][i]], abs=0.1)


def test_mc_estimates_the_first_trajectories_only():
    _, steps = _bench(Tiny(), estimators=("mc",), group_sizes=(6,), mc_rollouts=(2,), mc_trajectories=4, seeds=1,
                      max_steps=3)
    for traj, value in zip(steps["trajectory_id"], steps["mc@2"]):
        assert (value is None) == (int(traj.split("/")[1]) >= 4)


def test_gigpo_coverage_grows_with_the_group():
    env = Tiny(slip=0.5)
    results, _ = _bench(env, estimators=("gigpo", "grpo"), group_sizes=(2, 32), seeds=2, max_steps=3)
    cov = {r["group_size"]: r["coverage"] for r in results if r["estimator"] == "gigpo" and r["seed"] == 0}
    assert cov[32] > cov[2]
    assert cov[32] == 1.0  # 32 trajectories over 3 states: every state recurs


def test_same_seed_same_numbers():
    a, _ = _bench(Tiny(slip=0.5), estimators=("grpo", "mc"), group_sizes=(4,), mc_rollouts=(2,), seeds=1, max_steps=3)
    b, _ = _bench(Tiny(slip=0.5), estimators=("grpo", "mc"), group_sizes=(4,), mc_rollouts=(2,), seeds=1, max_steps=3)
    assert a == b or all(
        (x == y) or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
        for ra, rb in zip(a, b) for x, y in zip(ra.values(), rb.values()))


# ----------------------------------------------------------------------------- the command end to end
def test_credit_bench_cli_and_steps_reproduce_results(run_cli, tmp_path):
    out = tmp_path / "cb"
    res = run_cli("credit-bench", "--limit", "3", "--seeds", "2", "--group-sizes", "2,8", "--mc-rollouts", "1,4",
                  "--simulations", "30", "--out", out, "--no-progress")
    assert res.rc == 0, res.err
    assert "best within-state AUROC vs A*" in res.out.splitlines()[-1]
    for name in ("results.parquet", "steps.parquet", "table.md", "quality_vs_steps.png", "gigpo_group_size.png"):
        assert (out / name).is_file(), name
    results = pq.read_table(out / "results.parquet").to_pylist()
    assert set(results[0]) >= {"env", "policy", "estimator", "group_size", "rollouts", "env_steps", "reference",
                               "spearman", "kendall", "auroc", "sign_agreement", "nmse", "coverage", "seed"}
    steps = pq.read_table(out / "steps.parquet").to_pydict()
    assert {"env", "seed", "group_size", "trajectory_id", "step", "state_key", "action", "reward", "gamma",
            "a_pi", "a_star", "grpo", "gigpo", "mc@4", "mcts_q@30"} <= set(steps)
    cfg = CreditBenchConfig(limit=3, seeds=2, group_sizes=(2, 8), mc_rollouts=(1, 4), simulations=(30,))
    again = results_from_steps(steps, cfg)
    key = ("env", "estimator", "group_size", "rollouts", "reference", "seed")
    mine = {tuple(r[k] for k in key): r for r in again}
    assert len(mine) == len(results)
    for r in results:
        other = mine[tuple(r[k] for k in key)]
        for m in ("spearman", "kendall", "auroc", "sign_agreement", "nmse", "coverage"):
            a, b = r[m], other[m]
            assert (a is None and (b is None or math.isnan(b))) or (math.isnan(a) and math.isnan(b)) or a == b, (m, r, other)
    # Game of 24's A* takes two values: every step's A* is 0 or minus V*(s)
    a_star = np.asarray(steps["a_star"])
    assert set(np.round(a_star, 9)) <= {0.0, -1.0}


@pytest.mark.parametrize("argv, needle", [
    (["--env", "llm-steps"], "exact"),
    (["--group-sizes", "1,4"], "group size of 1"),
    (["--estimators", "grpo,nope"], "unknown estimator"),
    (["--group-sizes", "2,x"], "--group-sizes"),
    (["--env", "gym:FrozenLake-v1", "--estimators", "grpo,hiper"], "subtask"),
    (["--similarity", "0"], "similarity"),
])
def test_credit_bench_bad_input(run_cli, tmp_path, argv, needle):
    res = run_cli("credit-bench", "--limit", "1", "--seeds", "1", "--out", tmp_path / "cb", "--no-progress", *argv)
    assert_one_line_error(res, needle)


def test_credit_bench_hf_policy_and_mig(run_cli, tmp_path):
    """A language model as the sampling policy and as MIG's scorer (a tiny one made offline)."""
    model = tmp_path / "tiny"
    assert run_cli("make-tiny-model", "--env", "game24", "--out", model, "--limit", "30").rc == 0
    out = tmp_path / "cb"
    res = run_cli("credit-bench", "--policy", "hf", "--model", model, "--estimators", "grpo,mig,tree_grpo",
                  "--limit", "2", "--seeds", "1", "--group-sizes", "4", "--out", out, "--no-progress")
    assert res.rc == 0, res.err
    steps = pq.read_table(out / "steps.parquet").to_pydict()
    chain = [i for i, s in enumerate(steps["sampling"]) if s == "chain"]
    assert chain and all(steps["mig"][i] is not None and math.isfinite(steps["mig"][i]) for i in chain)
    assert any(steps["mig"][i] != 0 for i in chain)
    results = pq.read_table(out / "results.parquet").to_pylist()
    assert {r["estimator"] for r in results} == {"grpo", "mig", "tree_grpo"}
    assert all(r["policy"] == f"hf({model})" for r in results)
    # without a model, mig is refused when asked for and left out of the default set
    res = run_cli("credit-bench", "--estimators", "grpo,mig", "--limit", "1", "--seeds", "1", "--out", tmp_path / "x",
                  "--no-progress")
    assert_one_line_error(res, "--model")
    res = run_cli("credit-bench", "--env", "blocksworld", "--estimators", "mig", "--model", model, "--limit", "1",
                  "--out", tmp_path / "y", "--no-progress")
    assert_one_line_error(res, "answer")
