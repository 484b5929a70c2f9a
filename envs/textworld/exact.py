"""Exact optimal values for TextWorld games: the whole reachable state graph, then Bellman backups.

A TextWorld game is small and deterministic: its world states (``state_key``: the logic
facts plus the score) form a finite directed graph whose edges are the admissible
commands. :func:`explore` enumerates that graph breadth-first with the env's own
``legal_actions`` / ``step`` / ``state_key`` (so nothing here imports textworld), and
:func:`solve` iterates the Bellman optimality equation on it to its fixed point::

    V(s) = max_a  r(s, a) + gamma * V(s')      V = 0 where the episode ended (won or lost)
                                                 or where no command is admissible

V* is the optimal discounted return *after* ``s`` (the rewards of the steps taken from
it), as ``Env.exact_value`` asks and as Blocksworld's and Countdown's oracles give it.

Why the fixed point is exact. Rewards are never negative (TextWorld scores only grow) and
a cycle of world states has equal scores, so it earns no reward: going round it only
discounts. An optimal path is therefore simple, and value iteration started at 0 rises
monotonically (in floating point as well: rounding is monotone) to its limit within as
many rounds as the graph has states; :func:`solve` stops when a round changes nothing.

One caveat is inherited from the env's rewards: the winning step closes the episode's
rewards to exactly 1.0 (``runtime._closing_reward``), so it depends on the rewards
before it, and two paths to the same world state may differ there in the last bit. The
graph keeps the rewards of the first path that reached each state; where the score comes
in parts a value can differ from the return of another path by a few ulps. Where all the
score comes with the win (``tw-make`` quests) every reward is exactly 0.0 or 1.0.

:class:`ExactSolver` caches one graph per game and one value table per (game, gamma),
and gives up (None) on games with more than ``max_states`` reachable states.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import Any

from ...errors import ConfigError

__all__ = ["MAX_EXACT_STATES", "StateGraph", "explore", "solve", "ExactSolver"]

# Reachable states (terminal ones included) beyond which a game counts as too large for
# the exact solver. Enumeration steps every admissible command of every state once,
# 2 to 4 ms each: the quest-length-3 test games (about 130 and 300 states, 600 and 1,600
# commands) take one to a few seconds, 20,000 states some minutes.
MAX_EXACT_STATES = 20_000


class StateGraph:
    """The reachable world states of one game and the commands between them.

    Node ``i`` is the world state ``keys[i]`` (nodes are numbered in the breadth-first
    order they were found). ``edges[i]`` holds one ``(action, reward, target)`` per
    admissible command of node ``i``; a node where the episode ended, or where no
    command is admissible, has none. ``ended[i]``: the step that reached node ``i``
    terminated (or truncated) the episode.
    """

    __slots__ = ("keys", "index", "edges", "ended")

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.index: dict[str, int] = {}
        self.edges: list[tuple[tuple[str, float, int], ...]] = []
        self.ended: list[bool] = []

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def n_edges(self) -> int:
        """Commands in the graph (one per admissible command of each state)."""
        return sum(len(e) for e in self.edges)

    def _add(self, key: str, ended: bool) -> int:
        i = self.index[key] = len(self.keys)
        self.keys.append(key)
        self.edges.append(())
        self.ended.append(ended)
        return i

    def _truncate(self, n: int) -> None:
        for key in self.keys[n:]:
            del self.index[key]
        del self.keys[n:], self.edges[n:], self.ended[n:]


def explore(env: Any, root: Any, max_states: int = MAX_EXACT_STATES,
            graph: StateGraph | None = None) -> StateGraph | None:
    """Enumerate every state reachable from ``root`` breadth-first.

    ``env`` is any deterministic env (``legal_actions``, ``step``, ``state_key``).
    With ``graph``, the states found are added to it and the states it already holds
    are not expanded again (they must have been expanded completely, as ``explore``
    leaves them).

    Returns:
        The graph, or None when it would hold more than ``max_states`` states (a given
        ``graph`` is then left as it was).
    """
    graph = StateGraph() if graph is None else graph
    before = len(graph)
    key = env.state_key(root)
    if key in graph.index:
        return graph
    if len(graph) >= max_states:
        return None
    graph._add(key, False)
    queue = deque([(len(graph) - 1, root)])
    while queue:
        i, state = queue.popleft()
        out = []
        for action in env.legal_actions(state) or ():
            step = env.step(state, action)
            nxt_key = env.state_key(step.state)
            j = graph.index.get(nxt_key)
            if j is None:
                if len(graph) >= max_states:
                    graph._truncate(before)
                    return None
                ended = bool(step.terminated or step.truncated)
                j = graph._add(nxt_key, ended)
                if not ended:
                    queue.append((j, step.state))
            out.append((action, float(step.reward), j))
        graph.edges[i] = tuple(out)
    return graph


def solve(graph: StateGraph, gamma: float, max_rounds: int | None = None) -> list[float] | None:
    """V* of every node of ``graph``: Bellman backups from V = 0 to their fixed point.

    Each round recomputes the nodes one of whose successors changed in the round before
    (all nodes in the first), deepest first, with the values already updated in the
    round (Gauss-Seidel). With non-negative rewards and reward-free cycles (TextWorld:
    see the module docstring) the values rise monotonically and stop changing within
    ``len(graph) + 1`` rounds, for every ``gamma`` in [0, 1] including 1.

    Args:
        max_rounds: Give up after this many rounds (default ``2 * len(graph) + 16``).

    Returns:
        The values by node index; None when a reward is negative or the values have
        not stopped changing after ``max_rounds`` rounds (no exact value then).

    Raises:
        ConfigError: ``gamma`` is not in [0, 1].
    """
    if not 0.0 <= gamma <= 1.0:
        raise ConfigError(f"gamma must be in [0, 1], got {gamma!r}")
    n = len(graph)
    preds: list[list[int]] = [[] for _ in range(n)]
    for i, edges in enumerate(graph.edges):
        for _, reward, j in edges:
            if reward < 0.0:
                return None  # values would not rise monotonically from 0
            if not preds[j] or preds[j][-1] != i:
                preds[j].append(i)
    max_rounds = 2 * n + 16 if max_rounds is None else max_rounds
    v = [0.0] * n
    frontier = [i for i in range(n - 1, -1, -1) if graph.edges[i]]
    rounds = 0
    while frontier:
        rounds += 1
        if rounds > max_rounds:
            return None
        changed: set[int] = set()
        for i in frontier:
            best = 0.0
            for _, reward, j in graph.edges[i]:
                q = reward + gamma * v[j]
                if q > best:
                    best = q
            if best != v[i]:
                v[i] = best
                changed.add(i)
        frontier = sorted({p for j in changed for p in preds[j]}, reverse=True)
    return v


class ExactSolver:
    """Exact V* of the states of many games, each game's graph enumerated once.

    A game's graph is enumerated from the start state it is given; a state whose key
    is not in it (not reachable from that start) extends it with what is reachable from
    that state. Values are solved once per (game, gamma).

    Args:
        max_states: A game whose reachable graph holds more states than this gets no
            exact values (:meth:`value` returns None, and at once on later calls).
    """

    def __init__(self, max_states: int = MAX_EXACT_STATES) -> None:
        self.max_states = max_states
        self._graphs: dict[Hashable, StateGraph | None] = {}  # None: too large
        self._values: dict[tuple[Hashable, float], list[float] | None] = {}
        self._too_large: set[tuple[Hashable, str]] = set()  # unreachable roots too large to add

    def graph(self, env: Any, game: Hashable, start: Any) -> StateGraph | None:
        """The graph reachable from ``start`` of ``game`` (None: more than ``max_states`` states)."""
        if game not in self._graphs:
            self._graphs[game] = explore(env, start, self.max_states)
        return self._graphs[game]

    def value(self, env: Any, state: Any, gamma: float, game: Hashable, start: Any) -> float | None:
        """V*(state) at ``gamma``, ``state`` being a state of ``game`` whose start state is ``start``.

        Returns:
            The value, or None when the game's graph is too large or the backups do not
            converge (see :func:`solve`).
        """
        gamma = float(gamma)
        graph = self.graph(env, game, start)
        if graph is None:
            return None
        key = env.state_key(state)
        i = graph.index.get(key)
        if i is None:
            if (game, key) in self._too_large:
                return None
            if explore(env, state, self.max_states, graph) is None:
                self._too_large.add((game, key))
                return None
            for cached in [k for k in self._values if k[0] == game]:
                del self._values[cached]  # the graph grew: solve again
            i = graph.index[key]
        if (game, gamma) not in self._values:
            self._values[(game, gamma)] = solve(graph, gamma)
        values = self._values[(game, gamma)]
        return None if values is None else values[i]
