"""Env names -> constructors. Heavy env packages are imported only when asked for.

Names: ``game24``, ``countdown``, ``blocksworld``, ``textworld``, ``llm-steps`` (open-text
reasoning steps an LLM proposes, checked at the ``Answer:`` line), ``gym:<id>`` for
any gymnasium toy-text id (``gym:FrozenLake-v1``, ``gym:Taxi-v4`` ...) and
``openspiel:<game>`` for single-player OpenSpiel games (``openspiel:catch`` ...; the
optional extra ``treeq[openspiel]``).
"""

from __future__ import annotations

from typing import Any, Callable

from ..errors import ConfigError, UnknownEnvError
from .base import Env

__all__ = ["make_env", "ENV_NAMES"]


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
    from .textworld_env import TextWorldEnv

    return TextWorldEnv(**kw)


def _llm_steps(**kw: Any) -> Env:
    from .llm_steps import LLMStepsEnv

    return LLMStepsEnv(**kw)


_REGISTRY: dict[str, Callable[..., Env]] = {
    "game24": _game24,
    "countdown": _countdown,
    "blocksworld": _blocksworld,
    "textworld": _textworld,
    "llm-steps": _llm_steps,
}
ENV_NAMES = (*_REGISTRY, "gym:<id>", "openspiel:<game>")


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
        raise UnknownEnvError(f"unknown env {name!r}; known envs: {', '.join(ENV_NAMES)}")
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad options for env {name!r}: {exc}") from None
