"""Reconstruction error ``x`` vs ``G(E(x))`` for families with an encoder (torchmetrics).

L1 and MSE are per-element means; SSIM (Wang et al. 2004, 11x11 Gaussian window) is the mean
over images. Images are compared in [0, 1] whatever the data's value range, so numbers are
comparable across recipes; non-image data (2D mixtures) gets L1 and MSE in its own units.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from torchmetrics import MeanAbsoluteError, MeanSquaredError
from torchmetrics.image import StructuralSimilarityIndexMeasure

from ganzoo.metrics.domain import unit_range


@torch.no_grad()
def reconstruction_errors(
    reconstruct: Callable[[Tensor], Tensor],
    batches: Iterable[Tensor],
    value_range=None,
    images: bool = True,
) -> dict[str, float]:
    """``l1``, ``mse`` (and ``ssim`` for images) of ``reconstruct(x)`` against ``x``, over
    ``batches``."""
    metrics = {"l1": MeanAbsoluteError(), "mse": MeanSquaredError()}
    if images:
        metrics["ssim"] = StructuralSimilarityIndexMeasure(data_range=1.0)
    count = 0
    for x in batches:
        x_hat = reconstruct(x)
        if x_hat.shape != x.shape:
            raise ValueError(
                f"reconstructions have shape {tuple(x_hat.shape)} but inputs {tuple(x.shape)}"
            )
        if images:
            x, x_hat = unit_range(x, value_range), unit_range(x_hat, value_range)
        for metric in metrics.values():
            metric.to(x.device).update(x_hat.float(), x.float())
        count += x.shape[0]
    if count == 0:
        raise ValueError("no data to reconstruct")
    return {name: float(metric.compute()) for name, metric in metrics.items()}
