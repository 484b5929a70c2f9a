"""Tiny hand-checkable envs for the MCTS tests."""

from __future__ import annotations

from treeq.envs.base import Env, Step, Task


class TwoStepEnv(Env):
    """root --a (r=0)--> A --x (r=1)--> end;  root --b (r=0.5)--> end."""

    name = "two-step"
    deterministic = True

    def reset(self, task: Task | None = None, rng=None) -> str:
        return "root"

    def legal_actions(self, state: str) -> list[str]:
        return {"root": ["a", "b"], "A": ["x"]}.get(state, [])

    def step(self, state: str, action: str, rng=None) -> Step[str]:
        table = {("root", "a"): ("A", 0.0, False), ("root", "b"): ("B", 0.5, True), ("A", "x"): ("X", 1.0, True)}
        nxt, r, done = table[(state, action)]
        return Step(nxt, r, done)

    def state_key(self, state: str) -> str:
        return state

    def render(self, state: str) -> str:
        return state


def constant_evaluate(value: float):
    def evaluate(states):
        return [value] * len(states)

    return evaluate
