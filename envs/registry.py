"""Env names -> constructors. Heavy env packages are imported only when asked for."""

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


_REGISTRY: dict[str, Callable[..., Env]] = {"game24": _game24, "countdown": _countdown}
ENV_NAMES = tuple(_REGISTRY)


def make_env(name: str, **kwargs: Any) -> Env:
    """Build the env registered as ``name``.

    Raises:
        UnknownEnvError: no env of that name.
        ConfigError: the env rejects ``kwargs``.
    """
    factory = _REGISTRY.get(name)
    if factory is None:
        raise UnknownEnvError(f"unknown env {name!r}; known envs: {', '.join(ENV_NAMES)}")
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad options for env {name!r}: {exc}") from None
