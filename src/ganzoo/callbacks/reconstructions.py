"""Validation inputs beside their reconstructions, for families with an encoder."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import Tensor
from torchvision.utils import make_grid, save_image

from ganzoo.callbacks.media import log_image
from ganzoo.callbacks.samples import display_range
from ganzoo.metrics.suite import evaluating


def side_by_side(inputs: Tensor, recons: Tensor, nrow: int) -> Tensor:
    """Rows alternate: ``nrow`` inputs, then their ``nrow`` reconstructions, and so on."""
    n = inputs.shape[0] - inputs.shape[0] % nrow
    a = inputs[:n].reshape(n // nrow, nrow, *inputs.shape[1:])
    b = recons[:n].reshape(n // nrow, nrow, *recons.shape[1:])
    return torch.stack([a, b], dim=1).reshape(2 * n, *inputs.shape[1:])


class ReconstructionGrid(pl.Callback):
    """Every ``every_n_epochs`` epochs, reconstruct the first ``num_images`` validation images
    in eval mode; save ``<dirpath>/epoch_XXXX.png`` and log it as ``reconstructions`` to every
    logger (:mod:`ganzoo.callbacks.media`). Does nothing for families without an encoder and
    for non-image data."""

    def __init__(
        self, dirpath: str | Path, every_n_epochs: int = 1, num_images: int = 32, nrow: int = 8
    ):
        self.dirpath = Path(dirpath)
        self.every_n_epochs = every_n_epochs
        self.num_images = num_images
        self.nrow = nrow

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if not getattr(pl_module, "has_encoder", False) or trainer.global_rank != 0:
            return
        if epoch % self.every_n_epochs and epoch != trainer.max_epochs:
            return
        dm = trainer.datamodule
        dataset = getattr(dm, "val_set", None) or getattr(dm, "train_set", None)
        if dataset is None or len(dataset) == 0 or len(getattr(dm, "shape", ())) != 3:
            return
        x = torch.stack([dataset[i][0] for i in range(min(self.num_images, len(dataset)))]).to(
            pl_module.device
        )
        with torch.no_grad(), evaluating(pl_module):
            recon = pl_module.reconstruct(x)
        nrow = min(self.nrow, x.shape[0])  # fewer validation images than a row: one short row
        grid = make_grid(
            side_by_side(x, recon, nrow), nrow=nrow, normalize=True, value_range=display_range(dm)
        )
        self.dirpath.mkdir(parents=True, exist_ok=True)
        save_image(grid, self.dirpath / f"epoch_{epoch:04d}.png")
        log_image(trainer, "reconstructions", grid, epoch)
