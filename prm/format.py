"""The text format of a path: one string, the steps closed by a separator token.

``prompt + "\\n" + step_1 + SEPARATOR + step_2 + SEPARATOR ...``; a PRM's score of step i
is read at the i-th separator. Torch-free, so exports and the CLI use it without loading
a model.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigError

__all__ = ["SEPARATOR", "path_text"]

SEPARATOR = "<|step|>"


def path_text(prompt: str, steps: Sequence[str], separator: str = SEPARATOR) -> str:
    """The one string a path is written as (see the module docstring).

    Raises:
        ConfigError: a step contains the separator itself (its score would be ambiguous).
    """
    for s in steps:
        if separator in s:
            raise ConfigError(f"a step contains the step separator {separator!r}: {s[:80]!r}")
    return prompt + "\n" + "".join(s + separator for s in steps)
