"""FID, KID and the Inception-Score formula on features, through torchmetrics.

A feature network (the domain classifier, or Inception) runs once per image; its outputs are
then fed to torchmetrics' ``FrechetInceptionDistance``, ``KernelInceptionDistance`` and
``InceptionScore`` through their custom-feature-extractor route, with
:class:`PrecomputedFeatures` as the ``feature`` module. Every metric is thus torchmetrics' own
arithmetic, and no image goes through a network twice.

- FID: ``||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^{1/2})`` of the features' Gaussian fits.
- KID: the unbiased polynomial-kernel MMD^2, mean and std over random subsets.
- Inception / classifier score: ``exp(E_x KL(p(y|x) || p(y)))`` from logits, over ``splits``.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance


class PrecomputedFeatures(nn.Module):
    """The ``feature`` module for torchmetrics when its inputs already are ``(N, num_features)``."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.num_features:
            raise ValueError(
                f"expected features of shape (N, {self.num_features}), got {tuple(x.shape)}"
            )
        return x


def _chunks(x: Tensor, size: int):
    return (x[i : i + size] for i in range(0, x.shape[0], size))


@torch.no_grad()
def frechet_distance(real: Tensor, fake: Tensor, chunk: int = 4096) -> float:
    """FID between two feature sets ``(N, d)`` and ``(M, d)`` (float64 statistics)."""
    fid = FrechetInceptionDistance(feature=PrecomputedFeatures(real.shape[1])).to(real.device)
    for part in _chunks(real.double(), chunk):
        fid.update(part, real=True)
    for part in _chunks(fake.double().to(real.device), chunk):
        fid.update(part, real=False)
    return float(fid.compute())


@torch.no_grad()
def kernel_distance(
    real: Tensor, fake: Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> dict[str, float]:
    """KID mean and std over ``subsets`` random subsets of ``min(subset_size, N, M)`` points."""
    size = min(subset_size, real.shape[0], fake.shape[0])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        kid = KernelInceptionDistance(
            feature=PrecomputedFeatures(real.shape[1]), subsets=subsets, subset_size=size
        )
    kid.update(real.double(), real=True)
    kid.update(fake.double().to(real.device), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = kid.compute()
    return {
        "kid": float(mean),
        "kid_std": float(std),
        "kid_subset_size": size,
        "kid_subsets": subsets,
    }


@torch.no_grad()
def classifier_score(logits: Tensor, splits: int = 10, seed: int = 0) -> dict[str, float]:
    """``exp(E KL(p(y|x) || p(y)))`` (Salimans et al.'s Inception Score) from ``(N, classes)``
    logits, mean and std over ``splits`` random splits."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        score = InceptionScore(feature=PrecomputedFeatures(logits.shape[1]), splits=splits)
    score.update(logits.double())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = score.compute()
    return {"score": float(mean), "score_std": float(std)}
