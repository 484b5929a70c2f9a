"""Env names -> constructors. Heavy env packages are imported only when asked for.

Names: ``game24``, ``countdown``, ``blocksworld``, ``textworld``, ``llm-steps`` (open-text
reasoning steps an LLM proposes, checked at the ``Answer:`` line), ``gym:<id>`` for
any gymnasium toy-text id (``gym:FrozenLake-v1``, ``gym:Taxi-v4`` ...) and
``openspiel:<game>`` for single-player OpenSpiel games (``openspiel:catch`` ...; the
optional extra ``treeq[openspiel]``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ConfigError, UnknownEnvError
from .base import Env

__all__ = ["make_env", "register_env", "env_names", "ENV_NAMES"]


def _game24(**kw: Any) -> Env:
    from .countdown import Game24Env

    return Game24Env(**kw)


def _countdown(**kw: Any) -> Env:
    from .countdown import CountdownEnv

    return CountdownEnv(**kw)


def _blocksworld(**kw: Any) -> Env:
    from .blocksworld import BlocksworldEnv

    return BlocksworldEnv(**kw)


def _textworld(**kw: Any) -> Env:
    from .textworld import TextWorldEnv

    return TextWorldEnv(**kw)


def _llm_steps(**kw: Any) -> Env:
    from .llm_steps import LLMStepsEnv

    return LLMStepsEnv(**kw)


_REGISTRY: dict[str, Callable[..., Env]] = {}
_PREFIXED = ("gym:<id>", "openspiel:<game>")


def register_env(name: str, factory: Callable[..., Env]) -> Callable[..., Env]:
    """Make ``factory(**kwargs) -> Env`` the env called ``name`` (``--env NAME``, ``make_env(NAME)``).

    Import heavy packages inside the factory, so that listing the names stays fast. Make the
    call in a module that is imported wherever a job runs (spawned workers import treeq
    afresh): the envs below register here.

    Raises:
        ValueError: the name is taken, or has the ``gym:`` / ``openspiel:`` prefix of the built-in families.
    """
    if name in _REGISTRY or name.startswith(("gym:", "openspiel:")):
        raise ValueError(f"an env named {name!r} is registered already (or its prefix is reserved)")
    _REGISTRY[name] = factory
    return factory


register_env("game24", _game24)
register_env("countdown", _countdown)
register_env("blocksworld", _blocksworld)
register_env("textworld", _textworld)
register_env("llm-steps", _llm_steps)


def env_names() -> tuple[str, ...]:
    """Every registered name, then the prefixed families."""
    return (*_REGISTRY, *_PREFIXED)


ENV_NAMES = env_names()  # the built-in names (registrations made later show in env_names())


def make_env(name: str, **kwargs: Any) -> Env:
    """Build the env registered as ``name`` (``gym:<id>`` for gymnasium toy-text,
    ``openspiel:<game>`` for OpenSpiel, whose ``kwargs`` are the game's parameters).

    Raises:
        UnknownEnvError: no env of that name.
        ConfigError: the env rejects ``kwargs``.
    """
    if name.startswith("gym:"):
        from .gym_toytext import GymEnv

        return GymEnv(name[4:], **kwargs)
    if name.startswith("openspiel:"):
        from .openspiel_env import OpenSpielEnv

        return OpenSpielEnv(name[len("openspiel:"):], **kwargs)
    factory = _REGISTRY.get(name)
    if factory is None:
        raise UnknownEnvError(f"unknown env {name!r}; known envs: {', '.join(env_names())}")
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad options for env {name!r}: {exc}") from None
