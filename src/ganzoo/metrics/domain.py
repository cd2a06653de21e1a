"""The domain feature network: a small convnet classifier trained by ganzoo on the data itself.

Inception features describe ImageNet photographs, not 28x28 digits; for MNIST-like data ganzoo
trains :class:`~ganzoo.nets.classifier.ConvClassifier` on the dataset's training split on first
use (a couple of CPU-cheap epochs), measures its accuracy on the test split and caches weights
and record under ``<cache_dir>/domain_classifiers/<dataset>-<key>.{pt,json}``. The key is a hash
of the training images, their labels and the classifier/training config, so a different
split, resolution or recipe trains a new network. Domain FID / KID / precision / recall are
measured in its feature layer, the classifier score and label histograms from its head.

Images go in as ``[0, 1]`` tensors whatever the data's value range. A datamodule with a
``digits`` attribute (Stacked MNIST) is classified channel by channel with the classifier of
``digits``: features are concatenated, and the labels are the digit tuples (``100 a + 10 b + c``
for three channels), with ``log p(a, b, c | x) = sum_c log p_c(digit | channel c)``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchmetrics.classification import MulticlassAccuracy

from ganzoo.nets.classifier import ConvClassifier

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$GANZOO_CACHE_DIR`` or ``~/.cache/ganzoo``."""
    return Path(os.environ.get("GANZOO_CACHE_DIR", "~/.cache/ganzoo")).expanduser()


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unit_range(x: Tensor, value_range) -> Tensor:
    """Images in ``value_range`` (``None``: already [0, 1]) to [0, 1]."""
    low, high = value_range if value_range is not None else (0.0, 1.0)
    return ((x.float() - low) / (high - low)).clamp(0.0, 1.0)


@torch.no_grad()
def labelled_tensors(
    dataset: Dataset, value_range, batch_size: int = 1000
) -> tuple[Tensor, Tensor]:
    """All ``(image, label)`` items of ``dataset`` as ``[0, 1]`` images and int64 labels."""
    xs, ys = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, num_workers=0):
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError(
                "the domain classifier needs a labelled training split: items must be "
                "(image, label)"
            )
        # Back onto the 8-bit grid the images were stored on: a run in [-1, 1] then hashes to,
        # and shares, the classifier of a run in [0, 1], so their features are comparable.
        xs.append(unit_range(batch[0], value_range).mul(255).round().div(255))
        ys.append(torch.as_tensor(batch[1]).long())
    return torch.cat(xs), torch.cat(ys)


