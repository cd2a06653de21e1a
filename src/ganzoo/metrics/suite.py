"""Evaluation metrics as configurable objects, shared by ``ganzoo-eval`` and the training callback.

Each metric is a ``_target_`` in a metrics config (``conf/metrics/*.yaml``) and follows one
small protocol:

- ``skip_reason(ctx)``: why it does not apply to this model / data (``None`` if it does), so
  one default list serves images, 2D mixtures and Stacked MNIST, with and without encoders;
- ``prepare(ctx)``: one-off work (training or loading a feature network);
- ``__call__(ctx)``: ``{name: {"value": v, **protocol}}``: every number carries the protocol
  it was measured under (sample counts, split, feature network and its weights' sha256, seed).

Generated samples come from :meth:`EvalContext.generated_batches`: the same seeded stream for
every metric, so FID and Parzen see the same first 10,000 samples. A sampler's stream
(``rejection``: DRS, JBT, DOT, ex-post) costs many passes of the networks per sample, so each
size is drawn once and replayed to the other metrics from a copy on the CPU; without a sampler
the stream is drawn again for each metric, which gives the same samples. Everything runs in
batches on the model's device.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from ganzoo.metrics.distances import classifier_score, frechet_distance, kernel_distance
from ganzoo.metrics.domain import unit_range
from ganzoo.metrics.manifold import density_coverage, precision_recall
from ganzoo.metrics.mixtures import kl_to_uniform, mode_statistics
from ganzoo.metrics.parzen import (
    goodfellow_sigmas,
    mean_and_standard_error,
    parzen_log_likelihood,
    select_sigma,
)
from ganzoo.metrics.reconstruction import reconstruction_errors
from ganzoo.models.base import GenerativeModel, evaluating
from ganzoo.rejection import TrainingItems

SPLITS = ("train", "val", "test")


@dataclass
class EvalContext:
    """What a metric may look at: the model, the data, the evaluation split and the seed.

    Args:
        model: any :class:`GenerativeModel` (its device is where everything runs).
        datamodule: the run's datamodule (``setup`` is called here).
        split: the held-out split real data comes from (``train``, ``val`` or ``test``).
        seed: seed of the generated-sample stream and of the metrics' random subsets.
        batch_size: generation / feature-extraction batch size.
        rejection: a sampler that keeps some of the model's samples (``ganzoo.rejection``);
            None takes every sample.
    """

    model: GenerativeModel
    datamodule: Any
    split: str = "test"
    seed: int = 0
    batch_size: int = 500
    rejection: Any = None
    #: With ``rejection``: the share of candidates kept, per stream size ``n`` (every stream of
    #: one size is the same stream, drawn from ``seed``).
    acceptance: dict[int, float | None] = field(default_factory=dict)
    #: With ``rejection``: what the sampler measured on the model, per stream size ``n``
    #: (``Sampler.measured``: JBT's threshold, ex-post's components).
    sampler_measured: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: How many of each stream's first samples to keep (on the CPU) in ``first_samples``, per
    #: stream size ``n``: what ``ganzoo-eval`` pictures is what the metrics scored.
    keep_first: int = 0
    first_samples: dict[int, Tensor] = field(default_factory=dict)
    #: With ``rejection``: each stream size's samples once drawn in full (on the CPU), replayed
    #: to every later metric that asks for the same size.
    drawn_streams: dict[int, list[Tensor]] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.datamodule.setup("fit")
        self.dataset(self.split)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def value_range(self):
        return getattr(self.datamodule, "value_range", None)

    @property
    def is_image(self) -> bool:
        return len(getattr(self.datamodule, "shape", ())) == 3

    def dataset(self, split: str):
        if split not in SPLITS:
            raise ValueError(f"split={split!r} is not one of {list(SPLITS)}")
        ds = getattr(self.datamodule, f"{split}_set", None)
        if ds is None or len(ds) == 0:
            raise ValueError(
                f"{type(self.datamodule).__name__} has no {split} split: "
                "pick another with split=... "
                "(or give the data a validation part, e.g. data.val_size)"
            )
        return ds

    def num_real(self, split: str, n: int | None, start: int = 0) -> int:
        size = len(self.dataset(split)) - start
        return size if n is None else min(n, size)

    def real_batches(self, split: str, n: int | None = None, start: int = 0) -> Iterator[Tensor]:
        """``n`` items (``None``: all) of ``split`` from item ``start`` on, on the device."""
        size = len(self.dataset(split))
        stop = size if n is None else min(start + n, size)
        if start >= stop:
            raise ValueError(f"the {split} split has {size} items: none left from item {start} on")
        subset = Subset(self.dataset(split), range(start, stop))
        for batch in DataLoader(subset, batch_size=self.batch_size, num_workers=0):
            yield GenerativeModel.inputs(batch).to(self.device)

    def generated_batches(self, n: int) -> Iterator[Tensor]:
        """``n`` samples in batches, from a generator seeded with ``seed``, in eval mode (the
        first ``keep_first`` of them also kept in ``first_samples[n]``)."""
        kept: list[Tensor] = []
        for batch in self._generated(n):
            have = sum(len(b) for b in kept)
            if have < self.keep_first:
                kept.append(batch[: self.keep_first - have].detach().cpu())
                self.first_samples[n] = torch.cat(kept)
            yield batch

    def _generated(self, n: int) -> Iterator[Tensor]:
        if n in self.drawn_streams:
            for batch in self.drawn_streams[n]:
                yield batch.to(self.device)
            return
        generator = torch.Generator(device=self.device).manual_seed(self.seed)
        with evaluating(self.model):
            if self.rejection is not None:
                drawn = []
                try:
                    for batch in self.rejection.batches(
                        self.model,
                        n,
                        self.batch_size,
                        generator,
                        real=TrainingItems(self.dataset("train"), self.device),
                    ):
                        drawn.append(batch.detach().cpu())
                        yield batch
                finally:
                    self.acceptance[n] = self.rejection.acceptance
                    self.sampler_measured[n] = self.rejection.measured()
                self.drawn_streams[n] = drawn  # only a stream drawn to its end
                return
            for start in range(0, n, self.batch_size):
                yield self.model.sample(min(self.batch_size, n - start), generator=generator)


def measured(values: Mapping[str, Any], protocol: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{name: {"value": v, **protocol}}``."""
    return {name: {"value": value, **protocol} for name, value in values.items()}


