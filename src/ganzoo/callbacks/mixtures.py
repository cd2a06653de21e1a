"""Mode-coverage figures on 2D mixtures, computed at every validation."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from ganzoo.metrics.mixtures import mode_statistics


class ModeCoverage(pl.Callback):
    """Logs ``val/modes``, ``val/high_quality`` (%) and ``val/reverse_kl`` from ``num_samples``
    generated points, when the datamodule is a Gaussian mixture (it has ``modes`` and ``std``).
    Does nothing on other data, so it can stay in the default callbacks."""

    def __init__(self, num_samples: int = 2500, threshold: float = 3.0, seed: int = 1234):
        self.num_samples = num_samples
        self.threshold = threshold
        self.seed = seed

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dm = trainer.datamodule
        if trainer.sanity_checking or not hasattr(dm, "modes"):
            return
        generator = torch.Generator(pl_module.device).manual_seed(self.seed + trainer.current_epoch)
        samples = pl_module.sample(self.num_samples, generator=generator)
        stats = mode_statistics(samples, dm.modes, dm.std, self.threshold)
        pl_module.log_dict({f"val/{k}": stats[k] for k in ("modes", "high_quality", "reverse_kl")})
