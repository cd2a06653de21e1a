"""Pictures for every logger: one call sends an image, or a matplotlib figure, to each logger
attached to the trainer through that logger's own API.

- TensorBoard: ``SummaryWriter.add_image`` (the IMAGES tab, one slider step per epoch).
- MLflow: ``MlflowClient.log_image(run_id, image, key=tag, step=step)`` (the run's Images view,
  stepped like a metric; files under the run's artifacts, ``images/``).
- Weights & Biases: ``WandbLogger.log_image`` (a media panel, at the trainer's global step, the
  x-axis of every other W&B chart; the caption names the epoch).

Other loggers (CSV) have no image API and are skipped: the callbacks keep writing their PNG files
to the run directory whatever the loggers.
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import MLFlowLogger, TensorBoardLogger, WandbLogger
from torch import Tensor

#: Loggers with an image API that :func:`log_image` uses.
IMAGE_LOGGERS = (TensorBoardLogger, MLFlowLogger, WandbLogger)


def log_image(trainer: pl.Trainer, tag: str, image: Tensor, step: int) -> None:
    """Log one ``(C, H, W)`` image with values in [0, 1] (e.g. a ``make_grid`` result) as ``tag``
    at ``step`` (the callbacks pass the epoch) to every attached logger that takes images."""
    if trainer.global_rank != 0:
        return
    image = image.detach().float().cpu()
    if image.dim() != 3 or image.shape[0] not in (1, 3, 4):
        raise ValueError(f"log_image needs one (C, H, W) image, got shape {list(image.shape)}")
    array: np.ndarray | None = None  # (H, W, C) uint8, made once for the loggers that want it
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(tag, image, global_step=step)
            continue
        if not isinstance(logger, IMAGE_LOGGERS):
            continue
        if array is None:
            array = to_uint8_hwc(image)
        if isinstance(logger, MLFlowLogger):
            logger.experiment.log_image(logger.run_id, array, key=tag, step=step)
        else:
            logger.log_image(
                key=tag, images=[array], step=trainer.global_step, caption=[f"epoch {step}"]
            )


def log_figure(trainer: pl.Trainer, tag: str, figure, step: int) -> None:
    """Log a matplotlib figure (e.g. a 2D scatter plot), rendered at its own size and dpi, as
    :func:`log_image` does. The figure stays open: the caller saves and closes it."""
    if trainer.global_rank != 0:
        return
    if any(isinstance(lg, IMAGE_LOGGERS) for lg in trainer.loggers):
        log_image(trainer, tag, figure_to_tensor(figure), step)


def figure_to_tensor(figure) -> Tensor:
    """A matplotlib figure rendered to a ``(3, H, W)`` float image in [0, 1]."""
    figure.canvas.draw()
    rgba = np.asarray(figure.canvas.buffer_rgba())
    return torch.from_numpy(rgba[..., :3].copy()).permute(2, 0, 1).float().div(255)


def to_uint8_hwc(image: Tensor) -> np.ndarray:
    """A ``(C, H, W)`` image in [0, 1] as an ``(H, W, C)`` uint8 array (one channel: ``(H, W)``),
    rounded as ``torchvision.utils.save_image`` rounds."""
    array = image.mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    return array[..., 0] if array.shape[-1] == 1 else array
