"""A trained PRM as the search's value function (``--evaluator prm --prm DIR``).

A leaf's value is the PRM's score of the step that reached it: the path from the root
(the root's rendering as the prompt, then the actions of the descent, each followed by
what the env answered where the PRM was trained so: ``step_format`` ``action+observation``)
is written as ``train-prm`` writes its examples (:func:`treeq.prm.format.path_text`) and
read in one forward pass; the score at its last separator, a label in [0, 1], is mapped back to the
env's value range recorded with the PRM (``lo + s * (hi - lo)``). That is Q of the last
step; the leaf's value is what follows the step, ``(Q - r) / gamma`` with ``r`` the step's
reward. A wave's leaves are scored together, in batches of ``prm_batch_size`` paths.

``--value-mix λ`` (``LMConfig.value_mix``) mixes in one random rollout per leaf,
``λ * PRM + (1 - λ) * rollout``, as AlphaGo mixed its value network and its rollouts;
λ = 1 (no rollout) is the default, chosen by measurement (docs/measured.md).

A path longer than the PRM reads loses its earliest steps (the prompt is kept) until it
fits. The root, reached by no step, is valued at the middle of the range (its value is
backed into no edge). Scores are rounded to 1e-6, so that the padding of a batch (which
moves the last bits of a float) never changes a tree: the same tree at any batch size.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...envs.base import Env
from ...errors import ConfigError, ModelError
from ...mcts.config import SearchConfig
from ...mcts.hooks import Evaluator, random_rollout
from .lm import LMConfig

__all__ = ["prm_evaluate", "check_prm", "prm_fingerprint"]

_LOADED: dict[tuple, Any] = {}
_LOCK = threading.Lock()


def check_prm(directory: str | None, env_name: str) -> tuple[float, float]:
    """The value range the PRM in ``directory`` records for ``env_name``.

    Raises:
        ConfigError: no directory given, or a PRM trained on other envs.
        ModelError: the directory is missing or is not a treeq PRM.
    """
    from ...prm.model import PRMMeta

    if not directory:
        raise ConfigError("the prm evaluator needs --prm DIR (a directory train-prm wrote)")
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise ModelError(f"--prm {directory}: no such directory (give one train-prm wrote)")
    meta = PRMMeta.load(path)
    if env_name not in meta.value_range:
        trained = ", ".join(sorted(meta.value_range)) or "no recorded env"
        raise ConfigError(f"--prm {directory}: the PRM was trained on {trained}, not {env_name}")
    lo, hi = meta.value_range[env_name]
    return float(lo), float(hi)


def prm_fingerprint(directory: str) -> str:
    """What identifies a PRM in a run's settings: its training data's hash."""
    from ...prm.model import PRMMeta

    return PRMMeta.load(Path(directory).expanduser()).data_hash


def _load(directory: str, device: str | None) -> tuple[Any, Any, Any]:
    key = (str(Path(directory).expanduser().resolve()), device)
    with _LOCK:
        got = _LOADED.get(key)
        if got is None:
            from ...prm.model import load_prm

            got = _LOADED[key] = load_prm(directory, device) + (threading.Lock(),)
        return got


def prm_evaluate(env: Env, cfg: SearchConfig, rng: np.random.Generator, lm: LMConfig) -> Evaluator:
    """The ``prm`` evaluator of ``env`` (see the module docstring): one batched PRM call per wave."""
    from ...prm.format import OBSERVED, SEPARATOR, step_text
    from ...prm.model import encode_paths, score_batch

    lo, hi = check_prm(lm.prm, env.name)
    tokenizer, model, meta, lock = _load(lm.prm, lm.device)
    if meta.separator != SEPARATOR:
        raise ConfigError(f"--prm {lm.prm}: separator {meta.separator!r}, this treeq writes {SEPARATOR!r}")
    observe = meta.step_format == OBSERVED
    gamma, mix = float(cfg.gamma), float(lm.value_mix)
    rollout = random_rollout(env, rng, gamma, cfg.rollout_steps) if mix < 1.0 else None
    prompts: dict[int, tuple[Any, str]] = {}  # id(root) -> (root, its rendering): one task's root per hook

    def fit(prompt: str, steps: list[str]) -> list[str]:
        while len(steps) > 1 and len(encode_paths(tokenizer, [(prompt, steps)], None)[0]) > meta.max_length:
            steps = steps[1:]
        return steps

    def evaluate(states: Sequence[Any], paths: Sequence[tuple]) -> list[float]:
        values = [lo + 0.5 * (hi - lo)] * len(states)
        todo, texts = [], []
        for i, (root, actions, _, reached) in enumerate(paths):
            if not actions:
                continue
            got = prompts.get(id(root))
            if got is None or got[0] is not root:
                got = prompts[id(root)] = (root, env.render(root))
            steps = [step_text(a, env.observe(s)) for a, s in zip(actions, reached)] if observe else list(actions)
            todo.append(i)
            texts.append((got[1], fit(got[1], steps)))
        if texts:
            with lock:
                scores = score_batch(model, tokenizer, texts, meta.max_length, batch_size=lm.prm_batch_size,
                                     skip_long=True)
            for i, s in zip(todo, scores):
                if not s:  # one step longer than the model reads: nothing to score it by
                    continue
                q = lo + round(s[-1], 6) * (hi - lo)
                r = paths[i][2][-1]
                values[i] = (q - r) / gamma if gamma > 0 else 0.0
        if rollout is not None:
            played = rollout(states)
            values = [mix * v + (1.0 - mix) * p for v, p in zip(values, played)]
        return values

    return Evaluator(evaluate, reads_path=True)
