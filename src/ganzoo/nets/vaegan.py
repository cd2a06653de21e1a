"""VAE/GAN networks (Larsen et al. 2016): Gaussian encoders, decoders, and discriminators that
expose a learned-similarity feature layer ``Dis_l`` beside their logit.

- MLPs of seed 003 (MNIST): LeakyReLU(0.2) and Dropout(0.1) before every linear layer.
  Enc 784-1024-1024-1024 -> (mu, logvar); Dec z-1024-1024-1024-784 tanh; D 784-1024-512-256-1.
- Convnets of the official code (``architectures.img64x64``): 5x5 convolutions, stride 2,
  BatchNorm, ReLU. Enc conv 64/128/256 -> FC 1024 -> (mu, logvar); Dec FC 256*8*8 -> deconv
  256/128/32 -> conv C, tanh; D conv 32 -> conv 128/256/256 -> FC 512 -> 1, with
  ``Dis_l`` = the 4th convolution's output (256 x 8 x 8, before its BatchNorm and ReLU).
  The same classes with fewer widths serve 28x28 MNIST (``conf/model/*/larsen_mnist.yaml``).

Encoders return ``(mu, logvar)`` of shape ``(N, latent_dim)`` each; discriminators return logits
of shape ``(N,)`` from ``forward`` and ``(logits, Dis_l(x))`` from ``forward_with_features``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from ganzoo.nets.blocks import ActivationFactory, leaky_relu_02, make_activation


def _dropout(p: float) -> list[nn.Module]:
    return [nn.Dropout(p)] if p > 0 else []


def _halved(image_size: int, halvings: int, key: str) -> int:
    """Side length after ``halvings`` stride-2 layers; a clear error if it is not whole."""
    side = image_size // 2**halvings
    if image_size <= 0 or side < 1 or side * 2**halvings != image_size:
        step = 2**halvings
        raise ValueError(
            f"{key}={image_size} is not an image size this network can take: it halves the image "
            f"{halvings} times, so the size must be a positive multiple of {step} "
            f"(e.g. {4 * step} or {8 * step}); change the network's widths or data.image_size"
        )
    return side


class GaussianHead(nn.Module):
    """``h -> (mu, logvar)``: two linear maps of the encoder's last hidden layer."""

    def __init__(self, in_features: int, latent_dim: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Sequential(*_dropout(dropout))
        self.mu = nn.Linear(in_features, latent_dim)
        self.logvar = nn.Linear(in_features, latent_dim)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        h = self.dropout(h)
        return self.mu(h), self.logvar(h)


# --- discriminators with a feature layer ---------------------------------------------------


class FeatureDiscriminator(nn.Module):
    """A discriminator as a stack of weight layers (convolution or linear), each preceded by what
    it needs (dropout, flatten) and followed by its normalisation and activation.

    ``Dis_l`` is the output of weight layer ``feature_layer`` (1-based; negative counts from the
    end, so ``-1`` is the logit layer, seed 003's choice), taken *before* that layer's
    normalisation and activation, as the official code does.
    """

    def __init__(self, layers: Sequence[nn.Module], after: Sequence[nn.Module], feature_layer: int):
        super().__init__()
        if len(layers) != len(after):
            raise ValueError("FeatureDiscriminator needs one 'after' module per layer")
        self.layers = nn.ModuleList(layers)
        self.after = nn.ModuleList(after)
        n = len(self.layers)
        if not (1 <= feature_layer <= n or -n <= feature_layer <= -1):
            raise ValueError(
                f"model.discriminator.feature_layer={feature_layer} is out of range: this "
                f"discriminator has {n} weight layers, so use 1..{n} (or -{n}..-1; -1 is the logit)"
            )
        #: 0-based index of the layer whose output is ``Dis_l``.
        self.feature_index = feature_layer - 1 if feature_layer > 0 else n + feature_layer

    def forward_with_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(logits (N,), Dis_l(x))`` from one pass."""
        h, features = x, x
        for i, (layer, after) in enumerate(zip(self.layers, self.after, strict=True)):
            h = layer(h)
            if i == self.feature_index:
                features = h
            h = after(h)
        return h.squeeze(1), features

    def features(self, x: Tensor) -> Tensor:
        """``Dis_l(x)``, running the network only up to the feature layer."""
        h = x
        for i in range(self.feature_index):
            h = self.after[i](self.layers[i](h))
        return self.layers[self.feature_index](h)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_features(x)[0]


class MLPFeatureDiscriminator(FeatureDiscriminator):
    """``x -> flatten -> [Dropout -> Linear -> act] x len(hidden) -> Dropout -> Linear 1``.

    Args:
        in_shape: shape of one sample.
        hidden: widths of the hidden layers (seed 003: 1024, 512, 256).
        activation: hidden activation factory (seed 003: LeakyReLU(0.2)).
        dropout: dropout probability before every linear layer (seed 003: 0.1).
        feature_layer: which linear layer's output (before its activation) is ``Dis_l``;
            1-based, ``-1`` = the logit (seed 003).
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        hidden: Sequence[int] = (1024, 512, 256),
        activation: ActivationFactory | None = leaky_relu_02,
        dropout: float = 0.1,
        feature_layer: int = -1,
    ):
        layers: list[nn.Module] = []
        after: list[nn.Module] = []
        width = math.prod(in_shape)
        for i, h in enumerate([*hidden, 1]):
            pre: list[nn.Module] = [nn.Flatten()] if i == 0 else []
            layers.append(nn.Sequential(*pre, *_dropout(dropout), nn.Linear(width, h)))
            after.append(make_activation(activation) if i < len(hidden) else nn.Identity())
            width = h
        super().__init__(layers, after, feature_layer)


