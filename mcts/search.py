"""Batched MCTS over a reversible env, with an MCTS-Solver for deterministic envs.

One simulation: select a path from the root with UCT or PUCT, expand the leaf (every
proposed action becomes a child, stepped at once so each child has its state, reward
and ``state_key``), evaluate the leaf with the ``evaluate`` hook and back up the
discounted return. Simulations run in waves of ``batch_size`` leaves so that the
``propose`` and ``evaluate`` hooks see a batch; within a wave, visits are counted on
the way down (a virtual loss), so later paths of the wave spread out. With
``batch_size = 1`` this is plain sequential MCTS.

Q semantics (DESIGN.md): ``value_sum[n] / visits[n]`` is the mean over simulations
through the edge (parent, action) of ``r(s, a) + gamma * return after``; at the root
it is the mean return from the root state.

MCTS-Solver (Winands et al. 2008, single-agent form): terminal children are proven at
creation; a node is proven when all its children are, with V* = max over children of
``r + gamma * V*``, or as soon as one child reaches the env's ``value_bound``. Proven
children are never selected again, so no simulation is spent inside a proven subtree;
the root keeps searching its unproven alternatives after a first solution (the trees
are training data) unless ``stop_on_solve`` is set.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..envs.base import Env
from ..errors import ConfigError
from .hooks import EvaluateFn, ProposeFn, random_rollout, uniform_propose
from .selection import puct_scores, uct_scores
from .tree import ROOT, Tree

__all__ = ["SearchConfig", "SearchResult", "search", "resolve_defaults"]

_EPS = 1e-12


@dataclass(frozen=True)
class SearchConfig:
    """Settings of one tree search."""

    simulations: int = field(default=1000, metadata={"help": "Simulations per task (the search budget)."})
    gamma: float | None = field(default=None, metadata={"help": "Discount factor in [0, 1]; None: the env's default_gamma (else 1)."})
    c: float | None = field(default=None, metadata={"help": "Exploration constant of UCT / PUCT; None: the env's default_c (else 1)."})
    selection: str = field(default="uct", metadata={"help": "'uct' (UCB1 on trees) or 'puct' (AlphaZero, uses priors)."})
    fpu: float = field(default=0.0, metadata={"help": "PUCT only: Q assumed for children not yet visited."})
    solver: bool = field(
        default=True, metadata={"help": "MCTS-Solver: prove exact values (deterministic envs only)."}
    )
    stop_on_solve: bool = field(
        default=False, metadata={"help": "Stop a task's search at its first solution instead of spending the budget."}
    )
    max_nodes: int = field(default=1_000_000, metadata={"help": "Stop growing (and searching) at this many nodes."})
    batch_size: int = field(
        default=1, metadata={"help": "Leaves per wave handed to the propose/evaluate hooks (tree search; graph search runs one at a time)."}
    )
    proposals: int = field(default=8, metadata={"help": "Actions asked of a policy per open-text state."})
    rollout_steps: int = field(default=200, metadata={"help": "Longest random rollout of the default evaluator."})
    transpositions: bool | None = field(
        default=None,
        metadata={"help": "Search the state graph: equal state_keys share one node (MCGS); None: the env's preference."},
    )
    max_depth: int = field(default=1000, metadata={"help": "Longest selection path (graph search only)."})

    def __post_init__(self) -> None:
        if not isinstance(self.simulations, int) or self.simulations < 1:
            raise ConfigError(f"simulations must be a positive integer, got {self.simulations!r}")
        if self.gamma is not None and not 0.0 <= self.gamma <= 1.0:
            raise ConfigError(f"gamma must lie in [0, 1], got {self.gamma!r}")
        if self.c is not None and not (self.c >= 0.0 and math.isfinite(self.c)):
            raise ConfigError(f"c must be a finite number >= 0, got {self.c!r}")
        if self.selection not in ("uct", "puct"):
            raise ConfigError(f"selection must be 'uct' or 'puct', got {self.selection!r}")
        if self.max_nodes < 1:
            raise ConfigError(f"max_nodes must be >= 1, got {self.max_nodes!r}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size!r}")
        if self.proposals < 1:
            raise ConfigError(f"proposals must be >= 1, got {self.proposals!r}")
        if self.max_depth < 1:
            raise ConfigError(f"max_depth must be >= 1, got {self.max_depth!r}")
        if self.rollout_steps < 0:
            raise ConfigError(f"rollout_steps must be >= 0, got {self.rollout_steps!r}")


@dataclass
class SearchResult:
    """A finished search.

    Attributes:
        tree: The tree (read-only from here on).
        simulations: Simulations run (the root's visit count).
        solved: Whether a successful terminal state was reached.
        stop_reason: ``budget``, ``exhausted`` (every root action proven), ``solved``
            (``stop_on_solve``) or ``max_nodes``.
        seconds: Wall-clock time of the search.
    """

    tree: Tree
    simulations: int
    solved: bool
    stop_reason: str
    seconds: float


class _Search:
    def __init__(self, env: Env, config: SearchConfig, propose: ProposeFn, evaluate: EvaluateFn) -> None:
        self.env, self.cfg = env, config
        self.propose, self.evaluate = propose, evaluate
        self.solver = config.solver and bool(getattr(env, "deterministic", False))
        self._bound_fn = getattr(env, "value_bound", None) if self.solver else None
        self.tree = Tree(config.gamma)
        self.solution_node = -1
        self.full = False

    # ------------------------------------------------------------------ main loop
    def run(self, root_state: Any) -> SearchResult:
        t0 = time.perf_counter()
        tree = self.tree
        root = tree.add_node(root_state, self.env.state_key(root_state))
        self._set_bound(root)
        done, stop = 0, "budget"
        while done < self.cfg.simulations:
            paths = []
            for _ in range(min(self.cfg.batch_size, self.cfg.simulations - done)):
                path = self._select()
                if path is None:
                    break
                tree.visits[path] += 1  # counted on the way down: virtual loss within a wave
                paths.append(path)
            if not paths:
                stop = "exhausted"
                break
            values = self._expand_and_evaluate([p[-1] for p in paths])
            for path in paths:
                self._backup(path, values[path[-1]])
            done += len(paths)
            if self.cfg.stop_on_solve and self.solution_node >= 0:
                stop = "solved"
                break
            if self.full:
                stop = "max_nodes"
                break
        return SearchResult(tree, int(tree.visits[ROOT]), self.solution_node >= 0, stop, time.perf_counter() - t0)

    # ------------------------------------------------------------------ selection
    def _select(self) -> list[int] | None:
        """Path from the root to a leaf; None when every root action is proven."""
        tree, cfg = self.tree, self.cfg
        node, path = ROOT, [ROOT]
        while tree.expanded[node] and not tree.terminal[node]:
            s = int(tree.child_start[node])
            e = s + int(tree.child_count[node])
            if cfg.selection == "uct":
                scores = uct_scores(tree.value_sum[s:e], tree.visits[s:e], tree.visits[node], cfg.c)
            else:
                scores = puct_scores(
                    tree.value_sum[s:e], tree.visits[s:e], tree.prior[s:e], tree.visits[node], cfg.c, cfg.fpu
                )
            if self.solver:
                scores[~np.isnan(tree.solved_v[s:e])] = -np.inf
            i = int(np.argmax(scores))
            if scores[i] == -np.inf:
                return None
            node = s + i
            path.append(node)
        return path

    # ------------------------------------------------------------------ expansion
    def _expand_and_evaluate(self, leaves: list[int]) -> dict[int, float]:
        tree = self.tree
        unique = list(dict.fromkeys(leaves))
        to_expand = [n for n in unique if not tree.expanded[n] and not tree.terminal[n]]
        if to_expand:
            proposals = self.propose([tree.states[n] for n in to_expand], self.cfg.proposals)
            for node, props in zip(to_expand, proposals):
                self._expand(node, props)
        values: dict[int, float] = {}
        to_eval = []
        for n in unique:
            if tree.terminal[n]:
                values[n] = 0.0
            elif not math.isnan(tree.solved_v[n]):
                values[n] = float(tree.solved_v[n])
            else:
                to_eval.append(n)
        if to_eval:
            for n, v in zip(to_eval, self.evaluate([tree.states[n] for n in to_eval])):
                values[n] = float(v)
        return values

    def _expand(self, node: int, proposals: list[tuple[str, float]]) -> None:
        tree, env = self.tree, self.env
        if tree.size + len(proposals) > self.cfg.max_nodes:
            self.full = True
            return
        state = tree.states[node]
        start = tree.size
        for action, prior in proposals:
            step = env.step(state, action)
            end = bool(step.terminated or step.truncated)
            child = tree.add_node(
                step.state, env.state_key(step.state), node, action, float(prior), float(step.reward), end
            )
            if step.terminated and self.solution_node < 0 and step.info.get("success", step.reward >= 1.0):
                self.solution_node = child
            if self.solver:
                if end:
                    tree.solved_v[child] = 0.0
                else:
                    self._set_bound(child)
        tree.child_start[node] = start
        tree.child_count[node] = len(proposals)
        tree.expanded[node] = True
        if not proposals:  # a dead end: nothing more can happen from here
            tree.terminal[node] = True
            if self.solver:
                tree.solved_v[node] = 0.0
        elif self.solver:
            self._try_prove(node)

    def _set_bound(self, node: int) -> None:
        if self._bound_fn is not None:
            b = self._bound_fn(self.tree.states[node], self.cfg.gamma)
            if b is not None:
                self.tree.bound[node] = b

    # ------------------------------------------------------------------ backup
    def _backup(self, path: list[int], leaf_value: float) -> None:
        tree, gamma = self.tree, self.cfg.gamma
        g = leaf_value
        for node in reversed(path[1:]):
            g = tree.reward[node] + gamma * g
            tree.value_sum[node] += g
        tree.value_sum[ROOT] += g
        if self.solver:
            for node in reversed(path):
                if math.isnan(tree.solved_v[node]) and not self._try_prove(node):
                    break

    def _try_prove(self, node: int) -> bool:
        """Prove ``node`` from its children if their proven values settle it."""
        tree = self.tree
        if tree.terminal[node]:
            tree.solved_v[node] = 0.0
            return True
        if not tree.expanded[node]:
            return False
        s = int(tree.child_start[node])
        e = s + int(tree.child_count[node])
        child_q = tree.reward[s:e] + self.cfg.gamma * tree.solved_v[s:e]
        proven = ~np.isnan(child_q)
        if not proven.any():
            return False
        best = float(np.max(child_q[proven]))
        if proven.all() or best >= tree.bound[node] - _EPS:  # NaN bound compares False
            tree.solved_v[node] = best
            return True
        return False


def resolve_defaults(config: SearchConfig, env: Env) -> SearchConfig:
    """Fill the settings left to the env: ``gamma`` (``env.default_gamma``, else 1),
    ``c`` (``env.default_c``, else 1) and ``transpositions`` (``env.prefer_transpositions``,
    else off)."""
    gamma = config.gamma if config.gamma is not None else float(getattr(env, "default_gamma", 1.0))
    c = config.c if config.c is not None else float(getattr(env, "default_c", 1.0))
    trans = config.transpositions if config.transpositions is not None else bool(getattr(env, "prefer_transpositions", False))
    return replace(config, gamma=gamma, c=c, transpositions=trans)


def search(
    env: Env,
    root_state: Any,
    config: SearchConfig,
    rng: np.random.Generator,
    propose: ProposeFn | None = None,
    evaluate: EvaluateFn | None = None,
) -> SearchResult:
    """Run MCTS from ``root_state``.

    Args:
        env: A reversible env (see ``treeq.envs.base.Env``).
        root_state: State to search from.
        config: Search settings.
        rng: The only source of randomness (used by the default rollout evaluator).
        propose: Batched prior hook; default: uniform over ``env.legal_actions``.
        evaluate: Batched value hook; default: one random rollout per state.

    Stochastic envs and ``config.transpositions`` use the closed-loop / graph search
    of :mod:`treeq.mcts.graph`; deterministic envs use the flat tree with the solver.

    Returns:
        The tree and how the search ended. Same inputs and seed, same tree.
    """
    config = resolve_defaults(config, env)
    propose = propose or uniform_propose(env)
    evaluate = evaluate or random_rollout(env, rng, config.gamma, config.rollout_steps)
    if config.transpositions or not getattr(env, "deterministic", False):
        from .graph import graph_search

        return graph_search(env, root_state, config, rng, propose, evaluate)
    return _Search(env, config, propose, evaluate).run(root_state)
