"""The InfoGAN MNIST networks (Chen et al. 2016, appendix C.1), without latent codes.

Seed 004's "Model3". Sized by ``image_size`` (any multiple of 4; MNIST is 28).
"""

from __future__ import annotations

from torch import Tensor, nn


def _quarter(image_size: int) -> int:
    if image_size % 4 or image_size < 8:
        raise ValueError(
            f"data.image_size={image_size}: the InfoGAN networks need a multiple of 4 (>= 8)"
        )
    return image_size // 4


class InfoGANGenerator(nn.Module):
    """z -> FC 1024 BN ReLU -> FC 128*s*s BN ReLU -> ConvT 64 (4, 2, 1) BN ReLU -> ConvT C -> out_act."""

    def __init__(
        self,
        latent_dim: int,
        channels: int = 1,
        image_size: int = 28,
        output_activation: nn.Module | None = None,
    ):
        super().__init__()
        s = _quarter(image_size)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, 1024),
            nn.BatchNorm1d(1024),
            nn.ReLU(),
            nn.Linear(1024, 128 * s * s),
            nn.BatchNorm1d(128 * s * s),
            nn.ReLU(),
            nn.Unflatten(1, (128, s, s)),
            nn.ConvTranspose2d(128, 64, 4, 2, 1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.ConvTranspose2d(64, channels, 4, 2, 1),
            output_activation if output_activation is not None else nn.Identity(),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class InfoGANDiscriminator(nn.Module):
    """x -> Conv 64 (4, 2, 1) LReLU(0.1) -> Conv 128 BN LReLU -> FC 1024 BN LReLU -> FC 1 (logit)."""

    def __init__(self, channels: int = 1, image_size: int = 28, negative_slope: float = 0.1):
        super().__init__()
        s = _quarter(image_size)
        self.features = nn.Sequential(
            nn.Conv2d(channels, 64, 4, 2, 1),
            nn.LeakyReLU(negative_slope),
            nn.Conv2d(64, 128, 4, 2, 1),
            nn.BatchNorm2d(128),
            nn.LeakyReLU(negative_slope),
            nn.Flatten(),
            nn.Linear(128 * s * s, 1024),
            nn.BatchNorm1d(1024),
            nn.LeakyReLU(negative_slope),
        )
        self.out = nn.Linear(1024, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.features(x)).squeeze(1)
