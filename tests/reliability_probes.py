"""Test helpers that ``ganzoo-train`` subprocesses load by config (``PYTHONPATH=tests``):
callbacks that interrupt, signal, poison a loss or record the noise at a chosen batch."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytorch_lightning as pl
import torch


def _at(trainer: pl.Trainer, epoch: int, batch: int, batch_idx: int) -> bool:
    return trainer.current_epoch == epoch and batch_idx == batch


class RaiseAt(pl.Callback):
    """Raise at the end of batch ``batch`` of epoch ``epoch`` (0-based): a crash between batches."""

    def __init__(self, epoch: int, batch: int):
        self.epoch, self.batch = epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if _at(trainer, self.epoch, self.batch, batch_idx):
            raise RuntimeError("interrupted by the test")


class PoisonParametersAndRaiseAt(pl.Callback):
    """At the end of batch ``batch`` of epoch ``epoch`` (0-based), after the divergence guard's
    check of that batch, make the discriminator's weights NaN and (``crash``) raise."""

    def __init__(self, epoch: int, batch: int, crash: bool = True):
        self.epoch, self.batch, self.crash = epoch, batch, crash

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if _at(trainer, self.epoch, self.batch, batch_idx):
            with torch.no_grad():
                next(pl_module.discriminator.parameters()).fill_(float("nan"))
            if self.crash:
                raise RuntimeError("interrupted by the test")


class SignalAt(pl.Callback):
    """Send ``signal`` to this process during batch ``batch`` of epoch ``epoch`` (0-based)."""

    def __init__(self, epoch: int, batch: int, signal: str = "SIGTERM"):
        self.epoch, self.batch, self.signal = epoch, batch, signal

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if _at(trainer, self.epoch, self.batch, batch_idx) and trainer.global_rank == 0:
            os.kill(os.getpid(), getattr(signal, self.signal))


class PoisonLoss(pl.Callback):
    """From batch ``batch`` of epoch ``epoch`` on, the loss function ``attribute`` of the module
    returns NaN (e.g. ``d_loss_fn``: the discriminator's)."""

    def __init__(self, attribute: str, epoch: int, batch: int):
        self.attribute, self.epoch, self.batch = attribute, epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if _at(trainer, self.epoch, self.batch, batch_idx):
            fn = getattr(pl_module, self.attribute)
            setattr(pl_module, self.attribute, lambda *a, **k: fn(*a, **k) * float("nan"))


class RecordNoise(pl.Callback):
    """Write this rank's first prior draw of training to ``<dirpath>/noise_rank<r>.pt``."""

    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0 and trainer.current_epoch == 0:
            state = torch.get_rng_state()
            z = pl_module.prior.sample(8)
            torch.set_rng_state(state)  # leave training's stream as it was
            self.dirpath.mkdir(parents=True, exist_ok=True)
            torch.save(z.cpu(), self.dirpath / f"noise_rank{trainer.global_rank}.pt")


class RecordPlainCalls(pl.Callback):
    """Record, at the first batch, whether the module calls ``loss.backward`` and the optimizers'
    steps directly (``GenerativeModel.plain_calls_suffice``, decided in the module's
    ``on_train_start``, which runs after the callbacks'); read by in-process tests. Uses no hook
    around the backward or the step itself."""

    flags: tuple[bool, bool] | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if RecordPlainCalls.flags is None:
            RecordPlainCalls.flags = (pl_module._plain_backward, pl_module._plain_step)


class CountStepHooks(pl.Callback):
    """Count the hooks Lightning calls around every backward and optimizer step (using them makes
    the module take Lightning's calls); read by in-process tests."""

    counts: dict[str, object] = {}

    def on_train_start(self, trainer, pl_module):
        CountStepHooks.counts = {
            "before_backward": 0,
            "after_backward": 0,
            "before_optimizer_step": 0,
        }

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        CountStepHooks.counts.setdefault(
            "plain", (pl_module._plain_backward, pl_module._plain_step)
        )

    def on_before_backward(self, trainer, pl_module, loss):
        CountStepHooks.counts["before_backward"] += 1

    def on_after_backward(self, trainer, pl_module):
        CountStepHooks.counts["after_backward"] += 1

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        CountStepHooks.counts["before_optimizer_step"] += 1

    def on_train_end(self, trainer, pl_module):
        CountStepHooks.counts["global_step"] = trainer.global_step
