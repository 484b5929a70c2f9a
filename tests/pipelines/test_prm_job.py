"""train-prm, score-steps and export-prm-data end to end on a real (small) search output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--hidden-size", "32", "--layers", "1", "--heads", "2", "--vocab-size", "300"]


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """Eight Game of 24 puzzles searched with 150 simulations each."""
    from treeq.cli import main

    out = tmp_path_factory.mktemp("prm") / "trees"
    assert main(["search", "--env", "game24", "--limit", "8", "--simulations", "150", "--workers", "1",
                 "--no-progress", "--out", str(out)]) == 0
    return out


def train_args(trees, out) -> list[str]:
    """The command of the ``trained`` fixture."""
    return ["train-prm", str(trees), "--out", str(out), "--epochs", "1", "--val-fraction", "0.3", "--best-of-n", "4",
            "--no-progress", *TINY]


@pytest.fixture(scope="module")
def trained(trees, tmp_path_factory):
    from treeq.cli import main

    out = tmp_path_factory.mktemp("prm") / "model"
    assert main(train_args(trees, out)) == 0
    return out


@pytest.mark.slow
def test_train_writes_a_loadable_directory(trained):
    """Weights as safetensors, tokenizer, treeq_prm.json and metrics.json with the promised figures."""
    names = set(os.listdir(trained))
    assert {"config.json", "model.safetensors", "tokenizer.json", "treeq_prm.json", "metrics.json"} <= names
    assert not any(n.endswith((".bin", ".pt")) for n in names)
    meta = json.loads((trained / "treeq_prm.json").read_text())
    assert meta["separator"] == "<|step|>" and meta["loss"] == "bce" and len(meta["data_hash"]) == 16
    assert meta["value_range"] == {"game24": [0.0, 1.0]}
    m = json.loads((trained / "metrics.json").read_text())
    for key in ("eval_loss", "auroc_hard", "spearman_q", "auroc_exact_by_depth", "best_of_n"):
        assert key in m, key
    assert set(m["best_of_n"]) >= {"prm_min", "prm_product", "random", "oracle"}


@pytest.mark.slow
def test_train_fit_scores_the_training_tasks(trees, trained):
    """``train_fit`` is the hard-label AUROC by depth of the model on its own training paths (no val task)."""
    from treeq.prm.config import StepDatasetConfig
    from treeq.prm.dataset import build_step_dataset, label_arrays
    from treeq.prm.metrics import auroc_by_depth
    from treeq.prm.model import load_prm, score_batch

    fit = json.loads((trained / "metrics.json").read_text())["train_fit"]
    ds = build_step_dataset([trees], StepDatasetConfig(val_fraction=0.3))
    assert ds.train and ds.val and not {e.task_id for e in ds.train} & {e.task_id for e in ds.val}
    tok, model, meta = load_prm(trained)
    scores = score_batch(model, tok, [(e.prompt, e.steps) for e in ds.train], meta.max_length)
    flat = [s for e, row in zip(ds.train, scores) for s, own in zip(row, e.owned) if own]
    arrays = label_arrays(ds.train, 0.5)
    expected = auroc_by_depth(flat, arrays["hard"], arrays["depth"])
    assert fit["steps"] == len(flat) and expected
    assert {int(d): v for d, v in fit["auroc_hard_by_depth"].items()} == pytest.approx(expected, abs=1e-6)


@pytest.mark.slow
def test_plain_transformers_gives_score_steps_scores(trained, tmp_path, run_cli):
    """No treeq in the loop: AutoModelForTokenClassification read at the separators matches score-steps."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    steps = ["4 - 8 = -4 (left: -4 6 8)", "8 * 6 = 48 (left: -4 48)", "48 / -4 = -12 (left: -12)"]
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"env": "game24", "task": "4 6 8 8", "steps": steps}) + "\n"
                    + json.dumps({"prompt": "Any text", "steps": ["one", "two"], "id": 7}) + "\n")
    res = run_cli("score-steps", trained, "--input", rows, "--output", tmp_path / "scored.jsonl")
    assert res.rc == 0, res.err
    scored = [json.loads(line) for line in (tmp_path / "scored.jsonl").read_text().splitlines()]
    assert scored[0]["steps"] == steps and len(scored[0]["scores"]) == 3 and scored[1]["id"] == 7

    tok = AutoTokenizer.from_pretrained(trained)
    model = AutoModelForTokenClassification.from_pretrained(trained).eval()
    prompt = "Use each number once with + - * / to reach 24.\nInput: 4 6 8 8\nSteps:"
    for row, (p, s) in zip(scored, [(prompt, steps), ("Any text", ["one", "two"])]):
        enc = tok(p + "\n" + "".join(x + "<|step|>" for x in s), return_tensors="pt")
        with torch.no_grad():
            logits = model(**enc).logits[0, :, 0]
        plain = torch.sigmoid(logits[enc.input_ids[0] == tok.convert_tokens_to_ids("<|step|>")]).tolist()
        assert plain == pytest.approx(row["scores"], abs=1e-5)


