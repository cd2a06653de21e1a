"""``ganzoo-eval``: rebuild a checkpoint of any family, measure it, write ``metrics.json``.

    ganzoo-eval ckpt_path=<run>/checkpoints/last.ckpt out=<dir>
    ganzoo-eval ckpt_path=... paths.data_dir=../shared/data split=val
    ganzoo-eval ckpt_path=... metrics=inception metrics.inception.features.weights_path=<file>

The model comes from :func:`ganzoo.models.load_checkpoint`; the data from the run's config saved
in the checkpoint (or ``<run>/.hydra/config.yaml`` two levels above it), unless ``data=...`` is
given; ``paths.data_dir`` moves it. The metrics are ``conf/metrics/<name>.yaml``
(:mod:`ganzoo.metrics.suite`). Every number in ``metrics.json`` carries its protocol.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import platform
import sys
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
import torchmetrics
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import ganzoo
from ganzoo.config import config_dir
from ganzoo.metrics.domain import sha256_file
from ganzoo.metrics.suite import EvalContext, run_metrics
from ganzoo.models import CheckpointError, load_checkpoint
from ganzoo.report import PICTURE_FILE

#: What ``ganzoo-eval``'s picture shows: the first images of the scored stream in an 8 x 8
#: grid, or the first 2D samples (PacGAN's 2,500) over as many held-out points.
PICTURE_IMAGES, PICTURE_POINTS = 64, 2500

log = logging.getLogger(__name__)


def run_config_of(model: Any, ckpt_path: Path) -> dict[str, Any] | None:
    """The run's resolved config: saved in the checkpoint by ``ganzoo-train``, or the Hydra
    record ``<run>/.hydra/config.yaml`` two levels above ``<run>/checkpoints/<file>``."""
    if getattr(model, "run_config", None):
        return model.run_config
    saved = ckpt_path.resolve().parents[1] / ".hydra" / "config.yaml"
    if saved.is_file():
        cfg = OmegaConf.load(saved)
        return {"data": OmegaConf.to_container(cfg.data, resolve=True)} if "data" in cfg else None
    return None


def data_config(cfg: DictConfig, run_config: dict[str, Any] | None) -> dict[str, Any]:
    """The datamodule config: ``data=...`` if given, else the run's; ``paths.data_dir`` moves it."""
    run_data = (run_config or {}).get("data")
    if cfg.get("data") is not None:
        data = OmegaConf.to_container(cfg.data, resolve=True)
    elif run_data is not None:
        data = copy.deepcopy(run_data)
    else:
        raise ValueError(
            f"{cfg.ckpt_path} carries no run config (not trained by ganzoo-train) and no "
            "<run>/.hydra/config.yaml lies two levels above it: name the data with data=<name> "
            "(e.g. data=mnist paths.data_dir=<dir>)"
        )
    if "data_dir" in data:
        data["data_dir"] = (
            cfg.paths.get("data_dir")
            or data.get("data_dir")
            or (run_data or {}).get("data_dir")
            or os.environ.get("GANZOO_DATA_DIR", "data")
        )
    return data


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt_path``; returns (and writes to ``<out>/metrics.json``) the report."""
    pl.seed_everything(cfg.seed, verbose=False)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ckpt_path = Path(cfg.ckpt_path)
    model = load_checkpoint(ckpt_path, map_location=device).to(device)
    if cfg.get("ema") is not None:
        model.use_ema = bool(cfg.ema)
    data = data_config(cfg, run_config_of(model, ckpt_path))
    datamodule = instantiate(data)
    rejection = instantiate(cfg.rejection) if cfg.get("rejection") else None
    ctx = EvalContext(
        model,
        datamodule,
        split=cfg.split,
        seed=cfg.seed,
        batch_size=cfg.batch_size,
        rejection=rejection,
    )
    if cfg.get("picture", True):
        ctx.keep_first = PICTURE_IMAGES if ctx.is_image else PICTURE_POINTS
    results, skipped = run_metrics(instantiate(cfg.metrics) or {}, ctx)
    ema = model.ema_settings()
    sampler = rejection.settings() if rejection is not None else None
    for entry in results.values():  # which networks and which sampler made the numbers
        entry["ema"] = ema
        if entry.get("num_generated") and rejection is not None:
            entry["rejection"] = sampler
            entry["acceptance"] = ctx.acceptance.get(entry["num_generated"])
            entry["rejection_measured"] = ctx.sampler_measured.get(entry["num_generated"])
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    report = {
        "checkpoint": {
            "path": str(ckpt_path.resolve()),
            "sha256": sha256_file(ckpt_path),
            "family": type(model).__name__,
            "epoch": ckpt.get("epoch"),
            "batches_seen": model.batches_seen,
        },
        "data": data,
        "eval": {
            "split": cfg.split,
            "seed": cfg.seed,
            "device": str(device),
            "metrics": OmegaConf.to_container(cfg.metrics, resolve=True),
            "rejection": sampler,
        },
        "versions": {
            "ganzoo": getattr(ganzoo, "__version__", None),
            "torch": torch.__version__,
            "torchmetrics": torchmetrics.__version__,
            "python": platform.python_version(),
        },
        "metrics": results,
        "skipped": skipped,
    }
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    picture = write_picture(ctx, out / PICTURE_FILE, sampler)
    print(table(report))
    print(f"\nWritten: {out / 'metrics.json'}")
    if picture:
        print(f"Picture: {picture}")
    return report


def write_picture(ctx: EvalContext, path: Path, sampler: dict[str, Any] | None) -> Path | None:
    """A picture of the first samples the metrics scored (the first stream drawn; every stream
    starts from the same seed): an image grid, or 2D samples over held-out points. Without
    generated samples (or with ``picture=false``) none, and an older picture at ``path`` is
    removed, so that a picture always shows the numbers beside it."""
    path.unlink(missing_ok=True)
    if not ctx.first_samples:
        return None
    from torchvision.utils import make_grid, save_image

    from ganzoo.callbacks.samples import display_range, plt, scatter_figure

    samples = next(iter(ctx.first_samples.values()))
    if samples.dim() == 2:
        data = torch.cat([b.cpu() for b in ctx.real_batches(ctx.split, len(samples))])
        how = sampler["method"].split(" (")[0] if sampler else "as trained"
        fig = scatter_figure(samples, data, title=f"{len(samples)} samples scored ({how})")
        fig.savefig(path)
        plt.close(fig)
    else:
        grid = make_grid(samples, nrow=8, normalize=True, value_range=display_range(ctx.datamodule))
        save_image(grid, path)
    return path


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        shown = ", ".join(_show(v) for v in value[:10])
        return f"[{shown}{', ...' if len(value) > 10 else ''}] ({len(value)})"
    return str(value)


def table(report: dict[str, Any]) -> str:
    """The report's numbers as a plain-text table, with the protocol columns that matter most."""
    head = ("metric", "value", "real", "generated", "split", "features")
    rows = [head]
    for name, entry in report["metrics"].items():
        feats = entry.get("features") or {}
        rows.append(
            (
                name,
                _show(entry["value"]),
                str(entry.get("num_real", "")),
                str(entry.get("num_generated", "")),
                str(entry.get("split") or "-"),
                str(feats.get("name", "")),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    widths[1] = min(widths[1], 60)
    lines = [f"{report['checkpoint']['family']} checkpoint {report['checkpoint']['path']}"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines += [f"skipped {name}: {why}" for name, why in report["skipped"].items()]
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="eval")
def main(cfg: DictConfig) -> None:
    """Evaluate; a checkpoint it cannot use exits with one line naming it (status 1)."""
    try:
        evaluate(cfg)
    except CheckpointError as err:
        sys.exit(f"ganzoo-eval: {err}")


if __name__ == "__main__":
    main()
