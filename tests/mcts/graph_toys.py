"""Tiny hand-checkable envs for the graph / closed-loop search tests (``mcts/storage.py``).

States are plain strings and ``state_key`` is the string itself, so two paths that
reach the same string reach the same node in graph mode.
"""

from __future__ import annotations

import numpy as np

from treeq.envs.base import Env, Step, Task


class _TableEnv(Env):
    """A deterministic env given as a table ``(state, action) -> (next, reward, terminated)``."""

    name = "table"
    deterministic = True
    start = "S"
    table: dict[tuple[str, str], tuple[str, float, bool]] = {}

    def __init__(self) -> None:
        self.steps = 0  # env.step calls, to see that deterministic outcomes are reused

    def reset(self, task: Task | None = None, rng=None) -> str:
        return self.start

    def legal_actions(self, state: str) -> list[str]:
        return [a for (s, a) in self.table if s == state]

    def step(self, state: str, action: str, rng=None) -> Step[str]:
        self.steps += 1
        nxt, reward, done = self.table[(state, action)]
        return Step(nxt, reward, done, info={"success": done and reward >= 1.0})

    def state_key(self, state: str) -> str:
        return state

    def render(self, state: str) -> str:
        return f"room {state}"

    def value_bound(self, state: str, gamma: float) -> None:
        return None


class DiamondEnv(_TableEnv):
    """S --a--> A --g--> G --finish (r=1)--> T  and  S --b--> B --g--> G (the same G).

    Every reward is 0 except ``finish``; only T is terminal.
    """

    name = "diamond"
    table = {
        ("S", "a"): ("A", 0.0, False),
        ("S", "b"): ("B", 0.0, False),
        ("A", "g"): ("G", 0.0, False),
        ("B", "g"): ("G", 0.0, False),
        ("G", "finish"): ("T", 1.0, True),
    }


class StochasticDiamondEnv(DiamondEnv):
    """The diamond, but flagged stochastic: the search must take the closed-loop path."""

    name = "diamond-stochastic"
    deterministic = False

    def step(self, state: str, action: str, rng: np.random.Generator | None = None) -> Step[str]:
        assert isinstance(rng, np.random.Generator), "a stochastic env is stepped with the search's generator"
        return super().step(state, action)


class CoinEnv(Env):
    """One decision: ``bet`` wins 1 with probability ``p`` (else 0), ``pass`` takes 0.2. Both end the episode."""

    name = "coin"
    deterministic = False

    def __init__(self, p: float = 0.3) -> None:
        self.p = p
        self.rngs: list[object] = []  # the generator passed to every step call

    def reset(self, task: Task | None = None, rng=None) -> str:
        return "start"

    def legal_actions(self, state: str) -> list[str]:
        return ["bet", "pass"] if state == "start" else []

    def step(self, state: str, action: str, rng: np.random.Generator) -> Step[str]:
        self.rngs.append(rng)
        if action == "pass":
            return Step("passed", 0.2, True)
        if rng.random() < self.p:
            return Step("won", 1.0, True, info={"success": True})
        return Step("lost", 0.0, True, info={"success": False})

    def state_key(self, state: str) -> str:
        return state

    def render(self, state: str) -> str:
        return state


class SelfLoopEnv(_TableEnv):
    """``wait`` leaves every room as it is (reward 0).

    S: wait | left -> L | right -> X (terminal, 0);  L: wait | go -> goal (terminal, 1).
    """

    name = "self-loop"
    table = {
        ("S", "wait"): ("S", 0.0, False),
        ("S", "left"): ("L", 0.0, False),
        ("S", "right"): ("X", 0.0, True),
        ("L", "wait"): ("L", 0.0, False),
        ("L", "go"): ("goal", 1.0, True),
    }


class TwoRoomsEnv(_TableEnv):
    """L --go right--> R --go left--> L (a 2-cycle); R --take goal (r=1)--> goal (terminal)."""

    name = "two-rooms"
    start = "L"
    table = {
        ("L", "go right"): ("R", 0.0, False),
        ("R", "go left"): ("L", 0.0, False),
        ("R", "take goal"): ("goal", 1.0, True),
    }


class EndlessRoomsEnv(_TableEnv):
    """L <-> R and nothing else: no terminal state at all."""

    name = "endless-rooms"
    start = "L"
    table = {
        ("L", "go right"): ("R", 0.0, False),
        ("R", "go left"): ("L", 0.0, False),
    }


def constant_evaluate(value: float):
    """Evaluator hook giving every leaf the same value."""

    def evaluate(states):
        return [value] * len(states)

    return evaluate
