"""Training-set augmentation of a step dataset: reworded steps, extra passes over first
steps and over the rarer label's sibling groups.

Each takes ``env_of(run_id) -> Env | None``, the env a path was searched in
(:class:`treeq.pipelines.prm_eval.TaskSource` rebuilds it from the run's record), since
only the env knows how a step may be worded (:meth:`treeq.envs.base.Env.rewrite_step`).
Every choice comes from a generator of (seed, copy, step node): the same text on every
run and after a resume.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Sequence

import numpy as np

from ..envs.base import Env

__all__ = ["EnvOf", "reworded", "first_steps", "positive_siblings"]

EnvOf = Callable[[str], Env | None]


def positive_siblings(env_of: EnvOf, examples: Sequence, threshold: float, share: float, seed: int,
                      passes: int, skip: int) -> list:
    """``passes`` copies of every path whose last step has a sibling (or is one) of the rarer label.

    The rarer label: above ``threshold`` where such last steps are the fewer (Game of 24:
    1.6% at depth 1), else at or below it (Blocksworld, where most steps keep the goal in
    reach), so the passes repeat the rare labels and their closest contrasts, never most
    of the data. Only the last step counts in the loss of a copy; each copy is worded anew
    (as copy ``skip + k`` of :func:`reworded`) where the env rewords steps, and repeated
    as written elsewhere.
    """
    positive = [ex.labels[-1] > threshold for ex in examples]
    rare = 2 * sum(positive) <= len(positive)
    hit = {(ex.task_id, ex.parents[-1]) for ex, p in zip(examples, positive) if p == rare}  # -1: each task's root
    group = [dataclasses.replace(ex, owned=[False] * (len(ex.steps) - 1) + [True])
             for ex in examples if (ex.task_id, ex.parents[-1]) in hit]
    return _passes(env_of, group, share, seed, passes, skip)


def first_steps(env_of: EnvOf, examples: Sequence, share: float, seed: int, passes: int, skip: int) -> list:
    """``passes`` copies of every distinct first step of ``examples`` as a one-step path.

    Each copy is worded anew (as copy ``skip + k`` of :func:`reworded`, so never as the
    paths themselves are) where the env rewords steps; elsewhere the copies repeat the
    step as written. The step's label counts in the loss once per copy.
    """
    firsts = {}
    for ex in examples:
        firsts.setdefault(ex.nodes[0], dataclasses.replace(
            ex, steps=ex.steps[:1], labels=ex.labels[:1], visits=ex.visits[:1], owned=[True], nodes=ex.nodes[:1],
            parents=ex.parents[:1]))
    return _passes(env_of, list(firsts.values()), share, seed, passes, skip)


def _passes(env_of: EnvOf, group: list, share: float, seed: int, passes: int, skip: int) -> list:
    """``passes`` copies of ``group``, copy k worded as copy ``skip + k`` of :func:`reworded` would be."""
    return [_worded(env_of(ex.run_id), ex, share, [seed, skip + k]) for k in range(passes) for ex in group]


def reworded(env_of: EnvOf, examples: Sequence, share: float, seed: int, copies: int = 1) -> list:
    """``examples`` with a ``share`` of the steps reworded by the env, in ``copies`` wordings.

    The choice and the wording of a step come from a generator of (seed, copy, step
    node), so a step shared by several paths reads the same in each (prefixes still
    pack), and the training text is the same on every run and after a resume. Copies
    beyond the first are made only of paths whose env rewords steps or renames paths (an
    identical copy would only double the work).
    """
    if share <= 0:
        return list(examples)
    out = []
    for copy in range(copies):
        for ex in examples:
            env = env_of(ex.run_id)
            if env is None or (copy and not (env.rewrites_steps or env.renames)):
                if not copy:
                    out.append(ex)
                continue
            out.append(_worded(env, ex, share, [seed] if copy == 0 else [seed, copy]))
    return out


def _worded(env: Env | None, ex, share: float, key: list[int]):
    """``ex`` with each step reworded by ``env`` with probability ``share``, drawn from a generator of (key, step node).

    Where the env renames (:meth:`~treeq.envs.base.Env.rename`), the whole path (prompt
    too) is also renamed with probability ``share``, by a generator of (key, task): every
    path of a task reads alike in one copy (shared prefixes still pack), each copy anew.
    """
    if env is None:
        return ex
    prompt, steps = ex.prompt, []
    for node, text in zip(ex.nodes, ex.steps):
        rng = np.random.default_rng([*key, node])
        steps.append(env.rewrite_step(text, rng) if rng.random() < share else text)
    if env.renames:
        # one entry longer than a step's (key, node) seed: the two streams never coincide
        rng = np.random.default_rng([*key, zlib.crc32(ex.task_id.encode()), 1 << 40])
        if rng.random() < share:
            prompt, *steps = env.rename([prompt, *steps], rng)
    return dataclasses.replace(ex, prompt=prompt, steps=steps)
