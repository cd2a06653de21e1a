"""Nothing is lost and nothing fails silently: checkpoints on interruption, atomic checkpoint files,
and a divergence guard.

A run stops early by raising a :class:`TrainingStopped` out of ``ganzoo.train.train``:
:class:`Preempted` (SIGTERM or Ctrl-C: the current batch is finished and a checkpoint written) or
:class:`Diverged` (a non-finite loss or parameter). ``ganzoo-train`` turns them into one line on
stderr and an exit status (143 for SIGTERM, 130 for Ctrl-C, 3 for divergence).
"""

from __future__ import annotations

import functools
import math
import operator
import os
import signal
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import Checkpoint, ModelCheckpoint
from torch import Tensor


class TrainingStopped(Exception):
    """Training stopped before its end; ``exit_code`` is what ``ganzoo-train`` exits with."""

    exit_code = 1


class Preempted(TrainingStopped):
    """Training was stopped by a signal (SIGTERM, SIGINT) after finishing a batch."""

    def __init__(
        self, message: str, signum: int, checkpoint: Path | None, resume: str | None = None
    ):
        super().__init__(f"{message}; resume with: {resume}" if resume else message)
        #: What stopped and what was saved, without the ``ganzoo-train`` command ``resume``.
        self.stopped = message
        self.resume = resume
        self.signum = signum
        self.checkpoint = checkpoint
        self.exit_code = 128 + int(signum)  # the shell's convention: 143 SIGTERM, 130 SIGINT


class Diverged(TrainingStopped):
    """A loss or a parameter became non-finite; nothing was saved after it did."""

    exit_code = 3


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary file beside the target, then renamed over it: a kill
    while saving leaves the previous file whole, never a truncated one."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if "://" in str(path):  # remote storage: fsspec's own transaction
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def batch_position(trainer: pl.Trainer) -> str:
    """``epoch E, batch B`` (1-based) of the batch training is in or has just finished."""
    progress = trainer.fit_loop.epoch_loop.batch_progress.current
    return f"epoch {trainer.current_epoch + 1}, batch {max(progress.ready, 1)}"


class EpochCheckpoint(Checkpoint):
    """Rewrite ``<dirpath>/<filename>.ckpt`` at the end of every training epoch.

    A ``Checkpoint`` callback, so Lightning runs it after the other callbacks (the divergence
    guard has checked the weights by then). Resumes exactly, like any end-of-epoch checkpoint.
    """

    def __init__(self, dirpath: str | Path, filename: str = "last"):
        self.path = Path(dirpath) / f"{filename}.ckpt"

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            trainer.save_checkpoint(self.path, weights_only=False)


class CheckpointOnException(pl.Callback):
    """Save ``<dirpath>/<filename>.ckpt`` when training stops on an exception, SIGTERM or Ctrl-C.

    A stop between batches (signals: the current batch is finished first) or in a callback at the
    end of a batch gives a checkpoint that resumes exactly: the run continues with the next batch
    as if it had never stopped. An exception inside the training step leaves a checkpoint of a
    half-done batch (``exact`` is false). Divergence leaves none: NaN weights are never saved.

    Lightning's own ``OnExceptionCheckpoint`` also turns ``fit(ckpt_path=None)`` into an implicit
    resume from the newest checkpoint it can find; ganzoo resumes only when ``ckpt_path`` is given.
    """

    def __init__(self, dirpath: str | Path, filename: str = "interrupted"):
        self.path = Path(dirpath) / f"{filename}.ckpt"
        #: The checkpoint written by the last stop (None: none written).
        self.saved: Path | None = None
        #: Whether it resumes exactly (written at a batch boundary).
        self.exact = False

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self.saved, self.exact = None, False
        if isinstance(exception, Diverged):
            return
        if trainer.state.stage is None or trainer.global_step == 0:
            return  # nothing trained yet: nothing to keep
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        between = progress.ready == progress.started == progress.processed == progress.completed
        batch_end = (
            progress.ready == progress.started == progress.processed == progress.completed + 1
        )
        if batch_end and hasattr(pl_module, "end_batch"):
            pl_module.end_batch()  # the module's on_train_batch_end did not run yet
        if not all(torch.isfinite(n) for n in player_norms(pl_module).values()):
            return  # the last step made a parameter non-finite: never save it
        trainer.save_checkpoint(self.path, weights_only=False)
        # Stopped inside validation: its draws so far are not in the checkpoint's account.
        exact = (between or batch_end) and not trainer.validating
        self.saved, self.exact = self.path.resolve(), exact


