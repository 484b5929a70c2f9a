"""PRM jobs: ``train-prm`` (dataset -> model -> metrics), ``score-steps`` and ``export-prm-data``.

The flow of :func:`train_prm`, top to bottom: build the step dataset from the tree stores
(split by task); make the tokenizer and model (a pretrained backbone by ``--model``, or
the small default trained from scratch); train with transformers' Trainer, resuming
from ``MODEL_DIR/checkpoints`` when a run with the same data and settings was
interrupted; save the model, tokenizer and ``treeq_prm.json`` (atomically: a
temporary folder renamed into place); score the validation paths and write
``metrics.json``. The output folder must be new, empty, or hold this run (same data and
settings): its checkpoints are resumed, and a finished run's ``metrics.json`` is read
back instead of training again.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..data.store import check_record_path, write_text_atomic
from ..errors import ConfigError, Interrupted, OutputError, StoreError
from ..prm.config import StepDatasetConfig
from ..prm.format import SEPARATOR, path_text
from .config import PRMJobConfig

__all__ = ["train_prm", "score_steps", "export_prm_data", "PRM_FILES"]

PRM_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "treeq_prm.json")
_RUN_FILE = "treeq_run.json"




def _progress(message: str, enabled: bool) -> None:
    if enabled:
        print(f"treeq: {message}", flush=True)


def _recorded(path: Path) -> str | None:
    """The run fingerprint a JSON file records (None: no such file, or none recorded)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("fingerprint") if isinstance(data, dict) else None


def _claim_out(out: Path, fingerprint: str | None) -> dict[str, Any] | None:
    """Make ``out`` ready for the run ``fingerprint``; its stored metrics where that run has finished there.

    ``out`` may be missing, empty, or hold this run: its checkpoints (resumed) or its
    finished model. Anything else is refused: training never writes into a folder it did
    not make for this run (a source package, a search store, another model). ``fingerprint``
    None: only check, before the data is read, that ``out`` could hold a run at all.

    Raises:
        OutputError: ``out`` is a file, cannot be created, or holds anything else.
    """
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        done = _recorded(out / "metrics.json")
        recorded = {_recorded(out / "checkpoints" / _RUN_FILE), done} - {None}
        if not recorded or (fingerprint is not None and recorded != {fingerprint}):
            raise OutputError(f"{out} is not empty and holds no model or checkpoints of this run (same data and "
                              f"settings): choose a new or empty --out, or remove what is there")
        if fingerprint is not None and done == fingerprint:
            return json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    if fingerprint is None:
        return None
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out}: {exc.strerror or exc}") from None
    return None


