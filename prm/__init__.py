"""Process reward models: step datasets, model, trainer, metrics."""

from .metrics import auroc

__all__ = ["auroc"]
