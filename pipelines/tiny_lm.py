"""A tiny causal LM for an env, built offline (``make-tiny-model``): the model tests and users without a model run.

The tokenizer is a byte-level BPE trained on the env's own texts: the prompts of the
states met on a few random walks per task (``Env.policy_prompt``), their actions and the
AI-feedback judging suffix, so every text the ``hf`` policy sends tokenizes compactly.
The model is a small Llama built from a config with a fixed seed (untrained: its priors
are arbitrary but deterministic, which is what tests and speed measurements need).
Saved with ``save_pretrained`` (safetensors), so ``--model DIR`` loads it like any model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..envs.registry import make_env
from ..errors import OutputError
from .config import TinyLMConfig

__all__ = ["make_tiny_model", "env_texts"]

EOS = "<eos>"


def env_texts(cfg: TinyLMConfig) -> list[str]:
    """Prompts and actions of random walks (``cfg.walks`` per task, ``cfg.walk_steps`` deep) over the env's tasks."""
    from .policies.lm import JUDGE_SUFFIX

    env = make_env(cfg.env, **cfg.env_kwargs)
    rng = np.random.default_rng(cfg.seed)
    texts = [JUDGE_SUFFIX, " Yes", " No", env.instructions]
    for task in list(env.load_tasks(cfg.tasks))[: cfg.limit]:
        start = env.reset(task, rng)
        for _ in range(cfg.walks):
            state = start
            for _ in range(cfg.walk_steps):
                texts.append(env.policy_prompt(state))
                actions = env.legal_actions(state)
                if not actions:  # open text or a dead end: the prompt is what there is to learn
                    break
                texts.extend(" " + a for a in actions)
                step = env.step(state, actions[int(rng.integers(len(actions)))], rng)
                if step.terminated or step.truncated:
                    break
                state = step.state
    return [t for t in texts if t]


def make_tiny_model(cfg: TinyLMConfig) -> Path:
    """Build and save the tiny model and tokenizer for ``cfg.env`` in ``cfg.out``; return the directory.

    Raises:
        OutputError: ``cfg.out`` exists and is not an empty directory, or cannot be written.
    """
    from ..prm.model import quiet_transformers, small_llama, train_tokenizer

    out = Path(cfg.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(f"{out} exists and is not an empty directory: give a new --out")
    quiet_transformers()
    tok = train_tokenizer(env_texts(cfg), cfg.vocab_size)
    tok.add_special_tokens({"eos_token": EOS})
    model = small_llama(tok, cfg.hidden_size, cfg.layers, cfg.heads, cfg.max_length, cfg.seed, head="causal").eval()
    try:
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out, safe_serialization=True)
        tok.save_pretrained(out)
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out