def train_classifier(
    x: Tensor,
    y: Tensor,
    net: ConvClassifier,
    epochs: int = 2,
    batch_size: int = 128,
    max_lr: float = 3e-3,
    seed: int = 0,
) -> ConvClassifier:
    """Adam with a one-cycle learning-rate schedule (peak ``max_lr``), cross-entropy, ``epochs``
    passes over ``(x, y)`` in a seeded order; the network is returned in eval mode."""
    device = next(net.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = max(1, x.shape[0] // batch_size)
    opt = torch.optim.Adam(net.parameters(), lr=max_lr / 25)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=max_lr, total_steps=epochs * steps_per_epoch
    )
    net.train()
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(x.shape[0], generator=generator)
            for step in range(steps_per_epoch):
                idx = order[step * batch_size : (step + 1) * batch_size]
                loss = F.cross_entropy(net(x[idx].to(device)), y[idx].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
    return net.eval()


@torch.no_grad()
def accuracy(net: ConvClassifier, x: Tensor, y: Tensor, batch_size: int = 1000) -> float:
    """Share of ``x`` that ``net`` (in its current mode) labels ``y`` (torchmetrics' multiclass
    accuracy, micro-averaged), ``batch_size`` images at a time."""
    device = next(net.parameters()).device
    metric = MulticlassAccuracy(num_classes=net.num_classes, average="micro").to(device)
    for i in range(0, x.shape[0], batch_size):
        metric.update(net(x[i : i + batch_size].to(device)), y[i : i + batch_size].to(device))
    return float(metric.compute())


def _key(x: Tensor, y: Tensor, recipe: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode())
    digest.update(x.contiguous().numpy().tobytes())
    digest.update(y.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def load_or_train_classifier(
    datamodule: Any,
    cache_dir: str | Path,
    device: torch.device | str = "cpu",
    net: dict[str, Any] | None = None,
    epochs: int = 2,
    batch_size: int = 128,
    max_lr: float = 3e-3,
    seed: int = 0,
) -> tuple[ConvClassifier, dict[str, Any]]:
    """The cached classifier of ``datamodule``'s training split (trained if absent), and its
    record."""
    datamodule.setup("fit")
    name = getattr(datamodule, "name", type(datamodule).__name__)
    value_range = getattr(datamodule, "value_range", None)
    x, y = labelled_tensors(datamodule.train_set, value_range)
    recipe = {
        "net": {
            "channels": x.shape[1],
            "image_size": x.shape[-1],
            "num_classes": int(y.max()) + 1,
            **(net or {}),
        },
        "epochs": epochs,
        "batch_size": batch_size,
        "max_lr": max_lr,
        "seed": seed,
    }
    key = _key(x, y, recipe)
    folder = Path(cache_dir).expanduser().resolve() / "domain_classifiers"
    data_dir = getattr(datamodule, "data_dir", None)
    if data_dir is not None and folder.is_relative_to(Path(data_dir).resolve()):
        raise ValueError(
            f"paths.cache_dir puts the domain classifiers ({folder}) inside the data directory "
            f"{data_dir}, which ganzoo treats as read-only: choose another paths.cache_dir"
        )
    weights, record_path = folder / f"{name}-{key}.pt", folder / f"{name}-{key}.json"
    if weights.is_file() and record_path.is_file():
        record = json.loads(record_path.read_text())
        if sha256_file(weights) != record["weights_sha256"]:
            raise RuntimeError(
                f"{weights} does not match the sha256 in {record_path}: delete both to retrain"
            )
        model = ConvClassifier(**recipe["net"])
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return model.to(device).eval(), {**record, "weights": str(weights)}
    log.info(
        "training the domain classifier for %s on %d images (cached in %s)",
        name,
        x.shape[0],
        folder,
    )
    torch.manual_seed(seed)
    model = ConvClassifier(**recipe["net"]).to(device)
    start = time.perf_counter()
    train_classifier(x, y, model, epochs=epochs, batch_size=batch_size, max_lr=max_lr, seed=seed)
    seconds = time.perf_counter() - start
    x_test, y_test = labelled_tensors(datamodule.test_set, value_range)
    folder.mkdir(parents=True, exist_ok=True)
    # Saved through a buffer: the file's bytes (and so its sha256) depend on the weights alone,
    # not on the file's name.
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    tmp = weights.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, weights)
    record = {
        "network": "ganzoo.nets.classifier.ConvClassifier",
        "dataset": name,
        "key": key,
        "recipe": recipe,
        "num_train": int(x.shape[0]),
        "num_test": int(x_test.shape[0]),
        "test_accuracy": accuracy(model, x_test, y_test),
        "train_seconds": round(seconds, 1),
        "weights": str(weights),
        "weights_sha256": sha256_file(weights),
    }
    tmp = record_path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, record_path)
    log.info(
        "domain classifier for %s: test accuracy %.4f after %.0f s",
        name,
        record["test_accuracy"],
        seconds,
    )
    return model, record


class DomainFeatures:
    """Feature network for MNIST-like data: the cached :class:`ConvClassifier` of the data.

    Args:
        cache_dir: where classifiers are cached (``paths.cache_dir``); never the data directory.
        net: extra :class:`ConvClassifier` arguments (``widths``, ``feature_dim``, ``dropout``).
        epochs, batch_size, max_lr, seed: the training recipe (part of the cache key).
        warn_below: log a warning when the test accuracy is below this.
    """

    name = "domain"
    score_name = "classifier_score"

    def __init__(
        self,
        cache_dir: str | Path | None = None,
        net: dict[str, Any] | None = None,
        epochs: int = 2,
        batch_size: int = 128,
        max_lr: float = 3e-3,
        seed: int = 0,
        warn_below: float = 0.9,
    ):
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.recipe = {
            "net": dict(net or {}),
            "epochs": epochs,
            "batch_size": batch_size,
            "max_lr": max_lr,
            "seed": seed,
        }
        self.warn_below = warn_below
        self.classifier: ConvClassifier | None = None
        self.record: dict[str, Any] = {}
        self.channelwise = False
        self.channels = 1

    def skip_reason(self, ctx) -> str | None:
        dm = ctx.datamodule
        if not ctx.is_image:
            return "domain features are for images"
        digits = getattr(dm, "digits", None)
        channels = (digits or dm).shape[0]
        if channels != 1:
            return (
                "domain features are for MNIST-like (one-channel) images; "
                "use the inception metrics for RGB data"
            )
        return None

    def prepare(self, ctx) -> None:
        if self.classifier is not None:
            return
        digits = getattr(ctx.datamodule, "digits", None)
        self.channelwise = digits is not None
        self.channels = ctx.datamodule.shape[0]
        self.classifier, self.record = load_or_train_classifier(
            digits if self.channelwise else ctx.datamodule,
            self.cache_dir,
            ctx.device,
            **self.recipe,
        )
        if self.record["test_accuracy"] < self.warn_below:
            log.warning(
                "the domain classifier of %s reaches only %.3f test accuracy: "
                "domain metrics will be weak",
                self.record["dataset"],
                self.record["test_accuracy"],
            )

    def protocol(self) -> dict[str, Any]:
        keys = (
            "network",
            "dataset",
            "num_train",
            "num_test",
            "test_accuracy",
            "weights",
            "weights_sha256",
        )
        out = {"name": "domain_classifier", **{k: self.record.get(k) for k in keys}}
        if self.channelwise:
            out["applied"] = "per channel (labels are digit tuples)"
        return out

    @property
    def num_classes(self) -> int:
        """Labels of the logits: the classifier's classes, or digit tuples when channelwise."""
        return self.classifier.num_classes ** (self.channels if self.channelwise else 1)

    @torch.no_grad()
    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``[0, 1]`` images to ``(features, logits)``."""
        if not self.channelwise:
            return self.classifier.features(x), self.classifier(x)
        feats, log_probs = [], None
        for c in range(x.shape[1]):
            f = self.classifier.features(x[:, c : c + 1])
            lp = F.log_softmax(self.classifier.head(f), dim=1)
            feats.append(f)
            # Joint log-probabilities of digit tuples: channel 0 is the most significant digit.
            log_probs = (
                lp if log_probs is None else (log_probs[:, :, None] + lp[:, None, :]).flatten(1)
            )
        return torch.cat(feats, dim=1), log_probs
