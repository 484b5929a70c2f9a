"""MCTS search: backups and solver by hand, invariants and determinism on Game of 24."""

from __future__ import annotations

import numpy as np
import pytest
from toy_envs import TwoStepEnv, constant_evaluate

from treeq.envs.base import Task
from treeq.envs.countdown import CountdownState, Game24Env, exact_q, optimal_value, solvable
from treeq.errors import ConfigError
from treeq.mcts.hooks import zero_evaluate
from treeq.mcts.search import SearchConfig, search
from treeq.mcts.tree import ROOT


def _run(env, cfg, seed=0, state=None, **hooks):
    return search(env, env.reset(None) if state is None else state, cfg, np.random.default_rng(seed), **hooks)


def test_backup_by_hand_without_solver():
    """Four simulations on TwoStepEnv, gamma 0.9, leaf value 0.2, UCT c = 1.

    Actions are stepped lazily: a row exists once its action has been selected.
    """
    cfg = SearchConfig(simulations=4, gamma=0.9, c=1.0, random_untried=False, solver=False)
    r = _run(TwoStepEnv(), cfg, evaluate=constant_evaluate(0.2))
    t = r.tree
    # rows breadth first: 0 root, 1 a (A), 2 b (B); A's action x was never selected
    assert [t.action_text(i) for i in range(t.size)] == [None, "a", "b"]
    # sim 1: root expanded and evaluated, 0.2
    # sim 2: a (first unvisited) reaches A, expanded and evaluated: 0 + 0.9 * 0.2 = 0.18
    # sim 3: b (unvisited): 0.5, terminal, nothing after
    # sim 4: UCT at N = 3: a = 0.18 + sqrt(ln 3) = 1.228, b = 0.5 + sqrt(ln 3) = 1.548 -> b
    assert t.visits.tolist() == [4, 1, 2]
    assert t.value_sum == pytest.approx([0.2 + 0.18 + 0.5 + 0.5, 0.18, 1.0])
    q = t.q()
    assert q[1] == pytest.approx(0.18) and q[2] == pytest.approx(0.5)
    assert np.isnan(t.proven()).all()
    assert t.expanded.tolist() == [True, True, False] and t.terminal.tolist() == [False, False, True]
    assert r.simulations == 4 and r.stop_reason == "budget" and r.backup == "mean" and r.waves == 4


def test_solver_by_hand():
    """Solver: B proven on arrival (Q* 0.5), X proven (1), A proven (1), root V* = max(0.9, 0.5)."""
    cfg = SearchConfig(simulations=50, gamma=0.9, c=1.0, random_untried=False, solver=True)
    r = _run(TwoStepEnv(), cfg, evaluate=constant_evaluate(0.2))
    t = r.tree
    # sim 1 expands the root; sim 2 a -> A (evaluated 0.2: 0.18); sim 3 b -> B, terminal,
    # proven; sim 4: b is proven so never selected again, a -> A -> x -> X, terminal:
    # A proven (V* = 1), then the root (0.9 against 0.5): no root action is left to search
    assert r.simulations == 4 and r.stop_reason == "exhausted"
    assert [t.action_text(i) for i in range(t.size)] == [None, "a", "b", "x"]
    assert t.visits.tolist() == [4, 2, 1, 1]
    assert t.value_sum == pytest.approx([0.2 + 0.18 + 0.9 + 0.5, 0.18 + 0.9, 0.5, 1.0])
    assert t.proven() == pytest.approx([0.9, 0.9, 0.5, 1.0])
    assert r.solved


def test_zero_budget_is_rejected():
    with pytest.raises(ConfigError, match="simulations must be a positive integer, got 0"):
        SearchConfig(simulations=0)
    with pytest.raises(ConfigError, match="gamma"):
        SearchConfig(gamma=1.5)
    with pytest.raises(ConfigError, match="selection"):
        SearchConfig(selection="greedy")


def _puzzle(numbers):
    env = Game24Env()
    return env, env.reset(Task("p", {"numbers": [str(x) for x in numbers], "target": "24"}))