class Metric:
    """Base class: see the module docstring for the protocol."""

    def skip_reason(self, ctx: EvalContext) -> str | None:
        return None

    def prepare(self, ctx: EvalContext) -> None:
        pass

    def __call__(self, ctx: EvalContext) -> dict[str, dict[str, Any]]:
        raise NotImplementedError


def run_metrics(
    metrics: Mapping[str, Metric], ctx: EvalContext
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Run every applicable metric; returns the measured numbers and ``{metric: why skipped}``.

    All applicable metrics are prepared before any is measured, so a missing feature network
    (e.g. Inception weights) stops the run at once."""
    skipped = {name: m.skip_reason(ctx) for name, m in metrics.items() if m is not None}
    skipped = {name: why for name, why in skipped.items() if why}
    active = {name: m for name, m in metrics.items() if m is not None and name not in skipped}
    for metric in active.values():
        metric.prepare(ctx)
    results: dict[str, dict[str, Any]] = {}
    for name, metric in active.items():
        out = metric(ctx)
        clash = sorted(set(out) & set(results))
        if clash:
            raise ValueError(
                f"metrics.{name} reports {clash}, which another metric already reported"
            )
        results.update(out)
    return results, skipped


# --- metrics -------------------------------------------------------------------------------


class FeatureSpaceMetrics(Metric):
    """FID, KID, precision / recall, density / coverage and the classifier score in the features
    of one network (``features``: :class:`~ganzoo.metrics.domain.DomainFeatures` or
    :class:`~ganzoo.metrics.inception.InceptionFeatures`).

    Reports ``fid_<f>``, ``kid_<f>`` (+ ``_std``), ``precision_<f>``, ``recall_<f>``,
    ``density_<f>``, ``coverage_<f>`` (``<f>`` the network's name), its score (``classifier_score``
    / ``inception_score``, + ``_std``, + ``_real``: the score of the real images) and, with
    ``label_histogram``, the share of generated (and real) images per predicted label.

    Args:
        features: the feature network (instantiated by Hydra with the metrics config).
        num_real: real images of the evaluation split (at most; ``None``: all).
        num_generated: generated samples.
        precision_recall_k, density_coverage_k: k of the k-NN balls (papers' defaults 3 and 5).
        kid_subsets, kid_subset_size: KID's random subsets (torchmetrics' defaults).
        score_splits: splits of the Inception-Score formula.
        label_histogram: report predicted-label histograms (meaningful for the domain classifier).
        chunk: block size of the k-NN distance computations.
    """

    def __init__(
        self,
        features: Any,
        num_real: int | None = 10_000,
        num_generated: int = 10_000,
        precision_recall_k: int = 3,
        density_coverage_k: int = 5,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        score_splits: int = 10,
        label_histogram: bool = True,
        chunk: int = 2048,
    ):
        self.features = features
        self.num_real, self.num_generated = num_real, num_generated
        self.pr_k, self.dc_k = precision_recall_k, density_coverage_k
        self.kid_subsets, self.kid_subset_size = kid_subsets, kid_subset_size
        self.score_splits = score_splits
        self.label_histogram = label_histogram
        self.chunk = chunk
        self._real: dict[tuple[str, int | None], tuple[Tensor, Tensor]] = {}

    def skip_reason(self, ctx: EvalContext) -> str | None:
        return self.features.skip_reason(ctx)

    def prepare(self, ctx: EvalContext) -> None:
        self.features.prepare(ctx)

    def _extract(self, batches: Iterator[Tensor], value_range) -> tuple[Tensor, Tensor]:
        feats, logits = [], []
        for x in batches:
            f, lg = self.features(unit_range(x, value_range))
            feats.append(f.float())
            logits.append(lg.float())
        return torch.cat(feats), torch.cat(logits)

    def real_features(self, ctx: EvalContext) -> tuple[Tensor, Tensor]:
        """Features and logits of the real images (computed once per split)."""
        key = (ctx.split, self.num_real)
        if key not in self._real:
            self._real[key] = self._extract(
                ctx.real_batches(ctx.split, self.num_real), ctx.value_range
            )
        return self._real[key]

    def __call__(self, ctx: EvalContext) -> dict[str, dict[str, Any]]:
        start = time.perf_counter()
        real_f, real_logits = self.real_features(ctx)
        fake_f, fake_logits = self._extract(
            ctx.generated_batches(self.num_generated), ctx.value_range
        )
        n = self.features.name
        kid = kernel_distance(real_f, fake_f, self.kid_subsets, self.kid_subset_size, seed=ctx.seed)
        pr = precision_recall(real_f, fake_f, self.pr_k, self.chunk)
        dc = density_coverage(real_f, fake_f, self.dc_k, self.chunk)
        score = classifier_score(fake_logits, self.score_splits, seed=ctx.seed)
        score_real = classifier_score(real_logits, self.score_splits, seed=ctx.seed)
        s = self.features.score_name
        values: dict[str, Any] = {
            f"fid_{n}": frechet_distance(real_f, fake_f),
            f"kid_{n}": kid["kid"],
            f"kid_{n}_std": kid["kid_std"],
            f"precision_{n}": pr["precision"],
            f"recall_{n}": pr["recall"],
            f"density_{n}": dc["density"],
            f"coverage_{n}": dc["coverage"],
            s: score["score"],
            f"{s}_std": score["score_std"],
            f"{s}_real": score_real["score"],
        }
        if self.label_histogram:
            values["label_histogram"] = _histogram(fake_logits, self.features.num_classes)
            values["label_histogram_real"] = _histogram(real_logits, self.features.num_classes)
        protocol = {
            "num_real": int(real_f.shape[0]),
            "num_generated": int(fake_f.shape[0]),
            "split": ctx.split,
            "seed": ctx.seed,
            "features": self.features.protocol(),
            "precision_recall_k": self.pr_k,
            "density_coverage_k": self.dc_k,
            "kid_subsets": kid["kid_subsets"],
            "kid_subset_size": kid["kid_subset_size"],
            "score_splits": self.score_splits,
            "seconds": round(time.perf_counter() - start, 2),
        }
        return measured(values, protocol)


def _histogram(logits: Tensor, num_classes: int) -> list[float]:
    counts = torch.bincount(logits.argmax(dim=1).cpu(), minlength=num_classes).double()
    return (counts / counts.sum()).tolist()


class ParzenWindow(Metric):
    """Parzen-window log-likelihood by Goodfellow et al.'s protocol (REFERENCE.md section 1).

    ``num_samples`` generated samples are the kernel centres; sigma is chosen from
    ``logspace(log10_sigma_range[0], log10_sigma_range[1], num_sigmas)`` by the mean
    log-likelihood of the first ``num_sigma_points`` images of ``sigma_split``; the reported
    ``parzen_ll`` is the mean over the evaluation split (its first ``num_points``; ``None``: all)
    with its standard error ``parzen_se`` (nats, pixels in [0, 1]). When the evaluation split is
    ``sigma_split`` itself (in training: ``val``), the images sigma was chosen on are left out.
    """

    def __init__(
        self,
        num_samples: int = 10_000,
        num_sigma_points: int = 1000,
        sigma_split: str = "val",
        log10_sigma_range: tuple[float, float] = (-1.0, 0.0),
        num_sigmas: int = 10,
        num_points: int | None = None,
        x_chunk: int = 500,
        centre_chunk: int = 1000,
    ):
        self.num_samples = num_samples
        self.num_sigma_points = num_sigma_points
        self.sigma_split = sigma_split
        self.sigmas = goodfellow_sigmas(num_sigmas, *log10_sigma_range)
        self.num_points = num_points
        self.chunks = {"x_chunk": x_chunk, "centre_chunk": centre_chunk}

    def skip_reason(self, ctx: EvalContext) -> str | None:
        return (
            None
            if ctx.is_image
            else "the Parzen protocol (sigma in logspace(-1, 0)) is for pixel data"
        )

    def __call__(self, ctx: EvalContext) -> dict[str, dict[str, Any]]:
        start = time.perf_counter()
        vr = ctx.value_range
        centres = torch.cat(
            [unit_range(x, vr).flatten(1) for x in ctx.generated_batches(self.num_samples)]
        )
        val = torch.cat(
            [
                unit_range(x, vr).flatten(1)
                for x in ctx.real_batches(self.sigma_split, self.num_sigma_points)
            ]
        )
        sigma, val_means = select_sigma(val, centres, self.sigmas, **self.chunks)
        first = val.shape[0] if ctx.split == self.sigma_split else 0
        ll = torch.cat(
            [
                parzen_log_likelihood(unit_range(x, vr), centres, [sigma], **self.chunks)[0]
                for x in ctx.real_batches(ctx.split, self.num_points, start=first)
            ]
        )
        mean, se = mean_and_standard_error(ll)
        protocol = {
            "num_real": int(ll.numel()),
            "num_generated": int(centres.shape[0]),
            "split": ctx.split,
            "first_point": first,
            "sigma_split": self.sigma_split,
            "num_sigma_points": int(val.shape[0]),
            "sigmas": [round(float(s), 6) for s in self.sigmas],
            "sigma_mean_ll": [round(float(v), 4) for v in val_means],
            "seed": ctx.seed,
            "features": {"name": "pixels in [0, 1]", "dims": int(centres.shape[1])},
            "units": "nats",
            "seconds": round(time.perf_counter() - start, 2),
        }
        return measured({"parzen_ll": mean, "parzen_se": se, "parzen_sigma": sigma}, protocol)


class Reconstruction(Metric):
    """L1 / MSE / SSIM of ``reconstruct(x)`` on the first ``num_images`` training images and on
    the evaluation split (``recon_<l1|mse|ssim>_<split>``), for families with an encoder."""

    def __init__(self, num_images: int | None = 10_000):
        self.num_images = num_images

    def skip_reason(self, ctx: EvalContext) -> str | None:
        if not getattr(ctx.model, "has_encoder", False):
            return f"the {type(ctx.model).__name__} family has no encoder"
        return None

    def __call__(self, ctx: EvalContext) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for split in dict.fromkeys(("train", ctx.split)):
            start = time.perf_counter()
            with evaluating(ctx.model):
                errors = reconstruction_errors(
                    ctx.model.reconstruct,
                    ctx.real_batches(split, self.num_images),
                    ctx.value_range,
                    ctx.is_image,
                )
            protocol = {
                "num_real": ctx.num_real(split, self.num_images),
                "num_generated": 0,
                "split": split,
                "seed": ctx.seed,
                "features": {"name": "pixels in [0, 1]" if ctx.is_image else "data coordinates"},
                "seconds": round(time.perf_counter() - start, 2),
            }
            out.update(measured({f"recon_{k}_{split}": v for k, v in errors.items()}, protocol))
        return out


class ModeStatistics(Metric):
    """2D-mixture figures of :func:`~ganzoo.metrics.mixtures.mode_statistics` on ``num_samples``
    samples (PacGAN / VEEGAN: 2,500): ``modes``, ``high_quality`` (%), ``reverse_kl``,
    ``hq_std`` (spread of the high-quality samples around their modes), ``mode_counts``."""

    def __init__(self, num_samples: int = 2500, threshold: float = 3.0):
        self.num_samples = num_samples
        self.threshold = threshold

    def skip_reason(self, ctx: EvalContext) -> str | None:
        return None if hasattr(ctx.datamodule, "modes") else "the data is not a Gaussian mixture"

    def __call__(self, ctx: EvalContext) -> dict[str, dict[str, Any]]:
        dm = ctx.datamodule
        samples = torch.cat(list(ctx.generated_batches(self.num_samples)))
        stats = mode_statistics(samples, dm.modes, dm.std, self.threshold)
        values = {
            "modes": int(stats["modes"]),
            "high_quality": float(stats["high_quality"]),
            "reverse_kl": float(stats["reverse_kl"]),
            "hq_std": float(stats["hq_std"]),
            "mode_counts": [int(c) for c in stats["counts"]],
        }
        protocol = {
            "num_real": 0,
            "num_generated": int(samples.shape[0]),
            "split": None,
            "seed": ctx.seed,
            "features": {"name": "data coordinates", "num_modes": len(dm.modes), "std": dm.std},
            "threshold_std": self.threshold,
        }
        return measured(values, protocol)


class StackedMNISTModes(Metric):
    """Stacked-MNIST mode count (REFERENCE.md section 4): each channel of ``num_samples``
    generated images (26,000) classified by the domain classifier of MNIST; reports
    ``stacked_modes`` (digit triples seen at least once, of 1,000) and ``stacked_kl``
    (``KL(mode histogram || uniform over all triples)``, nats)."""

    def __init__(self, features: Any, num_samples: int = 26_000):
        self.features = features
        self.num_samples = num_samples

    def skip_reason(self, ctx: EvalContext) -> str | None:
        if getattr(ctx.datamodule, "digits", None) is None:
            return "the data is not Stacked MNIST (no per-channel digits)"
        return self.features.skip_reason(ctx)

    def prepare(self, ctx: EvalContext) -> None:
        self.features.prepare(ctx)

    def __call__(self, ctx: EvalContext) -> dict[str, dict[str, Any]]:
        start = time.perf_counter()
        counts = None
        for x in ctx.generated_batches(self.num_samples):
            _, logits = self.features(unit_range(x, ctx.value_range))
            found = torch.bincount(logits.argmax(dim=1), minlength=logits.shape[1])
            counts = found if counts is None else counts + found
        values = {
            "stacked_modes": int((counts > 0).sum()),
            "stacked_kl": float(kl_to_uniform(counts)),
        }
        protocol = {
            "num_real": 0,
            "num_generated": self.num_samples,
            "num_modes": int(counts.numel()),
            "split": None,
            "seed": ctx.seed,
            "features": self.features.protocol(),
            "seconds": round(time.perf_counter() - start, 2),
        }
        return measured(values, protocol)
