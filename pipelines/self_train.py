"""``self-train``: the loop of expert iteration, measured round by round on held-out tasks.

Round 0 searches the training tasks with the starting policy (``--model``, or uniform
priors) and the env's default evaluator. Every round r then

1. searches the training tasks (round r > 0: with round r - 1's policy as the prior,
   ``--policy hf``, and its PRM as the value, ``--evaluator prm``),
2. trains a PRM on every tree so far (``train-prm``),
3. trains the policy on round r's trees, from round r - 1's policy (``train-policy``;
   round 0 starts from ``--model`` or a tiny model made as ``make-tiny-model`` makes it),
4. evaluates on the held-out tasks: the solved share at each budget of a ladder
   (``--stop-on-solve``: simulations to the first solution too), the policy alone
   (greedy, no search: pass@1), and the PRM's within-depth AUROC against exact values
   where the env has them (on reference trees of the held-out tasks). Round 0's search
   evaluation is the starting point (its own policy and evaluator); round r's uses the
   models round r trained.

Everything lands in ``out``: ``round-R/`` (trees, prm, policy, eval), ``self_train.json``
(the settings and the stages done, with their seconds), ``rounds.parquet`` (one row per
round and budget), ``rounds.md`` and ``rounds.png``. A killed run resumes at the stage
it reached: a finished stage is never redone, and a stage cut short resumes itself (the
search skips the tasks on disk, the trainers restart from their checkpoints).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..envs.base import Env, Task, is_success
from ..envs.registry import make_env
from ..errors import ConfigError, OutputError
from ..mcts.config import SearchConfig, resolve_defaults
from .config import PRMJobConfig, SearchJobConfig, SelfTrainConfig, TinyLMConfig
from .policies import make_hooks
from .policies.lm import LMConfig

__all__ = ["self_train", "split_tasks", "ROUNDS_COLUMNS"]

STATE_FILE = "self_train.json"
ROUNDS_COLUMNS = ("round", "budget", "tasks", "solved", "solved_share", "sims_to_solve", "policy_pass1",
                  "prm_auroc", "search_s", "prm_s", "policy_s", "eval_s", "policy", "evaluator")
_PLACE = ("progress", "workers")  # how fast and how loud, not what is computed


def split_tasks(env: Env, cfg: SelfTrainConfig) -> tuple[list[Task], list[Task]]:
    """(training tasks, held-out tasks) of ``cfg``.

    Raises:
        ConfigError: the held-out tasks overlap the training tasks (same id or same start
            state), or ``--holdout`` leaves no training task.
    """
    tasks = list(env.load_tasks(cfg.tasks))
    if cfg.eval_tasks is not None:
        held = list(env.load_tasks(cfg.eval_tasks))
        rng = np.random.default_rng(0)
        keys = {env.state_key(env.reset(t, rng)): t.task_id for t in tasks}
        ids = {t.task_id for t in tasks}
        clash = [t.task_id for t in held if t.task_id in ids or env.state_key(env.reset(t, rng)) in keys]
        if clash:
            raise ConfigError(f"--eval-tasks: {len(clash)} of the {len(held)} held-out tasks are training tasks too "
                              f"(e.g. {clash[0]!r}): held-out tasks must not overlap --tasks")
        train = tasks
    else:
        if cfg.holdout >= len(tasks):
            raise ConfigError(f"--holdout {cfg.holdout} leaves none of the {len(tasks)} tasks to train on")
        order = np.random.default_rng(cfg.split_seed).permutation(len(tasks))
        held = [tasks[i] for i in sorted(order[: cfg.holdout])]
        train = [tasks[i] for i in sorted(order[cfg.holdout :])]
    return train[: cfg.limit], held[: cfg.eval_limit]


class _State:
    """``self_train.json``: the run's settings and the stages done (stage -> its record)."""

    def __init__(self, out: Path, settings: dict) -> None:
        from ..data.store import write_text_atomic

        self.path, self._write = out / STATE_FILE, write_text_atomic
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise OutputError(f"{self.path} is unreadable ({exc}): give a new --out") from None
            if data.get("settings") != settings:
                diff = sorted(k for k in set(settings) | set(data.get("settings", {}))
                              if settings.get(k) != data.get("settings", {}).get(k))
                raise OutputError(f"{out} holds a self-train run of other settings ({', '.join(diff[:4])}): "
                                  f"rerun with its settings, or give a new --out")
            self.stages: dict[str, Any] = data.get("stages", {})
        else:
            if out.exists() and any(out.iterdir()):
                raise OutputError(f"{out} exists and holds no self-train run: give a new or empty --out")
            out.mkdir(parents=True, exist_ok=True)
            self.stages = {}
        self.settings = settings
        self.save()

    def save(self) -> None:
        self._write(self.path, json.dumps({"settings": self.settings, "stages": self.stages}, indent=1) + "\n")

    def run(self, name: str, say: Callable[[str], None], fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Run stage ``name`` (``fn(*args, **kw)``) unless it is done; record its result and seconds."""
        if name in self.stages:
            say(f"{name}: done before ({self.stages[name]['seconds']:.1f} s), skipped")
            return self.stages[name]["result"]
        say(f"{name} ...")
        t0 = time.perf_counter()
        result = fn(*args, **kw)
        seconds = time.perf_counter() - t0
        self.stages[name] = {"seconds": seconds, "result": result}
        self.save()
        say(f"{name}: {seconds:.1f} s")
        return result

    def seconds(self, name: str) -> float:
        return float(self.stages.get(name, {}).get("seconds", math.nan))


def self_train(cfg: SelfTrainConfig, say: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run (or resume) the loop of ``cfg``; return the rows of ``rounds.parquet``.

    Raises:
        ConfigError: overlapping task sets, bad settings.
        ModelError: a ``--model`` that cannot be loaded.
        OutputError: ``out`` holds something else, or a run of other settings.
    """
    env = make_env(cfg.env, **cfg.env_kwargs)
    train, held = split_tasks(env, cfg)
    if cfg.model is not None:  # a missing model is said before anything runs
        from .models import resolve_model

        resolve_model(cfg.model)
    out = Path(cfg.out).expanduser()
    settings = {k: v for k, v in asdict(cfg).items() if k not in _PLACE}
    settings["eval_budgets"] = list(cfg.eval_budgets)
    state = _State(out, settings)
    say(f"self-train {env.name}: {len(train)} training tasks, {len(held)} held-out tasks, rounds 0..{cfg.rounds}, "
        f"policy {cfg.method}; writing {out}")
    start_model = cfg.model
    if start_model is None:
        tiny = out / "start-model"

        def make_start() -> str:
            from .tiny_lm import make_tiny_model

            if tiny.exists():  # a make cut short: made again
                import shutil

                shutil.rmtree(tiny)
            return str(make_tiny_model(TinyLMConfig(env=cfg.env, env_kwargs=cfg.env_kwargs, tasks=cfg.tasks,
                                                    seed=cfg.seed, out=str(tiny))))

        start_model = state.run("start model", say, make_start)
    reference = out / "reference-trees"
    state.run("reference trees", say, _search, cfg, env, held, str(reference), cfg.simulations, None, None,
              stop=False, wave=1)
    rows: list[dict[str, Any]] = []
    trees: list[str] = []
    policy, prm = cfg.model, None  # what round r searches with (round 0: the start)
    for r in range(cfg.rounds + 1):
        rdir = out / f"round-{r}"
        tree_dir = str(rdir / "trees")
        state.run(f"round {r} search", say, _search, cfg, env, train, tree_dir, cfg.simulations, policy, prm,
                  stop=False, wave=cfg.wave_size)
        trees.append(tree_dir)
        prm_dir, policy_dir = str(rdir / "prm"), str(rdir / "policy")
        state.run(f"round {r} prm", say, _train_prm, cfg, list(trees), prm_dir)
        state.run(f"round {r} policy", say, _train_policy, cfg, tree_dir, policy or start_model, policy_dir)
        eval_policy, eval_prm = (cfg.model, None) if r == 0 else (policy_dir, prm_dir)
        result = state.run(f"round {r} eval", say, _evaluate, cfg, env, held, rdir / "eval", eval_policy, eval_prm,
                           start_model if r == 0 else policy_dir, prm_dir, str(reference))
        for b in cfg.eval_budgets:
            got = result["ladder"][str(b)]
            rows.append({
                "round": r, "budget": b, "tasks": got["tasks"], "solved": got["solved"],
                "solved_share": got["solved"] / got["tasks"] if got["tasks"] else math.nan,
                "sims_to_solve": got["sims_to_solve"], "policy_pass1": result["pass1"],
                "prm_auroc": result["prm_auroc"], "search_s": state.seconds(f"round {r} search"),
                "prm_s": state.seconds(f"round {r} prm"), "policy_s": state.seconds(f"round {r} policy"),
                "eval_s": state.seconds(f"round {r} eval"),
                "policy": "uniform" if eval_policy is None else eval_policy,
                "evaluator": "prm" if eval_prm else env.default_evaluator,
            })
        say(f"round {r}: " + ", ".join(f"solved@{row['budget']} {row['solved_share']:.1%}" for row in rows
                                       if row["round"] == r)
            + f", policy alone {result['pass1']:.1%}, PRM AUROC {result['prm_auroc']:.3f}")
        policy, prm = policy_dir, prm_dir
    write_outputs(out, rows)
    return rows


def _evaluate(cfg: SelfTrainConfig, env: Env, held: Sequence[Task], where: Path, policy: str | None,
              prm: str | None, greedy_model: str, prm_dir: str, reference: str) -> dict[str, Any]:
    """The held-out ladder (search with ``policy`` and ``prm`` at each budget), the policy alone, the PRM's AUROC."""
    ladder = {str(b): _search(cfg, env, held, str(where / f"budget-{b}"), b, policy, prm, stop=cfg.stop_on_solve,
                              wave=1) for b in cfg.eval_budgets}
    return {"ladder": ladder, "pass1": greedy_pass1(env, held, greedy_model, cfg.seed),
            "prm_auroc": prm_auroc(prm_dir, reference, cfg.progress)}


def _search(cfg: SelfTrainConfig, env: Env, tasks: Sequence[Task], out: str, budget: int, policy: str | None,
            prm: str | None, stop: bool, wave: int) -> dict[str, Any]:
    """Search ``tasks`` into ``out``; (tasks, solved, mean simulations of the solved ones)."""
    from .search import run_search

    model = policy is not None or prm is not None
    job = SearchJobConfig(
        env=cfg.env, env_kwargs=cfg.env_kwargs, tasks=cfg.tasks,
        search=SearchConfig(simulations=budget, selection=cfg.selection, stop_on_solve=stop,
                            wave_size=wave if model else 1),
        evaluator="prm" if prm else None, proposer="hf" if policy else None,
        lm=LMConfig(model=policy, prm=prm), seed=cfg.seed, out=out,
        workers=1 if model else cfg.workers, progress=cfg.progress)
    summary = run_search(job, tasks=tasks)
    return {"tasks": summary.tasks, "solved": summary.solved, "sims_to_solve": sims_to_solve(out, summary.run_id)}


def sims_to_solve(out: str, run_id: str) -> float:
    """Mean simulations of the solved tasks of run ``run_id`` in the store ``out`` (NaN: none solved)."""
    from ..data.store import connect

    with connect([out]) as con:
        got = con.execute("SELECT avg(simulations) FROM trees WHERE run_id = ? AND solved", [run_id]).fetchone()[0]
    return float(got) if got is not None else math.nan


def _train_prm(cfg: SelfTrainConfig, sources: list[str], out: str) -> dict[str, Any]:
    from ..prm.config import TrainConfig
    from .prm import train_prm

    job = PRMJobConfig(sources=tuple(sources), out=out, train=TrainConfig(max_steps=cfg.prm_steps, seed=cfg.seed),
                       best_of_n=0, eval_paths=1000, progress=cfg.progress)
    m = train_prm(job)
    return {k: m.get(k) for k in ("auroc_exact_within_depth_mean", "auroc_hard") if k in m}


def _train_policy(cfg: SelfTrainConfig, trees: str, model: str, out: str) -> dict[str, Any]:
    from .train_policy import PolicyTrainConfig, train_policy

    got = train_policy(PolicyTrainConfig(sources=(trees,), model=model, method=cfg.method, out=out,
                                         max_steps=cfg.policy_steps, seed=cfg.seed, progress=cfg.progress))
    return {k: v for k, v in got.items() if isinstance(v, (int, float, str))}


def greedy_pass1(env: Env, tasks: Sequence[Task], model: str | None, seed: int, max_steps: int = 100) -> float:
    """Share of ``tasks`` the policy alone solves: from the start, always the action of the highest prior.

    ``model`` None: uniform priors (the first legal action). One batched policy call per
    step over the tasks still running.
    """
    from .search import task_rng

    if not tasks:
        return math.nan
    search_cfg = resolve_defaults(SearchConfig(), env)
    rng = np.random.default_rng(seed)
    propose, _ = make_hooks(env, search_cfg, rng, "zero", "hf" if model else "uniform", LMConfig(model=model))
    states = [env.reset(t, task_rng(seed, t.task_id)) for t in tasks]
    live = list(range(len(tasks)))
    wins = 0
    for _ in range(max_steps):
        if not live:
            break
        proposals = propose([states[i] for i in live], search_cfg.proposals)
        still = []
        for i, props in zip(live, proposals):
            if not props:
                continue
            best = max(range(len(props)), key=lambda j: (props[j][1], -j))
            step = env.step(states[i], props[best][0], task_rng(seed + 1, tasks[i].task_id))
            if step.terminated or step.truncated:
                wins += is_success(step)
            else:
                states[i] = step.state
                still.append(i)
        live = still
    return wins / len(tasks)


def prm_auroc(prm_dir: str, reference: str, progress: bool) -> float:
    """The PRM's within-depth AUROC against exact step labels on the reference trees (NaN: no exact values)."""
    from ..prm.config import StepDatasetConfig
    from ..prm.dataset import build_step_dataset
    from ..prm.format import OBSERVED
    from ..prm.model import load_prm
    from .prm import evaluate

    tokenizer, model, meta = load_prm(prm_dir)
    # every task, scored as held out, its steps written as the PRM reads them
    ds = build_step_dataset([reference], StepDatasetConfig(val_fraction=0.0,
                                                           observations=meta.step_format == OBSERVED))
    job = PRMJobConfig(sources=(reference,), best_of_n=0, eval_paths=2000, progress=progress)
    got = evaluate(model, tokenizer, replace(ds, train=[], val=ds.val + ds.train), meta.max_length, job)
    value = got.get("auroc_exact_within_depth_mean")
    return float(value) if value is not None else math.nan


def write_outputs(out: Path, rows: list[dict[str, Any]]) -> None:
    """``rounds.parquet``, ``rounds.md`` and ``rounds.png`` from the rows."""
    import pyarrow as pa

    from ..data.store import write_parquet_atomic, write_text_atomic

    table = pa.table({c: [row[c] for row in rows] for c in ROUNDS_COLUMNS})
    write_parquet_atomic(table, out / "rounds.parquet")
    write_text_atomic(out / "rounds.md", rounds_markdown(rows))
    _plot(out / "rounds.png", rows)


def rounds_markdown(rows: list[dict[str, Any]]) -> str:
    """One line per round: the solved share at each budget, simulations to solve, pass@1, AUROC, stage times."""
    budgets = sorted({row["budget"] for row in rows})
    head = (["round"] + [f"solved@{b}" for b in budgets] + [f"sims to solve@{budgets[-1]}", "policy alone",
                                                            "PRM AUROC", "search s", "PRM s", "policy s", "eval s"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted({row["round"] for row in rows}):
        mine = {row["budget"]: row for row in rows if row["round"] == r}
        last = mine[budgets[-1]]
        cells = [str(r)] + [f"{mine[b]['solved']}/{mine[b]['tasks']} ({mine[b]['solved_share']:.1%})" for b in budgets]
        cells += [f"{last['sims_to_solve']:.1f}", f"{last['policy_pass1']:.1%}", f"{last['prm_auroc']:.3f}"]
        cells += [f"{last[k]:.0f}" for k in ("search_s", "prm_s", "policy_s", "eval_s")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plot(path: Path, rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plot import save_figure

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in sorted({row["round"] for row in rows}):
        mine = sorted((row["budget"], row["solved_share"]) for row in rows if row["round"] == r)
        ax.plot([b for b, _ in mine], [s for _, s in mine], marker="o", label=f"round {r}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("simulations per task")
    ax.set_ylabel("held-out tasks solved")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path, dpi=120, bbox_inches="tight")
