"""Exact values for Blocksworld: an admissible plan-length bound and a BFS oracle.

Every operator has an inverse (pick-up/put-down, unstack/stack), so the state graph is
undirected and exact distances to the goal come from one breadth-first search started at
all goal states at once (:func:`optimal_plan_length`). :func:`plan_length_lower_bound`
gives the env its ``value_bound``; :func:`optimal_value` and :func:`exact_q` are the
test oracle the search's labels are checked against.
"""

from __future__ import annotations

from functools import lru_cache

from .rules import HAND, TABLE, BlocksworldState, World, apply_action, compile_goal, is_goal, satisfied, successors

__all__ = ["MAX_EXACT_BLOCKS", "plan_length_lower_bound", "optimal_plan_length", "optimal_value", "exact_q"]

# Exact search enumerates every configuration: 866 states for 5 blocks, 75,000 for 7,
# 770,000 for 8. Beyond 7 the pure-Python search takes too long to be a test oracle.
MAX_EXACT_BLOCKS = 7


@lru_cache(maxsize=1 << 16)
def _lower_bound(blocks: tuple[str, ...], world: World, goal: tuple[str, ...]) -> int:
    g = compile_goal(blocks, goal)
    if satisfied(g, world):
        return 0
    # Every action moves exactly one block, so per-block counts of actions that every
    # plan must contain add up to a lower bound on the plan length. "pick" below means
    # pick-up or unstack, "place" put-down or stack; a pick is always followed by a
    # place of the same block, and every pick needs an empty hand.
    n = len(world)
    below = [[] for _ in range(n)]  # blocks under x, nearest first
    for x in range(n):
        s = world[x]
        while s >= 0:
            below[x].append(s)
            s = world[s]
    above = [{x for x in range(n) if t in below[x]} for t in range(n)]
    misplaced = {x for x, s in g.position if world[x] != s}  # must be placed at least once
    # ``picked``: blocks (not held now) that every plan picks up and later places.
    picked = {x for x in misplaced if world[x] != HAND}
    for u, z in g.position:
        if z >= 0 and world[u] != z:
            # z must be clear when u is stacked on it: whatever sits on z now is taken off
            # and placed somewhere before the hand can hold u.
            picked.update(above[z])
    for x in list(picked):  # a block resting on one that must be picked is taken off first
        picked.update(above[x])
    target = {x: z for x, z in g.position if z >= 0}
    held = world.index(HAND) if HAND in world else None

    def before_final(x: int, depth: int = 0) -> frozenset[int]:
        """Blocks that are picked at least once before x's last placement onto its target."""
        z = target.get(x)
        if z is None or depth > n:  # depth: goal cycles (unsolvable) must not recurse forever
            return frozenset()
        out = set(above[z]) - {x}  # z must be clear by then
        z_first = before_final(z, depth + 1)
        # A held z is picked again if another block must be picked before it can land.
        if z in picked or (z == held and z_first - {z}):
            # x lands on z after z's last pick, and that pick comes right before z's last
            # placement, so after every other pick that must precede z's last placement.
            out |= {z} | z_first
        return frozenset(out)

    h = 0
    for x in picked:
        # x is picked, placed, and must be placed twice (so picked twice) when some other
        # block's pick falls between x's first pick and x's last placement: a block under
        # x (x comes off first) that must be picked before x can land, or x itself in the
        # chain (then x's target z is picked after x's first pick and before x lands).
        bf = before_final(x)
        twice = x in target and (x in bf or any(w in bf for w in below[x]))
        h += 4 if twice else 2
    if held is not None:
        if held in misplaced:
            # placed at least once; twice (place, pick, place) if another block must be
            # picked before it can land, since that pick needs the hand empty
            h += 3 if before_final(held) - {held} else 1
        elif picked:
            h += 1  # put somewhere before the first other pick
    return max(h, 1)


def plan_length_lower_bound(state: BlocksworldState) -> int:
    """A lower bound on the number of actions left to the goal (0 at the goal).

    Admissible: every action moves one block, so actions every plan must spend on each
    block add up. A block that the goal puts elsewhere, sits on a block that a goal ``on``
    atom needs clear, or sits above either, is picked and placed (2); it is picked and
    placed twice (4) when another block must be picked between its first pick and its
    final placement. A held block costs 1 or 3 on the same reasoning. Never more than
    :func:`optimal_plan_length` (checked on every state of the shipped instances).
    """
    return _lower_bound(state.blocks, state.world, state.goal)


@lru_cache(maxsize=256)
def _distances(blocks: tuple[str, ...], goal: tuple[str, ...]) -> dict[World, int]:
    """Exact distance to the goal for every configuration of ``blocks``."""
    if len(blocks) > MAX_EXACT_BLOCKS:
        raise ValueError(f"exact search supports at most {MAX_EXACT_BLOCKS} blocks, got {len(blocks)}")
    g = compile_goal(blocks, goal)
    # All configurations of a block set are connected (everything can be put on the
    # table and rebuilt), so enumerating from all-on-the-table finds every one.
    start: World = (TABLE,) * len(blocks)
    seen = {start}
    order = [start]
    for w in order:
        for nxt in successors(blocks, w).values():
            if nxt not in seen:
                seen.add(nxt)
                order.append(nxt)
    # Operators are invertible, so the graph is undirected: a forward search from all
    # goal states gives every state's distance *to* the goal.
    dist = {w: 0 for w in order if satisfied(g, w)}
    frontier = list(dist)
    d = 0
    while frontier:
        d += 1
        nxt_frontier = []
        for w in frontier:
            for nxt in successors(blocks, w).values():
                if nxt not in dist:
                    dist[nxt] = d
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    return dist


def optimal_plan_length(state: BlocksworldState) -> int | None:
    """Length of a shortest plan from ``state`` to its goal (0 at the goal).

    Breadth-first search over the 4-operator domain, cached per (blocks, goal): one search
    answers every configuration of that block set.

    Returns:
        The number of actions, or None if the goal is unreachable (contradictory goal).

    Raises:
        ValueError: more than ``MAX_EXACT_BLOCKS`` blocks.
    """
    return _distances(state.blocks, state.goal).get(state.world)


def optimal_value(state: BlocksworldState, gamma: float = 1.0) -> float:
    """Exact V*(s): the reward 1 arrives on the d-th action, so V* = gamma**(d-1).

    0.0 at the goal (the episode has ended) and where the goal cannot be reached.
    """
    d = optimal_plan_length(state)
    if not d:
        return 0.0
    return float(gamma ** (d - 1))


def exact_q(state: BlocksworldState, action: str, gamma: float = 1.0) -> float:
    """Exact Q*(s, a) = r(s, a) + gamma * V*(s'), with r = 1 when s' is the goal.

    Raises:
        ActionError: ``action`` does not parse or is not legal in ``state``.
    """
    nxt = apply_action(state, action)
    return 1.0 if is_goal(nxt) else gamma * optimal_value(nxt, gamma)
