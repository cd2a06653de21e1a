"""One LightningModule per family, named after its paper, and loading any of them back."""

from __future__ import annotations

import importlib
import zipfile
from pathlib import Path
from typing import Any

import torch

from ganzoo.models.alphagan import AlphaGAN
from ganzoo.models.base import GenerativeModel, newer_format
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


class CheckpointError(ValueError):
    """A checkpoint file that ganzoo cannot use; the message names the file and what is wrong."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a ganzoo checkpoint on the CPU, or raise :class:`CheckpointError` in one line: a
    missing, truncated or non-checkpoint file, one without ganzoo's entry, of an unknown family or
    of a newer format."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist: pass ckpt_path=<run>/checkpoints/last.ckpt"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch.load fails in many ways on a file that is not a checkpoint
        size = path.stat().st_size
        why = (
            "it is truncated or corrupt (an incomplete write?)"
            if zipfile.is_zipfile(path) or _starts_like_zip(path)
            else "it is not a PyTorch checkpoint"
        )
        raise CheckpointError(
            f"cannot read checkpoint {path} ({size} bytes): {why}; "
            f"torch.load said: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"{path} is not a Lightning checkpoint (no state_dict): pass a checkpoint written by "
            "ganzoo-train, e.g. <run>/checkpoints/last.ckpt"
        )
    meta = checkpoint.get("ganzoo")
    if not meta or "family" not in meta:
        raise CheckpointError(
            f"{path} is not a ganzoo checkpoint (it has no 'ganzoo' entry naming its family)"
        )
    if meta["family"] not in FAMILIES:
        raise CheckpointError(
            f"{path} holds a model of family {meta['family']!r}, unknown to this ganzoo "
            f"(it has {sorted(FAMILIES)})"
        )
    too_new = newer_format(meta)
    if too_new:
        raise CheckpointError(f"{path} has {too_new}")
    return checkpoint


def _starts_like_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> GenerativeModel:
    """Rebuild the model of any family from a ganzoo checkpoint, in eval mode.

    The run's resolved config (if it was trained by ``ganzoo-train``) is on ``model.run_config``.
    Raises :class:`CheckpointError` (one line, naming the file) for a file it cannot use.
    """
    path = Path(path)
    meta = read_checkpoint(path)["ganzoo"]
    try:
        model = family_class(meta["family"]).load_from_checkpoint(
            path, map_location=map_location, weights_only=False
        )
    except (TypeError, KeyError, RuntimeError) as err:
        raise CheckpointError(
            f"{path} holds a {meta['family']} of an older format that this ganzoo cannot rebuild "
            f"(format {meta.get('format', 1)}): {str(err).splitlines()[0]}"
        ) from None
    return model.eval()


__all__ = [
    "FAMILIES",
    "GAN",
    "VAEGAN",
    "AlphaGAN",
    "CheckpointError",
    "GenerativeModel",
    "family_class",
    "load_checkpoint",
    "read_checkpoint",
]