def _check_invariants(tree, simulations_run):
    n = tree.size
    visits, value_sum = tree.visits[:n], tree.value_sum[:n]
    q = tree.q()
    visited = visits > 0
    assert np.allclose(q[visited], value_sum[visited] / visits[visited])
    assert np.isnan(q[~visited]).all()
    child_visits = np.zeros(n, dtype=np.int64)
    np.add.at(child_visits, tree.parent[1:n], visits[1:n])
    assert (visits >= child_visits).all()
    assert visits[ROOT] == simulations_run


@pytest.mark.parametrize("solver", [True, False])
@pytest.mark.parametrize("numbers", [(4, 5, 6, 10), (1, 1, 4, 6), (3, 3, 8, 8), (1, 1, 1, 1)])
def test_game24_invariants_and_exactness(numbers, solver):
    env, s0 = _puzzle(numbers)
    r = _run(env, SearchConfig(simulations=2000, solver=solver), state=s0)
    t = r.tree
    _check_invariants(t, r.simulations)
    if r.stop_reason != "exhausted":
        assert r.simulations == 2000
    q, proven = t.q(), t.proven()
    for i in range(t.size):
        state: CountdownState = t.states[i]
        reachable = solvable(state.numbers, state.target)
        if q[i] > 0:  # some simulation through this edge reached 24
            assert reachable, t.state_keys[i]
        if not np.isnan(proven[i]):
            expected = optimal_value(state) if i == ROOT else exact_q(t.states[t.parent[i]], t.action_text(i))
            assert proven[i] == expected
    assert r.solved == solvable(numbers, 24)


def test_solver_spends_nothing_inside_proven_subtrees():
    env, s0 = _puzzle((4, 5, 6, 10))
    r = _run(env, SearchConfig(simulations=5000), state=s0)
    t = r.tree
    assert r.stop_reason == "exhausted" and r.simulations < 5000
    kids = t.children(ROOT)
    assert not np.isnan(t.proven()[kids.start : kids.stop]).any()  # every root action proven
    # Game of 24 steps every action on expansion (step_on_expand): a node whose children
    # are all terminal is proven on its first visit and never entered again
    for i in range(1, t.size):
        kids = t.children(i)
        if len(kids) and t.terminal[kids.start : kids.stop].all():
            assert t.visits[i] == 1 and not t.visits[kids.start : kids.stop].any()


def test_search_continues_after_first_solution_unless_stop_on_solve():
    env, s0 = _puzzle((4, 5, 6, 10))
    full = _run(env, SearchConfig(simulations=400, solver=False), state=s0)
    assert full.solved and full.simulations == 400
    stop = _run(env, SearchConfig(simulations=400, solver=False, stop_on_solve=True), state=s0)
    assert stop.solved and stop.stop_reason == "solved" and stop.simulations < 400


def test_same_seed_same_tree_other_seed_other_tree():
    env, s0 = _puzzle((2, 3, 7, 11))
    cfg = SearchConfig(simulations=300, solver=False)
    a, b, c = (_run(env, cfg, seed=s, state=s0) for s in (1, 1, 2))
    for name in ("parent", "action", "visits", "value_sum", "prior"):
        assert np.array_equal(getattr(a.tree, name)[: a.tree.size], getattr(b.tree, name)[: b.tree.size])
    assert not np.array_equal(a.tree.value_sum[: a.tree.size], c.tree.value_sum[: c.tree.size])


def test_batched_waves_keep_invariants_and_call_hooks_in_batches():
    env, s0 = _puzzle((4, 5, 6, 10))
    batches = []

    def evaluate(states):
        batches.append(len(states))
        return [0.0] * len(states)

    r = _run(env, SearchConfig(simulations=256, wave_size=16, solver=False), state=s0, evaluate=evaluate)
    _check_invariants(r.tree, 256)
    assert max(batches) > 1 and sum(batches) <= 256


def test_max_nodes_bound():
    env, s0 = _puzzle((4, 5, 6, 10))
    r = _run(env, SearchConfig(simulations=1000, max_nodes=200, solver=False), state=s0)
    assert r.stop_reason == "max_nodes" and r.tree.size <= 200
    _check_invariants(r.tree, r.simulations)


