"""``prm-bench`` and ``prm-eval``: a process benchmark whose step labels are exact.

A bench set is ProcessBench's format (``problem``, ``steps``, ``label``: the index of the
earliest wrong step, -1 when none is) written from envs with exact values, so every label is
true by construction: a step is **wrong** when it lowers the optimal value,
``Q*(s, a) < V*(s)`` (:meth:`Env.exact_q`, :meth:`Env.exact_value`). Each row also keeps
``env``, ``task`` and the exact values of every step (``q_star``, ``v_star``).

Per task (tasks whose start is worth something: ``V* > 0``, or an env with step costs),
``per_task`` samples, half of them
flawed: a *correct* sample follows optimal actions (a random one where several tie) to the
end; a *flawed* one follows the same kind of prefix to a random position where a wrong
action exists, takes a random wrong action there, then goes on optimally (half the time)
or at random. Steps are written as a model would write them: the env's own rewording
(Game of 24: operands in either order, ``left`` shuffled), negative intermediates in the
Countdown family (``4 - 8 = -4``), and for envs that act in a world (Blocksworld in
PlanBench's phrasing, gym, TextWorld) the action, a newline and the env's answer
(:func:`treeq.prm.format.step_text`), so a row's first line of each step is the action.
The set is a function of the env, the tasks and ``seed`` only.

``prm-eval`` scores a PRM (or an OpenAI-compatible server as a judge, ProcessBench's critic
prompt) on a set: the predicted earliest error is the first step scored under the threshold
(a path longer than the PRM reads is cut to the steps it reads, and judged on those);
ProcessBench's F1 is the harmonic mean of the accuracy on flawed samples (the predicted
index equals the label) and on correct ones (no step flagged). Beside it, the AUROC of the
step scores against exact goodness within each depth (the metric of ``train-prm``), and
best-of-N among each task's samples.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..envs.base import Env, Task, is_success
from ..envs.registry import make_env
from ..errors import ConfigError, TaskFileError
from .config import TaskSelection
from .search import task_rng

__all__ = ["BenchConfig", "BenchEvalConfig", "write_bench", "read_bench", "evaluate_bench", "step_is_good",
           "first_wrong", "judge_prompt", "parse_judgement", "BENCH_FILE", "BENCH_META", "TOL"]

BENCH_FILE = "bench.jsonl"
BENCH_META = "bench.json"
TOL = 1e-9  # values closer than this are equal (exact values are rationals and powers of gamma)
GENERATOR = "treeq-prm-bench"
# envs whose steps may go negative when written by a model (Countdown family: ``negatives``)
_NEGATIVES_ENVS = ("game24", "countdown")


def first_wrong(q_star: Sequence[float], v_star: Sequence[float]) -> int:
    """Index of the first step with Q*(s, a) < V*(s), -1 when none is (ProcessBench's label)."""
    return next((i for i, (q, v) in enumerate(zip(q_star, v_star)) if q < v - TOL), -1)


def step_is_good(q: float, v: float) -> bool:
    """A step is *good* (the positive class of the AUROC) when it keeps the optimal value and the
    path is still worth something: ``Q* >= V*``, and ``Q* > 0`` where values are not negative
    (a step from a lost Game of 24 state keeps V* = 0 but is not good; :mod:`.prm_eval` labels
    the same way). Envs with step costs (values below 0) use ``Q* >= V*`` alone."""
    return q >= v - TOL and (q > TOL or v < -TOL)


# ----------------------------------------------------------------------------- writing
@dataclass(frozen=True)
class BenchConfig(TaskSelection):
    """A ``prm-bench`` set: ProcessBench-format rows with exact labels (see the module docstring)."""

    per_task: int = field(default=2, metadata={"help": "Samples per task, half of them flawed (an even number)."})
    gamma: float | None = field(default=None, metadata={
        "help": "Discount of the exact values; None: the env's default_gamma (the search's)."})
    max_steps: int = field(default=40, metadata={"help": "Longest sample; a longer one is cut."})
    seed: int = field(default=0, metadata={"help": "Seed: the set is a function of env, tasks and seed."})
    out: str | None = field(default=None, metadata={"help": "Output directory (bench.jsonl and bench.json)."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar over tasks."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.per_task < 2 or self.per_task % 2:
            raise ConfigError(f"per_task must be an even number >= 2, got {self.per_task}")
        if self.gamma is not None and not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"gamma must lie in (0, 1], got {self.gamma}")
        if self.max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")


def _bench_env(cfg: BenchConfig) -> tuple[Env, dict]:
    kwargs = dict(cfg.env_kwargs)
    if cfg.env in _NEGATIVES_ENVS:
        kwargs.setdefault("negatives", True)  # models write 4 - 8 = -4
    env = make_env(cfg.env, **kwargs)
    if type(env).exact_value is Env.exact_value:
        raise ConfigError(f"{env.name} has no exact solver: prm-bench needs exact values "
                          "(game24, countdown, blocksworld, textworld, gym toy-text)")
    return env, kwargs


class _Exact:
    """Q* of every legal action and V* of a state, cached by state key."""

    def __init__(self, env: Env, gamma: float) -> None:
        self.env, self.gamma = env, gamma
        self._cache: dict[str, tuple[dict[str, float], float] | None] = {}

    def __call__(self, state: Any) -> tuple[dict[str, float], float] | None:
        key = self.env.state_key(state)
        if key not in self._cache:
            qs = {}
            for a in self.env.legal_actions(state):
                q = self.env.exact_q(state, a, self.gamma)
                if q is None:
                    self._cache[key] = None
                    return None
                qs[a] = q
            self._cache[key] = (qs, max(qs.values())) if qs else ({}, 0.0)
        return self._cache[key]


def _walk(env: Env, exact: _Exact, state: Any, rng: np.random.Generator, max_steps: int,
          choose: Callable[[dict[str, float], float], str]) -> list[tuple[Any, str, Any, bool, bool]] | None:
    """(state, action, next state, terminated, success) per step, actions from ``choose(q, v)``."""
    out = []
    for _ in range(max_steps):
        got = exact(state)
        if got is None:
            return None
        qs, v = got
        if not qs:
            break
        action = choose(qs, v)
        step = env.step(state, action, rng)
        out.append((state, action, step.state, step.terminated, is_success(step)))
        if step.terminated:
            break
        state = step.state
    return out


def _sample(env: Env, exact: _Exact, start: Any, flawed: bool, rng: np.random.Generator,
            max_steps: int) -> list[tuple[Any, str, Any, bool, bool]] | None:
    """One sample's transitions (None: a state without exact values)."""
    def optimal(qs, v):
        best = sorted(a for a, q in qs.items() if q >= v - TOL)
        return best[int(rng.integers(len(best)))]

    def anything(qs, v):
        actions = sorted(qs)
        return actions[int(rng.integers(len(actions)))]

    prefix = _walk(env, exact, start, rng, max_steps, optimal)
    if prefix is None or not flawed:
        return prefix
    where = [i for i, (s, *_rest) in enumerate(prefix) if any(q < exact(s)[1] - TOL for q in exact(s)[0].values())]
    if not where:
        return []  # no wrong step exists on this path: no flawed sample from it
    t = where[int(rng.integers(len(where)))]
    state = prefix[t][0]
    qs, v = exact(state)
    wrong = sorted(a for a, q in qs.items() if q < v - TOL)
    action = wrong[int(rng.integers(len(wrong)))]
    step = env.step(state, action, rng)
    out = prefix[:t] + [(state, action, step.state, step.terminated, is_success(step))]
    if not step.terminated and t + 1 < max_steps:
        rest = _walk(env, exact, step.state, rng, max_steps - t - 1, optimal if rng.random() < 0.5 else anything)
        if rest is None:
            return None
        out += rest
    return out


def _row(env: Env, exact: _Exact, task: Task, transitions, rng: np.random.Generator, problem: str,
         observed: bool) -> dict[str, Any]:
    from ..prm.format import step_text

    steps, q_star, v_star = [], [], []
    for state, action, nxt, _, _ in transitions:
        qs, v = exact(state)
        written = env.rewrite_step(action, rng) if getattr(env, "rewrites_steps", False) else action
        steps.append(step_text(written, env.observe(nxt)) if observed else written)
        q_star.append(qs[action])
        v_star.append(v)
    return {"generator": GENERATOR, "problem": problem, "steps": steps, "label": first_wrong(q_star, v_star),
            "final_answer_correct": bool(transitions and transitions[-1][4]),
            "env": env.name, "task": task.task_id, "q_star": q_star, "v_star": v_star}


def write_bench(cfg: BenchConfig) -> tuple[Path, dict[str, Any]]:
    """Write ``cfg.out``/bench.jsonl and bench.json; return (the jsonl path, the metadata).

    Raises:
        ConfigError: no ``out``; an env without exact values; no task yields a sample.
        TaskFileError, UnknownEnvError: as the env's task loading.
    """
    from tqdm import tqdm

    from ..data.store import write_text_atomic
    from ..prm.format import OBSERVED

    if not cfg.out:
        raise ConfigError("give --out DIR")
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory")
    env, kwargs = _bench_env(cfg)
    gamma = float(env.default_gamma if cfg.gamma is None else cfg.gamma)
    tasks = list(env.load_tasks(cfg.tasks))[: cfg.limit]
    if not tasks:
        raise TaskFileError("no tasks to write a bench from")
    exact = _Exact(env, gamma)
    rows: list[dict[str, Any]] = []
    skipped = {"unwinnable": 0, "no exact value": 0, "no wrong step": 0}
    observed = env.observe(env.reset(tasks[0], task_rng(cfg.seed, tasks[0].task_id))) is not None
    try:
        for task in tqdm(tasks, desc="prm-bench", unit="task", disable=not cfg.progress, dynamic_ncols=True):
            rng = task_rng(cfg.seed, task.task_id)
            start = env.reset(task, rng)
            got = exact(start)
            if got is None:
                skipped["no exact value"] += 1
                continue
            if abs(got[1]) <= TOL and min(got[0].values(), default=0.0) >= -TOL:  # nothing to win, no step costs
                skipped["unwinnable"] += 1
                continue
            kinds = [True, False] * (cfg.per_task // 2)
            made = []
            for flawed in (kinds[i] for i in rng.permutation(len(kinds))):
                transitions = _sample(env, exact, start, flawed, rng, cfg.max_steps)
                if transitions is None:
                    made = None
                    break
                if not transitions:
                    made = []
                    break
                made.append(transitions)
            if made is None:
                skipped["no exact value"] += 1
                continue
            if not made:
                skipped["no wrong step"] += 1
                continue
            problem = env.render(start)
            for i, transitions in enumerate(made):
                row = _row(env, exact, task, transitions, rng, problem, observed)
                rows.append({"id": f"{task.task_id}#{i}", **row})
    finally:
        close = getattr(env, "close", None)
        if close is not None:
            close()
    if not rows:
        raise ConfigError(f"no task of {len(tasks)} gave a sample ({_counts(skipped)})")
    meta = {"generator": GENERATOR, "env": cfg.env, "env_kwargs": kwargs, "tasks": cfg.tasks, "limit": cfg.limit,
            "gamma": gamma, "seed": cfg.seed, "per_task": cfg.per_task, "max_steps": cfg.max_steps,
            "step_format": OBSERVED if observed else "action", "rows": len(rows),
            "flawed": sum(r["label"] >= 0 for r in rows), "tasks_used": len(rows) // cfg.per_task,
            "skipped": skipped}
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / BENCH_FILE, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    write_text_atomic(out / BENCH_META, json.dumps(meta, indent=2) + "\n")
    return out / BENCH_FILE, meta


def _counts(skipped: dict[str, int]) -> str:
    return ", ".join(f"{n} {why}" for why, n in skipped.items() if n) or "none skipped"


# ----------------------------------------------------------------------------- reading
def read_bench(path: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows and metadata of a bench directory (or its bench.jsonl).

    Raises:
        TaskFileError: a missing or malformed file (the line is named).
    """
    from ..envs.taskfiles import loads_json, read_text

    path = Path(path)
    d = path if path.is_dir() else path.parent
    rows_path, meta_path = d / BENCH_FILE, d / BENCH_META
    for p in (rows_path, meta_path):
        if not p.is_file():
            raise TaskFileError(f"{d}: not a prm-bench directory (no {p.name}; write one with prm-bench)")
    meta = loads_json(read_text(meta_path, "bench metadata"), str(meta_path))
    if not isinstance(meta, dict) or not isinstance(meta.get("env"), str) \
            or meta.get("step_format") not in ("action", "action+observation"):
        raise TaskFileError(f"{meta_path}: not prm-bench metadata (needs env and step_format)")
    rows = []
    for n, line in enumerate(read_text(rows_path, "bench rows").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{rows_path}:{n}"
        row = loads_json(line, where)
        if not isinstance(row, dict):
            raise TaskFileError(f"{where}: expected a JSON object")
        steps, q, v, label = row.get("steps"), row.get("q_star"), row.get("v_star"), row.get("label")
        if not isinstance(row.get("problem"), str) or not isinstance(row.get("task"), str) \
                or not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
            raise TaskFileError(f"{where}: needs problem and task (strings) and steps (a non-empty list of strings)")
        if not (isinstance(q, list) and isinstance(v, list) and len(q) == len(v) == len(steps)
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in q + v)):
            raise TaskFileError(f"{where}: q_star and v_star must be lists of finite numbers, one per step")
        if isinstance(label, bool) or not isinstance(label, int) or label != first_wrong(q, v):
            raise TaskFileError(f"{where}: label {label!r} disagrees with its exact values "
                                f"(the first step with q_star < v_star is {first_wrong(q, v)})")
        rows.append(row)
    if not rows:
        raise TaskFileError(f"{rows_path}: no rows")
    return rows, meta


# ----------------------------------------------------------------------------- evaluation
@dataclass(frozen=True)
class BenchEvalConfig:
    """``prm-eval``: a PRM (or an LLM judge) scored on a ``prm-bench`` set."""

    bench: str | None = field(default=None, metadata={"help": "A directory written by prm-bench."})
    threshold: float = field(default=0.5, metadata={
        "help": "A step scored under this is the predicted error (the first such step)."})
    batch_size: int = field(default=32, metadata={"help": "Paths per forward pass (PRM)."})
    backend: str = field(default="prm", metadata={
        "help": "prm (score with the PRM directory) or openai (an OpenAI-compatible server judges, "
                "ProcessBench's critic prompt)."})
    base_url: str | None = field(default=None, metadata={"help": "openai: the server, e.g. http://127.0.0.1:8000/v1."})
    max_tokens: int = field(default=1024, metadata={"help": "openai: longest critique a judge may write."})
    out: str | None = field(default=None, metadata={"help": "Also write the metrics and predictions as JSON here."})

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"threshold must lie in (0, 1), got {self.threshold}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.backend not in ("prm", "openai"):
            raise ConfigError(f"backend must be prm or openai, got {self.backend!r}")
        if self.backend == "openai" and not self.base_url:
            raise ConfigError("the openai backend needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be >= 1, got {self.max_tokens}")


# ProcessBench's critic prompt (Zheng et al., 2024), in its words
_CRITIC = ("The following is a math problem and a solution (split into paragraphs, enclosed with tags and indexed "
           "from 0):\n\n[Math Problem]\n\n{problem}\n\n[Solution]\n\n{tagged_response}\n\nYour task is to review "
           "and critique the solution paragraph by paragraph. Once you identify an error in a paragraph, return the "
           "index of the paragraph where the earliest error occurs. Otherwise, return the index of -1 (which "
           "typically denotes \"not found\").\n\nPlease put your final answer (i.e., the index) in \\boxed{{}}.")


def judge_prompt(problem: str, steps: Sequence[str]) -> str:
    """ProcessBench's critic prompt for one sample, its steps tagged ``<paragraph_i>``."""
    tagged = "\n\n".join(f"<paragraph_{i}>\n{s}\n</paragraph_{i}>" for i, s in enumerate(steps))
    return _CRITIC.format(problem=problem, tagged_response=tagged)


def parse_judgement(text: str) -> int | None:
    """The index in the judge's last ``\\boxed{...}``; None when there is none."""
    found = re.findall(r"\\boxed\{\s*(-?\d+)\s*\}", text)
    return int(found[-1]) if found else None


def _f1(predicted: Sequence[int | None], labels: Sequence[int]) -> dict[str, float]:
    flawed = [p == y for p, y in zip(predicted, labels) if y >= 0]
    correct = [p == -1 for p, y in zip(predicted, labels) if y < 0]
    a = float(np.mean(flawed)) if flawed else math.nan
    b = float(np.mean(correct)) if correct else math.nan
    f1 = 2 * a * b / (a + b) if a + b > 0 else 0.0
    return {"accuracy_flawed": a, "accuracy_correct": b, "first_error_f1": f1 if a == a and b == b else math.nan}


def _bench_metrics(rows: list[dict], scores: list[list[float] | None], predicted: list[int | None]
                   ) -> dict[str, Any]:
    from ..prm.metrics import auroc_by_depth, depth_mean

    labels = [r["label"] for r in rows]
    result: dict[str, Any] = {"samples": len(rows), "flawed": sum(y >= 0 for y in labels), **_f1(predicted, labels)}
    scored = [(r, s) for r, s in zip(rows, scores) if s is not None]
    if scored:
        flat = np.array([x for _, s in scored for x in s])
        # a path cut to what the model reads has scores for its first steps only
        good = np.array([step_is_good(q, v) for r, s in scored for q, v in zip(r["q_star"][: len(s)], r["v_star"])])
        depth = np.array([i for _, s in scored for i in range(len(s))])
        by_depth = auroc_by_depth(flat, good, depth)
        result["within_depth_auroc"] = depth_mean(by_depth)
        result["auroc_by_depth"] = by_depth
        by_task: dict[str, list[tuple[float, dict]]] = {}
        for r, s in scored:
            by_task.setdefault(r["task"], []).append((min(s), r))
        groups = [g for g in by_task.values() if len(g) > 1]
        if groups:
            picks = [max(g, key=lambda x: x[0])[1] for g in groups]
            result["best_of_n"] = {
                "tasks": len(groups), "n": float(np.mean([len(g) for g in groups])),
                "picked_flawless": float(np.mean([p["label"] < 0 for p in picks])),
                "picked_success": float(np.mean([p["final_answer_correct"] for p in picks])),
                "random_flawless": float(np.mean([np.mean([r["label"] < 0 for _, r in g]) for g in groups])),
                "random_success": float(np.mean([np.mean([r["final_answer_correct"] for _, r in g]) for g in groups])),
            }
    else:
        result["within_depth_auroc"] = math.nan
    result["unscored"] = sum(s is None for s in scores)
    result["cut"] = sum(s is not None and len(s) < len(r["steps"]) for r, s in zip(rows, scores))
    return result


def first_flagged(scores: Sequence[float] | None, threshold: float) -> int | None:
    """The predicted earliest error: the first step scored under ``threshold`` (-1: none; None: unscored)."""
    return None if scores is None else next((i for i, x in enumerate(scores) if x < threshold), -1)


def calibrated_f1(rows: list[dict], scores: list[list[float] | None]) -> dict[str, Any] | None:
    """First-error F1 at a threshold fitted on other tasks than those it is measured on.

    A PRM trained on values scores a correct step of a hard task low, so a fixed 0.5 can
    flag every sample. The tasks are split in two halves (by a hash of the task); the
    threshold that maximises F1 on one half (over the distinct step scores there) is
    measured on the other, and the other way round; the result is the mean of the two.
    None when a half has no flawed or no correct sample.
    """
    import zlib

    halves: list[list[int]] = [[], []]
    for i, r in enumerate(rows):
        halves[zlib.crc32(r["task"].encode()) % 2].append(i)
    out = []
    for fit, test in (halves, halves[::-1]):
        fit_labels = [rows[i]["label"] for i in fit]
        test_labels = [rows[i]["label"] for i in test]
        if not fit or not test or min(fit_labels) >= 0 or max(fit_labels) < 0 \
                or min(test_labels) >= 0 or max(test_labels) < 0:
            return None
        candidates = np.unique([x for i in fit if scores[i] is not None for x in scores[i]])
        if len(candidates) > 400:
            candidates = np.quantile(candidates, np.linspace(0, 1, 401))
        candidates = np.append(candidates, np.nextafter(candidates[-1], np.inf)) if len(candidates) else [0.5]

        def f1(threshold: float, idx: list[int], labels: list[int]) -> dict[str, float]:
            return _f1([first_flagged(scores[i], threshold) for i in idx], labels)

        best = max(candidates, key=lambda t: f1(float(t), fit, fit_labels)["first_error_f1"])
        out.append((float(best), f1(float(best), test, test_labels)))
    return {"thresholds": [t for t, _ in out],
            **{k: float(np.mean([m[k] for _, m in out])) for k in ("first_error_f1", "accuracy_flawed",
                                                                   "accuracy_correct")}}


def evaluate_bench(model: str | None, cfg: BenchEvalConfig,
                   progress: Callable[[str], object] | None = None) -> tuple[dict[str, Any], list[dict]]:
    """Score ``model`` (a PRM directory, or the judge's model name with ``backend`` openai) on
    ``cfg.bench``; return (metrics, one prediction per row).

    Raises:
        ConfigError: a PRM of another env, or every path longer than the PRM reads.
        ModelError: not a PRM directory; the judge's server fails.
        TaskFileError: a malformed bench.
    """
    if not cfg.bench:
        raise ConfigError("give --bench DIR (written by prm-bench)")
    rows, meta = read_bench(cfg.bench)
    if cfg.backend == "openai":
        predicted, scores = _judge(model, cfg, rows)
    else:
        if not model:
            raise ConfigError("give the PRM directory (written by train-prm)")
        scores = _prm_scores(model, cfg, rows, meta)
        predicted = [first_flagged(s, cfg.threshold) for s in scores]
        if all(s is None for s in scores):
            raise ConfigError(f"no sample of {cfg.bench} has a first step the PRM can read (too long)")
    metrics = _bench_metrics(rows, scores, predicted)
    metrics.update(env=meta["env"], bench=str(cfg.bench), backend=cfg.backend, threshold=cfg.threshold)
    if cfg.backend != "openai":
        metrics["calibrated"] = calibrated_f1(rows, scores)
    preds = [{"id": r.get("id"), "label": r["label"], "predicted": p, "scores": s}
             for r, p, s in zip(rows, predicted, scores)]
    if cfg.out:
        from ..data.store import write_text_atomic

        write_text_atomic(cfg.out, json.dumps({"metrics": _plain(metrics), "predictions": preds}) + "\n")
    return metrics, preds


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _prm_scores(model_dir: str, cfg: BenchEvalConfig, rows: list[dict], meta: dict) -> list[list[float] | None]:
    from ..prm.format import OBSERVED, step_action
    from ..prm.model import load_prm, score_batch

    tokenizer, model, prm = load_prm(model_dir)
    trained_on = sorted(prm.value_range)
    if trained_on and meta["env"] not in trained_on:
        raise ConfigError(f"the PRM in {model_dir} was trained on {', '.join(trained_on)}, the bench is "
                          f"{meta['env']}: score it with a PRM of that env")
    if prm.step_format == OBSERVED and meta["step_format"] != OBSERVED:
        raise ConfigError(f"the PRM in {model_dir} reads observations; the bench's steps have none")
    if meta["step_format"] == OBSERVED and prm.step_format != OBSERVED:
        paths = [(r["problem"], [step_action(s, OBSERVED) for s in r["steps"]]) for r in rows]
    else:
        paths = [(r["problem"], list(r["steps"])) for r in rows]
    paths = [_readable(tokenizer, prompt, steps, prm.max_length) for prompt, steps in paths]
    scores = score_batch(model, tokenizer, paths, prm.max_length, batch_size=cfg.batch_size, skip_long=True)
    return [s if steps else None for (_, steps), s in zip(paths, scores)]  # not even the first step fits: None


def _readable(tokenizer, prompt: str, steps: list[str], max_length: int) -> tuple[str, list[str]]:
    """The path cut to its longest prefix of steps the model reads (the model is causal, so the
    scores of those steps are the ones the whole path would get); all steps where they fit."""
    from ..prm.format import path_text

    def fits(k: int) -> bool:
        return len(tokenizer(path_text(prompt, steps[:k]))["input_ids"]) <= max_length

    if fits(len(steps)):
        return prompt, steps
    lo, hi = 0, len(steps)  # fits(lo) or lo == 0; not fits(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return prompt, steps[:lo]


def _judge(model: str | None, cfg: BenchEvalConfig, rows: list[dict]) -> tuple[list[int | None], list[None]]:
    from .policies.openai import OpenAIBackend

    backend = OpenAIBackend(cfg.base_url, model)
    texts = backend.chat([judge_prompt(r["problem"], r["steps"]) for r in rows], cfg.max_tokens)
    return [parse_judgement(t) for t in texts], [None] * len(rows)
