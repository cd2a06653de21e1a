"""Network blocks and sizing: maxout, Goodfellow's init, conv nets at every supported size."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from ganzoo.nets import (
    DCGANDiscriminator,
    DCGANGenerator,
    InfoGANDiscriminator,
    InfoGANGenerator,
    MLPDiscriminator,
    MLPGenerator,
)
from ganzoo.nets.alphagan import MLPEncoder
from ganzoo.nets.blocks import Maxout, upsampling_plan


def test_maxout_takes_the_max_over_pieces():
    layer = Maxout(2, 3, pieces=4)
    x = torch.randn(5, 2)
    pre = layer.linear(x).view(5, 3, 4)
    assert_close(layer(x), pre.max(dim=-1).values)


def test_goodfellow_discriminator_layout_and_init():
    d = MLPDiscriminator(
        [1, 28, 28],
        hidden=[240, 240],
        maxout_pieces=5,
        input_dropout=0.2,
        dropout=0.5,
        init_range=0.005,
    )
    kinds = [type(m).__name__ for m in d.features]
    assert kinds == ["Flatten", "Dropout", "Maxout", "Dropout", "Maxout", "Dropout"]
    assert [m.p for m in d.features if isinstance(m, nn.Dropout)] == [0.2, 0.5, 0.5]
    weights = torch.cat([m.weight.flatten() for m in d.modules() if isinstance(m, nn.Linear)])
    assert weights.abs().max() <= 0.005
    assert all((m.bias == 0).all() for m in d.modules() if isinstance(m, nn.Linear))
    assert d(torch.rand(3, 1, 28, 28)).shape == (3,)


def test_goodfellow_generator_init():
    g = MLPGenerator(
        100, [1, 28, 28], hidden=[1200, 1200], output_activation=nn.Sigmoid(), init_range=0.05
    )
    weights = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, nn.Linear)])
    assert 0.04 < weights.abs().max() <= 0.05
    out = g(torch.rand(4, 100))
    assert out.shape == (4, 1, 28, 28) and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize(("size", "channels"), [(28, 1), (32, 3), (64, 3)])
def test_dcgan_nets_serve_every_size(size, channels):
    g = DCGANGenerator(16, channels=channels, image_size=size, width=8, output_activation=nn.Tanh())
    d = DCGANDiscriminator(channels=channels, image_size=size, width=8)
    x = g(torch.randn(2, 16))
    assert x.shape == (2, channels, size, size)
    assert d(x).shape == (2,)


def test_infogan_nets():
    g, d = InfoGANGenerator(74), InfoGANDiscriminator()
    x = g(torch.rand(3, 74))
    assert x.shape == (3, 1, 28, 28) and d(x).shape == (3,)


@pytest.mark.parametrize("size", [30, 20, 3])
def test_unsupported_sizes_are_refused_with_the_key(size):
    with pytest.raises(ValueError, match=f"data.image_size={size}"):
        upsampling_plan(size, "data.image_size")


def test_infogan_needs_a_multiple_of_four():
    with pytest.raises(ValueError, match="data.image_size=30"):
        InfoGANGenerator(74, image_size=30)


def test_unit_scale_networks_see_data_at_another_scale():
    # output_scale s in G and input_scale 1/s in E and D: the same networks as at unit scale,
    # with the data shrunk by s.
    s = 4.0
    torch.manual_seed(0)
    g = MLPGenerator(latent_dim=2, out_shape=[2], hidden=[8], batch_norm=True)
    d = MLPDiscriminator(in_shape=[2], hidden=[8], maxout_pieces=3)
    e = MLPEncoder(in_shape=[2], latent_dim=2, hidden=[8])
    g_s = MLPGenerator(latent_dim=2, out_shape=[2], hidden=[8], batch_norm=True, output_scale=s)
    d_s = MLPDiscriminator(in_shape=[2], hidden=[8], maxout_pieces=3, input_scale=1 / s)
    e_s = MLPEncoder(in_shape=[2], latent_dim=2, hidden=[8], input_scale=1 / s)
    for net, scaled in ((g, g_s), (d, d_s), (e, e_s)):
        scaled.load_state_dict(net.state_dict())  # no new parameters or buffers
    z, x = torch.randn(5, 2), 4 * torch.randn(5, 2)
    assert_close(g_s(z), s * g(z))
    assert_close(d_s(x), d(x / s))
    assert_close(e_s(x), e(x / s))
    with pytest.raises(ValueError, match="model.generator.output_scale"):
        MLPGenerator(latent_dim=2, out_shape=[2], output_scale=0.0)
    with pytest.raises(ValueError, match="model.discriminator.input_scale"):
        MLPDiscriminator(in_shape=[2], input_scale=-1.0)
    with pytest.raises(ValueError, match="model.encoder.input_scale"):
        MLPEncoder(in_shape=[2], latent_dim=2, input_scale=0.0)
