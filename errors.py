"""Exceptions a user can cause. The CLI turns each into one line and exit code 2.

One class per failure, all under :class:`TreeqError`, so callers can catch them
together while tests and messages stay precise. :class:`Interrupted` (Ctrl-C during a
job) is not a user error: the CLI ends it with exit code 130.
"""

from __future__ import annotations

__all__ = [
    "TreeqError",
    "ConfigError",
    "UnknownEnvError",
    "TaskFileError",
    "ActionError",
    "OutputError",
    "StoreError",
    "EnvFailure",
    "ModelError",
    "Interrupted",
]


class TreeqError(Exception):
    """Base class of every error caused by user input."""


class ConfigError(TreeqError, ValueError):
    """A configuration value is out of range or inconsistent."""


class UnknownEnvError(TreeqError, KeyError):
    """The requested environment name is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class TaskFileError(TreeqError, ValueError):
    """A task file is missing or malformed (the message names file and line)."""


class ActionError(TreeqError, ValueError):
    """An action text does not parse or is not legal in the given state."""


class OutputError(TreeqError, OSError):
    """The output location cannot be used."""


class StoreError(TreeqError, ValueError):
    """A tree store (Parquet directory) is missing, corrupt or of another schema."""


class EnvFailure(TreeqError, RuntimeError):
    """An environment raised while a task was being searched."""


class ModelError(TreeqError, ValueError):
    """A model or tokenizer cannot be found, fetched or loaded (the message names it)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C ended a job; the message says what was finished and written.

    A ``KeyboardInterrupt``, not a :class:`TreeqError`: the CLI ends with exit code 130.
    """
