"""Code discriminators: tell prior draws ``z ~ p(z)`` from encoder codes ``E(x)``.

Usable by any family that matches an aggregate posterior to a prior (alpha-GAN's C, an
adversarial autoencoder's discriminator). Without batch norm by default: both alpha-GAN
implementations the project grew out of (seeds 000 and 002) found that batch norm in the code
discriminator broke training.
"""

from __future__ import annotations

from collections.abc import Sequence

from ganzoo.nets.blocks import ActivationFactory, leaky_relu_02, normal_init_
from ganzoo.nets.mlp import MLPDiscriminator


class MLPCodeDiscriminator(MLPDiscriminator):
    """``z -> [Linear -> act] x len(hidden) -> Linear 1``: one logit per code, shape ``(N,)``.

    Seed 000: ``hidden = [700, 700]`` with LeakyReLU(0.2); seed 002: ``[750, 750, 750]``.

    Args:
        latent_dim: size of the codes.
        hidden: widths of the hidden layers.
        activation: hidden activation factory (default LeakyReLU(0.2)).
        batch_norm: BatchNorm1d after each hidden layer (not recommended: see the module doc).
        init_std: weights ``N(0, init_std^2)`` and zero biases; None keeps PyTorch's default.
    """

    def __init__(
        self,
        latent_dim: int,
        hidden: Sequence[int] = (700, 700),
        activation: ActivationFactory | None = leaky_relu_02,
        batch_norm: bool = False,
        init_std: float | None = None,
    ):
        if latent_dim < 1:
            raise ValueError(f"model.latent_dim must be a positive integer, got {latent_dim}")
        super().__init__(
            in_shape=(latent_dim,), hidden=hidden, activation=activation, batch_norm=batch_norm
        )
        if init_std is not None:
            normal_init_(self, init_std)
