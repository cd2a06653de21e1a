"""Fully connected generators and discriminators (the GAN paper's MNIST and 2D networks)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ganzoo.nets.blocks import (
    ActivationFactory,
    Maxout,
    inverse_activation,
    make_activation,
    uniform_init_,
)


class MLPGenerator(nn.Module):
    """``z -> [Linear -> (BatchNorm) -> act -> (Dropout)] x len(hidden) -> Linear -> out_act``.

    Args:
        latent_dim: size of z.
        out_shape: shape of one sample, e.g. ``[1, 28, 28]`` or ``[2]``.
        hidden: widths of the hidden layers.
        activation: factory of the hidden activation (default ReLU).
        batch_norm: BatchNorm1d after each hidden linear layer (seed 004's Model2).
        dropout: dropout probability after each hidden activation.
        output_activation: module applied last (Sigmoid for [0, 1] data, Tanh for [-1, 1]).
        init_range: if set, weights ``U(-init_range, init_range)`` and zero biases (pylearn2).
        output_bias_from_marginals: set the output bias so that the output equals the training
            data's per-pixel mean when the last layer's input is 0 (pylearn2's
            ``init_sigmoid_bias_from_marginals``); applied when training starts.
        output_scale: the output is multiplied by it (after ``output_activation``): a network
            that works at unit scale for data at another one (the 25-Gaussian grid spans
            [-4, 4]; with 4 here and ``input_scale`` 0.25 in E and D, a run on the grid is a run
            on the grid shrunk to [-1, 1]).
    """

    def __init__(
        self,
        latent_dim: int,
        out_shape: Sequence[int],
        hidden: Sequence[int] = (256, 256),
        activation: ActivationFactory | None = nn.ReLU,
        batch_norm: bool = False,
        dropout: float = 0.0,
        output_activation: nn.Module | None = None,
        init_range: float | None = None,
        output_bias_from_marginals: bool = False,
        output_scale: float = 1.0,
    ):
        super().__init__()
        self.out_shape = tuple(out_shape)
        layers: list[nn.Module] = []
        width = latent_dim
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(make_activation(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(width, math.prod(self.out_shape))
        self.output_activation = (
            output_activation if output_activation is not None else nn.Identity()
        )
        self.reshape = nn.Unflatten(1, self.out_shape)
        if init_range is not None:
            uniform_init_(self, init_range)
        self.output_bias_from_marginals = output_bias_from_marginals
        if not output_scale > 0:
            raise ValueError(f"model.generator.output_scale must be > 0, got {output_scale}")
        self.output_scale = output_scale

    def forward(self, z: Tensor) -> Tensor:
        x = self.output_activation(self.out(self.body(z)))
        if self.output_scale != 1.0:
            x = x * self.output_scale
        return self.reshape(x)

    @torch.no_grad()
    def init_from_data(self, datamodule) -> None:
        """Output bias from the data's per-pixel marginals, when configured to."""
        if not self.output_bias_from_marginals:
            return
        mean = datamodule.pixel_marginals().flatten().to(self.out.bias) / self.output_scale
        self.out.bias.copy_(inverse_activation(self.output_activation, mean))


class MLPDiscriminator(nn.Module):
    """``x -> flatten -> (Dropout_in) -> [unit -> (BatchNorm) -> (Dropout)] x len(hidden) -> Linear 1``.

    A hidden unit is ``Linear -> act``, or a maxout layer when ``maxout_pieces`` is set.
    Outputs one logit per sample, shape ``(N,)``.

    Args:
        in_shape: shape of one sample.
        hidden: widths of the hidden layers.
        activation: hidden activation factory (ignored for maxout).
        maxout_pieces: if set, hidden layers are maxout layers with this many pieces.
        input_dropout: dropout probability on the input (Goodfellow: 0.2, i.e. keep 0.8).
        dropout: dropout probability on the input of every later layer (Goodfellow: 0.5).
        batch_norm: BatchNorm1d after each hidden layer.
        init_range: if set, weights ``U(-init_range, init_range)`` and zero biases (pylearn2).
        input_scale: the input is multiplied by it first (``MLPGenerator``'s ``output_scale``).
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        hidden: Sequence[int] = (256, 256),
        activation: ActivationFactory | None = nn.ReLU,
        maxout_pieces: int | None = None,
        input_dropout: float = 0.0,
        dropout: float = 0.0,
        batch_norm: bool = False,
        init_range: float | None = None,
        input_scale: float = 1.0,
    ):
        super().__init__()
        if not input_scale > 0:
            raise ValueError(f"model.discriminator.input_scale must be > 0, got {input_scale}")
        self.input_scale = input_scale
        layers: list[nn.Module] = [nn.Flatten()]
        if input_dropout > 0:
            layers.append(nn.Dropout(input_dropout))
        width = math.prod(in_shape)
        for h in hidden:
            if maxout_pieces:
                layers.append(Maxout(width, h, maxout_pieces))
            else:
                layers += [nn.Linear(width, h), make_activation(activation)]
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(width, 1)
        if init_range is not None:
            uniform_init_(self, init_range)

    def forward(self, x: Tensor) -> Tensor:
        if self.input_scale != 1.0:
            x = x * self.input_scale
        return self.out(self.features(x)).squeeze(1)
