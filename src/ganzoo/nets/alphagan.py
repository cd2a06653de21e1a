"""Encoders, generators and image discriminators of the alpha-GAN recipes (Rosca et al. 2017).

Every class serves each image side ``start * 2**n`` with ``start`` 4 or 7 (28, 32, 64, ...).

- ``Residual*``: seed 000's PyTorch networks: 3x3 residual blocks (with batch norm, or without
  for its WGAN-GP variant) that halve the size (strided conv, average-pooled skip) or double it
  (transposed conv, nearest-upsampled skip), ``width`` channels at every level (128 in seed 000).
- ``DCGAN5*``: seed 002's TensorFlow networks: 5x5 convolutions, E and D ``width`` x 1/2/4...
  with stride 2 then one stride-1 level of twice the last width (CIFAR-10: 64/128/256 + 512;
  CelebA 64x64: 64/128/256/512 + 1024), G the mirror image from a ``4 x 4`` (or ``7 x 7``) map.
- ``MLPEncoder``: a deterministic fully connected encoder for MNIST-sized and 2D data.

The code discriminator (an MLP on latent codes) is
:class:`ganzoo.nets.code_discriminator.MLPCodeDiscriminator`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from ganzoo.nets.blocks import (
    ActivationFactory,
    ResidualBlock,
    leaky_relu_02,
    make_activation,
    normal_init_,
    upsampling_plan,
)


def _check_sizes(**sizes: int) -> None:
    for key, value in sizes.items():
        if value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value}")


# --- seed 000: residual networks ---------------------------------------------------------------


def _residual_features(
    channels: int,
    image_size: int,
    width: int,
    activation: ActivationFactory | None,
    batch_norm: bool,
) -> tuple[nn.Sequential, int]:
    """``x -> conv3x3 s2 -> (BN) -> act -> [down res-block] x (n-1) -> res-block -> flatten``.

    Sizes ``image_size -> image_size / 2 -> ... -> start``. Returns the module and its output
    size ``width * start**2``.
    """
    start, n = upsampling_plan(image_size, "data.image_size")
    layers: list[nn.Module] = [
        nn.Conv2d(channels, width, 3, 2, 1, bias=not batch_norm),
        nn.BatchNorm2d(width) if batch_norm else nn.Identity(),
        make_activation(activation),
    ]
    layers += [ResidualBlock(width, activation, batch_norm, resample="down") for _ in range(n - 1)]
    layers += [ResidualBlock(width, activation, batch_norm), nn.Flatten()]
    return nn.Sequential(*layers), width * start * start


class ResidualEncoder(nn.Module):
    """Deterministic encoder ``x -> z``: residual downsampling features, then a linear map.

    Args:
        channels, image_size: shape of the images (side ``4 * 2**n`` or ``7 * 2**n``).
        latent_dim: size of the code.
        width: channels of every level (seed 000: 128).
        activation: hidden activation factory (seed 000: LeakyReLU(0.2); its WGAN: ReLU).
        batch_norm: batch norm in the stem and every residual block.
    """

    def __init__(
        self,
        channels: int,
        image_size: int,
        latent_dim: int,
        width: int = 128,
        activation: ActivationFactory | None = leaky_relu_02,
        batch_norm: bool = True,
    ):
        super().__init__()
        _check_sizes(**{"model.latent_dim": latent_dim, "model.encoder.width": width})
        self.features, n_features = _residual_features(
            channels, image_size, width, activation, batch_norm
        )
        self.out = nn.Linear(n_features, latent_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.features(x))


class ResidualDiscriminator(nn.Module):
    """Image discriminator (or WGAN critic without batch norm): one logit per image, ``(N,)``."""

    def __init__(
        self,
        channels: int,
        image_size: int,
        width: int = 128,
        activation: ActivationFactory | None = leaky_relu_02,
        batch_norm: bool = True,
    ):
        super().__init__()
        _check_sizes(**{"model.discriminator.width": width})
        self.features, n_features = _residual_features(
            channels, image_size, width, activation, batch_norm
        )
        self.out = nn.Linear(n_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.features(x)).squeeze(1)


class ResidualGenerator(nn.Module):
    """``z -> Linear -> (BN) -> act -> res-block -> [up res-block] x (n-1) -> upsample x2 ->
    conv3x3 to C -> out_act``: the encoder's mirror image, sizes ``start -> ... -> image_size``."""

    def __init__(
        self,
        latent_dim: int,
        channels: int,
        image_size: int,
        width: int = 128,
        activation: ActivationFactory | None = nn.ReLU,
        batch_norm: bool = True,
        output_activation: nn.Module | None = None,
    ):
        super().__init__()
        _check_sizes(**{"model.latent_dim": latent_dim, "model.generator.width": width})
        start, n = upsampling_plan(image_size, "data.image_size")
        layers: list[nn.Module] = [
            nn.Linear(latent_dim, width * start * start, bias=not batch_norm),
            nn.BatchNorm1d(width * start * start) if batch_norm else nn.Identity(),
            make_activation(activation),
            nn.Unflatten(1, (width, start, start)),
            ResidualBlock(width, activation, batch_norm),
        ]
        layers += [
            ResidualBlock(width, activation, batch_norm, resample="up") for _ in range(n - 1)
        ]
        layers += [
            nn.Upsample(scale_factor=2.0, mode="nearest"),
            nn.Conv2d(width, channels, 3, 1, 1),
            output_activation if output_activation is not None else nn.Identity(),
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


# --- seed 002: DCGAN-style 5x5 networks ----------------------------------------------------------


def _dcgan5_features(
    channels: int,
    image_size: int,
    width: int,
    activation: ActivationFactory | None,
    batch_norm: bool,
) -> tuple[nn.Sequential, int]:
    """``[conv 5x5 s2] x n`` (widths ``width * 2**i``) then one ``conv 5x5 s1`` of twice the width.

    Batch norm after every convolution but the first (DCGAN). Returns the module and its
    flattened output size.
    """
    start, n = upsampling_plan(image_size, "data.image_size")
    layers: list[nn.Module] = [nn.Conv2d(channels, width, 5, 2, 2), make_activation(activation)]
    c = width
    strides = [2] * (n - 1) + [1]
    for stride in strides:
        layers.append(nn.Conv2d(c, 2 * c, 5, stride, 2, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(2 * c))
        layers.append(make_activation(activation))
        c *= 2
    layers.append(nn.Flatten())
    return nn.Sequential(*layers), c * start * start


class DCGAN5Encoder(nn.Module):
    """Seed 002's encoder: 5x5 convs ``64/128/256`` stride 2 + ``512`` stride 1 (CIFAR-10),
    ReLU (the encoder is a generator of codes, so DCGAN's generator activation), linear to ``z``.

    Args:
        channels, image_size: shape of the images.
        latent_dim: size of the code.
        width: channels of the first convolution; each later level doubles it.
        activation: hidden activation factory.
        batch_norm: batch norm after every convolution but the first.
        init_std: weights ``N(0, init_std^2)`` (seed 002: 0.02 CIFAR-10, 0.01 CelebA); None keeps
            PyTorch's default init.
    """

    def __init__(
        self,
        channels: int,
        image_size: int,
        latent_dim: int,
        width: int = 64,
        activation: ActivationFactory | None = nn.ReLU,
        batch_norm: bool = True,
        init_std: float | None = 0.02,
    ):
        super().__init__()
        _check_sizes(**{"model.latent_dim": latent_dim, "model.encoder.width": width})
        self.features, n_features = _dcgan5_features(
            channels, image_size, width, activation, batch_norm
        )
        self.out = nn.Linear(n_features, latent_dim)
        if init_std is not None:
            normal_init_(self, init_std)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.features(x))


class DCGAN5Discriminator(nn.Module):
    """Seed 002's image discriminator: the encoder's convolutions, LeakyReLU, one logit ``(N,)``."""

    def __init__(
        self,
        channels: int,
        image_size: int,
        width: int = 64,
        activation: ActivationFactory | None = leaky_relu_02,
        batch_norm: bool = True,
        init_std: float | None = 0.02,
    ):
        super().__init__()
        _check_sizes(**{"model.discriminator.width": width})
        self.features, n_features = _dcgan5_features(
            channels, image_size, width, activation, batch_norm
        )
        self.out = nn.Linear(n_features, 1)
        if init_std is not None:
            normal_init_(self, init_std)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.features(x)).squeeze(1)


