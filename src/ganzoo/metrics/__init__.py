"""Evaluation metrics (torchmetrics wherever it has them).

Numbers: :mod:`~ganzoo.metrics.distances` (FID, KID, Inception-Score formula),
:mod:`~ganzoo.metrics.manifold` (precision / recall, density / coverage),
:mod:`~ganzoo.metrics.parzen` (Parzen-window log-likelihood),
:mod:`~ganzoo.metrics.reconstruction`, :mod:`~ganzoo.metrics.mixtures` (2D mode statistics).
Feature networks: :mod:`~ganzoo.metrics.domain` (a classifier trained on the data),
:mod:`~ganzoo.metrics.inception`. Configurable metric objects for ``ganzoo-eval`` and the
training callback: :mod:`~ganzoo.metrics.suite`.
"""

from ganzoo.metrics.distances import classifier_score, frechet_distance, kernel_distance
from ganzoo.metrics.domain import DomainFeatures
from ganzoo.metrics.inception import InceptionFeatures, InceptionWeightsError
from ganzoo.metrics.manifold import density_coverage, precision_recall
from ganzoo.metrics.mixtures import kl_to_uniform, mode_statistics
from ganzoo.metrics.parzen import parzen_log_likelihood
from ganzoo.metrics.suite import (
    EvalContext,
    FeatureSpaceMetrics,
    Metric,
    ModeStatistics,
    ParzenWindow,
    Reconstruction,
    StackedMNISTModes,
    run_metrics,
)

__all__ = [
    "DomainFeatures",
    "EvalContext",
    "FeatureSpaceMetrics",
    "InceptionFeatures",
    "InceptionWeightsError",
    "Metric",
    "ModeStatistics",
    "ParzenWindow",
    "Reconstruction",
    "StackedMNISTModes",
    "classifier_score",
    "density_coverage",
    "frechet_distance",
    "kernel_distance",
    "kl_to_uniform",
    "mode_statistics",
    "parzen_log_likelihood",
    "precision_recall",
    "run_metrics",
]
