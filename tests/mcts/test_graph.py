"""Graph search (MCGS) and closed-loop search of ``mcts/storage.py``, through ``mcts.search.search``.

Hand-computed backups on a diamond whose two paths meet in one state, closed-loop
outcomes of a coin flip, self-loops and 2-cycles, the flat export's invariants, and Q*
on deterministic FrozenLake and CliffWalking (value iteration as the oracle).
"""

from __future__ import annotations

import numpy as np
import pytest
from graph_toys import (
    CoinEnv,
    DiamondEnv,
    EndlessRoomsEnv,
    SelfLoopEnv,
    StochasticDiamondEnv,
    TwoRoomsEnv,
    constant_evaluate,
)

from treeq.envs.base import Task
from treeq.mcts.hooks import zero_evaluate
from treeq.mcts.search import SearchConfig, search
from treeq.mcts.tree import NO_PARENT, ROOT


def _run(env, cfg, seed=0, state=None, **hooks):
    root = env.reset(None) if state is None else state
    return search(env, root, cfg, np.random.default_rng(seed), **hooks)


def _rows(tree):
    """(action, state_key, parent, visits, value_sum) per exported row."""
    return [
        (tree.action_text(i), tree.state_keys[i], int(tree.parent[i]), int(tree.visits[i]), float(tree.value_sum[i]))
        for i in range(tree.size)
    ]


def check_export(tree, simulations):
    """Invariants of every exported tree (graph or closed-loop)."""
    n = tree.size
    visits, value_sum, q = tree.visits[:n], tree.value_sum[:n], tree.q()
    assert visits[ROOT] == simulations
    seen = visits > 0
    assert np.allclose(q[seen], value_sum[seen] / visits[seen])
    assert np.isnan(q[~seen]).all()
    assert tree.parent[ROOT] == NO_PARENT and tree.action_text(ROOT) is None
    # breadth first: parents never decrease along the rows, each row sits in its
    # parent's contiguous child range, and the ranges cover every non-root row once
    parents = tree.parent[1:n]
    assert (np.diff(parents) >= 0).all()
    covered = np.zeros(n, dtype=int)
    for row in range(n):
        kids = tree.children(row)
        if len(kids):
            assert (tree.parent[kids.start : kids.stop] == row).all()
            assert (tree.depth[kids.start : kids.stop] == tree.depth[row] + 1).all()
            covered[kids.start : kids.stop] += 1
    assert covered[0] == 0 and (covered[1:] == 1).all()
    # rows of one (parent, action) are outcomes of one edge: they carry the same Q(s, a)
    by_edge: dict[tuple[int, str], list[float]] = {}
    for row in range(1, n):
        if visits[row]:
            by_edge.setdefault((int(tree.parent[row]), tree.action_text(row)), []).append(float(q[row]))
    for qs in by_edge.values():
        assert qs == pytest.approx([qs[0]] * len(qs))


# ----------------------------------------------------------------------------- (a) diamond
def test_diamond_graph_mode_by_hand():
    """Five simulations, gamma 0.9, UCT c = 1, every leaf valued 0.5, transpositions on.

    Nodes S, A, B, G, T; edges e0 = S-a, e1 = S-b, e2 = A-g, e3 = B-g, e4 = G-finish.
    Graph mode: Q(e) = sum_o n_o (r_o + 0.9 V(child_o)) / N(e); V(s) = max over tried
    edges (untried edges valued at the node's own evaluation).
      sim 1: expand S, eval 0.5 -> V(S) = 0.5
      sim 2: e0 (unvisited first): new A, eval 0.5. Q(e0) = 0.9*0.5 = 0.45; V(S) = max(0.45, own 0.5) = 0.5
      sim 3: e1: new B, eval 0.5. Q(e1) = 0.45; V(S) = 0.45
      sim 4: tie, e0 first; A -e2-> new G, eval 0.5. Q(e2) = 0.45, V(A) = 0.45,
             Q(e0) = 0.9*0.45 = 0.405; V(S) = max(0.405, 0.45) = 0.45
      sim 5: N = 4: UCT e0 = 0.405 + sqrt(ln 4 / 2) = 1.238, e1 = 0.45 + sqrt(ln 4) = 1.627 -> e1;
             B -e3-> G: the SAME node G (already expanded), so the path goes on:
             G -e4-> T (r = 1, terminal, leaf 0). Q(e4) = 1, V(G) = 1, Q(e3) = 0.9, V(B) = 0.9,
             Q(e1) = 0.81. A was not on this path, but V(G) changed, so G's other parent
             is refreshed too (propagation): V(A) = Q(e2) = 0.9, Q(e0) = 0.81; V(S) = 0.81.
    Export (breadth first): S, A, B, G (under A), G (under B, same key, edges not listed
    again), T. A row's value_sum is Q(edge) * visits; Q(e2) reads V(G) = 1 *now*: 0.9,
    although no simulation went A -> G -> T: what B's path learnt, A's edge uses.
    """
    env = DiamondEnv()
    cfg = SearchConfig(simulations=5, gamma=0.9, c=1.0, random_untried=False, transpositions=True)
    r = _run(env, cfg, evaluate=constant_evaluate(0.5))
    t = r.tree
    got = _rows(t)
    expected = [
        (None, "S", -1, 5, 5 * 0.81),
        ("a", "A", 0, 2, 2 * 0.81),
        ("b", "B", 0, 2, 2 * 0.81),
        ("g", "G", 1, 1, 0.9),
        ("g", "G", 2, 1, 0.9),
        ("finish", "T", 3, 1, 1.0),
    ]
    assert [g[:4] for g in got] == [e[:4] for e in expected]
    assert [g[4] for g in got] == pytest.approx([e[4] for e in expected])
    # the second path's row shares G's key and lists no children of its own
    assert t.state_keys[3] == t.state_keys[4] == "G"
    assert len(t.children(3)) == 1 and len(t.children(4)) == 0
    assert t.reward[5] == 1.0 and t.terminal[5] and not t.terminal[3]
    assert r.solved and r.simulations == 5
    check_export(t, 5)


