"""PRM training pieces: sibling packing is exact, the losses mask what they must, pairs are siblings."""

from __future__ import annotations

import math

import pytest
import torch

from treeq.errors import ConfigError, ModelError
from treeq.prm.config import TinyModelConfig, TrainConfig
from treeq.prm.dataset import StepExample
from treeq.prm.model import (
    SEPARATOR,
    attention_window,
    local_window,
    path_text,
    score_batch,
    tiny_model,
    train_tokenizer,
)
from treeq.prm.train import (
    PackedDataset,
    capture_hidden,
    forward_logits,
    lm_loss,
    make_collator,
    prm_loss,
    sibling_pairs,
)


def example(task, steps, labels, nodes, parents, owned=None):
    return StepExample(task_id=task, env="game24", prompt=f"Reach 24 from {task}.", steps=steps, labels=labels,
                       visits=[1] * len(steps), owned=owned or [True] * len(steps), nodes=nodes, parents=parents)


EXAMPLES = [
    example("4 6 8 8", ["8 - 4 = 4 (left: 4 6 8)", "6 - 4 = 2 (left: 2 8)"], [1.0, 0.0], [0, 1], [-1, 0]),
    example("4 6 8 8", ["8 - 4 = 4 (left: 4 6 8)", "8 - 4 = 4 (left: 4 6)"], [1.0, 1.0], [0, 2], [-1, 0], [False, True]),
    example("4 6 8 8", ["8 - 4 = 4 (left: 4 6 8)", "4 * 6 = 24 (left: 8 24)"], [1.0, 0.0], [0, 3], [-1, 0],
            [False, True]),
    example("4 6 8 8", ["4 + 6 = 10 (left: 8 8 10)"], [0.0], [4], [-1]),
    example("1 2 3 4", ["1 * 2 = 2 (left: 2 3 4)"], [1.0], [5], [-1]),
]


@pytest.fixture(scope="module")
def tiny():
    texts = [t for ex in EXAMPLES for t in (ex.prompt, *ex.steps)]
    tok = train_tokenizer(texts * 4, 300)
    model = tiny_model(tok, TinyModelConfig(hidden_size=32, layers=2, heads=2, vocab_size=300), seed=0).eval()
    return tok, model


def test_packing_groups_siblings(tiny):
    """Three paths share their first step: one row (prefix once, three last steps); two single-step rows."""
    tok, _ = tiny
    packed = PackedDataset(EXAMPLES, tok, max_length=512)
    assert [len(item["children"]) for item in packed.items] == [3, 1, 1]
    first = packed.items[0]
    assert first["prefix_labels"] == [1.0] and first["prefix_owned"] == [True]
    assert first["child_labels"] == [[0.0], [1.0], [0.0]]
    assert tok(path_text(EXAMPLES[0].prompt, EXAMPLES[0].steps))["input_ids"] == first["prefix"] + first["children"][0]


@pytest.mark.parametrize("window", [0, 3])
def test_packed_logits_equal_each_path_alone(tiny, window):
    """The mask and position ids make every step's score in a packed row what the path alone gives.

    With a sliding window (a Mistral), the training mask must cut exactly what the model
    cuts on a path alone: a window measured in the row's index would let a last step see
    too little of the shared prefix, and its scores would differ.
    """
    tok, model = tiny
    if window:
        model = tiny_model(tok, TinyModelConfig(hidden_size=32, layers=2, heads=2, vocab_size=300), 0, window).eval()
        assert attention_window(model) == window
    sep = tok.convert_tokens_to_ids(SEPARATOR)
    packed = PackedDataset(EXAMPLES, tok, max_length=512)
    batch = make_collator(tok.pad_token_id, sep, attention_window(model))(packed.items)
    with torch.no_grad():
        probs = torch.sigmoid(forward_logits(model, batch))
    row0 = probs[0][batch["input_ids"][0] == sep].tolist()
    alone = score_batch(model, tok, [(ex.prompt, ex.steps) for ex in EXAMPLES[:3]], 512)
    assert row0 == pytest.approx([alone[0][0], alone[0][1], alone[1][1], alone[2][1]], abs=1e-6)
    row1 = probs[1][batch["input_ids"][1] == sep].tolist()
    assert row1 == pytest.approx(score_batch(model, tok, [(EXAMPLES[3].prompt, EXAMPLES[3].steps)], 512)[0], abs=1e-6)


def test_local_window_lets_the_layers_see_the_longest_step(tiny):
    """A window W reaches W - 1 tokens back per layer: the narrowest W whose layers span the longest step."""
    tok, model = tiny
    steps = [s for ex in EXAMPLES for s in ex.steps]
    longest = max(len(tok(s, add_special_tokens=False)["input_ids"]) for s in steps)
    for layers in (1, 2, 3, longest):
        window = local_window(tok, steps, layers)
        assert layers * (window - 1) >= longest > layers * (window - 2)
    assert local_window(tok, steps, layers=longest) == 2  # one token back per layer
    assert attention_window(model) == 0  # the full-attention Llama


