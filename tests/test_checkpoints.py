"""Models are instantiated by Hydra in one place and rebuilt from the config their checkpoints
carry; checkpoints of the previous format (configs in Lightning's hyper-parameters) still load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.testing import assert_close

from conftest import quick_overrides
from ganzoo.models import GAN, VAEGAN, AlphaGAN, build_model, load_checkpoint
from ganzoo.models.base import CHECKPOINT_FORMAT
from ganzoo.models.priors import UniformPrior
from ganzoo.train import build_run

DATA = Path(__file__).parent / "data"

RING = ["data.num_train=200", "data.num_val=100", "data.batch_size=50"]


@pytest.mark.parametrize(
    ("experiment", "family"),
    [("gan_ring", GAN), ("vaegan_ring", VAEGAN), ("alphagan_ring", AlphaGAN)],
)
def test_hydra_builds_the_parts_and_the_checkpoint_rebuilds_the_model(
    experiment, family, make_cfg, tmp_path
):
    cfg = make_cfg(f"experiment={experiment}", *RING, *quick_overrides(batches=2))
    dm, model, trainer = build_run(cfg)
    assert type(model) is family
    # The model received ready objects: networks, loss callables, optimizer factories.
    assert isinstance(model.generator, nn.Module) and isinstance(model.discriminator, nn.Module)
    assert all(callable(f) for f in model._optimizer_factories.values())
    assert model.model_config == OmegaConf.to_container(cfg.model, resolve=True)
    trainer.fit(model, datamodule=dm)

    path = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    raw = torch.load(path, weights_only=False)
    assert raw["ganzoo"]["format"] == CHECKPOINT_FORMAT
    assert raw["ganzoo"]["model"] == model.model_config
    loaded = load_checkpoint(path)
    assert type(loaded) is family and not loaded.training
    for key, value in model.state_dict().items():
        assert_close(loaded.state_dict()[key], value, msg=key)
    z = torch.randn(5, model.latent_dim)
    model.eval()
    assert_close(loaded.generate(z), model.generate(z))
    # The family's own classmethod goes the same way, and refuses another family.
    assert type(family.load_from_checkpoint(path)) is family
    with pytest.raises(TypeError, match="does not override settings"):
        family.load_from_checkpoint(path, latent_dim=3)
    other = GAN if family is not GAN else VAEGAN
    with pytest.raises(ValueError, match=f"holds a {family.__name__} model, not a"):
        other.load_from_checkpoint(path)


def test_the_prior_gets_latent_dim_from_the_model_config(make_cfg):
    cfg = make_cfg("experiment=gan_mnist_infogan", "model.latent_dim=7")
    model = build_model(cfg.model)
    assert isinstance(model.prior, UniformPrior) and model.prior.dim == 7
    assert model.model_config["prior"]["dim"] == 7


@pytest.mark.parametrize(
    ("name", "family", "ema"),
    [("format2_gan_ring.ckpt", GAN, "generator"), ("format2_vaegan_ring.ckpt", VAEGAN, "encoder")],
)
def test_a_format_2_checkpoint_still_loads(name, family, ema):
    """Written by ganzoo before this change (commit a04c539): no model config, the networks,
    losses and optimizers as configs in Lightning's hyper-parameters, the prior without dim."""
    path = DATA / name
    raw = torch.load(path, weights_only=False)
    assert raw["ganzoo"]["format"] == 2 and "model" not in raw["ganzoo"]
    model = load_checkpoint(path)
    assert type(model) is family
    state = model.state_dict()
    assert set(state) == set(raw["state_dict"])
    for key, value in raw["state_dict"].items():
        assert torch.equal(state[key], value), key
    assert model.ema is not None and ema in model.ema
    assert model.batches_seen == raw["ganzoo"]["batches_seen"]
    assert model.sample(3).shape == (3, 2)


def test_a_model_built_in_python_without_a_config_says_how_to_make_it_loadable(tmp_path):
    model = GAN(
        generator=nn.Linear(2, 2),
        discriminator=nn.Sequential(nn.Linear(2, 1), nn.Flatten(0)),
        optimizer={"generator": torch.optim.SGD, "discriminator": torch.optim.SGD},
        loss={"d": lambda r, f: r.mean(), "g": lambda f: f.mean()},
        latent_dim=2,
    )
    checkpoint = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "python.ckpt")
    with pytest.raises(ValueError, match="build it with ganzoo.models.build_model"):
        load_checkpoint(tmp_path / "python.ckpt")


def test_build_model_takes_plain_config_data_only():
    with pytest.raises(TypeError, match=r"model.generator is a Linear, not plain config data"):
        build_model({"_target_": "ganzoo.models.GAN", "generator": nn.Linear(2, 2)})