def test_diamond_graph_mode_ten_simulations():
    """Sims 6-10 continue the hand computation above (solver off; V(S) = 0.81 and
    Q(e0) = Q(e1) = 0.81 throughout, so visit counts alone decide, ties to e0):

      sim 6: N = 5: e0 = e1 = 0.81 + sqrt(ln 5 / 2) = 1.707 -> e0 (tie): A -> G -> T
      sim 7: N = 6: e0 = 0.81 + sqrt(ln 6 / 3) = 1.583, e1 = 0.81 + sqrt(ln 6 / 2) = 1.757 -> e1
      sim 8: N = 7: e0 = e1 = 0.81 + sqrt(ln 7 / 3) = 1.615 -> e0
      sim 9: N = 8: e0 = 0.81 + sqrt(ln 8 / 4) = 1.531, e1 = 0.81 + sqrt(ln 8 / 3) = 1.643 -> e1
      sim 10: N = 9: e0 = e1 = 0.81 + sqrt(ln 9 / 4) = 1.551 -> e0
    Visits: A 5 (sims 2, 4, 6, 8, 10), B 4 (3, 5, 7, 9), A-g 4, B-g 3, G-finish 6 (5-10).
    """
    env = DiamondEnv()
    cfg = SearchConfig(simulations=10, gamma=0.9, c=1.0, random_untried=False, transpositions=True, solver=False)
    t = _run(env, cfg, evaluate=constant_evaluate(0.5)).tree
    assert [row[3] for row in _rows(t)] == [10, 5, 4, 4, 3, 6]
    assert t.q() == pytest.approx([0.81, 0.81, 0.81, 0.9, 0.9, 1.0])
    assert env.steps == 5  # each deterministic edge stepped once, its outcome reused after
    check_export(t, 10)


def test_diamond_tree_mode_gives_plain_means():
    """transpositions=False (flat tree, no solver): Q is the plain mean of the returns.

    Same first four simulations as above (returns of e0: 0.45, then 0.9 * 0.45 = 0.405);
    sim 5 picks e1 (1.627 > 1.26), and B -> g reaches a *new* node G' (eval 0.5):
    returns through e1: 0.45, 0.405. Q(a) = Q(b) = (0.45 + 0.405) / 2 = 0.4275 and the
    root's value_sum is the sum of all five returns 0.5 + 0.45 + 0.45 + 0.405 + 0.405.
    """
    cfg = SearchConfig(simulations=5, gamma=0.9, c=1.0, random_untried=False, transpositions=False, solver=False)
    t = _run(DiamondEnv(), cfg, evaluate=constant_evaluate(0.5)).tree
    got = _rows(t)
    assert [g[:4] for g in got] == [
        (None, "S", -1, 5), ("a", "A", 0, 2), ("b", "B", 0, 2), ("g", "G", 1, 1), ("g", "G", 2, 1),
    ]  # 'finish' was never selected: actions are stepped lazily, so it has no row
    assert [g[4] for g in got] == pytest.approx([2.21, 0.855, 0.855, 0.45, 0.45])
    assert t.q()[1:3] == pytest.approx([0.4275, 0.4275])