class ConvFeatureDiscriminator(FeatureDiscriminator):
    """Larsen et al.'s discriminator: ``Conv 5x5 s1 (first_width) ReLU -> [Conv 5x5 s2, BN, ReLU]
    x len(widths) -> FC (fc) BN ReLU -> FC 1``.

    Defaults are the official 64x64 network (``Dis_l`` = 4th convolution, 256 x 8 x 8).
    ``image_size`` must be a multiple of ``2**len(widths)``.
    """

    def __init__(
        self,
        channels: int = 3,
        image_size: int = 64,
        first_width: int = 32,
        widths: Sequence[int] = (128, 256, 256),
        fc: int = 512,
        kernel_size: int = 5,
        feature_layer: int = 4,
    ):
        side = _halved(image_size, len(widths), "data.image_size")
        pad = kernel_size // 2
        layers: list[nn.Module] = [nn.Conv2d(channels, first_width, kernel_size, 1, pad)]
        after: list[nn.Module] = [nn.ReLU()]
        c = first_width
        for w in widths:
            layers.append(nn.Conv2d(c, w, kernel_size, 2, pad, bias=False))
            after.append(nn.Sequential(nn.BatchNorm2d(w), nn.ReLU()))
            c = w
        layers.append(nn.Sequential(nn.Flatten(), nn.Linear(c * side * side, fc, bias=False)))
        after.append(nn.Sequential(nn.BatchNorm1d(fc), nn.ReLU()))
        layers.append(nn.Linear(fc, 1))
        after.append(nn.Identity())
        super().__init__(layers, after, feature_layer)


# --- encoders -----------------------------------------------------------------------------


