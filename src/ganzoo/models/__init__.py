"""One LightningModule per family, named after its paper, and loading any of them back."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from ganzoo.models.alphagan import AlphaGAN
from ganzoo.models.base import GenerativeModel
from ganzoo.models.gan import GAN
from ganzoo.models.vaegan import VAEGAN

#: Family class name -> module that defines it.
FAMILIES: dict[str, str] = {
    "GAN": "ganzoo.models.gan",
    "VAEGAN": "ganzoo.models.vaegan",
    "AlphaGAN": "ganzoo.models.alphagan",
}


def family_class(name: str) -> type[GenerativeModel]:
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; ganzoo has {sorted(FAMILIES)}")
    return getattr(importlib.import_module(FAMILIES[name]), name)


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> GenerativeModel:
    """Rebuild the model of any family from a ganzoo checkpoint, in eval mode.

    The run's resolved config (if it was trained by ``ganzoo-train``) is on ``model.run_config``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path} does not exist: pass ckpt_path=<run>/checkpoints/last.ckpt"
        )
    meta = torch.load(path, map_location="cpu", weights_only=False).get("ganzoo")
    if not meta or "family" not in meta:
        raise ValueError(
            f"{path} is not a ganzoo checkpoint (it has no 'ganzoo' entry naming its family)"
        )
    model = family_class(meta["family"]).load_from_checkpoint(
        path, map_location=map_location, weights_only=False
    )
    return model.eval()


__all__ = [
    "FAMILIES",
    "GAN",
    "VAEGAN",
    "AlphaGAN",
    "GenerativeModel",
    "family_class",
    "load_checkpoint",
]
