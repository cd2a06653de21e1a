"""Inception-v3 features (torchmetrics' torch-fidelity backbone) for FID / KID / Inception Score.

The weights are torch-fidelity's port of the TF FID Inception (``pt_inception-2015-12-05``).
torchmetrics downloads them at first use into torch's hub cache; a machine without internet
needs the file copied over and named with ``weights_path`` (torchmetrics'
``feature_extractor_weights_path``). Without weights, :class:`InceptionWeightsError` says how
to supply them. Images are quantised to uint8 as torchmetrics does (``(x * 255).byte()``), grey
images repeated to RGB, and resized to 299x299 inside the network (TF1-style bilinear unless
``antialias``: the resize of the original FID code).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ganzoo.metrics.domain import sha256_file

#: Where torch-fidelity (and so torchmetrics) downloads the Inception weights from.
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
#: The config key of the weights file in ganzoo-eval's ``metrics=inception``.
WEIGHTS_KEY = "metrics.inception.features.weights_path"


class InceptionWeightsError(RuntimeError):
    """The Inception weights can be neither downloaded nor read from a local file."""


def hub_weights_file() -> Path:
    """Where torchmetrics caches the downloaded weights (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_URL.rsplit("/", 1)[-1]


def how_to_supply() -> str:
    return (
        f"On a machine with internet, download {INCEPTION_URL} and either pass the file with "
        f"{WEIGHTS_KEY}=<path> (torchmetrics' feature_extractor_weights_path) or copy it to "
        f"{hub_weights_file()}. The domain metrics (metrics=default) need no download."
    )


class InceptionFeatures:
    """Feature network: torchmetrics' ``NoTrainInceptionV3`` (2048-d pool features, 1008 logits).

    Args:
        weights_path: a local copy of the weights (``None``: torch's hub cache, downloading).
        feature_dim: Inception layer for FID / KID: 64, 192, 768 or 2048 (the standard).
        antialias: antialiased resize to 299 (torchmetrics' default) instead of the TF1 resize
            of the original FID code (ganzoo's default, for comparable numbers).
    """

    name = "inception"
    score_name = "inception_score"

    def __init__(
        self,
        weights_path: str | Path | None = None,
        feature_dim: int = 2048,
        antialias: bool = False,
    ):
        if feature_dim not in (64, 192, 768, 2048):
            raise ValueError(
                f"inception feature_dim must be 64, 192, 768 or 2048, got {feature_dim}"
            )
        self.weights_path = Path(weights_path).expanduser() if weights_path else None
        self.feature_dim = feature_dim
        self.antialias = antialias
        self.net: torch.nn.Module | None = None
        self.weights_file: Path | None = None
        self.weights_sha256: str | None = None

    def skip_reason(self, ctx) -> str | None:
        if not ctx.is_image or ctx.datamodule.shape[0] not in (1, 3):
            return "Inception features need grey or RGB images"
        return None

    def prepare(self, ctx) -> None:
        if self.net is not None:
            return
        if self.weights_path is not None and not self.weights_path.is_file():
            raise InceptionWeightsError(
                f"{WEIGHTS_KEY}={self.weights_path} does not exist. {how_to_supply()}"
            )
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3
        except ImportError as err:  # pragma: no cover - torchmetrics always ships it
            raise InceptionWeightsError("torchmetrics' Inception backbone is unavailable") from err
        try:
            net = NoTrainInceptionV3(
                name="inception-v3-compat",
                features_list=[str(self.feature_dim), "logits_unbiased"],
                feature_extractor_weights_path=str(self.weights_path)
                if self.weights_path
                else None,
                antialias=self.antialias,
            )
        except ModuleNotFoundError as err:
            raise InceptionWeightsError(
                "Inception features need torch-fidelity: "
                "pip install torch-fidelity (ganzoo[inception])"
            ) from err
        except OSError as err:
            raise InceptionWeightsError(
                f"Inception weights could not be downloaded ({err}). {how_to_supply()}"
            ) from err
        except (RuntimeError, KeyError, ValueError) as err:
            raise InceptionWeightsError(
                f"{self.weights_path} is not torch-fidelity's Inception weights file ({err}). "
                f"{how_to_supply()}"
            ) from err
        self.weights_file = self.weights_path or hub_weights_file()
        self.weights_sha256 = (
            sha256_file(self.weights_file) if self.weights_file.is_file() else None
        )
        self.net = net.to(ctx.device).eval()

    def protocol(self) -> dict[str, Any]:
        return {
            "name": "inception_v3",
            "network": "torchmetrics NoTrainInceptionV3 (torch-fidelity's FID Inception)",
            "layer": self.feature_dim,
            "resize": "antialiased bilinear" if self.antialias else "TF1 bilinear (original FID)",
            "weights": str(self.weights_file),
            "weights_sha256": self.weights_sha256,
        }

    @property
    def num_classes(self) -> int:
        return 1008

    @torch.no_grad()
    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``[0, 1]`` images to ``(features, logits)`` in one pass of the network."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        # One forward pass for both outputs (the public forward returns only the first).
        features, logits = self.net._torch_fidelity_forward((x * 255).byte())
        return features.reshape(x.shape[0], -1), logits
