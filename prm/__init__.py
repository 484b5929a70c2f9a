"""Process reward models: step datasets, model, trainer, metrics.

Only the torch-free parts are imported here; ``treeq.prm.model`` and ``treeq.prm.train``
load torch and transformers when imported.
"""

from .config import LOSSES, StepDatasetConfig, TinyModelConfig, TrainConfig
from .metrics import auroc, auroc_by_depth, spearman

__all__ = ["auroc", "auroc_by_depth", "spearman", "StepDatasetConfig", "TrainConfig", "TinyModelConfig", "LOSSES"]
