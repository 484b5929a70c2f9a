"""Train a PRM on a step dataset with transformers' Trainer.

Built on ``transformers.Trainer`` so that ``accelerate launch`` / ``torchrun`` scale the
same command to several GPUs, checkpoints resume after an interruption (model,
optimizer, scheduler and RNG states), and evaluation runs each epoch. Only the loss is
ours:

* ``bce`` (default): binary cross-entropy of each step's logit against its soft label.
* ``mse``: squared error of ``sigmoid(logit)`` against the soft label.
* ``pairwise``: rStar-Math's process-preference loss: for sibling steps (same task, same
  prefix) with different labels, ``-log sigmoid(s_better - s_worse)`` on their logits;
  per parent the two best and the two worst children are paired (rStar-Math, §3.3).

With ``lm_weight`` > 0, any of them gains an auxiliary next-token loss on the rows' own
text (:func:`lm_loss`): the last hidden states, the value head's input before its dropout,
times the input embeddings (a pretrained model's tied LM head), predict each next token of
the same path.

Padding and steps not owned by an example (a shared prefix counted elsewhere) are
masked out of the loss; steps below the visit threshold never enter the dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ModelError
from .config import LOSSES, TrainConfig
from .dataset import StepExample
from .format import SEPARATOR
from .model import pad_batch

__all__ = ["TrainConfig", "LOSSES", "PackedDataset", "forward_logits", "PairDataset", "sibling_pairs", "fit"]





class PackedDataset(torch.utils.data.Dataset):
    """Paths packed by shared prefix: one row per prefix, its last steps side by side (bce, mse).

    Paths that differ only in their last step (siblings) share everything before it. A
    row holds that prefix once, then each sibling's last step; an attention mask lets
    each last step see the prefix and itself only, and position ids restart after the
    prefix for each, so every step's logit is exactly what the path alone would give,
    at a fraction of the tokens (Game of 24 trees: about a third). Where a tokenizer
    does not split text at the separator the same way in pieces as whole, the group
    is kept as separate paths.
    """

    def __init__(self, examples: Sequence[StepExample], tokenizer, max_length: int, pack_tokens: int = 512) -> None:
        from .format import path_text

        groups: dict[tuple[str, str, tuple[str, ...]], list[StepExample]] = {}
        for ex in examples:
            groups.setdefault((ex.task_id, ex.prompt, tuple(ex.steps[:-1])), []).append(ex)
        self.items: list[dict] = []
        self.dropped = 0
        for (_, prompt, prefix_steps), members in groups.items():
            prefix = tokenizer(path_text(prompt, prefix_steps))["input_ids"]
            kids = tokenizer([ex.steps[-1] + SEPARATOR for ex in members], add_special_tokens=False)["input_ids"]
            whole = tokenizer(path_text(prompt, members[0].steps))["input_ids"]
            if prefix + kids[0] != whole:  # this tokenizer merges across the cut: no packing
                prefix, kids = [], [tokenizer(path_text(prompt, ex.steps))["input_ids"] for ex in members]
            owned_prefix = [any(ex.owned[d] for ex in members) for d in range(len(prefix_steps))] if prefix else []
            item = self._new(prefix, members[0].labels[:-1] if prefix else [], owned_prefix)
            for ex, kid in zip(members, kids):
                if len(prefix) + len(kid) > max_length:
                    self.dropped += 1
                    continue
                if item["children"] and len(prefix) + item["size"] + len(kid) > pack_tokens:
                    self.items.append(item)
                    item = self._new(prefix, item["prefix_labels"], [False] * len(owned_prefix))  # counted once
                item["children"].append(kid)
                item["size"] += len(kid)
                labels = ex.labels[-1:] if prefix else ex.labels
                owned = ex.owned[-1:] if prefix else ex.owned
                item["child_labels"].append(labels)
                item["child_owned"].append(owned)
            if item["children"]:
                self.items.append(item)

    @staticmethod
    def _new(prefix: list[int], labels: list[float], owned: list[bool]) -> dict:
        return {"prefix": prefix, "prefix_labels": list(labels), "prefix_owned": list(owned), "children": [],
                "child_labels": [], "child_owned": [], "size": 0}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def sibling_pairs(examples: Sequence[StepExample], per_side: int = 2) -> list[tuple[str, list[str], str, str, float]]:
    """Pairs of sibling steps with different labels: (prompt, prefix, better, worse, margin).

    Per parent, the ``per_side`` best children are paired with the ``per_side`` worst,
    keeping pairs whose labels differ (rStar-Math's process preference pairs).
    """
    children: dict[tuple[str, int], dict[int, tuple[float, str, str, list[str]]]] = {}
    for ex in examples:
        for d, node in enumerate(ex.nodes):
            kids = children.setdefault((ex.task_id, ex.parents[d]), {})
            if node not in kids:
                kids[node] = (ex.labels[d], ex.steps[d], ex.prompt, ex.steps[:d])
    pairs = []
    for kids in children.values():
        ranked = sorted(kids.values(), key=lambda k: (-k[0], k[1]))
        for good in ranked[:per_side]:
            for bad in ranked[::-1][:per_side]:
                if good[0] > bad[0]:
                    pairs.append((good[2], good[3], good[1], bad[1], good[0] - bad[0]))
    return pairs


class PairDataset(torch.utils.data.Dataset):
    """Tokenized (better, worse) sibling paths; the loss reads each path's last separator."""

    def __init__(self, ids: Sequence[tuple[list[int], list[int]]]) -> None:
        self.items = list(ids)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        good, bad = self.items[i]
        return {"good": good, "bad": bad}


def make_collator(pad_id: int, sep_id: int, window: int = 0):
    """Batch rows: ids, position ids, a boolean attention mask ``[B, 1, T, T]``, labels at the separators.

    ``window`` > 0: a token sees only the tokens less than ``window`` positions before it on
    its own path, as the model's sliding window does on a path alone.
    """

    def pairs(batch: list[dict]) -> dict[str, torch.Tensor]:
        rows = [r for item in batch for r in (item["good"], item["bad"])]
        ids, mask = pad_batch(rows, pad_id)
        last = torch.tensor([max(i for i, t in enumerate(r) if t == sep_id) for r in rows])
        return {"input_ids": ids, "attention_mask": mask, "last_sep": last, "lm_mask": _next_in(mask.bool())}

    def packed(batch: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(b["prefix"]) + b["size"] for b in batch)
        n = len(batch)
        ids = torch.full((n, width), pad_id, dtype=torch.long)
        pos = torch.zeros((n, width), dtype=torch.long)
        seg = torch.full((n, width), -2, dtype=torch.long)  # -1: prefix, k: child k, -2: padding
        labels = torch.zeros((n, width), dtype=torch.float32)
        loss_mask = torch.zeros((n, width), dtype=torch.bool)
        for i, b in enumerate(batch):
            p = len(b["prefix"])
            ids[i, :p] = torch.tensor(b["prefix"], dtype=torch.long)
            pos[i, :p] = torch.arange(p)
            seg[i, :p] = -1
            _mark(ids[i, :p], labels[i, :p], loss_mask[i, :p], sep_id, b["prefix_labels"], b["prefix_owned"])
            start = p
            for k, (kid, lab, own) in enumerate(zip(b["children"], b["child_labels"], b["child_owned"])):
                end = start + len(kid)
                ids[i, start:end] = torch.tensor(kid, dtype=torch.long)
                pos[i, start:end] = torch.arange(p, p + len(kid))
                seg[i, start:end] = k
                _mark(ids[i, start:end], labels[i, start:end], loss_mask[i, start:end], sep_id, lab, own)
                start = end
        causal = torch.ones((width, width), dtype=torch.bool).tril()
        same = (seg[:, :, None] == seg[:, None, :]) | ((seg[:, None, :] == -1) & (seg[:, :, None] >= -1))
        attend = causal & same
        if window:
            attend &= (pos[:, :, None] - pos[:, None, :]) < window
        attend = attend.unsqueeze(1)
        return {"input_ids": ids, "position_ids": pos, "attention_mask": attend, "step_labels": labels,
                "loss_mask": loss_mask, "lm_mask": _next_in(seg >= -1, seg[:, 1:] == seg[:, :-1])}

    return lambda batch: pairs(batch) if "good" in batch[0] else packed(batch)


def _next_in(real: torch.Tensor, same: torch.Tensor | None = None) -> torch.Tensor:
    """``[B, T]``: token t is real and token t + 1 follows it on the same path (the next-token
    targets); ``same`` ``[B, T - 1]``: whether tokens t and t + 1 share a segment (packed rows)."""
    follows = torch.zeros_like(real)
    follows[:, :-1] = real[:, :-1] & real[:, 1:] & (True if same is None else same)
    return follows


def _mark(ids: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, sep_id: int, values, owned) -> None:
    at = (ids == sep_id).nonzero().flatten()
    labels[at] = torch.tensor(values, dtype=torch.float32)
    mask[at] = torch.tensor(owned, dtype=torch.bool)


def forward_logits(model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Token logits ``[B, T]`` of a batch; a boolean 4-D mask becomes the additive mask the model expects."""
    mask = inputs["attention_mask"]
    kwargs = {}
    if mask.dim() == 4:
        dtype = next(model.parameters()).dtype
        mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
        kwargs["position_ids"] = inputs["position_ids"]
    out = model(input_ids=inputs["input_ids"], attention_mask=mask, **kwargs)
    return out.logits[..., 0].float()


def prm_loss(logits: torch.Tensor, inputs: dict[str, torch.Tensor], loss: str) -> torch.Tensor:
    """The loss of a batch from the token logits ``[B, T]``."""
    if loss == "pairwise":
        s = logits[torch.arange(logits.shape[0], device=logits.device), inputs["last_sep"]]
        return -F.logsigmoid(s[0::2] - s[1::2]).mean()
    m = inputs["loss_mask"]
    x, y = logits[m], inputs["step_labels"][m]
    if x.numel() == 0:
        return logits.sum() * 0.0  # a batch of shared prefixes only: no gradient, no NaN
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(x, y)
    return F.mse_loss(torch.sigmoid(x), y)


def capture_hidden(model, into: dict[str, torch.Tensor]):
    """Hook that stores, at every forward pass, the last hidden states of the transformer under a
    token classification model's value head (its ``base_model``) in ``into["hidden"]``: what the
    head reads, before the head's dropout. Returns the hook's handle (``.remove()`` it)."""
    base = getattr(model, "base_model", model)
    if base is model:
        raise ModelError(f"{type(model).__name__} has no base model under its value head to read hidden states "
                         f"from: --lm-weight needs one (or set it to 0)")
    return base.register_forward_hook(lambda _module, _args, out: into.__setitem__("hidden", out[0]))


def lm_loss(hidden: torch.Tensor, inputs: dict[str, torch.Tensor], embeddings: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the next token of each path from the last hidden states ``[B, T, H]``
    (:func:`capture_hidden`), projected by the input embeddings ``[V, H]`` (``lm_mask``: the tokens
    whose next token is on the same path)."""
    at = inputs["lm_mask"]
    if not at.any():
        return hidden.sum() * 0.0
    logits = hidden[at] @ embeddings.T
    targets = inputs["input_ids"][:, 1:][at[:, :-1]]
    return F.cross_entropy(logits.float(), targets)


def run_fingerprint(data_hash: str, base: str, cfg: TrainConfig, extra: dict[str, Any]) -> str:
    """The identity of a training run: same data, base model and settings resume each other."""
    blob = json.dumps({"data": data_hash, "base": base, "train": asdict(cfg), **extra}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def fit(model, tokenizer, train_set, eval_set, cfg: TrainConfig, checkpoint_dir: Path, lr: float,
        progress: bool, resume: bool) -> dict[str, float]:
    """Train with ``transformers.Trainer``; resume from the last checkpoint when ``resume``.

    Returns the final evaluation metrics (``eval_loss``) and the training loss.
    """
    from transformers import PrinterCallback, Trainer, TrainingArguments

    from .model import attention_window, quiet_transformers

    quiet_transformers()
    sep_id = tokenizer.convert_tokens_to_ids(SEPARATOR)

    seen: dict[str, torch.Tensor] = {}  # the value head's input of the last forward pass (--lm-weight)
    hook = capture_hidden(model, seen) if cfg.lm_weight else None

    class _PRMTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            logits = forward_logits(model, inputs)
            value = prm_loss(logits, inputs, cfg.loss)
            hidden = seen.pop("hidden", None)  # taken at every pass: an evaluation's is not held until the next
            if cfg.lm_weight and model.training:
                value = value + cfg.lm_weight * lm_loss(hidden, inputs, model.get_input_embeddings().weight)
            return (value, {"logits": logits}) if return_outputs else value

    label_names = ["last_sep"] if cfg.loss == "pairwise" else ["step_labels"]
    args = TrainingArguments(
        output_dir=str(checkpoint_dir),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        learning_rate=lr,
        warmup_steps=cfg.warmup_ratio,  # a float below 1 is a share of the steps (transformers >= 5)
        weight_decay=cfg.weight_decay,
        lr_scheduler_type="linear",
        eval_strategy="epoch" if eval_set is not None and len(eval_set) else "no",
        save_strategy="steps",
        save_steps=cfg.save_every,
        save_total_limit=2,
        logging_strategy="steps",
        logging_steps=max(1, min(50, cfg.save_every)),
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to=[],
        disable_tqdm=not progress,
        remove_unused_columns=False,
        label_names=label_names,
        prediction_loss_only=True,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = _PRMTrainer(
        model=model, args=args, train_dataset=train_set,
        eval_dataset=eval_set if eval_set is not None and len(eval_set) else None,
        data_collator=make_collator(tokenizer.pad_token_id, sep_id, attention_window(model)),
    )
    if not progress:
        trainer.remove_callback(PrinterCallback)  # no per-step log lines either
    try:
        result = trainer.train(resume_from_checkpoint=True if resume else None)
    finally:
        if hook is not None:
            hook.remove()
    metrics = {"train_loss": float(result.training_loss)}
    if trainer.eval_dataset is not None:
        last = [h["eval_loss"] for h in trainer.state.log_history
                if "eval_loss" in h and h.get("step") == trainer.state.global_step]
        metrics["eval_loss"] = float(last[-1]) if last else float(trainer.evaluate()["eval_loss"])
    return metrics


def last_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest ``checkpoint-N`` folder (None: nothing to resume)."""
    if not checkpoint_dir.is_dir():
        return None
    found = [p for p in checkpoint_dir.iterdir() if p.name.startswith("checkpoint-") and p.name[11:].isdigit()]
    return max(found, key=lambda p: int(p.name[11:])) if found else None


def remove_tree(path: Path) -> None:
    import shutil

    if os.path.lexists(path):
        shutil.rmtree(path)
