"""Blocksworld (PlanBench): stack coloured blocks with one hand, four STRIPS operators.

The env over the pieces that live in their own modules of this package: the rules
(state, operators, goals, action text) in :mod:`.rules`, the PDDL problem reader in
:mod:`.pddl` and the exact oracle (BFS distances, the admissible bound) in :mod:`.exact`.
The package re-exports their public names (``treeq.envs.blocksworld.exact_q``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ...errors import TaskFileError
from ..base import Env, Step, Task
from ..taskfiles import check_unique_ids, expand_task_path, read_text
from .exact import MAX_EXACT_BLOCKS, optimal_value, plan_length_lower_bound
from .pddl import PLANBENCH_COLOURS, DomainFileError, parse_problem
from .rules import (
    HAND,
    PREDICATES,
    TABLE,
    Atom,
    BlocksworldState,
    apply_action,
    build_world,
    canonical_action,
    goal_facts_held,
    is_goal,
    successors,
    world_atoms,
)

__all__ = ["BlocksworldEnv", "TASKS_DIR"]

TASKS_DIR = Path(__file__).resolve().parent.parent / "tasks" / "blocksworld"

# PlanBench's sentences for ground atoms (configs/blocksworld.yaml, ``predicates``). The
# holding phrase really lacks "the" upstream; kept so that renders match its prompts.
_ATOM_TEXT = {
    "clear": "the {} block is clear",
    "ontable": "the {} block is on the table",
    "handempty": "the hand is empty",
    "holding": "the hand is currently holding {} block",
    "on": "the {} block is on top of the {} block",
}



# ----------------------------------------------------------------------------- env
class BlocksworldEnv(Env):
    """PlanBench Blocksworld: reward 1.0 on the action that reaches the goal, else 0."""

    name = "blocksworld"
    has_value_bound = True
    deterministic = True
    step_on_expand = True  # a step is a few tuple operations; terminal children prove nodes at once
    default_tasks = TASKS_DIR / "3"
    default_gamma = 0.95  # discounting makes shorter plans worth more
    # block configurations are reached by many orders of moves: search the state graph;
    # leaves take the admissible bound, so the graph search runs best-first and finds
    # the shortest plan (measured, the 111 four/five-block instances of docs/measured.md at
    # 1,000 simulations: a tree with rollouts solves 71-76; the graph with rollouts 110-111
    # depending on the seed; the graph with the bound 111, every best path optimal,
    # every proven value BFS-exact, in a quarter of the time)
    prefer_transpositions = True
    default_evaluator = "bound"
    renames = True  # rename: the colours permuted

    # -- protocol
    def reset(self, task: Task, rng: np.random.Generator | None = None) -> BlocksworldState:
        """Start state of ``task`` (a payload from :meth:`load_tasks` or :func:`parse_problem`).

        Raises:
            TaskFileError: the payload is malformed or describes an inconsistent world.
        """
        p = task.payload

        def where(line: int | None) -> str:
            return f"task {task.task_id}"

        try:
            names, objects = list(p["blocks"]), list(p.get("objects", p["blocks"]))
            known = set(names)
            init = [_payload_atom(a, known, where) for a in p["init"]]
            goal = [_payload_atom(a, known, where) for a in p["goal"]]
        except (KeyError, TypeError, AttributeError) as exc:
            raise TaskFileError(f"task {task.task_id}: payload needs blocks, init and goal ({exc!r})") from None
        if len(objects) != len(names) or not goal:
            raise TaskFileError(f"task {task.task_id}: payload needs as many objects as blocks and a goal")
        return build_world(names, objects, init, goal, where)

    def legal_actions(self, state: BlocksworldState) -> list[str]:
        """Every applicable action (none once the goal holds), in a fixed order."""
        if is_goal(state):
            return []
        return list(successors(state.blocks, state.world))

    def step(self, state: BlocksworldState, action: str, rng: np.random.Generator | None = None) -> Step[BlocksworldState]:
        """Apply ``action`` (PlanBench phrasing or PDDL form).

        Raises:
            ActionError: the text does not parse, names an unknown block, is not
                applicable (the message says which precondition fails), or the goal
                already holds.
        """
        new = apply_action(state, action)
        if is_goal(new):
            return Step(new, 1.0, True, info={"success": True})
        return Step(new, 0.0, False)

    def subtask_progress(self, state: BlocksworldState) -> int:
        """The goal facts that hold in ``state`` (one subgoal each)."""
        return goal_facts_held(state)

    def state_key(self, state: BlocksworldState) -> str:
        """Configuration and goal, e.g. ``blue on red; red on table; hand empty | goal: on blue red``.

        The goal is part of the key because values depend on it; the steps are not, so
        two paths to one configuration share a key, also across tasks with one goal.
        """
        parts = []
        for b, s in zip(state.blocks, state.world):
            parts.append(f"{b} on {'table' if s == TABLE else state.blocks[s]}" if s != HAND else f"{b} held")
        if HAND not in state.world:
            parts.append("hand empty")
        return f"{'; '.join(parts)} | goal: {'; '.join(state.goal)}"

    def render(self, state: BlocksworldState) -> str:
        """PlanBench's statement of the task, then the plan so far.

        The first two lines equal the ``[STATEMENT]`` of PlanBench's plan-generation
        prompt for the same instance; ``[PLAN END]`` follows once the goal holds.
        """
        start_atoms = [(p, tuple(state.blocks[i] for i in a)) for p, a in world_atoms(state.blocks, state.start)]
        goal_atoms = [(p, tuple(args)) for p, *args in (g.split() for g in state.goal)]
        obj = dict(zip(state.blocks, state.objects))
        lines = [
            f"As initial conditions I have that, {_sentence(start_atoms, obj)}.",
            f"My goal is to have that {_sentence(goal_atoms, obj)}.",
            "",
            "My plan is as follows:",
            "",
            "[PLAN]",
            *state.steps,
        ]
        if is_goal(state):
            lines.append("[PLAN END]")
        return "\n".join(lines)

    def observe(self, state: BlocksworldState) -> str:
        """The configuration after the step in PlanBench's words: ``I have that, the red block
        is clear, ...`` (the goal and the plan are in the prompt and the steps)."""
        obj = dict(zip(state.blocks, state.objects))
        atoms = [(p, tuple(state.blocks[i] for i in a)) for p, a in world_atoms(state.blocks, state.world)]
        return f"I have that, {_sentence(atoms, obj)}."

    def rename(self, texts: Sequence[str], rng: np.random.Generator) -> list[str]:
        """The texts with the PlanBench colours they name permuted among themselves (one
        permutation for all): the same path of the task whose blocks are so renamed, so every
        label holds; a PRM trained on renamed paths cannot tie a value to a colour. Sentences
        keep their order (PlanBench's is by object name, which a renaming would change)."""
        found = sorted({m.group(0) for t in texts for m in _COLOUR_RE.finditer(t)})
        mapping = dict(zip(found, (found[i] for i in rng.permutation(len(found)))))
        return [_COLOUR_RE.sub(lambda m: mapping[m.group(0)], t) for t in texts]

    def value_bound(self, state: BlocksworldState, gamma: float) -> float:
        """gamma**(h-1) with h = :func:`plan_length_lower_bound` (0.0 at the goal).

        Since h <= d, the true distance, gamma**(h-1) >= gamma**(d-1) = V*(s).
        """
        h = plan_length_lower_bound(state)
        return 0.0 if h == 0 else float(gamma ** (h - 1))

    def exact_value(self, state: BlocksworldState, gamma: float) -> float | None:
        """V* by breadth-first search over every arrangement (None past ``MAX_EXACT_BLOCKS``)."""
        if len(state.blocks) > MAX_EXACT_BLOCKS:
            return None
        return optimal_value(state, gamma)

    # -- text from outside
    def canonical_action(self, state: BlocksworldState, text: str) -> str:
        """Map an action written by someone else to this env's canonical phrasing.

        Block names may be the display names (``red``) or, in the PDDL form, the file's
        object names (``a``).

        Raises:
            ActionError: the text does not parse, names an unknown block or is not legal.
        """
        return canonical_action(state, text)

    # -- tasks
    def load_tasks(self, path: str | Path | None = None) -> list[Task]:
        """Read PDDL problems: one file, every ``*.pddl`` in a directory, or a glob pattern.

        ``None`` loads the shipped 3-block set. Files are ordered naturally
        (``instance-2`` before ``instance-10``); the task id is the file stem. Domain
        files met in a directory or glob are skipped.

        Raises:
            TaskFileError: nothing found, a file is malformed (file and line named), or
                two files share a stem.
        """
        target = path if path is not None else self.default_tasks
        files, single = expand_task_path(target, (".pddl",), "PDDL problem")
        if single and files[0].suffix.lower() != ".pddl":
            raise TaskFileError(f"{files[0]}: expected a .pddl problem file, got {files[0].suffix or 'no suffix'!r}")
        tasks: list[Task] = []
        for f in files:
            try:
                payload = parse_problem(read_text(f), str(f))
            except DomainFileError:
                if single:
                    raise
                continue
            tasks.append(Task(f.stem, payload))
        if not tasks:
            raise TaskFileError(f"no problem files in {target} (only domain definitions)")
        check_unique_ids(((t.task_id, t.payload["path"]) for t in tasks), "task ids are file stems: rename one file")
        return tasks


_COLOUR_RE = re.compile(r"\b(?:" + "|".join(PLANBENCH_COLOURS.values()) + r")\b")


def _payload_atom(text: str, known: set[str], where: Callable[[int | None], str]) -> Atom:
    pred, *args = str(text).split()
    if pred not in PREDICATES or len(args) != PREDICATES[pred] or not set(args) <= known:
        raise TaskFileError(f"{where(None)}: bad atom {text!r} in payload")
    return Atom(pred, tuple(args), None)


def _sentence(atom_list: list[tuple[str, tuple[str, ...]]], obj: dict[str, str]) -> str:
    """PlanBench's sentence: atoms sorted by predicate and PDDL names, joined with 'and'."""
    ordered = sorted(atom_list, key=lambda a: " ".join((a[0], *(obj[x] for x in a[1]))))
    parts = [_ATOM_TEXT[p].format(*args) for p, args in ordered]
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]
