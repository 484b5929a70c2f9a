"""Selection rules, each written once: the score of an edge, and the best edge of a node.

* UCT (UCB1 on trees, Kocsis & Szepesvari 2006): ``Q + c sqrt(ln N / n)``, an unvisited
  edge scoring +inf (the engine tries those first, in turn, without scoring them);
* PUCT (AlphaZero): ``Q + c P sqrt(N) / (1 + n)``, with ``fpu`` for Q at ``n = 0``;
* Gumbel (Gumbel MuZero, Danihelka et al. 2022, as DeepMind's mctx ``gumbel_muzero_policy``):
  at the root, Gumbel-top-k and Sequential Halving down to one action (:func:`select_gumbel`
  with ``root``, :func:`considered_count`, :func:`considered_visit_at`); below it, the deterministic
  ``argmax_a pi'(a) - n(a) / (1 + N)``, ``pi' = softmax(log P + sigma(completed Q))``
  (:func:`improved_policy`).

``N`` is the node's visit count, ``n`` the edge's, ``P`` its prior. The engine
(:mod:`treeq.mcts.search`) asks :func:`select` (UCT, PUCT) or :func:`select_gumbel` for the
best of a node's live edges (dead self-loops, proven children and cycles passed over). The
compiled loop (``_core.c``: ``uct_explore``, ``uct_score``, ``puct_explore``, ``puct_score``)
computes the UCT and PUCT scores in the same floating-point order; ``tests/mcts/test_core.py``
holds the two to the same trees. Gumbel runs in Python only (the engine leaves the compiled
loop aside for it). A new rule adds its name to ``RULES`` here and its function beside these.
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["RULES", "select", "grow_tables", "completed_sigma", "improved_policy", "logits_of", "considered_visits",
           "considered_visit_at", "considered_count", "select_gumbel"]

RULES = ("uct", "puct", "gumbel")

# 1 / sqrt(n) and sqrt(ln n) by table: a list read is cheaper than a call on the hot path. The
# tables stop at _TABLED (about 4 MB): a count beyond it is computed by the same expression, so
# memory follows the tree, never the budget (--simulations 10**20 is a budget like any other)
_TABLED = 1 << 16
_ISQRT: list[float] = [0.0]
_SQRT_LOG: list[float] = [0.0]


def grow_tables(size: int) -> None:
    """Cover visit counts up to ``size`` (at most ``_TABLED``) by the tables."""
    for n in range(len(_ISQRT), min(size, _TABLED) + 1):
        _ISQRT.append(1.0 / math.sqrt(n))
        _SQRT_LOG.append(math.sqrt(math.log(n)))


def select(rule: str, start: int, stop: int, c: float, parent_n: int, e_n: list[int], e_w: list[float],
           q: Callable[[int], float] | None, e_prior: list[float], fpu: float, skip: tuple | None = None) -> int:
    """The best of the edges ``start:stop`` of a node visited ``parent_n`` times, by ``rule``
    (``"uct"`` or ``"puct"``; Gumbel is :func:`select_gumbel`) with exploration constant ``c``:
    the first of the highest score; -1 when none is live.

    Q of an edge is ``e_w[e] / e_n[e]`` (tree mode, ``q`` None) or ``q(e)`` (graph mode).
    ``skip``: ``(e_dead, e_child, n_solved, on_path)``, the edges passed over (dead
    self-loops, edges into proven nodes where ``n_solved`` is given, edges closing a cycle
    where ``on_path`` is given); None: every edge is live. UCT expects every edge visited
    (the engine tries unvisited ones first).
    """
    isqrt, uct = _ISQRT, rule == "uct"
    if uct:  # the node's exploration factor: c sqrt(ln N) (UCT) or c sqrt(N) (PUCT)
        explore = c * (_SQRT_LOG[parent_n] if parent_n < _TABLED else math.sqrt(math.log(parent_n)))
    else:
        explore = c * math.sqrt(parent_n)
    e_dead, e_child, n_solved, on_path = skip or (None, None, None, None)
    best, best_e = -math.inf, -1
    for e in range(start, stop):
        if e_dead is not None:
            if e_dead[e]:
                continue
            child = e_child[e]
            if child >= 0 and ((n_solved is not None and n_solved[child] is not None)
                               or (on_path is not None and child in on_path)):
                continue
        n = e_n[e]
        if uct:
            score = (e_w[e] / n if q is None else q(e)) + explore * (isqrt[n] if n < _TABLED else 1.0 / math.sqrt(n))
        elif n:
            score = (e_w[e] / n if q is None else q(e)) + explore * e_prior[e] / (1 + n)
        else:
            score = fpu + explore * e_prior[e]
        if score > best:
            best, best_e = score, e
    return best_e


# ---------------------------------------------------------------------------- Gumbel (Danihelka et al. 2022)
GUMBEL_C_VISIT = 50.0  # sigma(q) = (c_visit + max_b N(b)) * c_scale * q, mctx's defaults
GUMBEL_C_SCALE = 0.1


def completed_sigma(priors: list[float], q: list[float], visits: list[int], raw_value: float) -> list[float]:
    """sigma(completed Q) of a node's actions: the transformed values Gumbel search adds to the logits.

    An unvisited action's Q is completed with the mixed value ``(v + sum_b N(b) * sum_{a visited}
    P(a) Q(a) / sum_{a visited} P(a)) / (1 + sum_b N(b))`` (``v`` the node's own evaluation); the
    completed values are rescaled to [0, 1] by their min and max over the node, then multiplied
    by ``(c_visit + max_b N(b)) * c_scale``. ``q[i]`` is read only where ``visits[i] > 0``.
    """
    total = sum(visits)
    seen = [i for i, n in enumerate(visits) if n > 0]
    mass = sum(max(priors[i], 1e-300) for i in seen)
    weighted = sum(max(priors[i], 1e-300) * q[i] for i in seen) / mass if seen else 0.0
    mixed = (raw_value + total * weighted) / (total + 1)
    done = [q[i] if visits[i] > 0 else mixed for i in range(len(priors))]
    lo, hi = min(done, default=0.0), max(done, default=0.0)
    scale = (GUMBEL_C_VISIT + max(visits, default=0)) * GUMBEL_C_SCALE / max(hi - lo, 1e-8)
    return [(x - lo) * scale for x in done]


def logits_of(priors: list[float]) -> list[float]:
    """log P, a zero prior at a large negative logit (mctx's floor)."""
    return [math.log(p) if p > 0 else -1e9 for p in priors]


def improved_policy(priors: list[float], q: list[float], visits: list[int], raw_value: float) -> list[float]:
    """Gumbel search's improved policy at a node: ``softmax(logits + sigma(completed Q))``.

    What the interior selection follows and what a distilled policy learns from trees
    searched with ``--selection gumbel``.
    """
    x = [a + b for a, b in zip(logits_of(priors), completed_sigma(priors, q, visits, raw_value))]
    if not x:
        return []
    top = max(x)
    e = [math.exp(v - top) for v in x]
    s = sum(e)
    return [v / s for v in e]


def considered_count(gumbel_k: int, actions: int, simulations: int) -> int:
    """Root actions Sequential Halving considers: ``min(gumbel_k, actions, K)``, ``K`` the
    largest power of two at most ``sqrt(2 * simulations)`` (2 to 7 simulations: 2; 8 to 31: 4;
    32 to 127: 8; 128 to 511: 16).

    mctx takes ``min(gumbel_k, actions)`` at any budget; at a budget of a few simulations
    that spends each on a different root action, one step deep, and a task that needs a
    few steps is never finished (Game of 24 with a trained prior: 0 of 200 held-out puzzles
    at 4 simulations with ``k = 16``, PUCT 123). Breadth grows as the square root of the
    budget, as progressive widening's does (Coulom 2007; Couetoux et al. 2011, exponent
    1/2), so breadth and the depth each considered action gets grow together; a power of
    two halves evenly. Measured on three splits of round-2 policies (docs/search.md), with
    mctx's schedule: at 4 simulations two actions beat one on two of the three (337 against
    329 puzzles pooled), at 8 four beat two on two (410 against 399), at 16 four beat eight
    on two (440 against 434), at 32 eight beat sixteen on both measured (360 against 351).
    """
    width = math.isqrt(2 * max(simulations, 0))
    cap = 1 << (width.bit_length() - 1) if width else 1
    return max(1, min(gumbel_k, actions, cap))


def _phases(k: int) -> int:
    """Sequential Halving's phases from ``k`` actions down to one: ``ceil(log2 k) + 1``."""
    return math.ceil(math.log2(k)) + 1


def considered_visits(k: int, simulations: int) -> tuple[int, ...]:
    """Sequential Halving's schedule at the root: for each simulation, the visit count an action
    must have to be considered.

    Karnin, Koren and Somekh's halving (2013), down to one action: ``k`` actions first get
    ``max(1, int(simulations / (P * k)))`` visits each (``P = ceil(log2 k) + 1`` phases), then
    the better ``ceil(k / 2)`` as many again with ``k`` so halved, until one action is left,
    which gets every visit after. (mctx's ``get_sequence_of_considered_visits`` stops halving
    at two actions and shares the rest of the budget between them; at 16 simulations with a
    trained prior on Game of 24, one survivor solved 178 of 200 held-out puzzles where two
    solved 171, docs/search.md.) ``k <= 1``: ``0, 1, 2, ...`` (one action, every visit).
    """
    if k <= 1:
        return tuple(range(simulations))
    phases = _phases(k)
    sequence: list[int] = []
    visits = 0  # the count every action still considered has at the start of a round
    num_considered = k
    while len(sequence) < simulations:
        if num_considered == 1:
            sequence.append(visits)
            visits += 1
            continue
        for _ in range(max(1, int(simulations / (phases * num_considered)))):
            sequence.extend([visits] * num_considered)
            visits += 1
        num_considered = (num_considered + 1) // 2
    return tuple(sequence[:simulations])


def considered_visit_at(k: int, simulations: int, i: int) -> int:
    """``considered_visits(k, simulations)[i]`` without building the sequence (what the engine
    calls: memory and time follow the number of phases, not the budget). In each halving phase
    the considered actions all have the same count, so the phase's entries are that count
    repeated once per action, then one more, and so on; the last action's count up by one."""
    if k <= 1:
        return i
    phases = _phases(k)
    num_considered, start, visit = k, 0, 0
    while num_considered > 1:
        extra = max(1, int(simulations / (phases * num_considered)))
        span = extra * num_considered
        if i < start + span:
            return visit + (i - start) // num_considered
        start += span
        visit += extra
        num_considered = (num_considered + 1) // 2
    return visit + (i - start)


_LOW_LOGIT = -1e9  # mctx's floor of a root score


def select_gumbel(start: int, stop: int, e_n: list[int], e_w: list[float], q: Callable[[int], float] | None,
                  e_prior: list[float], raw_value: float, skip: tuple | None = None,
                  root: tuple[list[float], int] | None = None) -> int:
    """Gumbel search's best of the edges ``start:stop`` of a node: the first of the highest
    score among the live ones; -1 when none is live.

    Q, ``skip`` as in :func:`select`; ``raw_value`` the node's own evaluation (what completes an
    unvisited action's Q, :func:`completed_sigma`). Below the root (``root`` None), mctx's
    ``gumbel_muzero_interior_action_selection``: ``pi'(a) - n(a) / (1 + sum_b n(b))``,
    ``pi'`` the :func:`improved_policy`. At the root, ``root = (gumbel, considered)``: one
    Gumbel(0, 1) draw per edge and the visit count Sequential Halving considers now
    (:func:`considered_visit_at`); the score is mctx's ``score_considered``,
    ``max(-1e9, g(a) + logit(a) - max_b logit(b) + sigma(a))``, over the live edges with
    ``n(a) == considered`` (where none is, over every live edge). Unvisited actions share one
    completed value, so the first ``k`` root visits go to the top ``k`` of ``g + logits``
    (Gumbel-top-k: ``k`` actions sampled without replacement from the prior).
    """
    edges = range(start, stop)
    visits = e_n[start:stop]
    priors = e_prior[start:stop]
    qs = [(e_w[e] / n if q is None else q(e)) if n else 0.0 for e, n in zip(edges, visits)]
    e_dead, e_child, n_solved, on_path = skip or (None, None, None, None)
    live = []
    for i, e in enumerate(edges):
        if e_dead is not None:
            if e_dead[e]:
                continue
            child = e_child[e]
            if child >= 0 and ((n_solved is not None and n_solved[child] is not None)
                               or (on_path is not None and child in on_path)):
                continue
        live.append(i)
    if not live:
        return -1
    if root is None:
        policy = improved_policy(priors, qs, visits, raw_value)
        total = 1 + sum(visits)
        score = [p - n / total for p, n in zip(policy, visits)]
        pool = live
    else:
        gumbel, considered = root
        logits = logits_of(priors)
        top = max(logits)
        sigma = completed_sigma(priors, qs, visits, raw_value)
        score = [max(_LOW_LOGIT, g + (lg - top) + sg) for g, lg, sg in zip(gumbel, logits, sigma)]
        pool = [i for i in live if visits[i] == considered] or live
    best_i = pool[0]
    best = score[best_i]
    for i in pool:
        if score[i] > best:
            best, best_i = score[i], i
    return start + best_i
