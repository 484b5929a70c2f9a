"""Exact V* of TextWorld games (``treeq.envs.textworld.exact``): the solver on a hand-made
graph, then ``TextWorldEnv.exact_value`` on the two quest-length-3 games of ``tw_games``."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from treeq.envs.base import Step
from treeq.envs.textworld import TextWorldEnv
from treeq.envs.textworld.exact import ExactSolver, StateGraph, explore, solve
from treeq.errors import ConfigError


# ----------------------------------------------------------------------------- the solver
class _Toy:
    """A deterministic env given as ``{state: {action: (next, reward, terminated)}}``."""

    def __init__(self, table):
        self.table = table
        self.steps = 0

    def legal_actions(self, s):
        return list(self.table.get(s, {}))

    def step(self, s, a):
        self.steps += 1
        nxt, r, term = self.table[s][a]
        return Step(nxt, r, term)

    def state_key(self, s):
        return str(s)


# 0 -> 1 -> win pays 1.0 at the end; 0 -> 3 -> win pays 0.5 now and 0.5 after; 1 <-> 0 and
# 0 -> 0 are cycles; 9 is not reachable from 0 and leads into it.
TOY = {
    0: {"right": (1, 0.0, False), "stay": (0, 0.0, False), "grab": (3, 0.5, False)},
    1: {"left": (0, 0.0, False), "win": ("W", 1.0, True)},
    3: {"win": ("W2", 0.5, True), "wait": (3, 0.0, False)},
    9: {"go": (0, 0.0, False)},
}


def test_explore_and_solve_a_hand_made_graph():
    env = _Toy(TOY)
    graph = explore(env, 0)
    assert graph.keys == ["0", "1", "3", "W", "W2"]  # breadth-first order
    assert graph.n_edges == 7 and graph.ended == [False, False, False, True, True]
    assert graph.edges[graph.index["W"]] == ()
    for gamma, v0 in ((0.95, 0.5 + 0.5 * 0.95), (0.5, 0.75), (1.0, 1.0), (0.0, 0.5)):
        v = dict(zip(graph.keys, solve(graph, gamma)))
        assert v == {"0": v0, "1": 1.0, "3": 0.5, "W": 0.0, "W2": 0.0}, gamma
    assert solve(graph, 0.95, max_rounds=1) is None  # the first round changes values: not converged
    with pytest.raises(ConfigError, match="gamma"):
        solve(graph, 1.5)
    assert solve(explore(_Toy({0: {"pay": (1, -0.5, False)}}), 0), 0.9) is None  # negative rewards: no claim


def test_explore_cap_and_extension():
    env = _Toy(TOY)
    assert explore(env, 0, max_states=5) is not None
    assert explore(env, 0, max_states=4) is None
    solver = ExactSolver(max_states=6)
    assert solver.value(env, 0, 0.5, "toy", 0) == 0.75
    assert solver.value(env, 9, 0.5, "toy", 0) == 0.5 * 0.75  # not reachable from the start: added
    graph = solver.graph(env, "toy", 0)
    assert len(graph) == 6 and graph.index["9"] == 5
    assert solver.value(env, 3, 0.5, "toy", 0) == 0.5
    small = ExactSolver(max_states=5)
    assert small.value(env, 0, 0.5, "toy", 0) == 0.75
    assert small.value(env, 9, 0.5, "toy", 0) is None  # would make 6 states
    assert len(small.graph(env, "toy", 0)) == 5  # left as it was
    assert ExactSolver(max_states=4).value(env, 0, 0.5, "toy", 0) is None


def test_empty_state_graph():
    graph = StateGraph()
    assert len(graph) == 0 and graph.n_edges == 0 and solve(graph, 0.9) == []


# ----------------------------------------------------------------------------- TextWorld
GAMMA = 0.95


@pytest.fixture(scope="module")
def tw():
    """An env (without room and inventory: faster steps, same keys) and the two games' tasks."""
    env = TextWorldEnv(room_and_inventory=False)
    return env


@pytest.fixture(scope="module")
def tw_tasks(tw, tw_games):
    tasks = tw.load_tasks(tw_games)
    assert [t.task_id for t in tasks] == ["game-101", "game-202"]
    return tasks


def _graph(env: TextWorldEnv, start) -> StateGraph:
    """The graph ``exact_value`` enumerated for ``start``'s game (enumerating it if needed)."""
    graph = env._exact.graph(env, (start.game, start._z8_digest), start)
    assert graph is not None
    return graph


def _shortest_win(graph: StateGraph, key: str) -> int | None:
    """Fewest commands from ``key`` to a won state, by breadth-first search of ``graph``."""
    depth = {graph.index[key]: 0}
    queue = deque([graph.index[key]])
    while queue:
        i = queue.popleft()
        for _, _, j in graph.edges[i]:
            if graph.keys[j].endswith(":won"):
                return depth[i] + 1
            if j not in depth:
                depth[j] = depth[i] + 1
                queue.append(j)
    return None


def test_start_value_is_the_discounted_walkthrough(tw, tw_tasks):
    for task in tw_tasks:
        s0 = tw.reset(task)
        walk = tw.walkthrough(task)
        state, rewards = s0, []
        for command in walk:
            step = tw.step(state, command)
            rewards.append(step.reward)
            state = step.state
        assert state.won and rewards == [0.0] * (len(walk) - 1) + [1.0]  # all the score comes with the win
        graph = _graph(tw, s0)
        assert _shortest_win(graph, s0.key) == len(walk)  # the walkthrough is a shortest win
        # V* = the walkthrough's discounted return, gamma ** (n - 1): exact, rewards being 0.0 and 1.0
        assert tw.exact_value(s0, GAMMA) == GAMMA ** (len(walk) - 1)
        assert tw.exact_value(s0, 1.0) == 1.0
        assert tw.exact_value(s0, 0.5) == 0.5 ** (len(walk) - 1)
        assert tw.exact_value(s0, 0.0) == 0.0


