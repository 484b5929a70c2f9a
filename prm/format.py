"""The text format of a path: one string, the steps closed by a separator token.

``prompt + "\\n" + step_1 + SEPARATOR + step_2 + SEPARATOR ...``; a PRM's score of step i
is read at the i-th separator. A step is its action's text, or (envs that act in a world,
format ``action+observation``) the action, a newline and the env's answer (:func:`step_text`).
Torch-free, so exports and the CLI use it without loading a model.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigError

__all__ = ["SEPARATOR", "OBSERVED", "STEP_FORMATS", "path_text", "step_text", "step_action"]

SEPARATOR = "<|step|>"
OBSERVED = "action+observation"  # the step format of envs that answer each action
STEP_FORMATS = ("action", OBSERVED)


def step_text(action: str, observation: str | None) -> str:
    """One step as a PRM reads it: the action, then (``action+observation`` format) a newline
    and what the env answered to it (:meth:`treeq.envs.base.Env.observe`), so that the
    score read at the step's separator follows the observation.

    Raises:
        ConfigError: an action with an observation holds a newline (its end would be ambiguous).
    """
    if observation is None:
        return action
    if "\n" in action:
        raise ConfigError(f"an action followed by an observation holds a newline: {action[:80]!r}")
    return f"{action}\n{observation}"


def step_action(text: str, step_format: str) -> str:
    """The action of a step written by :func:`step_text` in ``step_format`` (an action that
    comes with an observation holds no newline: the first line is the action)."""
    return text.split("\n", 1)[0] if step_format == OBSERVED else text


def path_text(prompt: str, steps: Sequence[str], separator: str = SEPARATOR) -> str:
    """The one string a path is written as (see the module docstring).

    Raises:
        ConfigError: a step contains the separator itself (its score would be ambiguous).
    """
    for s in steps:
        if separator in s:
            raise ConfigError(f"a step contains the step separator {separator!r}: {s[:80]!r}")
    return prompt + "\n" + "".join(s + separator for s in steps)
