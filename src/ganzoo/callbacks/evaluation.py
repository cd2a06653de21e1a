"""Evaluation during training: metrics of the suite logged as ``val/<name>``.

Goodfellow et al. stopped training on the Parzen estimate of the validation set; with this
callback any scalar of the suite (``val/parzen_ll``, ``val/fid_domain``, ``val/precision_domain``,
...) can be monitored by ``ModelCheckpoint`` and ``EarlyStopping``.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from ganzoo.metrics.suite import EvalContext, Metric, run_metrics


@contextlib.contextmanager
def own_random_state(device: torch.device) -> Iterator[None]:
    """Run a block without touching training's random streams: torch (CPU and ``device``),
    NumPy and Python ``random`` are as they were when the block ends, whatever it draws or seeds.
    """
    devices = [device] if device.type == "cuda" else []
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)


class Evaluation(pl.Callback):
    """Every ``every_n_epochs`` epochs (and at the last), at the end of validation, measure
    ``metrics`` on the held-out ``split`` and log every scalar as ``val/<name>``.

    Feature networks are prepared (trained or loaded) once, when fitting starts, and the real
    data's features are computed once. Everything runs on its own random state, so a run trains
    exactly as it would without this callback, with or without a warm cache. Every rank computes the same numbers (same seed), so
    monitors work under DDP. Runs with the validation loop: keep ``limit_val_batches > 0``, and
    prefer ``trainer.check_val_every_n_epoch`` for a sparser schedule when a monitor needs the
    value at every validation.

    Args:
        metrics: ``{name: metric}`` (:class:`~ganzoo.metrics.suite.Metric` objects, which Hydra
            instantiates from the callback's config).
        every_n_epochs: evaluation period in epochs.
        split: held-out split of the real data (``val``: the test set stays untouched).
        seed: seed of the generated samples (the same noise every time: epochs compare).
        batch_size: generation / feature-extraction batch size.
    """

    def __init__(
        self,
        metrics: Mapping[str, Any],
        every_n_epochs: int = 1,
        split: str = "val",
        seed: int = 0,
        batch_size: int = 500,
    ):
        if every_n_epochs < 1:
            raise ValueError(
                f"callbacks.evaluation.every_n_epochs must be >= 1, got {every_n_epochs}"
            )
        self.metrics: dict[str, Metric] = {
            name: m for name, m in dict(metrics).items() if m is not None
        }
        self.every_n_epochs = every_n_epochs
        self.split = split
        self.seed = seed
        self.batch_size = batch_size
        self.last: dict[str, float] = {}

    def context(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> EvalContext:
        return EvalContext(
            pl_module,
            trainer.datamodule,
            split=self.split,
            seed=self.seed,
            batch_size=self.batch_size,
        )

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Outside validation's inference mode: a domain classifier may have to be trained here.
        ctx = self.context(trainer, pl_module)
        with own_random_state(pl_module.device):
            for metric in self.metrics.values():
                if metric.skip_reason(ctx) is None:
                    metric.prepare(ctx)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if trainer.sanity_checking or (epoch % self.every_n_epochs and epoch != trainer.max_epochs):
            return
        with own_random_state(pl_module.device):
            results, _ = run_metrics(self.metrics, self.context(trainer, pl_module))
        self.last = {
            f"val/{name}": float(entry["value"])
            for name, entry in results.items()
            if isinstance(entry["value"], (int, float))
        }
        pl_module.log_dict(self.last)
