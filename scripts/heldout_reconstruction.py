"""Held-out pixel reconstruction error of an encoder family's checkpoint (VAEGAN, AlphaGAN, ...).

    python scripts/heldout_reconstruction.py <run>/checkpoints/last.ckpt --data-dir ../shared/data

Loads the checkpoint with its family's own class (``<Family>.load_from_checkpoint``), rebuilds the
run's datamodule from the run's config (the one saved in the checkpoint, else the Hydra run
directory's ``.hydra/config.yaml``, else ``--config``), reconstructs every image of the test split
(or ``--split val``) in eval mode, ``x_hat = Dec(Enc(x))``, and prints the mean squared and mean
absolute pixel errors in [0, 1] pixel units (data in [-1, 1] is mapped to [0, 1] first).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ganzoo.models import FAMILIES, family_class


def load_model(path: Path):
    """The checkpoint's model, loaded with its family's own class, in eval mode on the CPU."""
    if not path.is_file():
        sys.exit(f"checkpoint {path} does not exist: pass <run>/checkpoints/last.ckpt")
    meta = torch.load(path, map_location="cpu", weights_only=False).get("ganzoo") or {}
    if meta.get("family") not in FAMILIES:
        sys.exit(f"{path} is not a ganzoo checkpoint of a known family ({meta.get('family')!r})")
    cls = family_class(meta["family"])
    model = cls.load_from_checkpoint(path, map_location="cpu", weights_only=False).eval()
    if not getattr(model, "has_encoder", False):
        sys.exit(f"{path} holds a {cls.__name__} model: it has no encoder and cannot reconstruct")
    return model, int(meta.get("batches_seen", 0))


def run_config(model, path: Path, explicit: Path | None) -> DictConfig:
    """The training run's config: given, saved in the checkpoint, or beside the checkpoint."""
    if explicit is not None:
        return OmegaConf.load(explicit)
    saved = getattr(model, "run_config", None)
    if saved:
        return OmegaConf.create(saved)
    hydra_cfg = path.resolve().parent.parent / ".hydra" / "config.yaml"
    if hydra_cfg.is_file():
        return OmegaConf.load(hydra_cfg)
    sys.exit(f"no run config found for {path}: pass --config <run>/.hydra/config.yaml")


@torch.no_grad()
def heldout_error(model, loader, value_range) -> dict[str, float]:
    low, high = value_range if value_range is not None else (0.0, 1.0)
    scale = float(high) - float(low)
    sq, ab, count, images = 0.0, 0.0, 0, 0
    for batch in loader:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        err = (model.reconstruct(x) - x) / scale
        sq += err.pow(2).sum().item()
        ab += err.abs().sum().item()
        count += err.numel()
        images += x.shape[0]
    return {"images": images, "mse": sq / count, "l1": ab / count}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data-dir", help="overrides paths.data_dir of the run's config")
    parser.add_argument("--config", type=Path, help="the run's config.yaml, if not found otherwise")
    parser.add_argument("--split", choices=["test", "val"], default="test")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    model, batches = load_model(args.checkpoint)
    cfg = run_config(model, args.checkpoint, args.config)
    data_cfg = OmegaConf.to_container(cfg.data, resolve=False)
    if args.data_dir is not None:
        data_cfg["data_dir"] = args.data_dir
    data_cfg.update(batch_size=args.batch_size, num_workers=0)
    data_cfg = OmegaConf.merge({"paths": cfg.get("paths", {})}, {"data": data_cfg}).data
    datamodule = instantiate(data_cfg)
    datamodule.setup("test")
    loader = datamodule.test_dataloader() if args.split == "test" else datamodule.val_dataloader()
    result = heldout_error(model, loader, getattr(datamodule, "value_range", None))

    print(f"checkpoint     {args.checkpoint} ({type(model).__name__}, {batches} batches trained)")
    print(
        f"data           {type(datamodule).__name__} {args.split} split, {result['images']} images"
    )
    print(f"pixel MSE      {result['mse']:.6f}  ([0, 1] pixel units)")
    print(f"pixel L1       {result['l1']:.6f}  ([0, 1] pixel units)")
    print(f"seconds        {time.perf_counter() - start:.1f}")


if __name__ == "__main__":
    main()
