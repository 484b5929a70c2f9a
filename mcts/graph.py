"""Closed-loop search for stochastic envs, and Monte-Carlo Graph Search (transpositions).

Used by :func:`treeq.mcts.search.search` when the env is stochastic or
``SearchConfig.transpositions`` is set. Decision nodes hold env states; each action of
a node is an *edge*; each edge has *outcomes*, one per sampled next state, keyed by
its ``state_key`` (closed loop: a child per outcome, so Q estimates the expected
value, not the value of an open-loop action sequence).

* Tree mode (``transpositions=False``): every outcome gets a fresh node, and
  Q(s, a) is the mean over simulations through the edge of ``r + gamma * return``.
* Graph mode (``transpositions=True``, Czech et al., ICAPS 2021): nodes with equal
  ``state_key`` are one node. Q(s, a) is recomputed from the children's *current*
  values, ``sum_o n_o / N(s,a) * (rbar_o + gamma * V(child_o))``, and V(s) is the
  visit-weighted mean of its edges' Q (the evaluator's mean before expansion), so
  information that reached a shared node through one parent is used by every other
  parent at once. A path that revisits a node on itself stops there (cycles).

The result is exported as a flat :class:`~treeq.mcts.tree.Tree` with one row per
(parent, action, outcome), breadth first, so Parquet schema v1 holds: a row's ``q``
is Q(s, a) of its action, ``visits`` the simulations through that outcome. In graph
mode a node's edges are listed once, under its shallowest row; other rows reaching
the same state share its ``state_key`` (and their visits can then exceed the sum of
their listed children's). Actions never tried have no row.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..envs.base import Env
from .hooks import EvaluateFn, ProposeFn
from .selection import puct_scores, uct_scores
from .tree import ROOT, Tree

if TYPE_CHECKING:
    from .search import SearchConfig, SearchResult

__all__ = ["graph_search"]


class _Graph:
    def __init__(self, env: Env, cfg: SearchConfig, rng: np.random.Generator, propose: ProposeFn,
                 evaluate: EvaluateFn) -> None:
        self.env, self.cfg = env, cfg
        self.propose, self.evaluate = propose, evaluate
        self.merge = bool(cfg.transpositions)
        self.step_rng = None if getattr(env, "deterministic", False) else rng
        # decision nodes
        self.n_state: list[Any] = []
        self.n_key: list[str] = []
        self.n_terminal: list[bool] = []
        self.n_edges: list[range] = []  # empty range until expanded
        self.n_expanded: list[bool] = []
        self.n_visits: list[int] = []
        self.n_eval_sum: list[float] = []
        self.n_eval_n: list[int] = []
        self.n_value: list[float] = []
        self.by_key: dict[str, int] = {}
        # edges (node, action)
        self.e_action: list[str] = []
        self.e_prior: list[float] = []
        self.e_n: list[int] = []
        self.e_w: list[float] = []
        self.e_out: list[dict[str, int]] = []
        self.e_dead: list[bool] = []  # deterministic self-loop without reward: never worth a visit
        # outcomes (edge, next node)
        self.o_edge: list[int] = []
        self.o_child: list[int] = []
        self.o_n: list[int] = []
        self.o_rsum: list[float] = []
        self.o_reward: list[float] = []  # reward when the outcome was first seen
        self.solution = False
        self.size = 0  # nodes + outcomes, the exported row count

    # ------------------------------------------------------------------ structure
    def _new_node(self, state: Any, key: str, terminal: bool) -> int:
        n = len(self.n_state)
        self.n_state.append(state)
        self.n_key.append(key)
        self.n_terminal.append(terminal)
        self.n_edges.append(range(0))
        self.n_expanded.append(False)
        self.n_visits.append(0)
        self.n_eval_sum.append(0.0)
        self.n_eval_n.append(0)
        self.n_value.append(0.0)
        if self.merge:
            self.by_key[key] = n
        return n

    def _expand(self, node: int, proposals: list[tuple[str, float]]) -> None:
        start = len(self.e_action)
        for action, prior in proposals:
            self.e_action.append(action)
            self.e_prior.append(float(prior))
            self.e_n.append(0)
            self.e_w.append(0.0)
            self.e_out.append({})
            self.e_dead.append(False)
        self.n_edges[node] = range(start, len(self.e_action))
        self.n_expanded[node] = True
        if not proposals:
            self.n_terminal[node] = True

    def _outcome(self, node: int, edge: int) -> tuple[int, int, float]:
        """The edge's next state: (outcome id, child node, reward).

        Deterministic envs step each edge once and reuse the outcome; stochastic envs
        sample a fresh outcome on every visit with the search's generator.
        """
        if self.step_rng is None and self.e_out[edge]:
            out = next(iter(self.e_out[edge].values()))
            return out, self.o_child[out], self.o_reward[out]
        state, action = self.n_state[node], self.e_action[edge]
        step = self.env.step(state, action) if self.step_rng is None else self.env.step(state, action, self.step_rng)
        key = self.env.state_key(step.state)
        out = self.e_out[edge].get(key)
        if out is None:
            out = len(self.o_edge)
            end = bool(step.terminated or step.truncated)
            child = self.by_key.get(key) if self.merge else None
            if child is None:
                child = self._new_node(step.state, key, end)
            self.size += 1
            self.e_out[edge][key] = out
            self.o_edge.append(edge)
            self.o_child.append(child)
            self.o_n.append(0)
            self.o_rsum.append(0.0)
            self.o_reward.append(float(step.reward))
            if step.terminated and step.info.get("success", step.reward >= 1.0):
                self.solution = True
            # 'look', 'examine x', bumping into a wall: Q = r + gamma V(s) <= V(s), so the
            # edge can never be the best one and simulations through it teach nothing
            if self.step_rng is None and child == node and step.reward <= 0:
                self.e_dead[edge] = True
        return out, self.o_child[out], float(step.reward)

    # ------------------------------------------------------------------ values
    def q(self, edge: int) -> float:
        n = self.e_n[edge]
        if n == 0:
            return float("nan")
        if not self.merge:
            return self.e_w[edge] / n
        total = 0.0
        for out in self.e_out[edge].values():
            total += self.o_rsum[out] + self.cfg.gamma * self.o_n[out] * self.n_value[self.o_child[out]]
        return total / n

    def _refresh_value(self, node: int) -> None:
        """V(s) from the edges' current Q: visit-weighted mean (tree) or max (graph).

        In graph mode V(s) = max over tried actions of Q(s, a), with untried actions
        valued at the node's own evaluation: a value-iteration backup over the
        sampled model, which is what makes Q converge to Q* on small MDPs.
        """
        if self.n_terminal[node]:
            self.n_value[node] = 0.0
            return
        num = den = 0.0
        best = -math.inf
        untried = False
        for e in self.n_edges[node]:
            if self.e_n[e]:
                qe = self.q(e)
                num += self.e_n[e] * qe
                den += self.e_n[e]
                best = max(best, qe)
            else:
                untried = True
        own = self.n_eval_sum[node] / self.n_eval_n[node] if self.n_eval_n[node] else None
        if self.merge:
            if untried and own is not None:
                best = max(best, own)
            if best > -math.inf:
                self.n_value[node] = best
        elif den:
            self.n_value[node] = num / den
        elif own is not None:
            self.n_value[node] = own

    def _select_edge(self, node: int, on_path: set[int]) -> int:
        """UCT / PUCT over the node's live edges; -1 when none is left.

        In deterministic graph search an edge whose known child is already on this
        simulation's path is skipped: it closes a cycle, so following it cannot add a
        node or a return this path does not already have.
        """
        cfg = self.cfg
        edges = self.n_edges[node]
        n = np.array([self.e_n[e] for e in edges], dtype=np.float64)
        value_sum = np.array([self.e_n[e] * self.q(e) if self.e_n[e] else 0.0 for e in edges])
        parent_n = float(n.sum()) + 1.0
        if cfg.selection == "uct":
            scores = uct_scores(value_sum, n, parent_n, cfg.c)
        else:
            prior = np.array([self.e_prior[e] for e in edges])
            scores = puct_scores(value_sum, n, prior, parent_n, cfg.c, cfg.fpu)
        skip = [self.e_dead[e] for e in edges]
        if self.merge and self.step_rng is None:
            for i, e in enumerate(edges):
                if not skip[i] and self.e_out[e]:
                    skip[i] = self.o_child[next(iter(self.e_out[e].values()))] in on_path
        scores[skip] = -np.inf
        i = int(np.argmax(scores))
        return -1 if scores[i] == -np.inf else edges.start + i

    # ------------------------------------------------------------------ one simulation
    def simulate(self) -> None:
        cfg, gamma = self.cfg, self.cfg.gamma
        node, path, on_path = ROOT, [], {ROOT}
        leaf_value = None
        while True:
            if self.n_terminal[node]:
                leaf_value = 0.0
                break
            if not self.n_expanded[node]:
                self._expand(node, self.propose([self.n_state[node]], cfg.proposals)[0])
                if self.n_terminal[node]:
                    leaf_value = 0.0
                else:
                    leaf_value = float(self.evaluate([self.n_state[node]])[0])
                    self.n_eval_sum[node] += leaf_value
                    self.n_eval_n[node] += 1
                break
            if len(path) >= cfg.max_depth:
                leaf_value = self.n_value[node]
                break
            edge = self._select_edge(node, on_path)
            if edge < 0:
                leaf_value = self.n_value[node]
                break
            out, child, reward = self._outcome(node, edge)
            path.append((node, edge, out, reward))
            if child in on_path:  # a cycle through shared nodes: use the current value
                leaf_value = self.n_value[child]
                node = -1
                break
            on_path.add(child)
            node = child
        if node >= 0:
            self.n_visits[node] += 1
            self._refresh_value(node)
        g = leaf_value
        for parent, edge, out, reward in reversed(path):
            g = reward + gamma * g
            self.e_n[edge] += 1
            self.e_w[edge] += g
            self.o_n[out] += 1
            self.o_rsum[out] += reward
            self.n_visits[parent] += 1
            self._refresh_value(parent)

    # ------------------------------------------------------------------ export
    def to_tree(self) -> Tree:
        """Flat rows in breadth-first order, so each row's children are contiguous."""
        tree = Tree(self.cfg.gamma, capacity=self.size + 1)
        sims = self.n_visits[ROOT]
        tree.add_node(self.n_state[ROOT], self.n_key[ROOT], terminal=self.n_terminal[ROOT])
        tree.visits[ROOT] = sims
        tree.value_sum[ROOT] = self.n_value[ROOT] * sims
        queue, listed, i = [(ROOT, ROOT)], set(), 0
        while i < len(queue):
            node, row = queue[i]
            i += 1
            if node in listed:  # a shared node's edges appear once, under its shallowest row
                continue
            listed.add(node)
            start = tree.size
            for edge in self.n_edges[node]:
                q = self.q(edge)
                for out in self.e_out[edge].values():
                    child, n = self.o_child[out], self.o_n[out]
                    r = tree.add_node(
                        self.n_state[child], self.n_key[child], row, self.e_action[edge], self.e_prior[edge],
                        self.o_rsum[out] / n if n else 0.0, self.n_terminal[child],
                    )
                    tree.visits[r] = n
                    tree.value_sum[r] = q * n if n else 0.0
                    queue.append((child, r))
            tree.child_start[row] = start
            tree.child_count[row] = tree.size - start
            tree.expanded[row] = self.n_expanded[node]
        return tree


def graph_search(env: Env, root_state: Any, cfg: SearchConfig, rng: np.random.Generator,
                 propose: ProposeFn, evaluate: EvaluateFn) -> SearchResult:
    """Run closed-loop tree search or MCGS; see the module docstring."""
    from .search import SearchResult

    t0 = time.perf_counter()
    g = _Graph(env, cfg, rng, propose, evaluate)
    g._new_node(root_state, env.state_key(root_state), False)
    g.size = 1
    stop = "budget"
    for _ in range(cfg.simulations):
        g.simulate()
        if cfg.stop_on_solve and g.solution:
            stop = "solved"
            break
        if g.size >= cfg.max_nodes:
            stop = "max_nodes"
            break
    tree = g.to_tree()
    return SearchResult(tree, g.n_visits[ROOT], g.solution, stop, time.perf_counter() - t0)
