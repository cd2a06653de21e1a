"""The run's hyper-parameters beside its final metrics, in TensorBoard's HPARAMS tab."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger
from torch.utils.tensorboard.summary import hparams

#: Hydra's instantiation flags: plumbing, never hyper-parameters.
HYDRA_FLAGS = frozenset({"_partial_", "_recursive_", "_convert_", "_args_"})


def flatten(
    config: Mapping[str, Any], exclude: Iterable[str] = (), prefix: str = ""
) -> dict[str, Any]:
    """Nested config to ``{"model.optimizer.generator.lr": 0.001, ...}``: the keys a Hydra
    override would use. Keys named in ``exclude`` (dotted, e.g. ``trainer.default_root_dir``),
    with everything under them, and Hydra's ``_partial_``-style flags are left out; values
    TensorBoard cannot show as a number or a string (lists, ``None``) become strings."""
    exclude = frozenset(exclude)
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if name in exclude or key in HYDRA_FLAGS:
            continue
        if isinstance(value, Mapping):
            flat.update(flatten(value, exclude, prefix=f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


class HParamsSummary(pl.Callback):
    """At the end of ``fit``, record the run's resolved config, flattened, as one session of
    TensorBoard's HPARAMS tab. Point ``tensorboard --logdir`` at a multirun directory
    (``ganzoo-train -m ...``) and its runs line up in one table: a row per run, a column per
    hyper-parameter (those that differ between runs are marked so), and a column per scalar the
    runs logged (``val/...``, ``train/...``) holding its final value.

    Only the session records are written (no ``Experiment`` record): with one per run,
    TensorBoard would show a single run's columns; without, it builds the table from all runs.

    Args:
        exclude: config keys left out, dotted (``trainer.default_root_dir``): paths and the
            callback/logger plumbing differ between runs without being hyper-parameters.
    """

    def __init__(
        self,
        exclude: Iterable[str] = (
            "paths",
            "callbacks",
            "logger",
            "hydra",
            "ckpt_path",
            "trainer.default_root_dir",
        ),
    ):
        self.exclude = tuple(exclude)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        writers = [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if not writers or trainer.global_rank != 0:
            return
        config = getattr(pl_module, "run_config", None) or {
            "model": getattr(pl_module, "model_config", None) or dict(pl_module.hparams)
        }
        _, session_start, session_end = hparams(flatten(config, self.exclude), {})
        for writer in writers:
            file_writer = writer._get_file_writer()
            file_writer.add_summary(session_start)
            file_writer.add_summary(session_end)
            writer.flush()
