"""Evaluation metrics (torchmetrics wherever it has them)."""

from ganzoo.metrics.mixtures import mode_statistics

__all__ = ["mode_statistics"]