def test_puct_uses_the_priors():
    env, s0 = _puzzle((4, 5, 6, 10))
    target = "4 * 5 = 20 (left: 6 10 20)"

    def propose(states, k):
        out = []
        for s in states:
            acts = env.legal_actions(s)
            out.append([(a, 0.9 if a == target else 0.1 / (len(acts) - 1)) for a in acts])
        return out

    r = _run(env, SearchConfig(simulations=50, selection="puct", solver=False), state=s0,
             propose=propose, evaluate=zero_evaluate)
    t = r.tree
    kids = t.children(ROOT)
    best = kids.start + int(np.argmax(t.visits[kids.start : kids.stop]))
    assert t.action_text(best) == target
    assert t.prior[best] == pytest.approx(0.9)


def test_untried_actions_start_at_a_random_one():
    """UCT tries each action once before scoring any; with random_untried the first one
    varies with the seed (as MCTSBot's shuffled children), without it it is the first proposed."""
    env, s0 = _puzzle((4, 5, 6, 10))
    firsts = set()
    for seed in range(8):
        r = _run(env, SearchConfig(simulations=2, solver=False), seed=seed, state=s0, evaluate=zero_evaluate)
        firsts.add(_first_tried(r.tree))
    assert len(firsts) > 1
    ordered = _run(env, SearchConfig(simulations=2, solver=False, random_untried=False), state=s0,
                   evaluate=zero_evaluate)
    assert _first_tried(ordered.tree) == env.legal_actions(s0)[0]


def _first_tried(t):
    """The one root action visited after two simulations (the first expands the root)."""
    (row,) = [i for i in t.children(ROOT) if t.visits[i]]
    return t.action_text(row)


@pytest.mark.parametrize("batch_size", [1, 16])
@pytest.mark.parametrize("transpositions", [False, True])
def test_max_nodes_bound_in_waves_and_graph_mode(batch_size, transpositions):
    env, s0 = _puzzle((4, 5, 6, 10))
    cfg = SearchConfig(simulations=1000, max_nodes=150, solver=False, wave_size=batch_size,
                       transpositions=transpositions)
    r = _run(env, cfg, state=s0)
    assert r.stop_reason == "max_nodes" and r.tree.size <= 150


def test_root_without_actions_is_exhausted_after_one_simulation():
    env, state = _puzzle((4, 5, 6, 10))
    while env.legal_actions(state):  # play the first action until one number is left
        state = env.step(state, env.legal_actions(state)[0]).state
    for transpositions in (False, True):
        r = _run(env, SearchConfig(simulations=50, transpositions=transpositions), state=state)
        assert r.stop_reason == "exhausted" and r.simulations == 1 and r.tree.size == 1


def test_memory_follows_the_tree_not_the_budget():
    """Ten million simulations of a tree that four exhaust allocate what the tree needs,
    not storage as long as the budget (issue 19: 940 MB)."""
    import tracemalloc

    tracemalloc.start()
    try:
        r = _run(TwoStepEnv(), SearchConfig(simulations=10_000_000, gamma=0.9, c=1.0),
                 evaluate=constant_evaluate(0.2))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert r.simulations == 4 and r.stop_reason == "exhausted"
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MB"


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("batch_size", [1, 16])
def test_an_absurd_budget_runs_until_the_tree_is_exhausted(compiled, batch_size):
    """A budget beyond any machine integer (``--simulations 99999999999999999999``) is no overflow."""
    import treeq.mcts.storage as graph

    if compiled and graph._core is None:
        pytest.skip("treeq.mcts._core is not built")
    saved = graph._core
    graph._core = saved if compiled else None
    try:
        r = _run(TwoStepEnv(), SearchConfig(simulations=10**20, gamma=0.9, c=1.0, wave_size=batch_size),
                 evaluate=constant_evaluate(0.2))
    finally:
        graph._core = saved
    assert r.stop_reason == "exhausted" and r.tree.size == 4