@pytest.mark.slow
def test_score_steps_bad_input(trained, tmp_path, run_cli):
    """A malformed row, an unknown env and a missing model: one line each, exit 2."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"steps": "not a list"}\n')
    res = run_cli("score-steps", trained, "--input", bad)
    assert res.rc == 2 and "bad.jsonl:1" in res.err and len(res.err.strip().splitlines()) == 1
    bad.write_text('{"env": "nope", "task": "1", "steps": ["x"]}\n')
    res = run_cli("score-steps", trained, "--input", bad)
    assert res.rc == 2 and "unknown env" in res.err
    res = run_cli("score-steps", tmp_path / "missing", "--input", bad)
    assert res.rc == 2 and "does not exist" in res.err and len(res.err.strip().splitlines()) == 1


@pytest.mark.slow
def test_train_errors_are_one_line(trees, tmp_path, run_cli):
    """No step over the visit threshold, a folder that is no store, a missing --model path: exit 2."""
    res = run_cli("train-prm", trees, "--out", tmp_path / "m", "--min-visits", "100000", "--no-progress")
    assert res.rc == 2 and "no step has 100000 or more visits" in res.err
    res = run_cli("train-prm", tmp_path, "--out", tmp_path / "m", "--no-progress")
    assert res.rc == 2 and "not a treeq output directory" in res.err
    res = run_cli("train-prm", trees, "--out", tmp_path / "m", "--model", "./no/such/model", "--no-progress")
    assert res.rc == 2 and "does not exist" in res.err and len(res.err.strip().splitlines()) == 1


@pytest.mark.slow
def test_foreign_schema_is_refused(trees, tmp_path, run_cli):
    import shutil

    copy = tmp_path / "trees"
    shutil.copytree(trees, copy)
    shard = next((copy / "nodes").rglob("*.parquet"))
    table = pq.read_table(shard)
    pq.write_table(table.replace_schema_metadata({b"treeq.schema_version": b"7"}), shard)
    res = run_cli("train-prm", copy, "--out", tmp_path / "m", "--no-progress")
    assert res.rc == 2 and "schema version 7" in res.err


@pytest.mark.slow
def test_export_prm_data(trees, tmp_path, run_cli):
    res = run_cli("export-prm-data", trees, "--out", tmp_path / "rows.parquet")
    assert res.rc == 0, res.err
    table = pq.read_table(tmp_path / "rows.parquet")
    assert {"prompt", "completions", "labels", "hard_labels"} <= set(table.column_names)
    row = table.slice(0, 1).to_pylist()[0]
    assert len(row["completions"]) == len(row["labels"]) == len(row["hard_labels"])
    assert run_cli("export-prm-data", trees, "--out", tmp_path / "rows.csv").rc == 2


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["mse", "pairwise"])
def test_other_losses_train(trees, tmp_path, run_cli, loss):
    res = run_cli("train-prm", trees, "--out", tmp_path / loss, "--loss", loss, "--epochs", "0.5", "--best-of-n", "0",
                  "--no-progress", *TINY)
    assert res.rc == 0, res.err
    assert json.loads((tmp_path / loss / "treeq_prm.json").read_text())["loss"] == loss


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["bce", "pairwise"])
def test_lm_weight_adds_a_next_token_loss_and_saves_nothing_more(trees, trained, tmp_path, run_cli, loss):
    """--lm-weight 1 on packed rows (bce) and on pairs: the training loss now holds a next-token
    term (near log 300 for an untrained 300-token vocabulary, far above any bce or pairwise loss),
    and the saved model has exactly the weights of a run without it."""
    from safetensors import safe_open

    out = tmp_path / loss
    res = run_cli("train-prm", trees, "--out", out, "--loss", loss, "--lm-weight", "1", "--max-steps", "2",
                  "--val-fraction", "0.3", "--best-of-n", "0", "--no-progress", *TINY)
    assert res.rc == 0, res.err
    assert json.loads((out / "metrics.json").read_text())["train_loss"] > 3.0
    with safe_open(str(out / "model.safetensors"), "pt") as a, safe_open(str(trained / "model.safetensors"), "pt") as b:
        assert set(a.keys()) == set(b.keys())


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_metrics(trees, tmp_path):
    """SIGKILL after the first checkpoint, rerun the same command: it resumes, and ends where an
    uninterrupted run with the same seed ends."""
    cmd = [sys.executable, str(ROOT / "cli.py"), "train-prm", str(trees), "--epochs", "3", "--save-every", "3",
           "--val-fraction", "0.3", "--best-of-n", "0", "--no-progress", *TINY]
    whole = subprocess.run([*cmd, "--out", str(tmp_path / "whole")], capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "cut"
    proc = subprocess.Popen([*cmd, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list((out / "checkpoints").glob("checkpoint-*/trainer_state.json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists(), "the run finished before it could be killed"
    again = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "resuming from" in again.stdout
    assert "after resuming from checkpoint-" in again.stdout  # its seconds are not the whole run's
    a = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    b = json.loads((out / "metrics.json").read_text())
    for key in ("eval_loss", "auroc_hard", "spearman_q"):
        assert b[key] == pytest.approx(a[key], abs=1e-6), key
    assert "resumed_from" not in a and b["resumed_from"].startswith("checkpoint-")


@pytest.mark.slow
def test_smollm2_fine_tunes_and_scores(trees, tmp_path, run_cli):
    """The real SmolLM2-135M-Instruct (fetched without its dependencies on first use) trains a few
    steps with a value head, saves, and scores a row through score-steps."""
    out = tmp_path / "smol"
    res = run_cli("train-prm", trees, "--out", out, "--model", "smollm2", "--max-steps", "2", "--batch-size", "1",
                  "--min-visits", "5", "--val-fraction", "0.3", "--eval-paths", "16", "--best-of-n", "2",
                  "--no-progress")
    assert res.rc == 0, res.err
    meta = json.loads((out / "treeq_prm.json").read_text())
    assert meta["base_model"] == "smollm2"
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForTokenClassification"] and len(config["id2label"]) == 1
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"env": "game24", "task": "4 6 8 8", "steps": ["8 / 4 = 2 (left: 2 6 8)",
                                                                               "6 - 2 = 4 (left: 4 8)"]}) + "\n")
    res = run_cli("score-steps", out, "--input", rows)
    assert res.rc == 0, res.err
    scores = json.loads(res.out.strip().splitlines()[-1])["scores"]
    assert len(scores) == 2 and all(0.0 < s < 1.0 for s in scores)


@pytest.mark.slow
@pytest.mark.parametrize("env,extra", [
    ("gym:FrozenLake-v1", ["--env-kwargs", '{"is_slippery": false}', "--tasks", "0:6"]),
    ("gym:Taxi-v4", ["--tasks", "0:6"]),
    ("blocksworld", ["--limit", "6"]),
])
def test_trees_of_other_envs_train(env, extra, tmp_path, run_cli):
    """Gym (exact by value iteration; Taxi's values leave [0, 1]) and Blocksworld (graph mode,
    BFS-exact): the same command. treeq_prm.json records the value range the labels were scaled by."""
    from treeq.envs.registry import make_env

    trees = tmp_path / "trees"
    res = run_cli("search", "--env", env, *extra, "--simulations", "100", "--workers", "1", "--no-progress",
                  "--out", trees)
    assert res.rc == 0, res.err
    res = run_cli("train-prm", trees, "--out", tmp_path / "m", "--epochs", "1", "--val-fraction", "0.5",
                  "--best-of-n", "2", "--no-progress", *TINY)
    assert res.rc == 0, res.err
    meta = json.loads((tmp_path / "m" / "treeq_prm.json").read_text())
    assert meta["value_range"] == {env: list(make_env(env).value_range)}
    m = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert "auroc_exact_by_depth" in m  # exact labels: Blocksworld by BFS, these deterministic gym envs by value iteration
    assert "best_of_n" in m


@pytest.mark.slow
def test_out_must_be_new_empty_or_this_run(trees, trained, tmp_path, run_cli):
    """A folder with other files (a source package, a store) or another run's model is refused, untouched."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    other = train_args(trees, trained)
    other[other.index("--epochs") + 1] = "2"  # other settings
    for args in (train_args(trees, package), other, train_args(trees, trees)):
        before = sorted(p.name for p in Path(args[3]).iterdir())
        res = run_cli(*args)
        assert res.rc == 2 and "is not empty and holds no model or checkpoints of this run" in res.err
        assert len(res.err.strip().splitlines()) == 1
        assert sorted(p.name for p in Path(args[3]).iterdir()) == before
    res = run_cli("train-prm", tmp_path / "no-such-store", "--out", package)  # said before any data is read
    assert res.rc == 2 and f"{package} is not empty" in res.err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli("train-prm", trees, "--out", empty, "--max-steps", "1", "--best-of-n", "0", "--no-progress",
                   *TINY).rc == 0


