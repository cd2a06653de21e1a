"""Building blocks shared by every network: maxout, residual blocks, init, size checks."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Literal

import torch
from torch import Tensor, nn

#: An activation factory: a module class or a ``functools.partial`` of one (Hydra ``_partial_``).
ActivationFactory = Callable[[], nn.Module]

#: LeakyReLU(0.2), the hidden activation of DCGAN discriminators and of the seeds' MLPs.
leaky_relu_02: ActivationFactory = partial(nn.LeakyReLU, 0.2)


class Maxout(nn.Module):
    """Maxout layer (Goodfellow et al. 2013): ``h_i = max_j (W x + b)_{i,j}`` over ``pieces``."""

    def __init__(self, in_features: int, out_features: int, pieces: int):
        super().__init__()
        if pieces < 1:
            raise ValueError(f"maxout needs pieces >= 1, got {pieces}")
        self.out_features, self.pieces = out_features, pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x).view(x.shape[0], self.out_features, self.pieces).amax(dim=-1)


def uniform_init_(module: nn.Module, bound: float) -> None:
    """pylearn2's ``irange``: every weight ``U(-bound, bound)``, every bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.uniform_(m.weight, -bound, bound)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def normal_init_(module: nn.Module, std: float) -> None:
    """DCGAN-style init: conv and linear weights ``N(0, std^2)``, biases 0, norm scales ``N(1, std^2)``."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


def inverse_activation(activation: nn.Module | None, mean: Tensor, eps: float = 1e-7) -> Tensor:
    """The pre-activation that maps to ``mean``: logit for a sigmoid, atanh for a tanh."""
    if isinstance(activation, nn.Sigmoid):
        return torch.logit(mean.clamp(eps, 1.0 - eps))
    if isinstance(activation, nn.Tanh):
        return torch.atanh(mean.clamp(-1.0 + eps, 1.0 - eps))
    raise ValueError(
        "output_bias_from_marginals needs a Sigmoid or Tanh output activation, "
        f"got {type(activation).__name__ if activation is not None else None}"
    )


def upsampling_plan(image_size: int, key: str, starts: Sequence[int] = (4, 7)) -> tuple[int, int]:
    """``(start, doublings)`` with ``start * 2**doublings == image_size`` for a conv net.

    Raises a ValueError naming ``key`` when no start size in ``starts`` reaches ``image_size``.
    """
    for start in starts:
        ratio = image_size / start
        if ratio >= 2 and ratio == int(ratio) and math.log2(ratio) == int(math.log2(ratio)):
            return start, int(math.log2(ratio))
    sizes = sorted({s * 2**n for s in starts for n in range(1, 6)})
    raise ValueError(
        f"{key}={image_size} is not an image size this network can take; use one of {sizes}"
    )


def make_activation(factory: ActivationFactory | None) -> nn.Module:
    return nn.Identity() if factory is None else factory()


class ResidualBlock(nn.Module):
    """Residual block ``act(skip(x) + BN(conv3x3(act(BN(conv1(x))))))``, optionally resampling.

    - ``resample=None``: ``conv1`` is a 3x3 convolution, ``skip`` the identity.
    - ``resample="down"``: ``conv1`` is a 3x3 convolution of stride 2, ``skip`` 2x2 average pooling.
    - ``resample="up"``: ``conv1`` is a 2x2 transposed convolution of stride 2, ``skip`` nearest
      2x upsampling.

    Channels stay ``channels`` throughout (seed 000's alpha-GAN block). ``batch_norm=False``
    drops the norms and gives the convolutions biases (WGAN-GP critics).
    """

    def __init__(
        self,
        channels: int,
        activation: ActivationFactory | None = nn.ReLU,
        batch_norm: bool = True,
        resample: Literal["down", "up"] | None = None,
    ):
        super().__init__()
        c, bias = channels, not batch_norm
        if resample is None:
            conv1, self.skip = nn.Conv2d(c, c, 3, 1, 1, bias=bias), nn.Identity()
        elif resample == "down":
            conv1, self.skip = nn.Conv2d(c, c, 3, 2, 1, bias=bias), nn.AvgPool2d(2)
        elif resample == "up":
            conv1 = nn.ConvTranspose2d(c, c, 2, 2, bias=bias)
            self.skip = nn.Upsample(scale_factor=2.0, mode="nearest")
        else:
            raise ValueError(f"resample must be None, 'down' or 'up', got {resample!r}")
        norm = (lambda: nn.BatchNorm2d(c)) if batch_norm else nn.Identity
        self.branch = nn.Sequential(
            conv1, norm(), make_activation(activation), nn.Conv2d(c, c, 3, 1, 1, bias=bias), norm()
        )
        self.out_activation = make_activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.out_activation(self.skip(x) + self.branch(x))
