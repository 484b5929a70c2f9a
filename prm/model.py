"""The PRM model: a transformers token-classification model with one label.

A path is written as ONE string, ``prompt + "\\n" + step_1 + SEP + step_2 + SEP ...``,
tokenized as usual; the score of step i is ``sigmoid(logit)`` at the i-th separator
token. The model is causal, so a step's score sees only the prompt and the steps up to
it, and one forward pass scores every step of a path. This is the shape TRL's
PRMTrainer saved (``AutoModelForTokenClassification``, ``num_labels=1``, read at the
separator tokens): any transformers user loads the directory without treeq::

    tok = AutoTokenizer.from_pretrained(d); model = AutoModelForTokenClassification.from_pretrained(d)
    enc = tok(text, return_tensors="pt")
    scores = model(**enc).logits[0, enc.input_ids[0] == tok.convert_tokens_to_ids(SEP), 0].sigmoid()

Without a backbone (``model=None``) the default is a small Llama built from a config,
with a byte-level BPE tokenizer trained on the dataset's own texts (offline, CPU-sized).
Where every env of the data says a step's text holds the state it leads to (Game of
24's ``(left: ...)``), it is a Mistral instead (the same network with a sliding window),
its window just wide enough for its layers together to see the longest step: the value
must then be read from the step itself, which the model learns faster than it learns to
ignore the rest of the path (docs/measured.md gives the figures).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..errors import ConfigError, ModelError
from .config import TinyModelConfig
from .format import SEPARATOR, path_text

__all__ = [
    "SEPARATOR", "META_FILE", "TinyModelConfig", "PRMMeta", "path_text", "train_tokenizer", "small_llama", "tiny_model",
    "add_separator", "encode_paths", "score_batch", "load_prm", "quiet_transformers",
]

META_FILE = "treeq_prm.json"
PAD = "<|pad|>"




@dataclass(frozen=True)
class PRMMeta:
    """What a saved PRM directory records beside the weights (``treeq_prm.json``)."""

    separator: str
    label_mode: str  # 'soft' (bce, mse) or 'pairwise'
    loss: str
    threshold: float
    data_hash: str
    base_model: str
    max_length: int
    value_range: dict[str, list[float]] = field(default_factory=dict)  # env -> [lo, hi]: a label of 0 is lo, 1 is hi
    format: str = "prompt + '\\n' + step_1 + separator + step_2 + separator ...; score = sigmoid(logit) at each separator"
    # 'action': a step is its action's text; 'action+observation': action + '\n' + what the env answered
    # (Env.observe), the separator after the observation (envs that act in a world: docs/prm.md)
    step_format: str = "action"
    # 'value': a score is the step's value scaled to [0, 1]; 'optimal': the chance the step keeps the optimal value
    labels: str = "value"

    def save(self, directory: Path) -> None:
        from ..data.store import write_text_atomic

        write_text_atomic(directory / META_FILE, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> PRMMeta:
        path = directory / META_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except FileNotFoundError:
            raise ModelError(f"{directory} is not a treeq PRM directory (no {META_FILE})") from None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ModelError(f"{path} is unreadable: {exc}") from None


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on ``texts`` (never fails on unseen characters)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[PAD, SEPARATOR], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, additional_special_tokens=[SEPARATOR])


def small_llama(tokenizer, hidden_size: int, layers: int, heads: int, max_length: int, seed: int,
                head: str = "token", window: int = 0):
    """A small Llama for ``tokenizer``, initialised from ``seed``: the one builder of treeq's own models.

    ``head``: ``"token"`` (a token classifier with one label: the default PRM) or
    ``"causal"`` (a causal LM with tied embeddings: ``make-tiny-model``'s policy).
    ``window`` > 0 (token head): each token attends to the last ``window`` tokens only (a
    Mistral, the Llama with a sliding window, so that plain transformers applies the same window).
    """
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        LlamaForTokenClassification,
        MistralConfig,
        MistralForTokenClassification,
    )

    shape = dict(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=4 * hidden_size,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=max_length, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    if head == "causal":
        return LlamaForCausalLM(LlamaConfig(**shape, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
                                            tie_word_embeddings=True))
    if head != "token":
        raise ValueError(f"head must be 'token' or 'causal', got {head!r}")
    if window:
        return MistralForTokenClassification(MistralConfig(**shape, num_labels=1, tie_word_embeddings=False,
                                                           sliding_window=window))
    return LlamaForTokenClassification(LlamaConfig(**shape, num_labels=1, tie_word_embeddings=False))


def tiny_model(tokenizer, cfg: TinyModelConfig, seed: int, window: int = 0):
    """The default PRM: :func:`small_llama` with a token head, shaped by ``cfg``."""
    return small_llama(tokenizer, cfg.hidden_size, cfg.layers, cfg.heads, cfg.max_length, seed, "token", window)


def local_window(tokenizer, steps: Iterable[str], layers: int) -> int:
    """The narrowest window through which ``layers`` layers let a separator see all of its step.

    A token reaches ``window - 1`` tokens back per layer, so the separator sees
    ``layers * (window - 1)`` tokens before it: at least the longest step.
    """
    longest = max((len(ids) for ids in tokenizer(sorted(set(steps)), add_special_tokens=False)["input_ids"]),
                  default=1)
    return -(-longest // layers) + 1


def attention_window(model) -> int:
    """The sliding window every layer of ``model`` applies (0: none); training masks must apply it too."""
    config = model.config
    window = getattr(config, "sliding_window", None)
    if not window or getattr(config, "use_sliding_window", True) is False:
        return 0
    kinds = getattr(config, "layer_types", None)
    if kinds and any(k != "sliding_attention" for k in kinds):
        return 0
    return int(window)


def add_separator(tokenizer, model) -> None:
    """Give a pretrained backbone the step separator token (and a pad token if it has none)."""
    added = tokenizer.add_special_tokens({"additional_special_tokens": [SEPARATOR]})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or SEPARATOR
    if added or len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    model.config.pad_token_id = tokenizer.pad_token_id


def encode_paths(tokenizer, paths: Sequence[tuple[str, Sequence[str]]], max_length: int | None) -> list[list[int]]:
    """Token ids of each (prompt, steps) path (``max_length`` None: no limit checked).

    Raises:
        ConfigError: a path is longer than ``max_length`` tokens, or a step holds the separator.
    """
    texts = [path_text(p, s) for p, s in paths]
    ids = tokenizer(texts, add_special_tokens=True)["input_ids"]
    for (_prompt, steps), row in zip(paths, ids):
        if max_length is not None and len(row) > max_length:
            raise ConfigError(f"a path of {len(steps)} steps is {len(row)} tokens, over the model's {max_length}")
    return ids


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask``."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def score_batch(model, tokenizer, paths: Sequence[tuple[str, Sequence[str]]], max_length: int,
                batch_size: int = 32, skip_long: bool = False,
                progress: Callable[[int], object] | None = None) -> list[list[float] | None]:
    """Score every step of every path: one forward pass per path (batched).

    ``skip_long``: a path longer than ``max_length`` tokens gets None instead of an error.
    ``progress`` is called with the number of paths done after each batch (a bar's ``update``).
    """
    if not paths:
        return []
    sep_id = tokenizer.convert_tokens_to_ids(SEPARATOR)
    model.eval()
    device = next(model.parameters()).device
    ids = encode_paths(tokenizer, paths, None if skip_long else max_length)
    order = sorted((i for i in range(len(ids)) if len(ids[i]) <= max_length), key=lambda i: len(ids[i]))
    if progress is not None and len(order) < len(ids):
        progress(len(ids) - len(order))  # too long: done at once
    scores: dict[int, list[float]] = {}
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        input_ids, mask = pad_batch([ids[i] for i in chunk], tokenizer.pad_token_id, device)
        logits = model(input_ids=input_ids, attention_mask=mask).logits[..., 0].float()
        probs = torch.sigmoid(logits).cpu()
        for row, i in enumerate(chunk):
            scores[i] = probs[row][input_ids[row].cpu() == sep_id].tolist()
        if progress is not None:
            progress(len(chunk))
    return [scores.get(i) for i in range(len(paths))]


def quiet_transformers() -> None:
    """No per-file progress bars or load reports from transformers: treeq prints its own progress."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_prm(directory: str | Path, device: str | None = None):
    """Load a saved PRM directory: (tokenizer, model, meta), plain transformers underneath.

    Raises:
        ModelError: the directory is missing, or is not a treeq PRM.
    """
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    quiet_transformers()
    directory = Path(directory).expanduser()
    if not directory.exists():
        raise ModelError(f"model path {directory} does not exist")
    if not directory.is_dir():
        raise ModelError(f"model path {directory} is a file, not a directory written by train-prm")
    meta = PRMMeta.load(directory)
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=False)
        model = AutoModelForTokenClassification.from_pretrained(directory, trust_remote_code=False,
                                                                use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the PRM in {directory}: {' '.join(str(exc).split())[:300]}") from None
    if device:
        model.to(device)
    model.eval()
    return tokenizer, model, meta