def test_values_along_the_walkthrough(tw, tw_tasks):
    for task in tw_tasks:
        walk = tw.walkthrough(task)
        state = tw.reset(task)
        for i, command in enumerate(walk):
            left = len(walk) - i
            assert tw.exact_value(state, GAMMA) == GAMMA ** (left - 1)
            assert _shortest_win(_graph(tw, state), state.key) == left
            step = tw.step(state, command)
            if left == 1:  # the won state's parent: V* is the closing reward
                assert step.terminated and step.info == {"success": True}
                assert tw.exact_value(state, GAMMA) == step.reward == 1.0 - state.total_reward
                assert tw.exact_value(state, 0.0) == step.reward
            state = step.state
        assert state.won and tw.exact_value(state, GAMMA) == 0.0  # nothing comes after the end


def test_bellman_consistency_on_sampled_states(tw, tw_tasks):
    rng = np.random.default_rng(0)
    for task in tw_tasks:
        state, checked = tw.reset(task), 0
        while checked < 12:
            actions = tw.legal_actions(state)
            if not actions:
                state = tw.reset(task)
                continue
            steps = [tw.step(state, a) for a in actions]
            q = [s.reward + GAMMA * (0.0 if s.terminated else tw.exact_value(s.state, GAMMA)) for s in steps]
            v = tw.exact_value(state, GAMMA)
            assert v == max(q) and 0.0 < v <= 1.0, (task.task_id, state.steps)
            checked += 1
            state = steps[int(rng.integers(len(steps)))].state


def test_useless_moves_cost_a_discount(tw, tw_tasks):
    for task in tw_tasks:
        s0 = tw.reset(task)
        v0 = tw.exact_value(s0, GAMMA)
        # 'look' leaves the world as it is: same V*, so taking it is worth gamma * V*
        looked = tw.step(s0, "look")
        assert looked.state.key == s0.key and looked.reward == 0.0
        assert tw.exact_value(looked.state, GAMMA) == v0
        # the walkthrough's first move gets one step nearer; moving back undoes it
        first = tw.walkthrough(task)[0]
        assert first.startswith("go ")
        s1 = tw.step(s0, first).state
        assert tw.exact_value(s1, GAMMA) == pytest.approx(v0 / GAMMA, rel=1e-15)
        back = {"north": "go south", "south": "go north", "east": "go west", "west": "go east"}[first.split()[1]]
        s2 = tw.step(s1, back).state
        assert s2.key == s0.key and tw.exact_value(s2, GAMMA) == v0
        # the detour's return: two rewardless steps, then V* from where it began
        assert 0.0 + GAMMA * 0.0 + GAMMA**2 * tw.exact_value(s2, GAMMA) == pytest.approx(GAMMA**2 * v0, rel=1e-15)
        # every first command is worth gamma**k of V* for some k in {0, 1, 2}: nothing is
        # more than one step off a shortest win at the start of these games
        for a in tw.legal_actions(s0):
            step = tw.step(s0, a)
            q = step.reward + GAMMA * tw.exact_value(step.state, GAMMA)
            assert q <= v0 and any(q == pytest.approx(v0 * GAMMA**k, rel=1e-15) for k in (0, 1, 2)), a


def test_graph_sizes(tw, tw_tasks):
    sizes = {}
    for task in tw_tasks:
        graph = _graph(tw, tw.reset(task))
        sizes[task.task_id] = (len(graph), graph.n_edges)
        assert all(e == () for e, end in zip(graph.edges, graph.ended) if end)
        assert all(k.endswith((":won", ":lost")) == end for k, end in zip(graph.keys, graph.ended))
    # tw-make output is reproducible for fixed seeds and options
    assert sizes == {"game-101": (128, 628), "game-202": (294, 1641)}


def test_too_large_games_get_none(tw, tw_tasks):
    task = tw_tasks[0]
    tiny = TextWorldEnv(room_and_inventory=False, exact_states=5)
    s0 = tiny.reset(task)
    assert tiny.exact_value(s0, GAMMA) is None
    calls = []
    stepped = tiny.step
    tiny.step = lambda *args, **kw: calls.append(args) or stepped(*args, **kw)
    assert tiny.exact_value(s0, GAMMA) is None and tiny.exact_value(s0, 1.0) is None
    assert calls == []  # the verdict is cached: nothing enumerated again
    s1 = stepped(s0, "look").state
    assert tiny.exact_value(s1, GAMMA) is None and calls == []
    won = s0
    for command in tw.walkthrough(task):
        won = stepped(won, command).state
    assert tiny.exact_value(won, GAMMA) == 0.0  # over: no solver needed
    for bad in (0, -1, 2.5, True, "10"):
        with pytest.raises(ConfigError, match="exact_states must be a positive integer"):
            TextWorldEnv(exact_states=bad)


def test_values_are_shared_by_env_objects_and_start_agnostic(tw, tw_tasks):
    """Another env object gives the same values, first asked past the start; cached per (game, gamma)."""
    task = tw_tasks[0]
    other = TextWorldEnv(room_and_inventory=False)
    walk = tw.walkthrough(task)
    mid = other.step(other.reset(task), walk[0]).state  # first call made from a state past the start
    assert other.exact_value(mid, GAMMA) == tw.exact_value(tw.step(tw.reset(task), walk[0]).state, GAMMA)
    assert len(other._exact._values) == 1
    other.exact_value(mid, 0.9)
    assert len(other._exact._values) == 2 and len(other._exact._graphs) == 1
