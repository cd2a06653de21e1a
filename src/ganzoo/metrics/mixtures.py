"""Mode-collapse figures on 2D Gaussian mixtures (PacGAN / VEEGAN protocol, REFERENCE.md 4).

A sample is *high quality* when it lies within ``threshold * std`` (3 std) of its nearest mode;
a mode is *covered* when at least one high-quality sample is nearest to it; the *reverse KL*
is ``KL(p || uniform)`` between the histogram ``p`` of high-quality samples over modes and the
uniform distribution over modes. The *spread* of the high-quality samples (their standard
deviation around their modes, per coordinate) shows what the share alone cannot: samples packed
tighter than the data's Gaussians score a high share too. The same function serves training
logs and ``ganzoo-eval``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def mode_statistics(
    samples: Tensor, modes: Tensor, std: float, threshold: float = 3.0
) -> dict[str, Tensor]:
    """``modes`` (covered count), ``high_quality`` (percent), ``reverse_kl`` (nats), ``counts``
    and ``hq_std``: ``sqrt(mean((x - mode)^2))`` over both coordinates of the high-quality
    samples ``x`` and their nearest modes (data: about ``std``, a little less for the 3-std cut).

    ``reverse_kl`` is ``inf`` and ``hq_std`` NaN when no sample is of high quality.
    """
    samples = samples.detach().float().reshape(samples.shape[0], -1)
    modes = modes.to(samples)
    dist = torch.cdist(samples, modes)
    nearest_dist, nearest = dist.min(dim=1)
    hq = nearest_dist <= threshold * std
    counts = torch.bincount(nearest[hq], minlength=len(modes)).to(samples)
    offsets = samples[hq] - modes[nearest[hq]]
    return {
        "modes": (counts > 0).sum().to(samples),
        "high_quality": 100.0 * hq.float().mean(),
        "reverse_kl": kl_to_uniform(counts),
        "counts": counts,
        "hq_std": offsets.square().mean().sqrt(),
    }


def kl_to_uniform(counts: Tensor) -> Tensor:
    """``KL(p || uniform)`` in nats, ``p = counts / counts.sum()`` over ``len(counts)`` modes;
    ``inf`` when all counts are 0 (the histogram is undefined)."""
    counts = counts.float()
    total = counts.sum()
    if total <= 0:
        return torch.tensor(math.inf, device=counts.device)
    p = counts[counts > 0] / total
    return (p * (p * len(counts)).log()).sum()
