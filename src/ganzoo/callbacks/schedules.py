"""Hyper-parameter schedules that Lightning does not ship."""

from __future__ import annotations

import pytorch_lightning as pl


class MomentumSchedule(pl.Callback):
    """pylearn2's ``MomentumAdjustor``: momentum rises linearly with the epoch count.

    ``momentum(e) = initial + (final - initial) * clip((e - start_epoch) / (saturate_epoch - start_epoch), 0, 1)``
    where ``e`` is the 1-based number of the epoch about to run. pylearn2 also calls the adjustor
    once before the first epoch, so with its defaults (start 1, saturate 250) epoch ``e`` trains
    with ``0.5 + 0.2 (e - 1) / 249``, reaching 0.7 in epoch 250 (REFERENCE.md section 1). Set at
    the start of every epoch on every optimizer (or only those of ``players``), so a resumed run
    continues the schedule exactly.
    """

    def __init__(
        self,
        initial: float = 0.5,
        final: float = 0.7,
        start_epoch: int = 1,
        saturate_epoch: int = 250,
        players: list[str] | None = None,
    ):
        if saturate_epoch <= start_epoch:
            raise ValueError(
                f"callbacks.momentum needs saturate_epoch > start_epoch, got {saturate_epoch} <= {start_epoch}"
            )
        self.initial, self.final = initial, final
        self.start_epoch, self.saturate_epoch = start_epoch, saturate_epoch
        self.players = players

    def momentum(self, epoch: int) -> float:
        alpha = (epoch - self.start_epoch) / (self.saturate_epoch - self.start_epoch)
        alpha = min(max(alpha, 0.0), 1.0)
        return self.initial + (self.final - self.initial) * alpha

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = self.momentum(trainer.current_epoch + 1)
        players = getattr(pl_module, "players", ())
        for name, opt in zip(players, trainer.optimizers, strict=False):
            if self.players is not None and name not in self.players:
                continue
            for group in opt.param_groups:
                if "momentum" not in group:
                    raise ValueError(
                        f"callbacks.momentum: the optimizer of player {name!r} has no momentum"
                    )
                group["momentum"] = value
        pl_module.log("train/momentum", value, on_step=False, on_epoch=True)
