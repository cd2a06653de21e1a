"""One LightningModule per family, named after its paper, and loading any of them back."""

from __future__ import annotations

import copy
import importlib
import inspect
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

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


def build_model(config: Mapping[str, Any] | DictConfig) -> GenerativeModel:
    """Instantiate a ``model`` config with Hydra: the family's ``_target_`` and, recursively, its
    networks, losses, prior and the players' optimizer and scheduler factories (``_partial_``).

    A class's own ``ValueError`` about a setting is re-raised as it is (other errors stay
    Hydra's, which name the config key). The resolved config, plain data only, is kept on
    ``model.model_config`` and saved in every checkpoint, from which :func:`load_checkpoint`
    builds the same model again.
    """
    if isinstance(config, DictConfig):
        config = OmegaConf.to_container(config, resolve=True, throw_on_missing=True)
    config = copy.deepcopy(dict(config))
    _require_plain(config, "model")
    try:
        model = instantiate(config, _convert_="all")
    except InstantiationException as err:
        if isinstance(err.__cause__, ValueError):
            # ganzoo's own check of a setting: its message names the key and what to do.
            raise err.__cause__ from None
        raise
    model.model_config = config
    return model


def _require_plain(node: Any, key: str) -> None:
    """A model config must be plain data (what a checkpoint stores and ``torch.load`` with
    ``weights_only=True`` reads back): mappings, lists, strings, numbers, booleans, None."""
    if isinstance(node, Mapping):
        for k, v in node.items():
            _require_plain(v, f"{key}.{k}")
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            _require_plain(v, f"{key}[{i}]")
    elif not (node is None or isinstance(node, (str, int, float, bool))):
        raise TypeError(
            f"{key} is a {type(node).__name__}, not plain config data: build_model takes a "
            "config (give objects as _target_ mappings); to use ready objects, construct the "
            "family's class directly"
        )


def _config_from_hyper_parameters(family: str, hparams: Mapping[str, Any]) -> dict[str, Any]:
    """The model config of a checkpoint without one: format 1 or 2, whose families kept their
    constructor arguments (networks, losses and optimizers as ``_target_`` configs) as
    Lightning's ``hyper_parameters`` and built them themselves (the prior with
    ``dim=latent_dim``), or a model built in Python that saved its arguments with
    ``save_hyperparameters``."""
    if not hparams:
        raise ValueError(
            "it holds neither a model config nor hyper-parameters (a model built in Python: "
            "build it with ganzoo.models.build_model(config) to make its checkpoints loadable)"
        )
    config = {"_target_": f"{FAMILIES[family]}.{family}", **copy.deepcopy(dict(hparams))}
    prior = config.get("prior")
    if isinstance(prior, Mapping) and "_target_" in prior and "dim" not in prior:
        latent_dim = config.get("latent_dim")
        if latent_dim is None:  # the family's default was used, and not stored
            init = inspect.signature(family_class(family).__init__)
            latent_dim = init.parameters["latent_dim"].default
        config["prior"] = {**prior, "dim": latent_dim}
    return config


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
    """Rebuild the model of any family from a ganzoo checkpoint, in eval mode: its model config
    (saved by :func:`build_model`; older checkpoints: Lightning's ``hyper_parameters``) is
    instantiated, then the checkpoint's weights, moving averages and counters are loaded.

    The run's resolved config (if it was trained by ``ganzoo-train``) is on ``model.run_config``.
    Raises :class:`CheckpointError` (one line, naming the file) for a file it cannot use.
    """
    path = Path(path)
    checkpoint = read_checkpoint(path)
    meta = checkpoint["ganzoo"]
    config = meta.get("model")
    try:
        if config is None:
            config = _config_from_hyper_parameters(
                meta["family"], checkpoint.get("hyper_parameters") or {}
            )
        model = build_model(config)
        model.on_load_checkpoint(checkpoint)
        model.load_state_dict(checkpoint["state_dict"])
    except Exception as err:  # a config or state this ganzoo's classes no longer accept
        raise CheckpointError(
            f"{path} holds a {meta['family']} that this ganzoo cannot rebuild "
            f"(checkpoint format {meta.get('format', 1)}): {str(err).splitlines()[0]}"
        ) from None
    if map_location is not None:
        if not isinstance(map_location, (str, torch.device)):
            raise ValueError(
                f"map_location must be a device (a string or torch.device), got "
                f"{type(map_location).__name__}"
            )
        model = model.to(map_location)
    return model.eval()


__all__ = [
    "FAMILIES",
    "GAN",
    "VAEGAN",
    "AlphaGAN",
    "CheckpointError",
    "GenerativeModel",
    "build_model",
    "family_class",
    "load_checkpoint",
    "read_checkpoint",
]
