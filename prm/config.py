"""Settings of the PRM components: one frozen dataclass each, validated on creation.

Kept free of torch, pyarrow and DuckDB so that the CLI reads option defaults and help
texts (the ``help`` metadata) without loading them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from ..errors import ConfigError

__all__ = ["StepDatasetConfig", "TrainConfig", "TinyModelConfig", "LOSSES", "check_model_shape"]

LOSSES = ("bce", "mse", "pairwise")


@dataclass(frozen=True)
class StepDatasetConfig:
    """How tree rows become labelled step paths."""

    min_visits: int = field(default=1, metadata={"help": "A step needs at least this many visits to be labelled "
                                                         "(and so does every step above it)."})
    threshold: float = field(default=0.5, metadata={"help": "Hard label: the soft label is above this value."})
    val_fraction: float = field(default=0.1, metadata={"help": "Share of tasks (never of paths) held out for "
                                                              "validation."})
    seed: int = field(default=0, metadata={"help": "Seed of the task split."})
    labels: str = field(default="value", metadata={
        "help": "value (the step's value scaled to [0, 1]) or optimal (1 where the step's value is its best "
                "sibling's and above 0, else 0: the step keeps the optimal value; for discounted envs such as "
                "Blocksworld, where value labels mix how far a state is with how good the step is)."})
    proven_steps: bool = field(default=False, metadata={
        "help": "Also label steps the solver proved with fewer than --min-visits visits (their values are exact: "
                "Blocksworld's goal steps are proven when their parent is expanded and never visited); off by "
                "default, where it would add every unvisited last step of a Game of 24 tree."})
    observations: bool = field(default=True, metadata={
        "help": "Where the trees record what the env answered to each step (schema v3, envs that act in a world: "
                "Blocksworld, TextWorld, gym, OpenSpiel), a step reads its action, a newline and that observation; "
                "False: actions only."})

    def __post_init__(self) -> None:
        if self.min_visits < 0:
            raise ConfigError(f"min_visits must be >= 0, got {self.min_visits}")
        if not 0.0 <= self.threshold < 1.0:
            raise ConfigError(f"threshold must be in [0, 1), got {self.threshold}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.labels not in ("value", "optimal"):
            raise ConfigError(f"labels must be value or optimal, got {self.labels!r}")
        if not isinstance(self.observations, bool):
            raise ConfigError(f"observations must be true or false, got {self.observations!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of ``train-prm``."""

    loss: str = field(default="bce", metadata={"help": "bce (soft labels), mse (regression on Q) or pairwise "
                                                       "(rStar-Math's preference loss over sibling steps)."})
    epochs: float = field(default=0.6, metadata={"help": "Passes over the training paths, each with its extra passes "
                                                            "(--first-passes, --positive-passes); the default fits "
                                                            "the Game of 24 trees of 300 puzzles in under ten "
                                                            "minutes on two CPU cores."})
    max_steps: int | None = field(default=None, metadata={"help": "Stop after this many optimisation steps; "
                                                                 "None: the epochs decide."})
    batch_size: int = field(default=16, metadata={"help": "Rows per optimisation step: a row packs the paths that "
                                                             "share all but their last step (pairwise: pairs)."})
    lr: float | None = field(default=None, metadata={"help": "Peak learning rate (linear decay after warm-up); "
                                                     "None: 1e-3 for the default model, 2e-5 for a pretrained one."})
    # the defaults of ``lr`` by model (``learning_rate``): a small model trained from scratch takes
    # large steps; a pretrained one is fine-tuned with small ones
    SCRATCH_LR: ClassVar[float] = 1e-3
    PRETRAINED_LR: ClassVar[float] = 2e-5
    warmup_ratio: float = field(default=0.05, metadata={"help": "Share of steps spent warming the learning rate up."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    rewrite: float = field(default=1.0, metadata={"help": "Share of training steps the env rewords "
                                                         "(operands reordered, as a model writes them) and of "
                                                         "paths it renames (Blocksworld: the colours permuted); "
                                                         "0: never."})
    rewordings: int = field(default=1, metadata={"help": "Copies of each training path, each worded by the env on "
                                                        "its own (envs that reword or rename only); an epoch passes "
                                                        "over every copy."})
    first_passes: int = field(default=32, metadata={"help": "Extra passes per epoch over the first steps alone, each "
                                                          "worded anew where the env rewords steps: the first steps "
                                                          "are the fewest labels of a tree and the hardest to fit."})
    positive_passes: int = field(default=3, metadata={"help": "Extra passes per epoch over every group of sibling "
                                                             "steps that holds the rarer label (above the threshold "
                                                             "where those are the fewer, else below), each worded "
                                                             "anew: the rare labels and their closest contrasts."})
    lm_weight: float = field(default=0.0, metadata={"help": "Weight of an auxiliary next-token loss on the paths' "
                                                           "own text, the input embeddings as its output layer "
                                                           "(nothing is added to the saved model): dense "
                                                           "supervision on every token of every observation; 0: "
                                                           "off (measured in docs/prm.md)."})
    save_every: int = field(default=200, metadata={"help": "Optimisation steps between checkpoints (resume points)."})
    seed: int = field(default=0, metadata={"help": "Seed of the model's initialisation and the data order."})

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.epochs <= 0:
            raise ConfigError(f"epochs must be > 0, got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not 0.0 <= self.rewrite <= 1.0:
            raise ConfigError(f"rewrite must be in [0, 1], got {self.rewrite}")
        if not isinstance(self.rewordings, int) or self.rewordings < 1:
            raise ConfigError(f"rewordings must be an integer >= 1, got {self.rewordings!r}")
        if not isinstance(self.first_passes, int) or self.first_passes < 0:
            raise ConfigError(f"first_passes must be an integer >= 0, got {self.first_passes!r}")
        if not isinstance(self.positive_passes, int) or self.positive_passes < 0:
            raise ConfigError(f"positive_passes must be an integer >= 0, got {self.positive_passes!r}")
        if not 0.0 <= self.lm_weight < math.inf:
            raise ConfigError(f"lm_weight must be a finite number >= 0, got {self.lm_weight}")
        if self.save_every < 1:
            raise ConfigError(f"save_every must be >= 1, got {self.save_every}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")

    def learning_rate(self, pretrained: bool) -> float:
        """``lr``, or its default for a pretrained model or one trained from scratch."""
        if self.lr is not None:
            return self.lr
        return self.PRETRAINED_LR if pretrained else self.SCRATCH_LR


def check_model_shape(hidden_size: int, heads: int, vocab_size: int) -> None:
    """The checks every model built from a config needs: heads divide the width, the BPE vocabulary holds the bytes.

    Raises:
        ConfigError: either fails.
    """
    if hidden_size % heads:
        raise ConfigError(f"hidden_size ({hidden_size}) must be a multiple of heads ({heads})")
    if vocab_size < 300:
        raise ConfigError(f"vocab_size must be >= 300 (256 bytes plus merges), got {vocab_size}")


@dataclass(frozen=True)
class TinyModelConfig:
    """The default model built from a config when no ``--model`` is given."""

    hidden_size: int = field(default=128, metadata={"help": "Width of the default model."})
    layers: int = field(default=4, metadata={"help": "Transformer layers of the default model."})
    heads: int = field(default=4, metadata={"help": "Attention heads of the default model."})
    vocab_size: int = field(default=1024, metadata={"help": "BPE vocabulary trained on the dataset's texts."})
    max_length: int = field(default=512, metadata={"help": "Longest path in tokens the default model reads."})
    window: int | None = field(default=None, metadata={"help": "Attention window of the default model: each token "
                                                               "sees the last N tokens only (0: the whole path). "
                                                               "Auto: just wide enough for the layers together to see "
                                                               "the longest step, where every env of the data says a "
                                                               "step's text holds its state (Game of 24), else 0; "
                                                               "None: auto."})

    def __post_init__(self) -> None:
        for name in ("hidden_size", "layers", "heads", "vocab_size", "max_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.window is not None and (not isinstance(self.window, int) or self.window < 0):
            raise ConfigError(f"window must be an integer >= 0, got {self.window!r}")
        check_model_shape(self.hidden_size, self.heads, self.vocab_size)