class DCGAN5Generator(nn.Module):
    """Seed 002's generator: ``z -> FC (width * 2**n) x s x s -> [deconv 5x5 s2, BN, ReLU] x n ->
    conv 5x5 to C -> out_act`` (CIFAR-10: FC 4*4*512, deconvs 256/128/64, then 3 channels)."""

    def __init__(
        self,
        latent_dim: int,
        channels: int,
        image_size: int,
        width: int = 64,
        activation: ActivationFactory | None = nn.ReLU,
        batch_norm: bool = True,
        output_activation: nn.Module | None = None,
        init_std: float | None = 0.02,
    ):
        super().__init__()
        _check_sizes(**{"model.latent_dim": latent_dim, "model.generator.width": width})
        start, n = upsampling_plan(image_size, "data.image_size")
        c = width * 2**n
        layers: list[nn.Module] = [nn.Linear(latent_dim, c * start * start, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm1d(c * start * start))
        layers += [make_activation(activation), nn.Unflatten(1, (c, start, start))]
        for _ in range(n):
            layers.append(
                nn.ConvTranspose2d(c, c // 2, 5, 2, 2, output_padding=1, bias=not batch_norm)
            )
            if batch_norm:
                layers.append(nn.BatchNorm2d(c // 2))
            layers.append(make_activation(activation))
            c //= 2
        layers += [
            nn.Conv2d(c, channels, 5, 1, 2),
            output_activation if output_activation is not None else nn.Identity(),
        ]
        self.net = nn.Sequential(*layers)
        if init_std is not None:
            normal_init_(self, init_std)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


# --- fully connected -----------------------------------------------------------------------------


class MLPEncoder(nn.Module):
    """Deterministic encoder ``x -> flatten -> [Linear -> (BN) -> act] x len(hidden) -> Linear z``.

    Args:
        in_shape: shape of one sample, e.g. ``[1, 28, 28]`` or ``[2]``.
        latent_dim: size of the code.
        hidden: widths of the hidden layers.
        activation: hidden activation factory.
        batch_norm: BatchNorm1d after each hidden linear layer.
        input_scale: the input is multiplied by it first (``MLPGenerator``'s ``output_scale``).
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        latent_dim: int,
        hidden: Sequence[int] = (512, 512),
        activation: ActivationFactory | None = nn.ReLU,
        batch_norm: bool = False,
        input_scale: float = 1.0,
    ):
        super().__init__()
        if not input_scale > 0:
            raise ValueError(f"model.encoder.input_scale must be > 0, got {input_scale}")
        self.input_scale = input_scale
        _check_sizes(
            **{"model.latent_dim": latent_dim},
            **{f"model.encoder.hidden[{i}]": h for i, h in enumerate(hidden)},
        )
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(in_shape)
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(make_activation(activation))
            width = h
        layers.append(nn.Linear(width, latent_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if self.input_scale != 1.0:
            x = x * self.input_scale
        return self.net(x)