@pytest.mark.slow
def test_finished_run_prints_its_stored_metrics(trees, trained, run_cli, monkeypatch):
    """The same command again: neither training nor evaluation, the stored metrics.json summarised."""
    import treeq.pipelines.prm as prm
    import treeq.prm.train as train

    def never(*args, **kwargs):
        raise AssertionError("a finished run trained or evaluated again")

    monkeypatch.setattr(prm, "evaluate", never)
    monkeypatch.setattr(train, "fit", never)
    stored = (trained / "metrics.json").read_bytes()
    res = run_cli(*train_args(trees, trained))
    assert res.rc == 0, res.err
    assert "already holds the model of this run" in res.out
    m = json.loads(stored)
    assert f"auroc_hard: {m['auroc_hard']:.4f}" in res.out and f"({m['total_seconds']} s in all)" in res.out
    assert (trained / "metrics.json").read_bytes() == stored


@pytest.mark.slow
def test_evaluation_shows_a_bar_and_its_time(trees, tmp_path, run_cli):
    """With progress on, the evaluation after training has its own bar, and the summary gives its time
    beside the training's and the whole."""
    res = run_cli("train-prm", trees, "--out", tmp_path / "m", "--max-steps", "2", "--val-fraction", "0.3",
                  "--best-of-n", "2", *TINY)
    assert res.rc == 0, res.err
    assert "evaluating" in res.err and "path" in res.err
    m = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert (f"trained in {m['train_seconds']} s, evaluated in {round(m['total_seconds'] - m['train_seconds'], 1)} s "
            f"({m['total_seconds']} s in all)") in res.out


def test_readme_model_folder_collides_with_no_source(run_cli):
    """The documented train-prm (README.md, docs/*.md) writes a folder no source lives in, and every command
    after it reads that folder."""
    import re

    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    text = "\n".join(p.read_text(encoding="utf-8") for p in docs)
    (name,) = set(re.findall(r"train-prm trees --out (\S+)", text))
    assert not any((ROOT / name).glob("**/*.py")) and not (ROOT / name).is_file()
    assert f"score-steps {name} " in text and f'from_pretrained("{name}")' in text
    assert not re.search(r"score-steps (?!" + re.escape(name) + r"\b)\S+ --input", text)
