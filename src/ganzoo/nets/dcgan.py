"""DCGAN-style convolutional generator and discriminator (Radford et al. 2016).

One class serves every resolution ``start * 2**n`` with ``start`` 4 or 7 (28, 32, 64, 128, ...):
each stride-2 (de)convolution doubles (halves) the size and halves (doubles) the width.
"""

from __future__ import annotations

from torch import Tensor, nn

from ganzoo.nets.blocks import normal_init_, upsampling_plan


class DCGANGenerator(nn.Module):
    """z -> Linear -> (w * 2^(n-1)) x s x s -> [ConvT 4x4 s2, BN, ReLU] x (n-1) -> ConvT to C -> out_act."""

    def __init__(
        self,
        latent_dim: int,
        channels: int = 3,
        image_size: int = 64,
        width: int = 64,
        output_activation: nn.Module | None = None,
        init_std: float | None = 0.02,
    ):
        super().__init__()
        start, n = upsampling_plan(image_size, "data.image_size")
        c = width * 2 ** (n - 1)
        layers: list[nn.Module] = [
            nn.Linear(latent_dim, c * start * start, bias=False),
            nn.BatchNorm1d(c * start * start),
            nn.ReLU(),
            nn.Unflatten(1, (c, start, start)),
        ]
        for _ in range(n - 1):
            layers += [
                nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c // 2),
                nn.ReLU(),
            ]
            c //= 2
        layers.append(nn.ConvTranspose2d(c, channels, 4, 2, 1))
        layers.append(output_activation if output_activation is not None else nn.Identity())
        self.net = nn.Sequential(*layers)
        if init_std is not None:
            normal_init_(self, init_std)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class DCGANDiscriminator(nn.Module):
    """x -> Conv 4x4 s2 LReLU -> [Conv 4x4 s2, BN, LReLU] x (n-1) -> Linear 1 (logit)."""

    def __init__(
        self,
        channels: int = 3,
        image_size: int = 64,
        width: int = 64,
        negative_slope: float = 0.2,
        batch_norm: bool = True,
        init_std: float | None = 0.02,
    ):
        super().__init__()
        start, n = upsampling_plan(image_size, "data.image_size")
        layers: list[nn.Module] = [
            nn.Conv2d(channels, width, 4, 2, 1),
            nn.LeakyReLU(negative_slope),
        ]
        c = width
        for _ in range(n - 1):
            layers.append(nn.Conv2d(c, c * 2, 4, 2, 1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c * 2))
            layers.append(nn.LeakyReLU(negative_slope))
            c *= 2
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.out = nn.Linear(c * start * start, 1)
        if init_std is not None:
            normal_init_(self, init_std)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.features(x)).squeeze(1)
