"""What a policy needs of a language model (:class:`LMBackend`), apart from the backends
that provide it (``lm.HFBackend``, ``openai.OpenAIBackend``), so that neither imports the other."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["LMBackend", "STEP_STOP"]

STEP_STOP = "\n"  # a proposed step ends at the first newline


class LMBackend(Protocol):
    """What a policy needs of a language model.

    ``joiner``: what goes between the prompt and an action (a space after a plain prompt
    ending ``Next action:``; nothing after a chat template's assistant header).
    """

    joiner: str

    def format_prompt(self, text: str) -> str:
        """The prompt as the model reads it (chat template applied where the tokenizer has one)."""

    def score(self, prompts: Sequence[str], continuations: Sequence[Sequence[str]]) -> list[list[tuple[float, int]]]:
        """(sum of log-probabilities, token count) of each continuation of each prompt."""

    def sample(self, prompts: Sequence[str], n: int, max_new_tokens: int, temperature: float, seed: int
               ) -> list[list[str]]:
        """``n`` sampled continuations of each prompt, cut at :data:`STEP_STOP`."""
