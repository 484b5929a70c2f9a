"""The search engine: one batched loop for tree search and graph search (MCGS).

A search runs in waves. Each wave descends up to ``wave_size`` times from the root
with UCT, PUCT or Gumbel (:mod:`treeq.mcts.selection`), counting visits on the way down (so later descents of the wave
spread out: a virtual visit, which is a virtual loss for the mean backup); then one
``propose`` call expands every new leaf of the wave and one ``evaluate`` call values
them; then each path is backed up. ``wave_size = 1`` is plain sequential MCTS.

Decision nodes hold env states. Each proposed action of a node is an *edge*, stepped
lazily the first time it is selected (an LLM's eight proposals cost one env step
each only when searched), or, for envs with cheap deterministic steps
(``Env.step_on_expand``), all at once when the node is expanded, so terminal children
and bounds are known at once. A deterministic transition is stepped once and its child
reused; a stochastic one is sampled with the search's generator on every visit and
each sampled next state is an *outcome* of the edge, keyed by ``state_key`` (closed
loop, so Q estimates the expected value). A stochastic env can mark a transition it
knows to be deterministic with ``info["deterministic"] = True``.

The two modes differ only in node identity and backup (docs/architecture.md, Q semantics):

* tree mode (``backup = "mean"``): every outcome gets a fresh node; Q(s, a) is the
  mean over simulations through the edge of ``r + gamma * return after``.
* graph mode (``transpositions``, Czech et al. 2021, ``backup = "max"``): nodes with
  equal ``state_key`` are one node; Q(s, a) is recomputed from the children's current
  values, ``sum_o w_o * (rbar_o + gamma * V(child_o))`` (``w_o`` the env's probability
  of the outcome where it gives one, ``info["prob"]``, else its share of the samples),
  and V(s) is the max over tried actions (untried ones valued at the node's own
  evaluation): a value-iteration backup over the sampled model. A node whose value
  changes refreshes its parents off the path too (bounded per backup). A descent never
  closes a cycle; a deterministic self-loop without reward can never be best and is
  searched once.

Selection, the success test and the MCTS-Solver (Winands et al. 2008, single-agent
form) serve both modes. In a deterministic env a terminal node is proven (V* = 0) and
a node is proven when all its actions lead to proven nodes (V* = max of
``r + gamma * V*``) or one of them reaches the env's ``value_bound``. Proven children
are never selected again, so no simulation is spent in a proven subtree, and the
root keeps searching unproven alternatives after a first solution (the trees are
training data) unless ``stop_on_solve`` is set. The solver sees only exact values, so
its proofs hold in graph mode too; at the end of a graph search the closed part of the
explored graph, which cycles keep from being proven child by child, is solved as a
whole (:mod:`treeq.mcts.solver`).

The engine keeps its working storage in Python lists (the hot path reads single
elements, which lists serve several times faster than numpy arrays) and exports a
flat-array :class:`~treeq.mcts.tree.Tree` at the end. In tree mode (UCT and PUCT; Gumbel
selection runs in Python) the descent and (one leaf a wave) the whole loop run compiled (``mcts/_core.c``) over
the same lists, calling the env and the hooks as this module does; ``_descend_py``,
``_backup``, ``_expand_and_evaluate`` and the loop in :meth:`_Engine.run` are the reference the C
code follows, and serve installs without a C compiler (``TREEQ_PURE_PYTHON=1``).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from ..envs.base import Env
from ..errors import ConfigError
from . import selection
from .codes import EVAL, NEW, STOPS, TERMINAL, UNSTEPPED, VALUED
from .config import SearchConfig, SearchResult, resolve_defaults
from .hooks import EvaluateFn, Evaluator, ProposeFn, Proposer, random_rollout, uniform_propose, uniform_stream
from .solver import prove_closed, try_prove
from .storage import SearchGraph

__all__ = ["search"]

_PROPAGATE = 64  # graph-mode refreshes per backup of parents off the path
_MAX_C = sys.maxsize  # the compiled loop counts in Py_ssize_t: a larger budget or bound is as good as unbounded


class _Engine(SearchGraph):
    """The wave loop over a :class:`SearchGraph`: selection, descent, hooks, backup."""

    def __init__(self, env: Env, cfg: SearchConfig, rng: np.random.Generator, propose: Proposer | ProposeFn | None,
                 evaluate: Evaluator | EvaluateFn | None) -> None:
        super().__init__(env, cfg, rng)
        propose, evaluate = Proposer.of(propose), Evaluator.of(evaluate)
        # the bare functions, called on the hot path (the declarations are read here, once)
        self.propose = propose.fn if propose is not None else None
        self.evaluate = evaluate.fn if evaluate is not None else None
        self._reads_path = evaluate is not None and evaluate.reads_path
        self._check_proposals = not (propose is not None and propose.trusted)
        self.c = float(cfg.c)
        self.rule = cfg.selection
        self.uct = cfg.selection == "uct"
        # what _select reads, bound once (the lists grow in place)
        self._selecting = (self.rule, self.c, self.e_n, self.e_w, self.q if self.graph else None, self.e_prior,
                           float(cfg.fpu), self.e_dead, self.e_child, self.n_solved if self.solver else None,
                           self.graph and self.det)
        self._plain_uct = self.uct and not self.graph and not self.solver
        # gumbel: its own _select, chosen once here (the UCT / PUCT path never tests for it); the root's
        # Gumbel draws are made at its first selection, so the other rules' random streams are untouched
        self._gumbel_root: list[float] | None = None
        self._gumbel_k = 0
        if cfg.selection == "gumbel":
            self._select = self._select_gumbel
        self._draw = uniform_stream(rng, 256).__next__ if self.uct and cfg.random_untried else None
        # the lists the descent reads, bound once (they grow in place)
        self._lists = (self.n_visits, self.n_start, self.n_count, self.n_next, self.n_off,
                       self.e_n, self.e_w, self.e_child, self.e_reward)
        # tree mode runs the descent (and, one leaf a wave, the whole loop) compiled where _core is built
        # (graph mode's Q reads the outcome model, gumbel is not in the compiled loop: Python)
        self._tree_core = None if self.graph or self._reads_path or cfg.selection == "gumbel" else self._core
        if self._tree_core is not None:
            self._core_lists = self._lists + (self.e_dead, self.e_prior, self.n_solved, self.n_eval_n)
            self._core_params = (self.c, float(cfg.fpu), self.uct, self._plain_uct, self.solver, self.det,
                                 not self._check_proposals, self.eager, min(cfg.max_depth, _MAX_C),
                                 min(cfg.max_nodes, _MAX_C))
            legal = propose is not None and propose.legal_of is env  # declared: the loop asks the env itself
            self._core_hooks = (env.step, self.rng, self.propose, self.evaluate, cfg.proposals,
                                ConfigError, self._draw, self._node_lists, self._edge_lists,
                                env.legal_actions if legal else None, evaluate.rollout if evaluate else None)

    # ------------------------------------------------------------------ selection
    def _select(self, node: int, on_path: set[int] | None) -> int:
        """The selection rule (:mod:`treeq.mcts.selection`) over the node's live edges; -1 when none is left.

        Edges skipped: dead self-loops, edges into proven nodes (solver), and in
        deterministic graph mode edges closing a cycle on this descent. (UCT in a tree
        without the solver, where nothing is skipped, goes to the rule directly from
        :meth:`_descend_py`.)
        """
        rule, c, e_n, e_w, q, e_prior, fpu, e_dead, e_child, n_solved, cycles = self._selecting
        s = self.n_start[node]
        return selection.select(rule, s, s + self.n_count[node], c, self.n_visits[node], e_n, e_w, q, e_prior, fpu,
                                (e_dead, e_child, n_solved, on_path if cycles else None))

    def _select_gumbel(self, node: int, on_path: set[int] | None) -> int:
        """:meth:`_select` under ``selection = "gumbel"`` (:func:`treeq.mcts.selection.select_gumbel`).

        At the root, Sequential Halving over ``k`` (:func:`treeq.mcts.selection.considered_count`) actions: the
        simulation index is the sum of the root edges' visit counts (mctx's; the virtual
        visits of the descents earlier in this wave included, the descents that expanded the
        root not); one Gumbel(0, 1) per root edge is drawn from the search's generator at
        the root's first selection (times ``gumbel_scale``). The node's own evaluation completes the Q of unvisited
        actions (V, :meth:`value`, for a node never evaluated: proven on expansion).
        """
        _, _, e_n, e_w, q, e_prior, _, e_dead, e_child, n_solved, cycles = self._selecting
        s = self.n_start[node]
        stop = s + self.n_count[node]
        evals = self.n_eval_n[node]
        raw = self.n_eval_sum[node] / evals if evals else self.value(node)
        root = None
        if node == 0:
            if self._gumbel_root is None:
                self._gumbel_root = (self.cfg.gumbel_scale * self.rng.gumbel(size=stop - s)).tolist()
                self._gumbel_k = selection.considered_count(self.cfg.gumbel_k, stop - s, self.cfg.simulations)
            done = sum(e_n[s:stop])
            root = (self._gumbel_root, selection.considered_visit_at(self._gumbel_k, self.cfg.simulations, done))
        return selection.select_gumbel(s, stop, e_n, e_w, q, e_prior, raw,
                                       (e_dead, e_child, n_solved, on_path if cycles else None), root)

    # ------------------------------------------------------------------ one descent
    def _descend(self) -> list | None:
        if self._tree_core is not None:
            return self._tree_core.descend(self, self._core_lists, self._core_params, self._core_hooks)
        return self._descend_py()

    def _descend_py(self) -> list | None:
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
        n_visits, n_start, n_count, n_next, n_off, e_n, e_w, e_child, e_reward = self._lists
        uct, plain = self.uct, self._plain_uct
        c, select = self.c, selection.select
        depth = 0
        while True:
            s = n_start[node]
            if s < 0 and s != UNSTEPPED:
                if node == 0:  # a root without actions: nothing to search
                    return None
                n_visits[node] += 1
                return [nodes, edges, rewards, TERMINAL, 0.0]
            if depth >= max_depth:  # a leaf, not expanded further: valued by the evaluator once
                n_visits[node] += 1
                if s == UNSTEPPED and not self.n_eval_n[node]:
                    return [nodes, edges, rewards, EVAL, 0.0]
                return [nodes, edges, rewards, VALUED, self.value(node)]
            if s == UNSTEPPED:
                n_visits[node] += 1
                return [nodes, edges, rewards, NEW, 0.0]
            k = n_next[node]
            cnt = n_count[node]
            if uct and k < cnt:  # UCT scores an unvisited edge +inf: each goes once, in turn
                n_next[node] = k + 1
                k += n_off[node]
                e = s + (k if k < cnt else k - cnt)
            elif plain:  # UCT in a tree without the solver: nothing to skip (the hot path)
                e = select("uct", s, s + cnt, c, n_visits[node], e_n, e_w, None, (), 0.0)
            else:
                e = self._select(node, on_path)
            child = e_child[e] if e >= 0 else UNSTEPPED
            if child >= 0:
                reward = e_reward[e]
            elif e < 0 or (child == UNSTEPPED and self.rows >= self.cfg.max_nodes):
                if e >= 0:
                    self.full = True
                if node == 0:
                    return None
                n_visits[node] += 1
                return [nodes, edges, rewards, VALUED, self.value(node)]
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
                    return [nodes, edges, rewards, VALUED, self.n_value[child]]
                on_path.add(child)
            node = child

    # ------------------------------------------------------------------ backup
    def _backup(self, nodes: list[int], edges: list[int], rewards: list[float], leaf_value: float) -> None:
        gamma = self.gamma
        if self.graph:  # the leaf too: a node valued without expansion may sit on a cycle
            changed = [n for n in reversed(nodes) if self._refresh(n)]
            if changed:
                self._propagate(changed, _PROPAGATE)
        else:
            g = leaf_value
            e_w = self.e_w
            for i in range(len(edges) - 1, -1, -1):
                g = rewards[i] + gamma * g
                e_w[edges[i]] += g
        if self.solver:
            self._prove_up(nodes)

    def _prove_up(self, nodes: list[int]) -> None:
        """The MCTS-Solver after a backup: prove the path's nodes from the leaf up, while they prove."""
        n_solved = self.n_solved
        for i in range(len(nodes) - 1, -1, -1):
            if n_solved[nodes[i]] is None and not try_prove(self, nodes[i]):
                break

    # ------------------------------------------------------------------ the loop
    def run(self, root_state: Any) -> SearchResult:
        t0 = time.perf_counter()
        cfg = self.cfg
        selection.grow_tables(cfg.simulations + cfg.wave_size)  # no visit count exceeds this
        root_key = self.env.state_key(root_state) if self.graph else None
        self._new_node(root_state, root_key, False)
        done = waves = 0
        stop = "budget"
        if self._tree_core is not None and cfg.wave_size == 1:  # the compiled loop, one leaf a wave
            done, waves, code = self._tree_core.run(
                self, self._core_lists, self._core_params, self._core_hooks, min(cfg.simulations, _MAX_C),
                cfg.stop_on_solve,
                -1.0 if cfg.task_timeout is None else max(0.0, cfg.task_timeout - (time.perf_counter() - t0)),
                self.gamma)
            stop = STOPS[code]
        while done < cfg.simulations and stop == "budget":
            descents = []
            for _ in range(min(cfg.wave_size, cfg.simulations - done)):
                d = self._descend()
                if d is None:
                    break
                descents.append(d)
                if self.full:  # the node bound is reached: no more descents (a claimed edge stays unvisited)
                    break
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
            if cfg.task_timeout is not None and time.perf_counter() - t0 > cfg.task_timeout:
                stop = "timeout"
                break
        # cycles defeat child-by-child proofs: prove the closed part of the graph at the
        # end, for exact labels (not during the search: the visit counts keep their meaning)
        prove_closed(self)
        tree = self._export()
        return SearchResult(tree, done, self.solution, stop, time.perf_counter() - t0,
                            "max" if self.graph else "mean", waves)

    def _expand_and_evaluate(self, descents: list) -> None:
        """One propose call for the wave's new leaves, one evaluate call for those not
        settled by their expansion (dead ends, proofs) and for leaves at ``max_depth``;
        then every descent's leaf value is known."""
        if len(descents) == 1:  # one leaf a wave (the default): no duplicates to drop
            leaf, how = descents[0][0][-1], descents[0][3]
            new, leaves = [leaf] if how == NEW else [], [leaf] if how == EVAL else []
        else:
            new = list(dict.fromkeys(d[0][-1] for d in descents if d[3] == NEW))
            leaves = list(dict.fromkeys(d[0][-1] for d in descents if d[3] == EVAL))
        if not new and not leaves:
            return
        n_state = self.n_state
        if new:
            proposals = self.propose([n_state[n] for n in new], self.cfg.proposals)
            if len(proposals) != len(new):
                raise ConfigError(f"a propose hook returned {len(proposals)} lists for {len(new)} states")
            for node, props in zip(new, proposals):
                self._expand(node, props)
        n_term, n_solved = self.n_term, self.n_solved
        values: dict[int, float] = {n: n_solved[n] for n in new if n_solved[n] is not None}  # proven on expansion
        live = [n for n in new if not n_term[n] and n_solved[n] is None] + leaves
        if live:
            if self._reads_path:  # the actions of the descent that reached each leaf (the first one, if several)
                e_action, root = self.e_action, n_state[0]
                path_of = {}
                for d in descents:
                    path_of.setdefault(d[0][-1], (root, tuple(e_action[e] for e in d[1]), tuple(d[2]),
                                                  tuple(n_state[n] for n in d[0][1:])))
                got = self.evaluate([n_state[n] for n in live], [path_of[n] for n in live])
            else:
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
            for n in new + leaves:
                self._refresh(n)
        for d in descents:
            if d[3] <= EVAL:
                d[4] = values.get(d[0][-1], 0.0)


def search(
    env: Env,
    root_state: Any,
    config: SearchConfig,
    rng: np.random.Generator,
    propose: Proposer | ProposeFn | None = None,
    evaluate: Evaluator | EvaluateFn | None = None,
) -> SearchResult:
    """Run MCTS (tree mode) or MCGS (graph mode) from ``root_state``.

    Args:
        env: A reversible env (a ``treeq.envs.base.Env``).
        root_state: State to search from.
        config: Search settings; those left None take the env's defaults.
        rng: The only source of randomness (stochastic steps, the rollout evaluator).
        propose: Batched prior hook, declared (:class:`~treeq.mcts.hooks.Proposer`) or a plain
            function (untrusted); default: uniform over ``env.legal_actions``.
        evaluate: Batched value hook, declared (:class:`~treeq.mcts.hooks.Evaluator`) or a
            plain function; default: one random rollout per state.

    Returns:
        The exported tree and how the search ended. Same inputs and seed, same tree.
    """
    config = resolve_defaults(config, env)
    propose = propose or uniform_propose(env)
    evaluate = evaluate or random_rollout(env, rng, config.gamma, config.rollout_steps)
    return _Engine(env, config, rng, propose, evaluate).run(root_state)
