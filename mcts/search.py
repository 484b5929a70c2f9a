"""The search engine: one batched loop for tree search and graph search (MCGS).

A search runs in waves. Each wave descends up to ``batch_size`` times from the root
with UCT or PUCT, counting visits on the way down (so later descents of the wave
spread out: a virtual visit, which is a virtual loss for the mean backup); then one
``propose`` call expands every new leaf of the wave and one ``evaluate`` call values
them; then each path is backed up. ``batch_size = 1`` is plain sequential MCTS.

Decision nodes hold env states. Each proposed action of a node is an *edge*, stepped
lazily the first time it is selected (an LLM's eight proposals cost one env step
each only when searched). A deterministic transition is stepped once and its child
reused; a stochastic one is sampled with the search's generator on every visit and
each sampled next state is an *outcome* of the edge, keyed by ``state_key`` (closed
loop, so Q estimates the expected value). A stochastic env can mark a transition it
knows to be deterministic with ``info["deterministic"] = True``.

The two modes differ only in node identity and backup (DESIGN.md, Q semantics):

* tree mode (``backup = "mean"``): every outcome gets a fresh node; Q(s, a) is the
  mean over simulations through the edge of ``r + gamma * return after``.
* graph mode (``transpositions``, Czech et al. 2021, ``backup = "max"``): nodes with
  equal ``state_key`` are one node; Q(s, a) is recomputed from the children's current
  values, ``sum_o n_o / N(s, a) * (rbar_o + gamma * V(child_o))``, and V(s) is the max
  over tried actions (untried ones valued at the node's own evaluation): a
  value-iteration backup over the sampled model. A descent never closes a cycle; a
  deterministic self-loop without reward can never be best and is searched once.

Selection, the success test and the MCTS-Solver (Winands et al. 2008, single-agent
form) serve both modes. In a deterministic env a terminal node is proven (V* = 0) and
a node is proven when all its actions lead to proven nodes (V* = max of
``r + gamma * V*``) or one of them reaches the env's ``value_bound``. Proven children
are never selected again, so no simulation is spent in a proven subtree, and the
root keeps searching unproven alternatives after a first solution (the trees are
training data) unless ``stop_on_solve`` is set. The solver sees only exact values, so
its proofs hold in graph mode too, cycles included.

The engine keeps its working storage in Python lists (the hot path reads single
elements, which lists serve several times faster than numpy arrays) and exports a
flat-array :class:`~treeq.mcts.tree.Tree` at the end.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from ..envs.base import Env, is_success
from ..errors import ConfigError
from .config import SearchConfig, SearchResult, resolve_defaults
from .hooks import EvaluateFn, ProposeFn, random_rollout, uniform_propose
from .tree import NO_PARENT, Tree

__all__ = ["search"]

_EPS = 1e-12
_UNSTEPPED = -1  # e_child of an edge not stepped yet
_SAMPLED = -2  # e_child of an edge whose outcomes are sampled on every visit
_INF = math.inf

# how a descent ended
_NEW, _TERMINAL, _VALUED = 0, 1, 2

# 1 / sqrt(n) and sqrt(ln n) by table: a list read is cheaper than a call on the hot path
_ISQRT: list[float] = [0.0]
_SQRT_LOG: list[float] = [0.0]


def _tables(size: int) -> None:
    """Grow the tables to cover visit counts up to ``size``."""
    for n in range(len(_ISQRT), size + 1):
        _ISQRT.append(1.0 / math.sqrt(n))
        _SQRT_LOG.append(math.sqrt(math.log(n)))




class _Engine:
    def __init__(self, env: Env, cfg: SearchConfig, rng: np.random.Generator, propose: ProposeFn,
                 evaluate: EvaluateFn) -> None:
        self.env, self.cfg, self.rng = env, cfg, rng
        self.propose, self.evaluate = propose, evaluate
        self.graph = bool(cfg.transpositions)
        self.det = bool(env.deterministic)
        self.solver = bool(cfg.solver) and self.det
        self.gamma = float(cfg.gamma)
        self.c = float(cfg.c)
        self.uct = cfg.selection == "uct"
        self._plain_uct = self.uct and not self.graph and not self.solver
        has_bound = type(env).value_bound is not Env.value_bound
        self._bound = env.value_bound if self.solver and has_bound else None
        # decision nodes
        self.n_state: list[Any] = []
        self.n_key: list[str | None] = []  # tree mode: filled at export
        self.n_term: list[bool] = []
        self.n_start: list[int] = []  # first edge id; -1 until expanded
        self.n_count: list[int] = []
        self.n_next: list[int] = []  # UCT: next edge never selected (they go in order)
        self.n_visits: list[int] = []
        self.n_value: list[float] = []  # graph mode: V(s)
        self.n_eval_sum: list[float] = []
        self.n_eval_n: list[int] = []
        self.n_solved: list[float | None] = []  # V*, None while unproven
        self.n_bound: list[float | None] = []
        self.by_key: dict[str, int] = {}
        # edges (node, action)
        self.e_action: list[str] = []
        self.e_prior: list[float] = []
        self.e_n: list[int] = []
        self.e_w: list[float] = []  # tree mode: sum of returns through the edge
        self.e_child: list[int] = []  # child node, _UNSTEPPED or _SAMPLED
        self.e_reward: list[float] = []
        self.e_dead: list[bool] = []
        self.e_out: dict[int, dict[str, int]] = {}  # sampled edges: state_key -> outcome id
        # outcomes of sampled edges
        self.o_child: list[int] = []
        self.o_n: list[int] = []
        self.o_rsum: list[float] = []
        self.o_prob: list[float | None] = []  # the env's probability of the outcome, if it gives one
        self.solution = False
        self.rows = 1  # exported rows so far: the root and one per (edge, outcome)
        self.full = False

    # ------------------------------------------------------------------ structure
    def _new_node(self, state: Any, key: str | None, terminal: bool) -> int:
        n = len(self.n_state)
        self.n_state.append(state)
        self.n_key.append(key)
        self.n_term.append(terminal)
        self.n_start.append(-1)
        self.n_count.append(0)
        self.n_next.append(0)
        self.n_visits.append(0)
        self.n_value.append(0.0)
        self.n_eval_sum.append(0.0)
        self.n_eval_n.append(0)
        if self.solver:
            self.n_solved.append(0.0 if terminal else None)
            self.n_bound.append(None if terminal or self._bound is None else self._bound(state, self.gamma))
        else:
            self.n_solved.append(None)
            self.n_bound.append(None)
        if key is not None and self.graph:
            self.by_key[key] = n
        return n

    def _expand(self, node: int, proposals: list[tuple[str, float]]) -> None:
        if len(proposals) > 1 and len({a for a, _ in proposals}) != len(proposals):  # proposed twice
            merged: dict[str, float] = {}
            for a, p in proposals:
                merged[a] = merged.get(a, 0.0) + float(p)
            proposals = list(merged.items())
        start = len(self.e_action)
        k = len(proposals)
        actions = [a for a, _ in proposals]
        for a in actions:
            if a.__class__ is not str:
                raise ConfigError(f"a propose hook returned a non-text action {a!r}")
        self.e_action.extend(actions)
        self.e_prior.extend([float(p) for _, p in proposals])
        self.e_n.extend([0] * k)
        self.e_w.extend([0.0] * k)
        self.e_child.extend([_UNSTEPPED] * k)
        self.e_reward.extend([0.0] * k)
        self.e_dead.extend([False] * k)
        self.n_start[node] = start
        self.n_count[node] = len(proposals)
        if not proposals:  # a dead end: nothing more can happen from here
            self.n_term[node] = True
            if self.solver:
                self.n_solved[node] = 0.0

    def _step(self, node: int, e: int) -> tuple[int, float]:
        """Step edge ``e`` of ``node`` (not stepped yet, or sampled): (child node, reward)."""
        child = self.e_child[e]
        env = self.env
        step = env.step(self.n_state[node], self.e_action[e], self.rng)
        reward = float(step.reward)
        end = bool(step.terminated or step.truncated)
        if not self.solution and step.terminated and is_success(step):
            self.solution = True
        fixed = self.det or step.info.get("deterministic", False)
        if child == _UNSTEPPED and fixed:
            self.rows += 1
            if self.graph:
                key = env.state_key(step.state)
                child = self.by_key.get(key)
                if child is None:
                    child = self._new_node(step.state, key, end)
                elif child == node and reward <= 0.0:
                    # 'look', bumping into a wall: Q = r + gamma V(s) <= V(s), never the best
                    self.e_dead[e] = True
            else:
                child = self._new_node(step.state, None, end)
            self.e_child[e] = child
            self.e_reward[e] = reward
            return child, reward
        # sampled: one outcome per distinct next state
        self.e_child[e] = _SAMPLED
        key = env.state_key(step.state)
        outs = self.e_out.setdefault(e, {})
        out = outs.get(key)
        if out is None:
            self.rows += 1
            out = len(self.o_child)
            child = self.by_key.get(key) if self.graph else None
            if child is None:
                child = self._new_node(step.state, key, end)
            outs[key] = out
            self.o_child.append(child)
            self.o_n.append(0)
            self.o_rsum.append(0.0)
            prob = step.info.get("prob")
            self.o_prob.append(None if prob is None else float(prob))
        self.o_n[out] += 1
        self.o_rsum[out] += reward
        return self.o_child[out], reward

    # ------------------------------------------------------------------ values
    def q(self, e: int) -> float:
        """Q of edge ``e`` (NaN before its first visit)."""
        n = self.e_n[e]
        if n == 0:
            return math.nan
        if not self.graph:
            return self.e_w[e] / n
        child = self.e_child[e]
        if child >= 0:
            return self.e_reward[e] + self.gamma * self.n_value[child]
        outs = self.e_out[e].values()
        o_n, o_rsum, o_prob, o_child, n_value, gamma = (
            self.o_n, self.o_rsum, self.o_prob, self.o_child, self.n_value, self.gamma)
        if all(o_prob[o] is not None for o in outs):  # expectation over the outcomes seen
            total = mass = 0.0
            for o in outs:
                p = o_prob[o]
                total += p * (o_rsum[o] / o_n[o] + gamma * n_value[o_child[o]])
                mass += p
            return total / mass if mass > 0 else math.nan
        total = 0.0
        cnt = 0
        for o in outs:  # else the empirical model: outcomes weighted by their sample counts
            total += o_rsum[o] + gamma * o_n[o] * n_value[o_child[o]]
            cnt += o_n[o]
        return total / cnt if cnt else math.nan

    def value(self, node: int) -> float:
        """V of ``node`` as a leaf value: V* when proven, else :meth:`estimate`."""
        solved = self.n_solved[node]
        return self.estimate(node) if solved is None else solved

    def estimate(self, node: int) -> float:
        """The backed-up V of ``node``: graph mode, the max backup; tree mode, the mean
        return of the simulations that went through it (0 before any)."""
        if self.graph:
            return self.n_value[node]
        num, den = self.n_eval_sum[node], self.n_eval_n[node]
        s = self.n_start[node]
        if s >= 0:
            for e in range(s, s + self.n_count[node]):
                num += self.e_w[e]
                den += self.e_n[e]
        return num / den if den else 0.0

    def _refresh(self, node: int) -> None:
        """Graph mode: V(s) = max over tried actions of Q, untried ones valued at the
        node's own evaluation. Dead self-loops are left out: their Q, r + gamma V(s), is
        never above V(s), and counting it would feed V(s) its own stale value."""
        solved = self.n_solved[node]
        if solved is not None:
            self.n_value[node] = solved
            return
        if self.n_term[node]:
            self.n_value[node] = 0.0
            return
        best = -_INF
        untried = False
        s = self.n_start[node]
        if s >= 0:
            e_n, e_dead = self.e_n, self.e_dead
            for e in range(s, s + self.n_count[node]):
                if e_dead[e]:
                    continue
                if e_n[e]:
                    qe = self.q(e)
                    if qe > best:
                        best = qe
                else:
                    untried = True
        if (untried or s < 0) and self.n_eval_n[node]:
            own = self.n_eval_sum[node] / self.n_eval_n[node]
            if own > best:
                best = own
        if best > -_INF:
            self.n_value[node] = best

    # ------------------------------------------------------------------ selection
    def _select(self, node: int, on_path: set[int] | None) -> int:
        """UCT / PUCT over the node's live edges; -1 when none is left.

        UCT scores an unvisited edge +inf, so the edges are tried once each, in order,
        before any is scored (``n_next``); the caller takes that shortcut itself.
        UCT: ``Q + c sqrt(ln N / n)``; PUCT (AlphaZero): ``Q + c P sqrt(N) / (1 + n)``
        with ``fpu`` for Q at n = 0. N is the node's visit count. Edges skipped: dead
        self-loops, edges into proven nodes (solver), and in deterministic graph mode
        edges closing a cycle on this descent.
        """
        s = self.n_start[node]
        stop = s + self.n_count[node]
        e_n, e_w = self.e_n, self.e_w
        if self._plain_uct:  # tree mode, no solver: nothing to skip, every edge visited
            explore = self.c * _SQRT_LOG[self.n_visits[node]]
            isqrt = _ISQRT
            best, best_e = -_INF, -1
            for e in range(s, stop):
                n = e_n[e]
                score = e_w[e] / n + explore * isqrt[n]
                if score > best:
                    best, best_e = score, e
            return best_e
        e_child = self.e_child
        parent_n = self.n_visits[node]
        graph, q = self.graph, self.q
        if self.uct:
            explore = self.c * _SQRT_LOG[parent_n]
        else:
            explore = self.c * math.sqrt(parent_n)
            e_prior, fpu = self.e_prior, self.cfg.fpu
        e_dead, n_solved = self.e_dead, self.n_solved
        solver, cycles = self.solver, graph and self.det
        best, best_e = -_INF, -1
        for e in range(s, stop):
            if e_dead[e]:
                continue
            child = e_child[e]
            if child >= 0 and ((solver and n_solved[child] is not None) or (cycles and child in on_path)):
                continue
            n = e_n[e]
            if self.uct:
                score = (q(e) if graph else e_w[e] / n) + explore * _ISQRT[n]
            elif n:
                score = (q(e) if graph else e_w[e] / n) + explore * e_prior[e] / (1 + n)
            else:
                score = fpu + explore * e_prior[e]
            if score > best:
                best, best_e = score, e
        return best_e

    # ------------------------------------------------------------------ one descent
    def _descend(self) -> list | None:
        """Select a path; None when the root has no action left to search.

        Returns ``[nodes, edges, rewards, how it ended, leaf value]``: the path's nodes
        (root first; graph mode: a closing cycle ends on a node already on the path),
        its edges and rewards; the leaf value of a new leaf is filled in after the
        wave's evaluate call.
        """
        nodes, edges, rewards = [0], [], []
        node = 0
        on_path = {0} if self.graph else None
        max_depth = self.cfg.max_depth
        n_visits, n_term, n_start, n_count, n_next = self.n_visits, self.n_term, self.n_start, self.n_count, self.n_next
        e_n, e_child, e_reward = self.e_n, self.e_child, self.e_reward
        uct = self.uct
        depth = 0
        while True:
            if n_term[node]:
                n_visits[node] += 1
                return [nodes, edges, rewards, _TERMINAL, 0.0]
            s = n_start[node]
            if s < 0:
                n_visits[node] += 1
                return [nodes, edges, rewards, _NEW, 0.0]
            if depth >= max_depth:
                n_visits[node] += 1
                return [nodes, edges, rewards, _VALUED, self.value(node)]
            k = n_next[node]
            if uct and k < n_count[node]:
                e = s + k
                n_next[node] = k + 1
            else:
                e = self._select(node, on_path)
            child = e_child[e] if e >= 0 else _UNSTEPPED
            if child >= 0:
                reward = e_reward[e]
            elif e < 0 or (child == _UNSTEPPED and self.rows >= self.cfg.max_nodes):
                if e >= 0:
                    self.full = True
                if node == 0:
                    return None
                n_visits[node] += 1
                return [nodes, edges, rewards, _VALUED, self.value(node)]
            else:
                child, reward = self._step(node, e)
            n_visits[node] += 1
            e_n[e] += 1
            edges.append(e)
            rewards.append(reward)
            nodes.append(child)
            depth += 1
            if on_path is not None:
                if child in on_path:  # closing a cycle (a sampled outcome): use its current value
                    return [nodes, edges, rewards, _VALUED, self.n_value[child]]
                on_path.add(child)
            node = child

    # ------------------------------------------------------------------ backup
    def _backup(self, nodes: list[int], edges: list[int], rewards: list[float], leaf_value: float) -> None:
        gamma = self.gamma
        if self.graph:  # the leaf too: a node valued without expansion may sit on a cycle
            for i in range(len(nodes) - 1, -1, -1):
                self._refresh(nodes[i])
        else:
            g = leaf_value
            e_w = self.e_w
            for i in range(len(edges) - 1, -1, -1):
                g = rewards[i] + gamma * g
                e_w[edges[i]] += g
        if self.solver:
            n_solved = self.n_solved
            for i in range(len(nodes) - 1, -1, -1):
                if n_solved[nodes[i]] is None and not self._try_prove(nodes[i]):
                    break

    def _try_prove(self, node: int) -> bool:
        """Prove ``node`` from its children if their proven values settle it."""
        if self.n_term[node]:
            self.n_solved[node] = 0.0
            return True
        s = self.n_start[node]
        if s < 0:
            return False
        n_solved, e_child, e_reward, gamma = self.n_solved, self.e_child, self.e_reward, self.gamma
        best = None
        complete = True
        for e in range(s, s + self.n_count[node]):
            child = e_child[e]
            v = n_solved[child] if child >= 0 else None
            if v is None:
                complete = False
                continue
            q = e_reward[e] + gamma * v
            if best is None or q > best:
                best = q
        if best is None:
            return False
        bound = self.n_bound[node]
        if complete or (bound is not None and best >= bound - _EPS):
            self.n_solved[node] = best
            if self.graph:
                self.n_value[node] = best
            return True
        return False

    # ------------------------------------------------------------------ the loop
    def run(self, root_state: Any) -> SearchResult:
        t0 = time.perf_counter()
        cfg = self.cfg
        _tables(cfg.simulations + cfg.batch_size)  # no visit count exceeds this
        root_key = self.env.state_key(root_state) if self.graph else None
        self._new_node(root_state, root_key, False)
        done = waves = 0
        stop = "budget"
        while done < cfg.simulations:
            descents = []
            for _ in range(min(cfg.batch_size, cfg.simulations - done)):
                d = self._descend()
                if d is None:
                    break
                descents.append(d)
            if not descents:
                stop = "max_nodes" if self.full else "exhausted"
                break
            waves += 1
            self._expand_and_evaluate(descents)
            for nodes, edges, rewards, _, value in descents:
                self._backup(nodes, edges, rewards, value)
            done += len(descents)
            if cfg.stop_on_solve and self.solution:
                stop = "solved"
                break
            if self.full:
                stop = "max_nodes"
                break
        tree = self._export()
        return SearchResult(tree, done, self.solution, stop, time.perf_counter() - t0,
                            "max" if self.graph else "mean", waves)

    def _expand_and_evaluate(self, descents: list) -> None:
        """One propose call for the wave's new leaves, one evaluate call for those
        that are not dead ends; then every descent's leaf value is known."""
        if len(descents) == 1:
            new = [descents[0][0][-1]] if descents[0][3] == _NEW else []
        else:
            new = list(dict.fromkeys(d[0][-1] for d in descents if d[3] == _NEW))
        if not new:
            return
        n_state = self.n_state
        proposals = self.propose([n_state[n] for n in new], self.cfg.proposals)
        if len(proposals) != len(new):
            raise ConfigError(f"a propose hook returned {len(proposals)} lists for {len(new)} states")
        for node, props in zip(new, proposals):
            self._expand(node, props)
        n_term = self.n_term
        live = [n for n in new if not n_term[n]]
        values: dict[int, float] = {}
        if live:
            got = self.evaluate([n_state[n] for n in live])
            if len(got) != len(live):
                raise ConfigError(f"an evaluate hook returned {len(got)} values for {len(live)} states")
            n_eval_sum, n_eval_n = self.n_eval_sum, self.n_eval_n
            for n, v in zip(live, got):
                v = float(v)
                values[n] = v
                n_eval_sum[n] += v
                n_eval_n[n] += 1
        if self.graph:
            for n in new:
                self._refresh(n)
        for d in descents:
            if d[3] == _NEW:
                d[4] = values.get(d[0][-1], 0.0)

    # ------------------------------------------------------------------ export
    def _export(self) -> Tree:
        """Flat rows, breadth first, so each row's children are contiguous.

        One row per (parent row, stepped action, outcome); in graph mode a shared
        node's edges are listed once, under its shallowest row.
        """
        graph = self.graph
        n_start, n_count, e_child, e_out, o_child = self.n_start, self.n_count, self.e_child, self.e_out, self.o_child
        order, r_edge, r_out, r_parent, depth = [0], [-1], [-1], [NO_PARENT], [0]
        child_start, child_count = [], []
        listed: set[int] = set()
        i = 0
        while i < len(order):
            node = order[i]
            first = len(order)
            s = n_start[node]
            if s >= 0 and not (graph and node in listed):
                listed.add(node)
                d = depth[i] + 1
                for e in range(s, s + n_count[node]):
                    child = e_child[e]
                    if child >= 0:
                        order.append(child)
                        r_edge.append(e)
                        r_out.append(-1)
                    elif child == _SAMPLED:
                        for o in e_out[e].values():
                            order.append(o_child[o])
                            r_edge.append(e)
                            r_out.append(o)
                    else:
                        continue
                    r_parent.extend([i] * (len(order) - len(r_parent)))
                    depth.extend([d] * (len(order) - len(depth)))
            child_start.append(first if len(order) > first else -1)
            child_count.append(len(order) - first)
            i += 1
        e_n, e_prior, e_reward, o_n, o_rsum = self.e_n, self.e_prior, self.e_reward, self.o_n, self.o_rsum
        edges = r_edge[1:]
        q = {e: self.q(e) for e in set(edges)} if graph or self.e_out else None
        visits = [self.n_visits[0]] + [e_n[e] if o < 0 else o_n[o] for e, o in zip(edges, r_out[1:])]
        if q is None:  # the plain tree: a row's value_sum is its edge's sum of returns
            value_sum = [self.estimate(0) * visits[0]] + [self.e_w[e] for e in edges]
        else:
            value_sum = [self.estimate(0) * visits[0]] + [q[e] * n if n else 0.0 for e, n in zip(edges, visits[1:])]
        action_index: dict[str, int] = {}
        e_action = self.e_action
        action = [-1] + [action_index.setdefault(e_action[e], len(action_index)) for e in edges]
        reward = [0.0] + [e_reward[e] if o < 0 else (o_rsum[o] / o_n[o] if o_n[o] else 0.0)
                          for e, o in zip(edges, r_out[1:])]
        n_solved = self.n_solved
        columns = {
            "parent": r_parent, "action": action, "depth": depth, "visits": visits, "value_sum": value_sum,
            "prior": [0.0] + [e_prior[e] for e in edges], "reward": reward,
            "terminal": [self.n_term[n] for n in order], "expanded": [n_start[n] >= 0 for n in order],
            "child_start": child_start, "child_count": child_count,
            "solved_v": [math.nan if n_solved[n] is None else n_solved[n] for n in order],
        }
        states = [self.n_state[n] for n in order]
        keys = [self.n_key[n] for n in order] if graph else None  # tree mode: on first use
        return Tree(self.gamma, columns, states, keys, list(action_index), key_fn=self.env.state_key)


def search(
    env: Env,
    root_state: Any,
    config: SearchConfig,
    rng: np.random.Generator,
    propose: ProposeFn | None = None,
    evaluate: EvaluateFn | None = None,
) -> SearchResult:
    """Run MCTS (tree mode) or MCGS (graph mode) from ``root_state``.

    Args:
        env: A reversible env (a ``treeq.envs.base.Env``).
        root_state: State to search from.
        config: Search settings; those left None take the env's defaults.
        rng: The only source of randomness (stochastic steps, the rollout evaluator).
        propose: Batched prior hook; default: uniform over ``env.legal_actions``.
        evaluate: Batched value hook; default: one random rollout per state.

    Returns:
        The exported tree and how the search ended. Same inputs and seed, same tree.
    """
    config = resolve_defaults(config, env)
    propose = propose or uniform_propose(env)
    evaluate = evaluate or random_rollout(env, rng, config.gamma, config.rollout_steps)
    return _Engine(env, config, rng, propose, evaluate).run(root_state)