class DivergenceGuard(pl.Callback):
    """Stop training at the first non-finite loss or parameter, naming the player, the loss, the
    epoch and the batch, and the last good checkpoint.

    The losses each player stepped on (``GenerativeModel.batch_losses``) are checked at the end
    of every ``every_n_batches``-th batch and of the last batch of each epoch: one read on the
    host per check (under DDP, plus one all-reduce of the verdict). Each player's parameters are
    checked too, every ``parameters_every_n_batches``-th batch and at the last batch of each
    epoch (so before any end-of-epoch checkpoint): a norm over every parameter costs as much as a
    tenth of a small network's step on CPU, and a non-finite parameter makes the next batch's
    losses non-finite anyway. Every checkpoint is checked before it is written: this guard's
    ``on_save_checkpoint`` raises :class:`Diverged` instead, and ``CheckpointOnException``
    writes none after a step that made a parameter non-finite.
    """

    def __init__(
        self,
        every_n_batches: int = 1,
        check_parameters: bool = True,
        parameters_every_n_batches: int = 100,
    ):
        for key, value in (
            ("every_n_batches", every_n_batches),
            ("parameters_every_n_batches", parameters_every_n_batches),
        ):
            if value < 1:
                raise ValueError(f"callbacks.divergence.{key} must be >= 1, got {value}")
        self.every_n_batches = every_n_batches
        self.check_parameters = check_parameters
        self.parameters_every_n_batches = parameters_every_n_batches

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        last = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        losses_due = (batch_idx + 1) % self.every_n_batches == 0 or last
        parameters_due = self.check_parameters and (
            last or (batch_idx + 1) % self.parameters_every_n_batches == 0
        )
        if losses_due or parameters_due:
            self.check(trainer, pl_module, parameters=parameters_due)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        """Every checkpoint, whenever it is written (a mid-epoch ``ModelCheckpoint``, a run that
        stops on ``max_steps``), is checked first: non-finite weights are never saved."""
        if not self.check_parameters:
            return
        norms = player_norms(pl_module)
        if all(bool(torch.isfinite(n)) for n in norms.values()):
            return
        raise Diverged(self.message(trainer, pl_module, [], norms))

    @torch.no_grad()
    def check(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, parameters: bool = True
    ) -> None:
        losses = list(getattr(pl_module, "batch_losses", []))
        norms = player_norms(pl_module) if parameters else {}
        # One host read: a sum is finite only when every term is (NaN and inf propagate).
        values = [v.float() if v.dim() == 0 else v.float().sum() for _, v in losses]
        values += list(norms.values())
        finite = not values or math.isfinite(functools.reduce(operator.add, values).item())
        # Under DDP every rank stops together, whichever rank saw it.
        if trainer.strategy.reduce_boolean_decision(finite, all=True):
            return
        if not norms and self.check_parameters:
            norms = player_norms(pl_module)  # for the message
        raise Diverged(self.message(trainer, pl_module, losses, norms))

    def message(self, trainer, pl_module, losses, norms) -> str:
        bad_loss = next(
            ((opt, loss) for opt, loss in losses if not torch.isfinite(loss).all()), None
        )
        bad_params = [p for p, n in norms.items() if not math.isfinite(float(n))]
        parts = [f"training diverged at {batch_position(trainer)}:"]
        if bad_loss is not None:
            player = pl_module.player_of(bad_loss[0])
            parts.append(f"the {player}'s loss is {float(bad_loss[1])}")
            terms = [
                f"{k}={float(v):.4g}"
                for k, v in sorted(trainer.callback_metrics.items())
                if k.startswith("train/") and v.numel() == 1 and not math.isfinite(float(v))
            ]
            if terms:
                parts.append(f"(non-finite terms: {', '.join(terms)})")
        if bad_params:
            sep = ";" if bad_loss is not None else ""
            parts[-1] += sep
            parts.append(f"non-finite parameters in {', '.join(bad_params)}")
        parts[-1] += "."
        last = last_checkpoint(trainer)
        parts.append(
            f"Last good checkpoint: {last}." if last else "No checkpoint was written before it."
        )
        parts.append("Nothing was saved after the divergence.")
        return " ".join(parts)


@torch.no_grad()
def player_norms(pl_module: pl.LightningModule) -> dict[str, Tensor]:
    """The norm of each player's parameters (non-finite where any parameter is)."""
    return {
        player: torch.nn.utils.get_total_norm(
            [p.detach() for p in pl_module.player_parameters(player)], foreach=None
        )
        for player in getattr(pl_module, "players", ())
    }


def last_checkpoint(trainer: pl.Trainer) -> str | None:
    """The newest checkpoint this fit wrote (or resumed from)."""
    found = []
    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, ModelCheckpoint):
            found += [p for p in (cb.last_model_path, cb.best_model_path) if p]
        elif isinstance(cb, EpochCheckpoint):
            found.append(str(cb.path))
    found = [p for p in found if Path(p).is_file()]
    if found:
        return str(Path(max(found, key=lambda p: Path(p).stat().st_mtime)).resolve())
    return str(Path(trainer.ckpt_path).resolve()) if trainer.ckpt_path else None


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name
