"""A tiny family with an encoder, trained through the real run machinery, for testing what ganzoo
does with any encoder family (VAEGAN, AlphaGAN) without depending on either."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor, nn

from conftest import compose_run, quick_overrides
from ganzoo.models import FAMILIES
from ganzoo.models.base import GenerativeModel
from ganzoo.train import build_run


class TinyAutoencoder(GenerativeModel):
    """x -> z -> x, one player trained on mean squared reconstruction error. Not a GAN: only the
    public API of the encoder families (``has_encoder``, ``encode``, ``reconstruct``)."""

    players = ("autoencoder",)
    has_encoder = True

    def __init__(
        self,
        shape: list[int],
        latent_dim: int = 4,
        squash: bool = True,
        num_fixed_samples: int = 64,
    ):
        super().__init__(
            latent_dim=latent_dim,
            prior=None,
            optimizer={"autoencoder": functools.partial(torch.optim.Adam, lr=1e-2)},
            lr_scheduler=None,
            num_fixed_samples=num_fixed_samples,
        )
        self.save_hyperparameters(logger=False)
        size = math.prod(shape)
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(size, latent_dim))
        self.generator = nn.Sequential(
            nn.Linear(latent_dim, size),
            nn.Sigmoid() if squash else nn.Identity(),
            nn.Unflatten(1, tuple(shape)),
        )

    def player_parameters(self, player: str):
        return [*self.encoder.parameters(), *self.generator.parameters()]

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def training_step(self, batch: Any, batch_idx: int) -> None:
        x = self.inputs(batch)
        opt = self.player_optimizers()["autoencoder"]
        with self.toggled_optimizer(opt):
            loss = F.mse_loss(self.reconstruct(x), x)
            self._step(opt, loss)
        self.log("train/loss_recon", loss)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x = self.inputs(batch)
        self.log("val/loss_recon", F.mse_loss(self.reconstruct(x), x))


def register(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``load_checkpoint`` find the family, as it finds VAEGAN and AlphaGAN."""
    monkeypatch.setitem(FAMILIES, "TinyAutoencoder", __name__)


def train_tiny(overrides: list[str], output_dir: Path) -> Path:
    """Train a TinyAutoencoder with the trainer, callbacks and loggers ``ganzoo-train`` would
    build for ``overrides`` (data included); returns its ``last.ckpt``."""
    cfg = compose_run([*quick_overrides(), *overrides], output_dir)
    datamodule, _, trainer = build_run(cfg)
    model = TinyAutoencoder(shape=list(datamodule.shape), squash=datamodule.value_range is not None)
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    trainer.fit(model, datamodule=datamodule)
    return output_dir / "checkpoints" / "last.ckpt"
