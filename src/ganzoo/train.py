"""``ganzoo-train``: compose a run with Hydra, train it with Lightning, return the objective.

ganzoo-train experiment=gan_ring
ganzoo-train experiment=goodfellow2014_mnist paths.data_dir=../shared/data
ganzoo-train -m experiment=gan_ring seed=0,1,2
ganzoo-train experiment=gan_ring ckpt_path=<run>/checkpoints/last.ckpt   # resume
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ganzoo.config import config_dir, report_user_errors


def build_run(cfg: DictConfig) -> tuple[pl.LightningDataModule, pl.LightningModule, pl.Trainer]:
    """Instantiate datamodule, model and trainer (with callbacks and loggers) from a run config."""
    datamodule = instantiate(cfg.data)
    if not getattr(datamodule, "download", False):
        datamodule.setup("fit")  # a missing dataset stops the run here, before anything is written
    model = instantiate(cfg.model, _convert_="all")
    check_compatible(model, datamodule)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return datamodule, model, trainer


@torch.no_grad()
def check_compatible(model: pl.LightningModule, datamodule: pl.LightningDataModule) -> None:
    """Fail early, naming the keys, when the generator's samples do not have the data's shape."""
    was_training = model.training
    model.eval()
    try:
        shape = tuple(model.generate(model.fixed_z[:2]).shape[1:])
    finally:
        model.train(was_training)
    if shape != tuple(datamodule.shape):
        raise ValueError(
            f"model.generator makes samples of shape {list(shape)} but data ({type(datamodule).__name__}) "
            f"has shape {list(datamodule.shape)}: pick networks for this data (model/generator=..., "
            "model/discriminator=...) or set data.image_size / data.channels to match"
        )


def train(cfg: DictConfig) -> dict[str, float]:
    """Train one run; returns the final logged metrics as floats."""
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    datamodule, model, trainer = build_run(cfg)
    hparams = OmegaConf.to_container(cfg, resolve=True)
    hparams.pop("hydra", None)
    for node in (hparams.get("paths") or {}, hparams.get("data") or {}):
        if node.get("data_dir"):  # absolute, so that the checkpoint finds its data from anywhere
            node["data_dir"] = str(Path(node["data_dir"]).expanduser().resolve())
    model.run_config = hparams
    for lg in trainer.loggers:
        lg.log_hyperparams(hparams)
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if trainer.global_rank == 0:
        print(summary(cfg, trainer, metrics))
    return metrics


def summary(cfg: DictConfig, trainer: pl.Trainer, metrics: dict[str, float]) -> str:
    """Where the run's files are, how to look at them, and its validation figures."""
    out = Path(cfg.paths.output_dir)
    lines = ["", f"Run directory:   {out}"]
    ckpt = trainer.checkpoint_callback
    if ckpt is not None and ckpt.last_model_path:
        lines.append(f"Checkpoint:      {ckpt.last_model_path}")
    for lg in trainer.loggers:
        if lg.log_dir:
            lines.append(f"TensorBoard:     tensorboard --logdir {lg.log_dir}")
    grids = sorted((out / "samples").glob("epoch_*.png"))
    if grids:
        lines.append(f"Samples:         {grids[-1]}")
    shown = {k: v for k, v in sorted(metrics.items()) if k.startswith("val/")}
    if shown:
        lines.append("Validation (last epoch):")
        lines += [f"  {k:<22} {v:.4g}" for k, v in shown.items()]
    return "\n".join(lines)


def objective(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """The value a sweeper optimises: ``optimized_metric`` of the final metrics, if set."""
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if name not in metrics:
        raise KeyError(
            f"optimized_metric={name!r} was not logged; logged metrics: {sorted(metrics)}"
        )
    value = metrics[name]
    return value if math.isfinite(value) else float("inf")


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
@report_user_errors("ganzoo-train")
def main(cfg: DictConfig) -> Any:
    return objective(cfg, train(cfg))


if __name__ == "__main__":
    main()
