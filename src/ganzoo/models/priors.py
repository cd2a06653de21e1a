"""Latent priors p(z). A family samples its noise through one of these, chosen by config."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class Prior(nn.Module):
    """Base class: ``sample(n)`` returns ``(n, dim)`` latents on the module's device."""

    def __init__(self, dim: int):
        super().__init__()
        if dim <= 0:
            raise ValueError(f"model.latent_dim must be positive, got {dim}")
        self.dim = dim
        # Empty buffer that follows the LightningModule across devices and dtypes.
        self.register_buffer("_anchor", torch.empty(0), persistent=False)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError


class NormalPrior(Prior):
    """``z ~ N(0, std^2 I)``."""

    def __init__(self, dim: int, std: float = 1.0):
        super().__init__(dim)
        self.std = std

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        a = self._anchor
        return self.std * torch.randn(
            n, self.dim, device=a.device, dtype=a.dtype, generator=generator
        )


class UniformPrior(Prior):
    """``z ~ U(low, high)^dim``. Goodfellow's MNIST code uses ``U(-sqrt 3, sqrt 3)`` (unit variance)."""

    def __init__(self, dim: int, low: float = -math.sqrt(3.0), high: float = math.sqrt(3.0)):
        super().__init__(dim)
        if not low < high:
            raise ValueError(f"UniformPrior needs low < high, got low={low}, high={high}")
        self.low, self.high = low, high

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        a = self._anchor
        u = torch.rand(n, self.dim, device=a.device, dtype=a.dtype, generator=generator)
        return self.low + (self.high - self.low) * u
