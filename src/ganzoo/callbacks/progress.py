"""Progress for logs: a few plain lines per epoch when nobody watches a terminal."""

from __future__ import annotations

import math
import sys
import time

import pytorch_lightning as pl


class PlainProgress(pl.Callback):
    """When stdout is not a terminal (``nohup``, SLURM, a study's parallel jobs, a pipe), turn
    Lightning's progress bar off and print ``lines_per_epoch`` plain lines per training epoch,
    and one after each validation, instead of a bar redrawn at every refresh (megabytes per run)::

        epoch 3/10  batch 100/400 (25%)  41.2 batch/s  train/loss_d=1.32 train/loss_g=0.71
        epoch 3/10  validation  val/loss_d=1.3 val/modes=7 val/reverse_kl=0.12

    On a terminal it does nothing (the bar stays); ``enable_progress_bar=false`` silences both.

    Args:
        lines_per_epoch: training lines per epoch, evenly spaced (the last at the epoch's end).
        terminal: ``None`` asks ``sys.stdout.isatty()``; ``true``/``false`` force the choice
            (``false``: plain lines even on a terminal).
    """

    def __init__(self, lines_per_epoch: int = 4, terminal: bool | None = None):
        if lines_per_epoch < 1:
            raise ValueError(
                f"callbacks.progress.lines_per_epoch must be >= 1, got {lines_per_epoch}"
            )
        self.lines_per_epoch = lines_per_epoch
        self.terminal = terminal
        self.active = False
        self._epoch_start = 0.0
        self._due: set[int] = set()

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        terminal = sys.stdout.isatty() if self.terminal is None else self.terminal
        bar = trainer.progress_bar_callback
        self.active = not terminal and bar is not None
        if self.active:
            bar.disable()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.monotonic()
        total = trainer.num_training_batches
        self._due = self._checkpoints(int(total)) if math.isfinite(total) else set()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not self.active or not trainer.is_global_zero:
            return
        done = batch_idx + 1
        if done not in self._due:
            return
        total = trainer.num_training_batches
        rate = done / max(time.monotonic() - self._epoch_start, 1e-9)
        metrics = _format(
            {k: v for k, v in trainer.progress_bar_metrics.items() if not k.startswith("val/")}
        )
        self._print(
            f"{self._epoch(trainer)}  batch {done}/{int(total)} ({100 * done / total:.0f}%)  "
            f"{rate:.3g} batch/s  {metrics}"
        )

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.active or not trainer.is_global_zero or trainer.sanity_checking:
            return
        metrics = {
            k: float(v)
            for k, v in trainer.callback_metrics.items()
            if k.startswith("val/") and v.numel() == 1
        }
        self._print(f"{self._epoch(trainer)}  validation  {_format(metrics)}")

    def _checkpoints(self, total: int) -> set[int]:
        n = min(self.lines_per_epoch, total)
        return {math.ceil(total * (i + 1) / n) for i in range(n)}

    @staticmethod
    def _epoch(trainer: pl.Trainer) -> str:
        last = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        return f"epoch {trainer.current_epoch + 1}{last}"

    @staticmethod
    def _print(line: str) -> None:
        print(line.rstrip(), flush=True)


def _format(metrics: dict) -> str:
    return " ".join(f"{k}={float(v):.4g}" for k, v in sorted(metrics.items()))