def test_diamond_closed_loop_tree_mode_gives_plain_means():
    """A stochastic-flagged diamond is sampled on every visit (closed loop): same rows and
    means as the flat tree, the root row holding the sum of all five returns."""
    cfg = SearchConfig(simulations=5, gamma=0.9, c=1.0, random_untried=False)
    t = _run(StochasticDiamondEnv(), cfg, evaluate=constant_evaluate(0.5)).tree
    got = _rows(t)
    assert [g[:4] for g in got] == [
        (None, "S", -1, 5), ("a", "A", 0, 2), ("b", "B", 0, 2), ("g", "G", 1, 1), ("g", "G", 2, 1),
    ]
    assert [g[4] for g in got] == pytest.approx([2.21, 0.855, 0.855, 0.45, 0.45])
    check_export(t, 5)


# ----------------------------------------------------------------------------- (b) coin
@pytest.mark.parametrize("transpositions", [False, True])
def test_coin_closed_loop_rows_per_outcome(transpositions):
    """bet: 1 w.p. 0.3 else 0; pass: 0.2. One row per sampled outcome under bet, each with Q(bet)."""
    env = CoinEnv(p=0.3)
    assert env.deterministic is False
    r = _run(env, SearchConfig(simulations=2000, transpositions=transpositions))
    t = r.tree
    check_export(t, 2000)
    kids = list(t.children(ROOT))
    by_key = {t.state_keys[i]: i for i in kids}
    assert sorted(by_key) == ["lost", "passed", "won"]
    won, lost, passed = by_key["won"], by_key["lost"], by_key["passed"]
    assert t.action_text(won) == t.action_text(lost) == "bet" and t.action_text(passed) == "pass"
    assert (t.reward[won], t.reward[lost]) == (1.0, 0.0)
    assert t.reward[passed] == pytest.approx(0.2)
    q = t.q()
    assert q[won] == q[lost] == pytest.approx(0.3, abs=0.05)
    assert q[passed] == pytest.approx(0.2)
    # Q(bet) is the outcome-weighted mean reward: won visits / bet visits
    assert q[won] == pytest.approx(t.visits[won] / (t.visits[won] + t.visits[lost]))
    assert t.visits[won] + t.visits[lost] + t.visits[passed] == 1999  # sim 1 expanded the root
    assert t.terminal[[won, lost, passed]].all()
    # every step (edges and the default rollout) got a numpy Generator from the search
    assert env.rngs and all(isinstance(g, np.random.Generator) for g in env.rngs)


def test_coin_same_seed_same_tree_other_seed_other_tree():
    cfg = SearchConfig(simulations=300)
    a, b, c = (_run(CoinEnv(), cfg, seed=s).tree for s in (5, 5, 6))
    for name in ("parent", "action", "visits", "value_sum", "reward", "terminal", "child_start", "child_count"):
        assert np.array_equal(getattr(a, name)[: a.size], getattr(b, name)[: b.size]), name
    assert a.state_keys == b.state_keys
    assert not np.array_equal(a.visits[: a.size], c.visits[: c.size])


# ----------------------------------------------------------------------------- (c) self-loops
def test_self_loop_is_tried_once_then_never_again():
    """'wait' returns the same state with reward 0: Q(wait) <= V(s), so one visit is enough."""
    env = SelfLoopEnv()
    r = _run(env, SearchConfig(simulations=300, gamma=0.9, transpositions=True), evaluate=zero_evaluate)
    t = r.tree
    check_export(t, 300)
    waits = [i for i in range(1, t.size) if t.action_text(i) == "wait"]
    assert len(waits) == 2  # one under S, one under L
    assert [int(t.visits[i]) for i in waits] == [1, 1]
    assert [t.state_keys[i] for i in waits] == [t.state_keys[int(t.parent[i])] for i in waits]
    # the self-loop's row points at an already listed node: it lists no children
    assert all(len(t.children(i)) == 0 for i in waits)
    assert r.solved
    # the goal is found and valued: Q(S, left) = 0.9 * Q(L, go) = 0.9
    left = next(i for i in t.children(ROOT) if t.action_text(i) == "left")
    assert t.q()[left] == pytest.approx(0.9)
    assert env.steps == 5  # five edges, each stepped once (zero evaluator: no rollouts)