def test_loss_mask_counts_owned_steps_once(tiny):
    """The bce loss equals the hand-computed mean over the six owned steps; padding adds nothing."""
    tok, model = tiny
    sep = tok.convert_tokens_to_ids(SEPARATOR)
    batch = make_collator(tok.pad_token_id, sep)(PackedDataset(EXAMPLES, tok, 512).items)
    assert int(batch["loss_mask"].sum()) == 6  # 1 shared first step + 3 last steps + 2 single steps
    logits = torch.zeros(batch["input_ids"].shape)
    assert float(prm_loss(logits, batch, "bce")) == pytest.approx(math.log(2))  # every label vs p=0.5
    assert float(prm_loss(logits, batch, "mse")) == pytest.approx(0.25)  # (0.5 - {0,1})^2
    empty = {**batch, "loss_mask": torch.zeros_like(batch["loss_mask"])}
    assert float(prm_loss(logits, empty, "bce")) == 0.0


def test_sibling_pairs_rank_better_over_worse():
    """Pairs join siblings of one parent with different labels, better first; roots of one task are siblings."""
    pairs = sibling_pairs(EXAMPLES)
    texts = {(good, bad) for _, _, good, bad, _ in pairs}
    assert ("8 - 4 = 4 (left: 4 6)", "6 - 4 = 2 (left: 2 8)") in texts
    assert ("8 - 4 = 4 (left: 4 6)", "4 * 6 = 24 (left: 8 24)") in texts
    assert ("8 - 4 = 4 (left: 4 6 8)", "4 + 6 = 10 (left: 8 8 10)") in texts
    assert all(margin > 0 for *_, margin in pairs)
    assert not any(good == "1 * 2 = 2 (left: 2 3 4)" or bad == "1 * 2 = 2 (left: 2 3 4)" for *_, good, bad, _ in pairs)


def test_pairwise_loss_hand_value():
    """-log sigmoid(s_good - s_bad), averaged: logits 2 and 0 give log(1 + e^-2)."""
    logits = torch.tensor([[0.0, 2.0], [0.0, 0.0]])
    inputs = {"last_sep": torch.tensor([1, 1])}
    assert float(prm_loss(logits, inputs, "pairwise")) == pytest.approx(math.log1p(math.exp(-2.0)))


def test_lm_mask_pairs_each_token_with_the_next_of_its_own_path(tiny):
    """Next-token targets never cross from one packed last step into another, nor into padding.

    Row 0 packs a prefix and three last steps: each segment of n tokens gives n - 1 targets;
    the loss over them equals the cross-entropy computed by hand from the same segments.
    """
    tok, model = tiny
    sep = tok.convert_tokens_to_ids(SEPARATOR)
    packed = PackedDataset(EXAMPLES, tok, 512)
    batch = make_collator(tok.pad_token_id, sep)(packed.items)
    first = packed.items[0]
    segments = [first["prefix"], *first["children"]]
    assert int(batch["lm_mask"][0].sum()) == sum(len(s) - 1 for s in segments)
    single = packed.items[1]  # a one-step path: the prompt is its prefix
    assert int(batch["lm_mask"][1].sum()) == len(single["prefix"]) - 1 + len(single["children"][0]) - 1
    seen = {}
    hook = capture_hidden(model, seen)
    try:
        with torch.no_grad():
            logits = forward_logits(model, batch)
    finally:
        hook.remove()
    # the states the value head reads (the fixture is in eval mode: its dropout is off)
    assert torch.allclose(model.score(seen["hidden"])[..., 0].float(), logits, atol=1e-6)
    emb = model.get_input_embeddings().weight.detach()
    by_hand, count, start = 0.0, 0, 0
    for seg in segments:
        h = seen["hidden"][0, start:start + len(seg)]
        target = torch.tensor(seg[1:])
        by_hand += float(torch.nn.functional.cross_entropy(h[:-1] @ emb.T, target, reduction="sum"))
        count += len(seg) - 1
        start += len(seg)
    one_row = {"input_ids": batch["input_ids"][:1], "lm_mask": batch["lm_mask"][:1]}
    assert float(lm_loss(seen["hidden"][:1], one_row, emb)) == pytest.approx(by_hand / count, rel=1e-5)
    zeros = torch.zeros_like(seen["hidden"])
    assert float(lm_loss(zeros, batch, emb)) == pytest.approx(math.log(emb.shape[0]), rel=1e-6)  # uniform over V


def test_lm_mask_of_pairs_stops_at_padding(tiny):
    tok, _ = tiny
    sep = tok.convert_tokens_to_ids(SEPARATOR)
    good, bad = [5, 6, sep], [5, 6, 7, 8, sep]
    batch = make_collator(tok.pad_token_id, sep)([{"good": good, "bad": bad}])
    assert batch["lm_mask"].sum(1).tolist() == [len(good) - 1, len(bad) - 1]


def test_capture_hidden_names_what_is_missing():
    with pytest.raises(ModelError, match="lm-weight"):
        capture_hidden(torch.nn.Sequential(torch.nn.Linear(2, 1)), {})


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="loss"):
        TrainConfig(loss="hinge")
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ConfigError, match="lm_weight"):
            TrainConfig(lm_weight=bad)
    with pytest.raises(ConfigError, match="multiple"):
        TinyModelConfig(hidden_size=30, heads=4)
