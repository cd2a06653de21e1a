"""k-nearest-neighbour manifold metrics in a feature space, computed in bounded memory.

- Precision and recall (Kynkäänniemi et al. 2019, "Improved precision and recall metric for
  assessing generative models"): each set's manifold is the union of balls around its points,
  of radius the distance to the point's k-th nearest neighbour in the same set. Precision is
  the share of generated points inside the real manifold; recall the share of real points
  inside the generated manifold.
- Density and coverage (Naeem et al. 2020, "Reliable fidelity and diversity metrics for
  generative models"): density = ``1/(k M) sum_j sum_i 1[y_j in B(x_i, r_k(x_i))]`` counts how
  many real balls hold each generated point; coverage = the share of real balls that hold at
  least one generated point.

Balls are closed (``distance <= radius``). Distances are computed in float64 in blocks of
``chunk x chunk``, so memory stays bounded whatever the set sizes are.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor


def _blocks(a: Tensor, b: Tensor, chunk: int) -> Iterator[tuple[slice, slice, Tensor]]:
    """``(rows, cols, ||a[rows] - b[cols]||)`` for every ``chunk x chunk`` block."""
    for i in range(0, a.shape[0], chunk):
        rows = slice(i, i + chunk)
        for j in range(0, b.shape[0], chunk):
            cols = slice(j, j + chunk)
            yield rows, cols, torch.cdist(a[rows], b[cols])


def _flat64(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1).double()


@torch.no_grad()
def knn_radii(x: Tensor, k: int, chunk: int = 2048) -> Tensor:
    """Distance from each row of ``x`` to its k-th nearest other row, shape ``(N,)``."""
    x = _flat64(x)
    if not 1 <= k < x.shape[0]:
        raise ValueError(f"nearest_k={k} needs at least k + 1 = {k + 1} points, got {x.shape[0]}")
    # The point itself is among the k + 1 smallest distances (at 0), so the (k+1)-th is the k-th NN.
    radii = []
    for i in range(0, x.shape[0], chunk):
        rows, nearest = x[i : i + chunk], None
        for j in range(0, x.shape[0], chunk):
            d = torch.cdist(rows, x[j : j + chunk])
            cand = d if nearest is None else torch.cat([nearest, d], dim=1)
            nearest = cand.topk(min(k + 1, cand.shape[1]), dim=1, largest=False).values
        radii.append(nearest[:, k])
    return torch.cat(radii)


@torch.no_grad()
def precision_recall(real: Tensor, fake: Tensor, k: int = 3, chunk: int = 2048) -> dict[str, float]:
    """Improved precision and recall with ``k``-NN balls (the paper's default ``k = 3``)."""
    real, fake = _flat64(real), _flat64(fake)
    r_real, r_fake = knn_radii(real, k, chunk), knn_radii(fake, k, chunk)
    fake_in_real = torch.zeros(fake.shape[0], dtype=torch.bool, device=fake.device)
    real_in_fake = torch.zeros(real.shape[0], dtype=torch.bool, device=real.device)
    for rows, cols, d in _blocks(real, fake, chunk):
        fake_in_real[cols] |= (d <= r_real[rows, None]).any(dim=0)
        real_in_fake[rows] |= (d <= r_fake[None, cols]).any(dim=1)
    return {
        "precision": float(fake_in_real.double().mean()),
        "recall": float(real_in_fake.double().mean()),
    }


@torch.no_grad()
def density_coverage(real: Tensor, fake: Tensor, k: int = 5, chunk: int = 2048) -> dict[str, float]:
    """Density and coverage with ``k``-NN balls around real points (paper's default ``k = 5``)."""
    real, fake = _flat64(real), _flat64(fake)
    r_real = knn_radii(real, k, chunk)
    inside = torch.zeros((), dtype=torch.float64, device=real.device)
    covered = torch.zeros(real.shape[0], dtype=torch.bool, device=real.device)
    for rows, _, d in _blocks(real, fake, chunk):
        hit = d <= r_real[rows, None]
        inside += hit.sum()
        covered[rows] |= hit.any(dim=1)
    return {
        "density": float(inside / (k * fake.shape[0])),
        "coverage": float(covered.double().mean()),
    }
