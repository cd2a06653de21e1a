"""Nothing is lost: a crashed or interrupted run leaves a checkpoint it can resume from."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl


class CheckpointOnException(pl.Callback):
    """Save ``<dirpath>/<filename>.ckpt`` when training stops on an exception or Ctrl-C.

    Lightning's own ``OnExceptionCheckpoint`` also turns ``fit(ckpt_path=None)`` into an implicit
    resume from the newest checkpoint it can find; ganzoo resumes only when ``ckpt_path`` is given.
    """

    def __init__(self, dirpath: str | Path, filename: str = "interrupted"):
        self.path = Path(dirpath) / f"{filename}.ckpt"

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if trainer.state.stage is None or trainer.global_step == 0:
            return  # nothing trained yet: nothing to keep
        trainer.save_checkpoint(self.path)
