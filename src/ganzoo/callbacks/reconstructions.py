"""Validation inputs beside their reconstructions, for families with an encoder."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torch import Tensor
from torchvision.utils import make_grid, save_image

from ganzoo.callbacks.samples import to_unit_range


def side_by_side(inputs: Tensor, recons: Tensor, nrow: int) -> Tensor:
    """Rows alternate: ``nrow`` inputs, then their ``nrow`` reconstructions, and so on."""
    n = inputs.shape[0] - inputs.shape[0] % nrow
    a = inputs[:n].reshape(n // nrow, nrow, *inputs.shape[1:])
    b = recons[:n].reshape(n // nrow, nrow, *recons.shape[1:])
    return torch.stack([a, b], dim=1).reshape(2 * n, *inputs.shape[1:])


class ReconstructionGrid(pl.Callback):
    """Every ``every_n_epochs`` epochs, reconstruct the first ``num_images`` validation images
    in eval mode; save ``<dirpath>/epoch_XXXX.png`` and log it as ``reconstructions``.
    Does nothing for families without an encoder and for non-image data."""

    def __init__(self, dirpath: str | Path, every_n_epochs: int = 1, num_images: int = 32, nrow: int = 8):
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
        x = torch.stack([dataset[i][0] for i in range(min(self.num_images, len(dataset)))]).to(pl_module.device)
        was_training = pl_module.training
        pl_module.eval()
        try:
            with torch.no_grad():
                recon = pl_module.reconstruct(x)
        finally:
            pl_module.train(was_training)
        value_range = getattr(dm, "value_range", None)
        nrow = min(self.nrow, len(x))  # a validation set smaller than a row still gets a grid
        grid = side_by_side(to_unit_range(x, value_range), to_unit_range(recon, value_range), nrow)
        self.dirpath.mkdir(parents=True, exist_ok=True)
        save_image(grid, self.dirpath / f"epoch_{epoch:04d}.png", nrow=nrow)
        for lg in trainer.loggers:
            if isinstance(lg, TensorBoardLogger):
                lg.experiment.add_image("reconstructions", make_grid(grid, nrow=nrow), global_step=epoch)
