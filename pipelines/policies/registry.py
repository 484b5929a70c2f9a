"""Policy hooks by name: the evaluators and proposers a search job can be given.

A hook factory takes ``(env, search_cfg, rng, lm)`` (``search_cfg`` with the env's
defaults resolved, ``rng`` the task's generator, ``lm`` the language-model settings,
:class:`treeq.pipelines.policies.lm.LMConfig`, that model-backed hooks read) and returns
the batched hook the engine calls (:mod:`treeq.mcts.hooks`), declared with its contract
(a :class:`~treeq.mcts.hooks.Proposer` or :class:`~treeq.mcts.hooks.Evaluator`) or a plain
function, which the engine treats as untrusted:

* an *evaluator* returns ``evaluate(states) -> [value, ...]``;
* a *proposer* returns ``propose(states, k) -> [[(action, prior), ...], ...]``.

Registering one is a single call; heavy imports (torch, transformers) belong inside
the factory, so that listing the names stays fast::

    register_evaluator("mine", lambda env, cfg, rng, lm: my_value(...), help="my value of the state")

Make the call in a module this package imports (``policies/__init__.py``), so that the
name is known wherever a job runs (spawned workers import the package afresh) and
``search --help`` lists it. Factories run once per task, in the process that searches
it: a model should be cached per process, not loaded per task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...envs.base import Env
from ...errors import ConfigError
from ...mcts.config import SearchConfig
from ...mcts.hooks import Evaluator, Proposer, bound_evaluate, random_rollout, uniform_propose, zero_evaluate
from .lm import LMConfig, lm_propose
from .prm_value import prm_evaluate
from .qstar import DEFAULT_EPSILON, DEFAULT_TEMPERATURE, qstar_propose

__all__ = [
    "HookFactory", "Hook", "EVALUATORS", "PROPOSERS", "DEFAULT_PROPOSER", "register_evaluator",
    "register_proposer", "check_name", "make_hooks",
]

HookFactory = Callable[[Env, SearchConfig, np.random.Generator, LMConfig], Any]


@dataclass(frozen=True)
class Hook:
    """A registered hook: its name, a one-line help text and its factory."""

    name: str
    help: str
    factory: HookFactory


EVALUATORS: dict[str, Hook] = {}
PROPOSERS: dict[str, Hook] = {}
DEFAULT_PROPOSER = "uniform"
_KINDS = {"evaluator": EVALUATORS, "proposer": PROPOSERS}


def _register(kind: str, name: str, factory: HookFactory, help: str) -> HookFactory:
    table = _KINDS[kind]
    if name in table:
        raise ValueError(f"a {kind} named {name!r} is registered already")
    if not help:
        raise ValueError(f"the {kind} {name!r} needs a help text")
    table[name] = Hook(name, help, factory)
    return factory


def register_evaluator(name: str, factory: HookFactory, *, help: str) -> HookFactory:
    """Make ``factory`` the evaluator called ``name`` (``--evaluator NAME``)."""
    return _register("evaluator", name, factory, help)


def register_proposer(name: str, factory: HookFactory, *, help: str) -> HookFactory:
    """Make ``factory`` the proposer called ``name`` (``--proposer NAME``)."""
    return _register("proposer", name, factory, help)


def check_name(kind: str, name: str) -> str:
    """Return ``name`` if a ``kind`` ('evaluator' or 'proposer') of that name is registered.

    Raises:
        ConfigError: no such hook (the message lists the registered ones).
    """
    table = _KINDS[kind]
    if name not in table:
        raise ConfigError(f"{kind} must be one of {', '.join(table)}, got {name!r}")
    return name


def make_hooks(env: Env, search_cfg: SearchConfig, rng: np.random.Generator, evaluator: str | None = None,
               proposer: str | None = None, lm: LMConfig | None = None) -> tuple[Proposer, Evaluator]:
    """Build the declared ``(propose, evaluate)`` pair a search of ``env`` is given.

    Args:
        env: The env searched.
        search_cfg: The search settings with the env's defaults resolved (by the job's
            entry, :func:`treeq.mcts.resolve_defaults`; what ``runs.config`` records).
        rng: The task's generator; hooks that sample draw from it.
        evaluator: Registered evaluator name; None: the env's ``default_evaluator``.
        proposer: Registered proposer name; None: ``uniform``.
        lm: The language model of model-backed hooks (``hf``); None: the defaults.

    Raises:
        ConfigError: an unknown name, or a hook that cannot serve this env.
        ValueError: ``search_cfg`` still has settings left to the env (a caller's bug).
    """
    make_propose = PROPOSERS[check_name("proposer", proposer or DEFAULT_PROPOSER)].factory
    make_evaluate = EVALUATORS[check_name("evaluator", evaluator or env.default_evaluator)].factory
    if search_cfg.gamma is None or search_cfg.c is None or search_cfg.transpositions is None:
        raise ValueError("make_hooks needs the search settings resolved at the job's entry (resolve_defaults)")
    lm = lm or LMConfig()
    return Proposer.of(make_propose(env, search_cfg, rng, lm)), Evaluator.of(make_evaluate(env, search_cfg, rng, lm))


# ---------------------------------------------------------------------------- the built-in hooks
register_evaluator(
    "rollout", lambda env, cfg, rng, lm: random_rollout(env, rng, cfg.gamma, cfg.rollout_steps),
    help="one random playout per leaf, its discounted return",
)
register_evaluator("zero", lambda env, cfg, rng, lm: zero_evaluate, help="0 for every leaf, the cost of the tree alone")
register_evaluator(
    "bound", lambda env, cfg, rng, lm: bound_evaluate(env, cfg.gamma),
    help="the env's optimistic value_bound, best-first search",
)
register_evaluator("prm", prm_evaluate,
                   help="a trained PRM's score of the step that reached the leaf (--prm DIR, --value-mix)")
register_proposer("uniform", lambda env, cfg, rng, lm: uniform_propose(env),
                  help="every legal action, prior 1/#actions")
register_proposer("hf", lambda env, cfg, rng, lm: lm_propose(env, rng, lm),
                  help="a causal LM (--model): priors of the legal actions, or sampled open-text steps")
register_proposer("softmax-qstar", lambda env, cfg, rng, lm: qstar_propose(env, cfg.gamma, "softmax", DEFAULT_TEMPERATURE),
                  help=f"a softmax of the env's exact Q* (temperature {DEFAULT_TEMPERATURE} of the state's Q* spread; "
                       f"envs with exact values)")
register_proposer("epsilon-qstar", lambda env, cfg, rng, lm: qstar_propose(env, cfg.gamma, "epsilon", DEFAULT_EPSILON),
                  help=f"an optimal action by the env's exact Q*, a uniform one with probability {DEFAULT_EPSILON}")
