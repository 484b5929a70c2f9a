"""The search's working storage, for tree and graph mode alike: decision nodes, edges and sampled outcomes in flat
Python lists, with the values (Q, V, the max backup and its propagation). The
MCTS-Solver's proofs over this storage are in :mod:`treeq.mcts.solver`, its export to
a flat-array :class:`~treeq.mcts.tree.Tree` in :mod:`treeq.mcts.export`.

Node ids, edge ids and outcome ids index the lists; a node's edges are the contiguous
ids ``n_start[n] : n_start[n] + n_count[n]``. Lists, not numpy arrays, because the
engine's hot path reads and writes single elements, which lists serve several times
faster (and the compiled hot path, ``mcts/_core.c``, works on them in place).
:mod:`treeq.mcts.search` runs the loop over this storage; nothing else touches it.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from ..envs.base import Env, Step, is_success
from ..errors import ConfigError
from .codes import DEAD, END, SAMPLED, UNSTEPPED
from .config import SearchConfig
from .export import export_tree
from .solver import try_prove
from .tree import Tree

__all__ = ["SearchGraph"]

try:  # the compiled hot path (mcts/_core.c); without it the same search runs in Python
    from . import _core
except ImportError:  # pragma: no cover - an install without a C compiler
    _core = None
if os.environ.get("TREEQ_PURE_PYTHON", "") not in ("", "0"):  # force the Python path (tests, debugging)
    _core = None

_TOL = 1e-12  # a relative change of V below this does not propagate
_INF = math.inf


class SearchGraph:
    """Nodes, edges and outcomes of one search, and what is computed from them."""

    def __init__(self, env: Env, cfg: SearchConfig, rng: np.random.Generator) -> None:
        self.env, self.cfg, self.rng = env, cfg, rng
        self.graph = bool(cfg.transpositions)
        self.det = bool(env.deterministic)
        self.solver = bool(cfg.solver) and self.det
        self.eager = self.det and bool(env.step_on_expand)
        self.gamma = float(cfg.gamma)
        self._bound = env.value_bound if self.solver and env.has_value_bound else None
        # decision nodes
        self.n_state: list[Any] = []
        self.n_key: list[str] = []  # graph mode only (a tree computes keys on export)
        self.n_term: list[bool] = []
        self.n_start: list[int] = []  # first edge id; UNSTEPPED until expanded, END if terminal
        self.n_count: list[int] = []
        self.n_next: list[int] = []  # UCT: edges tried so far (each once, in turn, before any score)
        self.n_off: list[int] = []  # UCT: the edge tried first, from the start of the node's edges
        self.n_visits: list[int] = []
        self.n_value: list[float] = []  # graph mode only: V(s)
        self.n_eval_sum: list[float] = []
        self.n_eval_n: list[int] = []
        self.n_solved: list[float | None] = []  # V*, None while unproven
        self.n_bound: list[float | None] = []  # solver only
        self.by_key: dict[str, int] = {}
        self.parents: dict[int, list[int]] = {}  # graph mode: the nodes with an edge into a node
        # edges (node, action)
        self.e_action: list[str] = []
        self.e_prior: list[float] = []
        self.e_feedback: list[float] = []  # a model's AI-feedback score of the action (Agent Q); NaN: none
        self.e_n: list[int] = []
        self.e_w: list[float] = []  # tree mode: sum of returns through the edge
        self.e_child: list[int] = []  # child node, UNSTEPPED or SAMPLED
        self.e_reward: list[float] = []
        self.e_dead: list[bool] = []
        self.e_owner: list[int] = []  # the node an edge leaves
        self.e_out: dict[int, dict[str, int]] = {}  # sampled edges: state_key -> outcome id
        # outcomes of sampled edges
        self.o_child: list[int] = []
        self.o_n: list[int] = []
        self.o_rsum: list[float] = []
        self.o_prob: list[float | None] = []  # the env's probability of the outcome, if it gives one
        self.solution = False
        self.rows = 1  # exported rows so far: the root and one per (edge, outcome)
        self.full = False
        self._check_proposals = True  # validate proposals (the engine waives it for trusted hooks)
        self._draw: Any = None  # uniform numbers for the first-try offsets (the engine sets it for UCT)
        self._core = _core  # the compiled hot path, or None: pure Python (the same results)
        self._node_lists = (self.n_state, self.n_term, self.n_start, self.n_count, self.n_next, self.n_off,
                            self.n_visits, self.n_eval_sum, self.n_eval_n, self.n_solved)
        self._edge_lists = (self.e_action, self.e_prior, self.e_feedback, self.e_n, self.e_w, self.e_child,
                            self.e_reward, self.e_dead, self.e_owner, self.n_start, self.n_count, self.n_off)

    # ------------------------------------------------------------------ structure
    def _new_node(self, state: Any, key: str | None, terminal: bool) -> int:
        solved = 0.0 if terminal and self.solver else None
        if self._core is not None:  # compiled: the same appends
            n = self._core.new_node(self._node_lists, state, terminal, solved)
        else:
            n = len(self.n_state)
            self.n_state.append(state)
            self.n_term.append(terminal)
            self.n_start.append(END if terminal else UNSTEPPED)
            self.n_count.append(0)
            self.n_next.append(0)
            self.n_off.append(0)
            self.n_visits.append(0)
            self.n_eval_sum.append(0.0)
            self.n_eval_n.append(0)
            self.n_solved.append(solved)
        if self.solver:
            self.n_bound.append(None if terminal or self._bound is None else self._bound(state, self.gamma))
        if self.graph:  # keys and the max backup's values are graph mode's alone
            self.n_key.append(key)
            self.n_value.append(0.0)
            self.by_key[key] = n
        return n

    def _expand(self, node: int, proposals: list[tuple]) -> None:
        """Attach ``proposals`` (``(action, prior)`` or ``(action, prior, feedback)``) as the node's edges."""
        if self._check_proposals:  # a hook from outside: text actions, each once
            for prop in proposals:
                if prop[0].__class__ is not str:
                    raise ConfigError(f"a propose hook returned a non-text action {prop[0]!r}")
            if len({prop[0] for prop in proposals}) != len(proposals):  # proposed twice: priors added up
                merged: dict[str, list] = {}
                for prop in proposals:
                    if prop[0] in merged:
                        merged[prop[0]][1] += float(prop[1])
                    else:
                        merged[prop[0]] = list(prop)
                proposals = [tuple(m) for m in merged.values()]
        start = len(self.e_action)
        k = len(proposals)
        if self._core is not None and proposals.__class__ is list:  # compiled: the same lists, appended in C
            self._core.expand(self._edge_lists, node, proposals, self._draw)
        else:
            if k:
                self.e_action.extend(prop[0] for prop in proposals)
                self.e_prior.extend(float(prop[1]) for prop in proposals)
                self.e_feedback.extend(float(prop[2]) if len(prop) > 2 and prop[2] is not None else math.nan
                                       for prop in proposals)
            self.e_n.extend([0] * k)
            self.e_w.extend([0.0] * k)
            self.e_child.extend([UNSTEPPED] * k)
            self.e_reward.extend([0.0] * k)
            self.e_dead.extend([False] * k)
            self.e_owner.extend([node] * k)
            self.n_start[node] = start
            self.n_count[node] = k
            if k > 1 and self._draw is not None:
                self.n_off[node] = int(self._draw() * k)
        if not proposals:  # a dead end: nothing more can happen from here
            self.n_term[node] = True
            self.n_start[node] = DEAD
            if self.solver:
                self.n_solved[node] = 0.0
        elif self.eager:  # the env's steps are cheap: know every child now (terminals, bounds)
            for e in range(start, start + k):
                if self.rows >= self.cfg.max_nodes:
                    self.full = True
                    break
                self._step(node, e)
            if self.solver:
                try_prove(self, node)

    def _step(self, node: int, e: int) -> tuple[int, float]:
        """Step edge ``e`` of ``node`` (not stepped yet, or sampled): (child node, reward)."""
        return self._place(node, e, self.env.step(self.n_state[node], self.e_action[e], self.rng))

    def _place(self, node: int, e: int, step: Step) -> tuple[int, float]:
        """Record the step of edge ``e`` of ``node``: (child node, reward)."""
        child = self.e_child[e]
        env = self.env
        reward = float(step.reward)
        end = bool(step.terminated or step.truncated)
        if not self.solution and step.terminated and is_success(step):
            self.solution = True
        fixed = self.det or step.info.get("deterministic", False)
        if child == UNSTEPPED and fixed:
            self.rows += 1
            if self.graph:
                key = env.state_key(step.state)
                child = self.by_key.get(key)
                if child is None:
                    child = self._new_node(step.state, key, end)
                elif child == node and reward <= 0.0:
                    # 'look', bumping into a wall: Q = r + gamma V(s) <= V(s), never the best
                    self.e_dead[e] = True
                if child != node:
                    self.parents.setdefault(child, []).append(node)
            else:
                child = self._new_node(step.state, None, end)
            self.e_child[e] = child
            self.e_reward[e] = reward
            return child, reward
        # sampled: one outcome per distinct next state
        self.e_child[e] = SAMPLED
        key = env.state_key(step.state)
        outs = self.e_out.setdefault(e, {})
        out = outs.get(key)
        if out is None:
            self.rows += 1
            out = len(self.o_child)
            child = self.by_key.get(key) if self.graph else None
            if child is None:
                child = self._new_node(step.state, key, end)
            if self.graph and child != node:
                self.parents.setdefault(child, []).append(node)
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

    def _refresh(self, node: int) -> bool:
        """Graph mode: V(s) = max over tried actions of Q, untried ones valued at the
        node's own evaluation; True when V(s) changed. Dead self-loops are left out:
        their Q, r + gamma V(s), is never above V(s), and counting it would feed V(s)
        its own stale value."""
        old = self.n_value[node]
        solved = self.n_solved[node]
        if solved is not None:
            self.n_value[node] = solved
            return solved != old
        if self.n_term[node]:
            self.n_value[node] = 0.0
            return old != 0.0
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
            return abs(best - old) > _TOL * (1.0 + abs(best))
        return False

    def _propagate(self, changed: list[int], budget: int) -> None:
        """Graph mode: refresh the parents of nodes whose value changed, and theirs in
        turn, up to ``budget`` refreshes. A shared node's new value reaches every parent,
        not only the one on this simulation's path; without this a parent off the path
        keeps a stale Q and UCT can starve the branch that would correct it."""
        parents = self.parents
        queue = [p for n in changed for p in parents.get(n, ())]
        i = 0
        while i < len(queue) and i < budget:
            node = queue[i]
            i += 1
            if self._refresh(node):
                queue.extend(parents.get(node, ()))

    def _export(self) -> Tree:
        """The flat-array tree of this search (:func:`treeq.mcts.export.export_tree`)."""
        return export_tree(self)