# ----------------------------------------------------------------------------- (d) cycles
def test_two_cycle_terminates_and_finds_the_goal():
    """L <-> R with the goal behind R: no hang, Q(L, go right) = 0.9 * 1, Q(R, take goal) = 1."""
    r = _run(TwoRoomsEnv(), SearchConfig(simulations=300, gamma=0.9, transpositions=True))
    t = r.tree
    check_export(t, 300)
    assert r.solved and r.simulations == 300
    q = t.q()
    by_action = {t.action_text(i): i for i in range(1, t.size)}
    assert set(by_action) == {"go right", "go left", "take goal"}
    assert q[by_action["go right"]] == pytest.approx(0.9)
    assert q[by_action["take goal"]] == pytest.approx(1.0)
    assert t.visits[by_action["go left"]] == 1  # closing the cycle once is enough
    assert t.state_keys[by_action["go left"]] == "L"
    assert t.action_text(t.best_child(ROOT)) == "go right"
    # the cycle keeps L and R from being proven one at a time; once both are expanded
    # with every action stepped, the closed graph is solved: V*(R) = 1, V*(L) = 0.9
    proven = t.proven()
    assert proven[ROOT] == pytest.approx(0.9)
    assert proven[by_action["go right"]] == pytest.approx(0.9)
    assert proven[by_action["take goal"]] == pytest.approx(1.0)
    assert proven[by_action["go left"]] == pytest.approx(0.81)


def test_two_cycle_without_any_terminal_spends_the_budget():
    r = _run(EndlessRoomsEnv(), SearchConfig(simulations=200, gamma=0.9, transpositions=True))
    check_export(r.tree, 200)
    assert not r.solved and r.simulations == 200 and r.stop_reason == "budget"
    assert r.tree.size == 3  # L, R (go right), L again (go left): nothing else exists
    assert np.isnan(r.tree.proven()).all()  # a closed graph without a terminal: nothing proven


# ----------------------------------------------------------------------------- export and seeds
@pytest.mark.parametrize("slippery", [False, True])
def test_frozenlake_export_invariants_and_determinism(slippery):
    from treeq.envs.gym_toytext import GymEnv

    env = GymEnv("FrozenLake-v1", is_slippery=slippery)
    s0 = env.reset(Task("seed-0", {"seed": 0}))
    cfg = SearchConfig(simulations=400)
    a, b, c = (_run(env, cfg, seed=s, state=s0) for s in (1, 1, 2))
    check_export(a.tree, 400)
    ta, tb, tc = a.tree, b.tree, c.tree
    for name in ("parent", "action", "depth", "visits", "value_sum", "prior", "reward", "terminal",
                 "child_start", "child_count"):
        assert np.array_equal(getattr(ta, name)[: ta.size], getattr(tb, name)[: tb.size]), name
    assert ta.state_keys == tb.state_keys and ta.action_table == tb.action_table
    assert ta.size != tc.size or not np.array_equal(ta.value_sum[: ta.size], tc.value_sum[: tc.size])


def test_frozenlake_deterministic_reaches_q_star():
    """is_slippery=False, gamma 0.95, default search: the best first move is down or right.

    The goal is 6 moves away: Q*(0, down) = Q*(0, right) = 0.95**5 (reward 1 on the 6th move).
    """
    from treeq.envs.gym_toytext import GymEnv

    env = GymEnv("FrozenLake-v1", is_slippery=False)
    s0 = env.reset(Task("seed-0", {"seed": 0}))
    r = _run(env, SearchConfig(simulations=5000, gamma=0.95), state=s0)
    t = r.tree
    check_export(t, 5000)
    kids = t.children(ROOT)
    best = kids.start + int(np.argmax(t.visits[kids.start : kids.stop]))
    action = t.action_text(best)
    assert action in ("down", "right")
    q_star = env.q_star(0.95)[0, env.actions.index(action)]
    assert q_star == pytest.approx(0.95**5)
    assert t.q()[best] == pytest.approx(q_star, abs=0.05)
    assert r.solved


def test_cliffwalking_zero_evaluator_reaches_q_star():
    """CliffWalking-v1 from the start (36), zero leaf values: Q(36, up) near Q* = -9.733."""
    from treeq.envs.gym_toytext import GymEnv

    env = GymEnv("CliffWalking-v1")
    s0 = env.reset(Task("seed-0", {"seed": 0}))
    assert s0.s == 36
    r = _run(env, SearchConfig(simulations=5000), state=s0, evaluate=zero_evaluate)
    t = r.tree
    check_export(t, 5000)
    up = next(i for i in t.children(ROOT) if t.action_text(i) == "up")
    q_star = env.q_star(0.95)[36, env.actions.index("up")]
    assert q_star == pytest.approx(-9.733, abs=1e-3)
    assert t.q()[up] == pytest.approx(q_star, abs=0.5)