def train_prm(job: PRMJobConfig) -> dict[str, Any]:
    """Train a PRM on the trees in ``job.sources``; return (and write) its metrics.

    Raises:
        StoreError: a source is unreadable or of a foreign schema; no step qualifies.
        ModelError: the backbone cannot be loaded.
        OutputError: the output directory cannot be written, or holds anything but this run.
    """
    import torch
    from transformers import AutoTokenizer

    from ..prm.augment import first_steps, positive_siblings, reworded
    from ..prm.dataset import DEFAULT_RANGE, build_step_dataset
    from ..prm.model import PRMMeta, add_separator, local_window, quiet_transformers, tiny_model, train_tokenizer
    from ..prm.train import PackedDataset, PairDataset, fit, last_checkpoint, run_fingerprint, sibling_pairs
    from .prm_eval import TaskSource

    started = time.perf_counter()
    out = Path(job.out).expanduser()
    _claim_out(out, None)  # a folder of no run is refused before the data is read
    ds = build_step_dataset(job.sources, job.dataset)
    if not ds.train:
        raise StoreError(f"every one of the {len({e.task_id for e in ds.val})} tasks fell into validation: "
                         f"lower --val-fraction or add tasks")
    source = TaskSource(ds.runs)  # the runs' envs and tasks: the model's window, rewording, the metrics
    _progress(f"{len(ds.train):,} training paths, {len(ds.val):,} validation paths from {ds.rows:,} tree rows "
              f"({len({e.task_id for e in ds.train})} + {len({e.task_id for e in ds.val})} tasks)", job.progress)
    scaled = {env: r for env, r in ds.value_ranges.items() if r != DEFAULT_RANGE}
    if scaled:
        _progress("labels are values scaled to [0, 1] by each env's value range: "
                  + ", ".join(f"{env} [{lo:g}, {hi:g}]" for env, (lo, hi) in sorted(scaled.items())), job.progress)
    ckpt = out / "checkpoints"
    base = job.model or "default"
    data_hash = ds.fingerprint()
    fingerprint = run_fingerprint(data_hash, base, job.train,
                                  {"dataset": asdict(job.dataset), "tiny": asdict(job.tiny) if job.model is None else None})
    finished = _claim_out(out, fingerprint)
    if finished is not None:  # always said: nothing is trained or evaluated
        _progress(f"{out} already holds the model of this run (same data and settings): its metrics.json follows "
                  f"(remove that file to evaluate again)", True)
        return finished
    resume_from = last_checkpoint(ckpt)
    resume = resume_from is not None
    if resume:
        _progress(f"resuming from {resume_from}", True)  # always said: the run is not a fresh one

    if job.model is None:
        tok_dir = ckpt / "tokenizer"
        if resume and (tok_dir / "tokenizer.json").exists():
            tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        else:
            texts = sorted({t for ex in ds.train for t in (ex.prompt, *ex.steps)})
            tokenizer = train_tokenizer(texts, job.tiny.vocab_size)
        window = job.tiny.window
        if window is None:
            envs = [source.env(run_id) for run_id in ds.runs]
            local = bool(envs) and all(env is not None and env.step_holds_state for env in envs)
            window = local_window(tokenizer, (t for ex in ds.train for t in ex.steps), job.tiny.layers) if local else 0
        model = tiny_model(tokenizer, job.tiny, job.train.seed, window)
        max_length, lr = job.tiny.max_length, job.train.learning_rate(pretrained=False)
    else:
        from .models import load_pretrained

        quiet_transformers()
        torch.manual_seed(job.train.seed)  # the new value head's initialisation
        tokenizer, model = load_pretrained(job.model, kind="token-classification", num_labels=1)
        add_separator(tokenizer, model)
        max_length = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)
        lr = job.train.learning_rate(pretrained=True)
    ckpt.mkdir(parents=True, exist_ok=True)
    if job.model is None:
        tokenizer.save_pretrained(ckpt / "tokenizer")
    write_text_atomic(ckpt / _RUN_FILE, json.dumps({"fingerprint": fingerprint, "base": base}) + "\n")

    train_examples = reworded(source.env, ds.train, job.train.rewrite, job.train.seed, job.train.rewordings)
    train_examples += first_steps(source.env, ds.train, job.train.rewrite, job.train.seed, job.train.first_passes,
                                  skip=job.train.rewordings)
    train_examples += positive_siblings(source.env, ds.train, job.dataset.threshold, job.train.rewrite, job.train.seed,
                                        job.train.positive_passes, skip=job.train.rewordings + job.train.first_passes)
    if job.train.loss == "pairwise":
        def pairs_of(examples):
            pairs = sibling_pairs(examples)
            good = tokenizer([path_text(p, pre + [g]) for p, pre, g, _, _ in pairs])["input_ids"] if pairs else []
            bad = tokenizer([path_text(p, pre + [b]) for p, pre, _, b, _ in pairs])["input_ids"] if pairs else []
            return PairDataset([(g, b) for g, b in zip(good, bad) if max(len(g), len(b)) <= max_length])

        train_set, eval_set = pairs_of(train_examples), pairs_of(_eval_subset(ds.val, job.eval_paths))
        if not len(train_set):
            raise StoreError("no sibling steps with different labels: the pairwise loss has nothing to learn")
    else:
        train_set = PackedDataset(train_examples, tokenizer, max_length)
        eval_set = PackedDataset(_eval_subset(ds.val, job.eval_paths), tokenizer, max_length)
        if train_set.dropped or eval_set.dropped:
            _progress(f"left out {train_set.dropped + eval_set.dropped} paths longer than {max_length} tokens",
                      job.progress)
    _progress(f"training {'the default model' if job.model is None else job.model} "
              f"({sum(p.numel() for p in model.parameters()):,} parameters) with the {job.train.loss} loss",
              job.progress)
    try:
        losses = fit(model, tokenizer, train_set, eval_set, job.train, ckpt, lr, job.progress, resume)
    except KeyboardInterrupt:
        saved = last_checkpoint(ckpt)
        raise Interrupted(f"training stopped; rerun the same command to resume "
                          f"{f'from {saved.name}' if saved else 'from the start (no checkpoint yet)'}") from None

    meta = PRMMeta(separator=SEPARATOR, label_mode="pairwise" if job.train.loss == "pairwise" else "soft",
                   loss=job.train.loss, threshold=job.dataset.threshold, data_hash=data_hash, base_model=base,
                   max_length=max_length, value_range={env: list(r) for env, r in ds.value_ranges.items()},
                   step_format=ds.step_format, labels=job.dataset.labels)
    _save_model(out, model, tokenizer, meta)
    metrics = {"train_seconds": round(time.perf_counter() - started, 1), **losses}
    if resume:  # the seconds are this command's: the run's earlier ones went with the process that saved resume_from
        metrics["resumed_from"] = resume_from.name
    metrics.update(evaluate(model, tokenizer, ds, max_length, job, source))
    metrics["total_seconds"] = round(time.perf_counter() - started, 1)
    metrics.update({"train_paths": len(ds.train), "val_paths": len(ds.val), "data_hash": data_hash,
                    "base_model": base, "loss": job.train.loss, "fingerprint": fingerprint})
    metrics = _plain(metrics)
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


