"""treeq against OpenSpiel's Python ``MCTSBot`` on ``catch``, side by side in one process.

Both search the same root, catch rooted after its opening chance node (the ball's
column, from ``--task-seed``), with the same number of simulations, the same UCT
constant and one uniformly random rollout per leaf, without a solver:

(a) ``MCTSBot(game, c, S, RandomRolloutEvaluator(1, RandomState), solve=False)``,
    ``bot.mcts_search(state)`` once per search;
(b) ``treeq.mcts.search`` in tree mode (``transpositions=False``, ``gamma=1``) with its
    default random-rollout evaluator (``OpenSpielEnv.playout``: one clone, then random
    actions in place);
(c) the env-only limit: per simulation, clone the root and play one uniformly random
    playout with pre-drawn uniforms; no tree, no selection, no bookkeeping;
(d) treeq's tree-only cost: the search of (b) with ``zero_evaluate`` (no rollouts).

Both engines score an unvisited child +inf; MCTSBot shuffles a node's children when
it expands it, and treeq tries them from a random one on (``random_untried``, on by
default). The order matters: tried always in proposal order (LEFT, STAY, RIGHT), the
mean-backup root Q moved by 0.02 to 0.05 toward the first-listed action (measured on
catch, 100 simulations, 3,000 searches).

Timing: ``--repeats`` rounds; each round runs every method on its share of the
searches, in a rotating order so that machine noise hits all of them; the figure of a
method is the median over rounds of simulations per second (``time.perf_counter``).
The root Q of each action is the mean over all searches with its standard error; the
two searchers estimate the same quantity (mean backup of the same rollouts), so they
should agree within a few standard errors.

Usage: ``python benchmarks/openspiel_vs.py [--simulations 1000] [--searches 30] [--c 2]``.
The last line is ``treeq/openspiel sims per second: X`` (treeq / MCTSBot).
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from treeq.envs.base import Task
from treeq.envs.openspiel_env import OpenSpielEnv
from treeq.mcts import SearchConfig, search, zero_evaluate


def _mcts_bot(game, c: float, sims: int, seed: int):
    from open_spiel.python.algorithms.mcts import MCTSBot, RandomRolloutEvaluator

    evaluator = RandomRolloutEvaluator(1, np.random.RandomState(seed))
    return MCTSBot(game, c, sims, evaluator, solve=False, random_state=np.random.RandomState(seed + 1))


def _env_only(root, n: int, uniforms: list[float]) -> float:
    """``n`` simulations of the env alone: clone the root, one random playout."""
    draw = iter(uniforms).__next__
    total = 0.0
    for _ in range(n):
        s = root.clone()
        la = s.legal_actions()
        while la:
            s.apply_action(la[int(draw() * len(la))])
            la = s.legal_actions()
        total += s.returns()[0]
    return total


def _mean_se(xs: list[float]) -> tuple[float, float]:
    xs = [x for x in xs if not math.isnan(x)]
    if not xs:
        return math.nan, math.nan
    m = statistics.fmean(xs)
    se = statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else math.nan
    return m, se


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--simulations", type=int, default=1000, help="simulations per search (both searchers)")
    ap.add_argument("--searches", type=int, default=30, help="searches per searcher, over all rounds")
    ap.add_argument("--repeats", type=int, default=5, help="timing rounds (median taken)")
    ap.add_argument("--c", type=float, default=2.0, help="UCT constant (both searchers)")
    ap.add_argument("--seed", type=int, default=0, help="seed of every generator")
    ap.add_argument("--task-seed", type=int, default=0, help="seed of catch's opening chance node (the root)")
    args = ap.parse_args(argv)
    if args.simulations < 1 or args.searches < 1 or args.repeats < 1:
        ap.error("--simulations, --searches and --repeats must be positive")

    env = OpenSpielEnv("catch")
    root_state = env.reset(Task(f"seed-{args.task_seed}", {"seed": args.task_seed}))
    root = root_state.s  # the same pyspiel state for MCTSBot and the env-only loop
    game = env._game
    S, C = args.simulations, args.c
    per_round = [args.searches // args.repeats + (1 if r < args.searches % args.repeats else 0)
                 for r in range(args.repeats)]
    cfg = SearchConfig(simulations=S, c=C, solver=False, transpositions=False, gamma=1.0)
    rng = np.random.default_rng(args.seed)
    bot = _mcts_bot(game, C, S, args.seed)
    texts = {a: root.action_to_string(0, a) for a in root.legal_actions()}
    q_bot: dict[str, list[float]] = {t: [] for t in texts.values()}
    q_treeq: dict[str, list[float]] = {t: [] for t in texts.values()}
    n_bot: dict[str, list[int]] = {t: [] for t in texts.values()}
    n_treeq: dict[str, list[int]] = {t: [] for t in texts.values()}
    rates: dict[str, list[float]] = {k: [] for k in ("mctsbot", "treeq", "env-only", "tree-only")}
    env_total = 0.0

    def run_bot(k: int) -> None:
        for _ in range(k):
            node = bot.mcts_search(root)
            for ch in node.children:
                t = texts[ch.action]
                q_bot[t].append(ch.total_reward / ch.explore_count if ch.explore_count else math.nan)
                n_bot[t].append(ch.explore_count)

    def run_treeq(k: int) -> None:
        for _ in range(k):
            tree = search(env, root_state, cfg, rng).tree
            q = tree.q()
            for ch in tree.children(0):
                t = tree.action_text(ch)
                q_treeq[t].append(float(q[ch]))
                n_treeq[t].append(int(tree.visits[ch]))

    def run_tree_only(k: int) -> None:
        for _ in range(k):
            search(env, root_state, cfg, rng, evaluate=zero_evaluate)

    methods = {"mctsbot": run_bot, "treeq": run_treeq, "tree-only": run_tree_only}
    order = ["mctsbot", "treeq", "env-only", "tree-only"]
    for r, k in enumerate(per_round):
        if k == 0:
            continue
        uniforms = rng.random(k * S * (game.max_game_length() + 1)).tolist()  # drawn before the clock starts
        for name in order[r % len(order):] + order[:r % len(order)]:
            t0 = time.perf_counter()
            if name == "env-only":
                env_total += _env_only(root, k * S, uniforms)
            else:
                methods[name](k)
            rates[name].append(k * S / (time.perf_counter() - t0))

    med = {k: statistics.median(v) for k, v in rates.items()}
    try:
        osv = version("open_spiel")
    except PackageNotFoundError:
        osv = "unknown"
    print(f"catch, root after the opening chance node (task seed {args.task_seed}):")
    print("  " + env.render(root_state).replace("\n", "\n  "))
    print(f"{S} simulations per search, c = {C}, {args.searches} searches per searcher, median of "
          f"{len(rates['treeq'])} interleaved rounds; python {platform.python_version()}, open_spiel {osv}, "
          f"{platform.processor() or platform.machine()}")
    print()
    print(f"{'method':<44}{'sims/s':>12}{'us/sim':>10}")
    labels = {
        "mctsbot": "(a) OpenSpiel MCTSBot (random rollout)",
        "treeq": "(b) treeq search (random rollout)",
        "env-only": "(c) env-only limit (clone + random playout)",
        "tree-only": "(d) treeq tree only (zero evaluator)",
    }
    for k in ("mctsbot", "treeq", "env-only", "tree-only"):
        print(f"{labels[k]:<44}{med[k]:>12,.0f}{1e6 / med[k]:>10.2f}")
    print()
    print(f"treeq as % of the env-only limit: {100 * med['treeq'] / med['env-only']:.1f}%")
    print(f"MCTSBot as % of the env-only limit: {100 * med['mctsbot'] / med['env-only']:.1f}%")
    print(f"per simulation: treeq {1e6 / med['treeq']:.2f} us = env-only {1e6 / med['env-only']:.2f} us "
          f"+ the rest {1e6 / med['treeq'] - 1e6 / med['env-only']:.2f} us "
          f"(tree alone, zero evaluator: {1e6 / med['tree-only']:.2f} us)")
    print(f"(env-only mean return {env_total / (sum(per_round) * S):+.3f}, a sanity figure)")
    print()
    print("root Q per action: mean over searches +- standard error (z: difference to MCTSBot in standard errors)")
    print(f"{'action':<8}{'MCTSBot':>16}{'treeq':>17}{'z':>7}{'N bot':>7}{'N treeq':>9}")
    for t in texts.values():
        (mb, sb), (mt, st) = _mean_se(q_bot[t]), _mean_se(q_treeq[t])
        zt = (mt - mb) / math.hypot(st, sb)
        nb = statistics.fmean(n_bot[t]) if n_bot[t] else 0.0
        nt = statistics.fmean(n_treeq[t]) if n_treeq[t] else 0.0
        print(f"{t:<8}{mb:>9.3f} +- {sb:.3f}{mt:>10.3f} +- {st:.3f}{zt:>7.1f}{nb:>7.0f}{nt:>9.0f}")
    ratio = round(med["treeq"] / med["mctsbot"], 2)
    print(f"treeq/openspiel sims per second: {ratio}")
    return ratio


if __name__ == "__main__":
    main(sys.argv[1:])