class MLPEncoder(nn.Module):
    """``x -> flatten -> [Dropout -> Linear -> act] x len(hidden) -> Dropout -> (mu, logvar)``.

    Seed 003: ``hidden = (1024, 1024, 1024)``, LeakyReLU(0.2), dropout 0.1, latent 20.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        latent_dim: int,
        hidden: Sequence[int] = (1024, 1024, 1024),
        activation: ActivationFactory | None = leaky_relu_02,
        dropout: float = 0.1,
    ):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(in_shape)
        for h in hidden:
            layers += [*_dropout(dropout), nn.Linear(width, h), make_activation(activation)]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = GaussianHead(width, latent_dim, dropout)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.head(self.body(x))


class ConvEncoder(nn.Module):
    """Larsen et al.'s encoder: ``[Conv 5x5 s2, BN, ReLU] x len(widths) -> FC (fc) BN ReLU ->
    (mu, logvar)``. Defaults are the official 64x64 network (widths 64/128/256, FC 1024)."""

    def __init__(
        self,
        latent_dim: int,
        channels: int = 3,
        image_size: int = 64,
        widths: Sequence[int] = (64, 128, 256),
        fc: int = 1024,
        kernel_size: int = 5,
    ):
        super().__init__()
        side = _halved(image_size, len(widths), "data.image_size")
        pad = kernel_size // 2
        layers: list[nn.Module] = []
        c = channels
        for w in widths:
            layers += [
                nn.Conv2d(c, w, kernel_size, 2, pad, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(),
            ]
            c = w
        layers += [
            nn.Flatten(),
            nn.Linear(c * side * side, fc, bias=False),
            nn.BatchNorm1d(fc),
            nn.ReLU(),
        ]
        self.body = nn.Sequential(*layers)
        self.head = GaussianHead(fc, latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.head(self.body(x))


# --- decoders -----------------------------------------------------------------------------


class MLPDecoder(nn.Module):
    """``z -> [Dropout -> Linear -> act] x len(hidden) -> Dropout -> Linear -> out_act -> reshape``.

    Seed 003: ``hidden = (1024, 1024, 1024)``, LeakyReLU(0.2), dropout 0.1, tanh output.
    """

    def __init__(
        self,
        latent_dim: int,
        out_shape: Sequence[int],
        hidden: Sequence[int] = (1024, 1024, 1024),
        activation: ActivationFactory | None = leaky_relu_02,
        dropout: float = 0.1,
        output_activation: nn.Module | None = None,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        width = latent_dim
        for h in hidden:
            layers += [*_dropout(dropout), nn.Linear(width, h), make_activation(activation)]
            width = h
        layers += [*_dropout(dropout), nn.Linear(width, math.prod(out_shape))]
        layers.append(output_activation if output_activation is not None else nn.Identity())
        layers.append(nn.Unflatten(1, tuple(out_shape)))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class ConvDecoder(nn.Module):
    """Larsen et al.'s decoder: ``FC (fc_channels * s * s) BN ReLU -> [ConvT 5x5 s2, BN, ReLU] x
    len(widths) -> Conv 5x5 to C -> out_act``, ``s = image_size / 2**len(widths)``.

    Defaults are the official 64x64 network (FC 256*8*8, deconv 256/128/32, tanh).
    """

    def __init__(
        self,
        latent_dim: int,
        channels: int = 3,
        image_size: int = 64,
        fc_channels: int = 256,
        widths: Sequence[int] = (256, 128, 32),
        kernel_size: int = 5,
        output_activation: nn.Module | None = None,
    ):
        super().__init__()
        side = _halved(image_size, len(widths), "data.image_size")
        pad = kernel_size // 2
        c = fc_channels
        layers: list[nn.Module] = [
            nn.Linear(latent_dim, c * side * side, bias=False),
            nn.BatchNorm1d(c * side * side),
            nn.ReLU(),
            nn.Unflatten(1, (c, side, side)),
        ]
        for w in widths:
            # padding k//2 with output_padding 1 doubles the side exactly ("same" deconvolution).
            layers += [
                nn.ConvTranspose2d(c, w, kernel_size, 2, pad, output_padding=1, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(),
            ]
            c = w
        layers.append(nn.Conv2d(c, channels, kernel_size, 1, pad))
        layers.append(output_activation if output_activation is not None else nn.Identity())
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)