def _plain(x: Any) -> Any:
    """Metrics as strict JSON: numpy numbers as Python ones, NaN (an undefined AUROC) as null."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _save_model(out: Path, model, tokenizer, meta) -> None:
    """Save weights, tokenizer and meta into a temporary folder, then move each file into ``out``."""
    tmp = Path(tempfile.mkdtemp(prefix=".save-", dir=out))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        meta.save(tmp)
        for f in tmp.iterdir():
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def evaluate(model, tokenizer, ds, max_length: int, job: PRMJobConfig, source=None) -> dict[str, Any]:
    """Scores of the validation paths against their labels, exact labels and best-of-N.

    Also ``train_fit``: the same hard-label AUROC by depth on (up to ``eval_paths``) training
    paths, as the tree words them. Far below 1 there, the model underfits its own data:
    more training, not more data, is what it needs. A progress bar counts the paths
    scored, labelled exactly and sampled for best-of-N (minutes on large trees).
    """
    from tqdm import tqdm

    from ..prm.dataset import owned_values
    from ..prm.metrics import auroc, auroc_by_depth, depth_mean, spearman, within_group_mean
    from ..prm.model import score_batch
    from .prm_eval import TaskSource, best_of_n, exact_step_labels

    if not ds.val:
        return {"note": "no validation tasks (val_fraction 0): no metrics"}
    val_paths, fit_paths = _eval_subset(ds.val, job.eval_paths), _eval_subset(ds.train, job.eval_paths)
    bon_paths = min(job.bon_tasks, len({ex.task_id for ex in val_paths})) * job.best_of_n
    with tqdm(total=2 * len(val_paths) + len(fit_paths) + bon_paths, desc="evaluating", unit="path",
              disable=not job.progress, dynamic_ncols=True) as bar:
        def score(paths, counted=True):
            """Scores of each path; None for a path longer than the model reads."""
            return score_batch(model, tokenizer, paths, max_length, batch_size=max(8, job.train.batch_size),
                               skip_long=True, progress=bar.update if counted else None)

        val, flat, arrays = _scored(val_paths, score, job.dataset.threshold)
        result: dict[str, Any] = {
            "val_steps": int(flat.size),
            "auroc_hard": auroc(flat, arrays["hard"]),
            "spearman_q": spearman(flat, arrays["soft"]),
            "auroc_hard_by_depth": auroc_by_depth(flat, arrays["hard"], arrays["depth"]),
        }
        _, fit_flat, fit_arrays = _scored(fit_paths, score, job.dataset.threshold)
        result["train_fit"] = {"steps": int(fit_flat.size), "auroc_hard": auroc(fit_flat, fit_arrays["hard"]),
                               "auroc_hard_by_depth": auroc_by_depth(fit_flat, fit_arrays["hard"], fit_arrays["depth"])}
        source = source or TaskSource(ds.runs)
        exact, why = exact_step_labels(source, val, progress=bar.update, step_format=ds.step_format)
        if exact is None:
            result["exact"] = why
        else:
            good = owned_values(val, exact)
            by_depth = auroc_by_depth(flat, good, arrays["depth"])
            result["auroc_exact"] = auroc(flat, good)
            result["auroc_exact_by_depth"] = by_depth
            result["auroc_exact_within_depth_mean"] = depth_mean(by_depth)
            result["auroc_exact_within_parent_mean"] = within_group_mean(flat, good, arrays["parent"])
        if job.best_of_n:
            refs = sorted({(ex.run_id, ex.task_id) for ex in val}, key=lambda r: r[1])[: job.bon_tasks]
            result["best_of_n"] = best_of_n(source, refs, job.best_of_n, lambda paths: score(paths, counted=False),
                                            job.train.seed, progress=bar.update, step_format=ds.step_format)
        bar.update(bar.total - bar.n)  # paths too long to score, or a metric the env cannot give
    return result


def _scored(examples: list, score, threshold: float) -> tuple[list, np.ndarray, dict[str, np.ndarray]]:
    """(examples short enough to score, their owned steps' scores, their label arrays)."""
    from ..prm.dataset import label_arrays, owned_values

    scored = score([(ex.prompt, ex.steps) for ex in examples])
    kept, scores = [ex for ex, s in zip(examples, scored) if s is not None], [s for s in scored if s is not None]
    flat = owned_values(kept, scores)
    return kept, flat, label_arrays(kept, threshold)


def _eval_subset(examples: list, limit: int) -> list:
    """Whole tasks, in the order of a hash of their ids, until ``limit`` paths are taken."""
    import hashlib

    by_task: dict[str, list] = {}
    for ex in examples:
        by_task.setdefault(ex.task_id, []).append(ex)
    out: list = []
    for task in sorted(by_task, key=lambda t: hashlib.sha256(t.encode()).hexdigest()):
        if out and len(out) + len(by_task[task]) > limit:
            break
        out += by_task[task]
    return out


def export_prm_data(sources: list[str], out: str, config: StepDatasetConfig, progress: bool = False
                    ) -> tuple[Path, int, int]:
    """Write the stepwise PRM rows (``prompt``, ``completions``, ``labels`` + hard labels) to ``out``.

    Streams task by task (memory holds a few tasks' trees), with
    a progress bar over tasks. Returns the path, the number of rows and of labelled steps.

    Raises:
        StoreError: a source cannot be read, or no step qualifies (``out`` is not written).
    """
    from tqdm import tqdm

    from ..data.store import RecordWriter, shard_names
    from ..prm.dataset import STEPWISE_SCHEMA, StepFormats, iter_task_examples, no_steps_error, stepwise_rows

    check_record_path(out)  # before the work, not after
    if not sources:
        raise ConfigError("give at least one search output directory")
    steps = 0
    tasks = len(shard_names(sources))
    formats = StepFormats()
    with RecordWriter(out, STEPWISE_SCHEMA) as writer:
        for split, examples in tqdm(iter_task_examples(sources, config, formats=formats), total=tasks,
                                    desc="export-prm-data", unit="task", disable=not progress, dynamic_ncols=True):
            writer.write(stepwise_rows(examples, split, config.threshold))
            steps += sum(len(ex.steps) for ex in examples)
        if writer.rows == 0:
            raise no_steps_error(sources, config)
        formats.format(sources)  # one format in one file
    return writer.path, writer.rows, steps


def score_steps(model_dir: str, rows: list[dict], tasks: str | None = None, batch_size: int = 32) -> list[dict]:
    """Score the steps of JSONL-style rows: ``{"prompt", "steps"}`` or ``{"env", "task", "steps"}``.

    Each row comes back with ``"scores"``, one per step. A task is the env's task text
    (``"4 6 8 8"`` for game24) or a task id of ``tasks`` (the env's shipped set by default).
    A PRM that reads observations takes them from the row's ``"observations"`` or replays
    the actions (:func:`treeq.pipelines.prm_rows.row_paths`).

    Raises:
        ConfigError: ``batch_size`` < 1; a row's path is longer than the model reads or a step
            holds the separator (the row's line is named).
        ModelError: the directory is not a PRM.
        TaskFileError: a row is malformed (its line is named).
    """
    from ..prm.model import load_prm, score_batch
    from .prm_rows import row_paths, strip_line

    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    tokenizer, model, meta = load_prm(model_dir)
    paths = row_paths(rows, tasks, meta.step_format)
    where = [row.get("_line", f"row {i + 1}") for i, row in enumerate(rows)]
    for w, (prompt, steps) in zip(where, paths):
        try:
            path_text(prompt, steps)
        except ConfigError as exc:
            raise ConfigError(f"{w}: {exc}") from None
    scores = score_batch(model, tokenizer, paths, meta.max_length, batch_size=batch_size, skip_long=True)
    for w, (prompt, steps), s in zip(where, paths, scores):
        if s is None:
            n = len(tokenizer(path_text(prompt, steps))["input_ids"])
            raise ConfigError(f"{w}: the path of {len(steps)} steps is {n} tokens, over the {meta.max_length} "
                              f"the model reads")
    return [{**strip_line(row), "scores": s} for row, s in zip(rows, scores)]