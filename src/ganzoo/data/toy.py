"""2D Gaussian mixtures for mode-collapse benchmarks (PacGAN, VEEGAN; REFERENCE.md section 4)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ganzoo.data.base import BaseDataModule
from ganzoo.data.memory import PointTensors


def ring_modes(num_modes: int = 8, radius: float = 1.0) -> Tensor:
    """``num_modes`` centres evenly on a circle, ``angle_i = 2 pi i / num_modes`` (no duplicate
    endpoint: ``linspace(0, 2 pi, 8)`` would give only 7 distinct modes)."""
    angles = 2 * math.pi * torch.arange(num_modes, dtype=torch.float64) / num_modes
    return (radius * torch.stack([angles.cos(), angles.sin()], dim=1)).float()


def grid_modes(side: int = 5, spacing: float = 2.0) -> Tensor:
    """``side x side`` centres on a grid centred at 0: ``{-4, -2, 0, 2, 4}^2`` by default."""
    coords = (torch.arange(side, dtype=torch.float32) - (side - 1) / 2) * spacing
    return torch.cartesian_prod(coords, coords)


def sample_mixture(modes: Tensor, std: float, n: int, generator: torch.Generator) -> Tensor:
    """``n`` points from the equal-weight mixture of ``N(mode, std^2 I)``."""
    idx = torch.randint(len(modes), (n,), generator=generator)
    return modes[idx] + std * torch.randn(n, modes.shape[1], generator=generator)


class GaussianMixtureDataModule(BaseDataModule):
    """Fixed train / validation / test sets drawn from a Gaussian mixture with ``seed``.

    The points stay in memory; with ``in_memory`` (default) batches are served from the model's
    device in an order seeded with ``shuffle_seed`` (see :class:`~ganzoo.data.BaseDataModule`).
    """

    value_range = None

    def __init__(
        self,
        modes: Tensor,
        std: float,
        num_train: int = 100_000,
        num_val: int = 2_500,
        num_test: int = 2_500,
        seed: int = 0,
        batch_size: int = 100,
        num_workers: int = 0,
        shape: Sequence[int] | None = None,
        value_range: None = None,
        in_memory: bool = True,
        shuffle_seed: int | None = None,
    ):
        super().__init__(
            batch_size=batch_size,
            num_workers=num_workers,
            in_memory=in_memory,
            shuffle_seed=shuffle_seed,
        )
        if value_range is not None:
            raise ValueError(
                "data.value_range must be null for 2D mixtures: their samples are unbounded"
            )
        if std <= 0:
            raise ValueError(f"data.std must be positive, got {std}")
        self.modes = modes
        self.std = std
        self.shape = (modes.shape[1],)
        self.check_shape(shape)
        self.sizes = (num_train, num_val, num_test)
        self.seed = seed

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        g = torch.Generator().manual_seed(self.seed)
        train, val, test = (sample_mixture(self.modes, self.std, n, g) for n in self.sizes)
        self.train_set, self.val_set, self.test_set = (
            PointTensors(train),
            PointTensors(val),
            PointTensors(test),
        )


class RingDataModule(GaussianMixtureDataModule):
    """8 Gaussians on the unit circle, std 0.01 (PacGAN's ring)."""

    def __init__(self, num_modes: int = 8, radius: float = 1.0, std: float = 0.01, **kwargs):
        super().__init__(ring_modes(num_modes, radius), std, **kwargs)


class GridDataModule(GaussianMixtureDataModule):
    """25 Gaussians on ``{-4, -2, 0, 2, 4}^2``, std 0.05 (PacGAN's grid)."""

    def __init__(self, side: int = 5, spacing: float = 2.0, std: float = 0.05, **kwargs):
        super().__init__(grid_modes(side, spacing), std, **kwargs)
