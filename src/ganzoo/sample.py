"""``ganzoo-sample``: look at a trained model of any family, from its checkpoint alone.

    ganzoo-sample ckpt_path=<run>/checkpoints/last.ckpt mode=samples out=inspect
    ganzoo-sample ckpt_path=<ckpt> mode=reconstructions out=inspect     # VAEGAN, AlphaGAN
    ganzoo-sample ckpt_path=<ckpt> mode=interpolation out=inspect interpolation.from_data=true
    ganzoo-sample ckpt_path=<ckpt> mode=progress out=inspect   # GIF of <run>/samples/epoch_*.png
    ganzoo-sample ckpt_path=<ckpt> mode=export out=fid n=10000           # files for FID tools

The modes and their files: ``ganzoo.inspection``; the options: ``conf/sample.yaml``.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from ganzoo.config import config_dir
from ganzoo.inspection import InspectionError, inspect


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="sample")
def main(cfg: DictConfig) -> None:
    """Serve the request; a refusal exits with its message alone (status 1), no traceback."""
    try:
        written = inspect(cfg)
    except (InspectionError, FileNotFoundError) as err:
        sys.exit(f"ganzoo-sample: {err}")
    for path in written:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
