"""The alpha-GAN family: loss terms against closed forms, who each update moves, how many steps a
schedule takes, the code discriminator's labels, networks, checkpoints and warnings."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from torch import nn
from torch.nn import functional as F
from torch.testing import assert_close

from conftest import FixedBatch, SameNoise, StepWatcher, count_steps, quick_overrides
from ganzoo import losses
from ganzoo.models import load_checkpoint
from ganzoo.models.alphagan import PLAYER_NETWORKS, AlphaGAN
from ganzoo.nets.alphagan import (
    DCGAN5Discriminator,
    DCGAN5Encoder,
    DCGAN5Generator,
    ResidualDiscriminator,
    ResidualEncoder,
    ResidualGenerator,
)
from ganzoo.nets.code_discriminator import MLPCodeDiscriminator
from ganzoo.train import build_run, train

NETWORKS = ("encoder", "generator", "discriminator", "code_discriminator")
RING = [
    "data=ring",
    "model=alphagan",
    "data.num_train=320",
    "data.num_val=64",
    "data.batch_size=32",
    "model.latent_dim=2",
    "model.encoder.hidden=[32,32]",
    "model.generator.hidden=[32,32]",
    "model.discriminator.hidden=[32,32]",
    "model.code_discriminator.hidden=[32,32]",
]
JOINT = [
    "model.joint_encoder_generator=true",
    "model/optimizer=alphagan_joint_adam",
    "model.schedule=[encoder_generator,encoder_generator,discriminator,code_discriminator]",
]
WGAN = [
    *JOINT,
    "model/loss=alphagan_wasserstein",
    "model.fake_weight=0.5",
    "model.gradient_penalty_weight=10",
    "model.schedule=[encoder_generator,discriminator,discriminator,discriminator,discriminator,"
    "discriminator,code_discriminator,code_discriminator,code_discriminator,code_discriminator,"
    "code_discriminator]",
]


# --- loss terms ------------------------------------------------------------------------------


def test_l1_reconstruction_is_the_per_image_norm_and_the_mean_divides_by_pixels():
    x = torch.tensor([[[0.0, 1.0], [2.0, -1.0]], [[1.0, 1.0], [1.0, 1.0]]])
    x_hat = torch.tensor([[[0.5, 1.0], [0.0, 0.0]], [[1.0, -1.0], [1.0, 4.0]]])
    # |x - x_hat|_1 per image: 0.5 + 0 + 2 + 1 = 3.5 and 0 + 2 + 0 + 3 = 5.
    assert_close(losses.l1_reconstruction(x, x_hat), torch.tensor((3.5 + 5.0) / 2))
    assert_close(losses.l1_reconstruction_mean(x, x_hat), torch.tensor((3.5 + 5.0) / 8))


def test_logodds_term_is_minus_the_log_odds_of_d():
    logits = torch.tensor([-3.0, 0.0, 0.5, 4.0])
    d = torch.sigmoid(logits)
    assert_close(losses.g_loss_logodds(logits), -torch.log(d / (1 - d)).mean())
    assert_close(losses.g_loss_logodds(logits), torch.tensor(-0.375))
    # Its gradient is -1/N whatever the logit; the non-saturating one fades as D accepts.
    x = logits.clone().requires_grad_(True)
    (g_lo,) = torch.autograd.grad(losses.g_loss_logodds(x), x)
    (g_ns,) = torch.autograd.grad(losses.g_loss_nonsaturating(x), x)
    assert_close(g_lo, torch.full((4,), -0.25))
    assert_close(g_ns, -(1 - d) / 4)
    assert_close(losses.g_loss_nonsaturating(logits), -torch.log(d).mean())


def test_discriminator_loss_on_real_reconstructions_and_samples():
    real, recon, sample = (
        torch.tensor([2.0, -1.0]),
        torch.tensor([0.0, 1.0]),
        torch.tensor([-2.0, 3.0]),
    )
    p_real, p_recon, p_sample = torch.sigmoid(real), torch.sigmoid(recon), torch.sigmoid(sample)
    paper = (
        -torch.log(p_real).mean() - torch.log(1 - p_recon).mean() - torch.log(1 - p_sample).mean()
    )
    assert_close(losses.d_loss_alphagan(real, recon, sample), paper)
    # fake_weight 0.5 is seed 000's BCE(., 0) averaged over the pooled fakes [G(E(x)); G(z)].
    pooled = -torch.log(p_real).mean() - torch.log(1 - torch.cat([p_recon, p_sample])).mean()
    assert_close(losses.d_loss_alphagan(real, recon, sample, fake_weight=0.5), pooled)


def test_code_discriminator_labels_the_prior_real_and_the_codes_fake():
    prior, encoded = torch.tensor([3.0, 1.0]), torch.tensor([-2.0, 0.5])
    want = -torch.log(torch.sigmoid(prior)).mean() - torch.log(1 - torch.sigmoid(encoded)).mean()
    assert_close(losses.code_d_loss(prior, encoded), want)
    # A C that calls prior codes real and encoder codes fake has almost no loss; arXiv v1's
    # swapped labels would make the same C maximally wrong.
    right, wrong = torch.full((4,), 20.0), torch.full((4,), -20.0)
    assert_close(losses.code_d_loss(right, wrong), torch.tensor(2 * math.log1p(math.exp(-20.0))))
    assert_close(losses.code_d_loss(wrong, right), torch.tensor(40.0), atol=1e-6, rtol=0)
    # Gradient: C lowers its loss by raising the prior's logits and lowering the codes'.
    p, e = prior.clone().requires_grad_(True), encoded.clone().requires_grad_(True)
    gp, ge = torch.autograd.grad(losses.code_d_loss(p, e), (p, e))
    assert_close(gp, -(1 - torch.sigmoid(prior)) / 2)
    assert_close(ge, torch.sigmoid(encoded) / 2)


def test_wasserstein_critic_losses():
    real, recon, sample = (
        torch.tensor([1.0, 3.0]),
        torch.tensor([0.0, -2.0]),
        torch.tensor([4.0, 2.0]),
    )
    # 0.5 * (mean recon + mean sample) - mean real = 0.5 * (-1 + 3) - 2.
    assert_close(losses.d_loss_alphagan_wasserstein(real, recon, sample), torch.tensor(-1.0))
    assert_close(losses.code_d_loss_wasserstein(real, recon), torch.tensor(-1.0 - 2.0))
    assert_close(losses.g_loss_wasserstein(sample), torch.tensor(-3.0))
    with pytest.raises(ValueError, match="model.fake_weight=0.5"):
        losses.d_loss_alphagan_wasserstein(real, recon, sample, fake_weight=1.0)


@pytest.mark.parametrize("shape", [(6, 3), (5, 1, 4, 4)])
def test_gradient_penalty_of_a_linear_critic_is_its_weight_norm_minus_one_squared(shape):
    torch.manual_seed(0)
    n_features = math.prod(shape[1:])
    critic = nn.Sequential(nn.Flatten(), nn.Linear(n_features, 1))
    real, fake = torch.randn(shape), torch.randn(shape)
    w = critic[1].weight
    norm = w.detach().norm()
    penalty = losses.gradient_penalty(critic, real, fake)
    assert_close(penalty, (norm - 1) ** 2)
    # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||: the penalty trains the critic.
    (grad,) = torch.autograd.grad(penalty, w)
    assert_close(grad, 2 * (norm - 1) * w.detach() / norm)


def test_gradient_penalty_needs_one_shape():
    critic = nn.Linear(3, 1)
    with pytest.raises(ValueError, match="one shape"):
        losses.gradient_penalty(critic, torch.zeros(4, 3), torch.zeros(8, 3))


# --- updates and schedules ------------------------------------------------------------------


class StepCounter(pl.Callback):
    def on_train_start(self, trainer, pl_module):
        self.counts = count_steps(pl_module)


@pytest.mark.parametrize(
    ("variant", "players"),
    [
        ([], ("encoder", "generator", "discriminator", "code_discriminator")),
        (JOINT, ("encoder_generator", "discriminator", "code_discriminator")),
        (WGAN, ("encoder_generator", "discriminator", "code_discriminator")),
    ],
    ids=["separate", "joint", "wgan"],
)
def test_each_update_changes_only_its_own_networks(variant, players, make_cfg):
    cfg = make_cfg(*RING, *quick_overrides(batches=1), *variant)
    dm, model, trainer = build_run(cfg)
    assert model.players == players
    watcher = StepWatcher(NETWORKS)
    trainer.callbacks.append(watcher)
    trainer.fit(model, datamodule=dm)
    assert [name for name, _ in watcher.changed] == list(model.schedule)
    for name, moved in watcher.changed:
        assert moved == set(PLAYER_NETWORKS[name]), f"the {name} update moved {moved}"


@pytest.mark.parametrize(
    ("variant", "per_batch"),
    [
        (
            [
                "model.schedule=[encoder,encoder,generator,generator,discriminator,code_discriminator]"
            ],
            {"encoder": 2, "generator": 2, "discriminator": 1, "code_discriminator": 1},
        ),
        (
            [*JOINT, "model.split_batch=true"],
            {"encoder_generator": 2, "discriminator": 1, "code_discriminator": 1},
        ),
        (WGAN, {"encoder_generator": 1, "discriminator": 5, "code_discriminator": 5}),
    ],
    ids=["seed002_E2G2DC", "seed000_211", "wgan_155"],
)
def test_schedule_takes_exactly_its_steps_per_batch(variant, per_batch, make_cfg):
    batches = 2
    cfg = make_cfg(*RING, *quick_overrides(batches=batches), *variant)
    dm, model, trainer = build_run(cfg)
    counter = StepCounter()
    trainer.callbacks.append(counter)
    trainer.fit(model, datamodule=dm)
    assert counter.counts == {k: batches * v for k, v in per_batch.items()}
    assert model.batches_seen == batches


def test_split_batch_gives_each_update_its_own_slice(make_cfg):
    cfg = make_cfg(
        *RING,
        "model.schedule=[encoder,encoder,generator,generator,discriminator,code_discriminator]",
    )
    _, model, _ = build_run(cfg)
    x = torch.arange(14.0).reshape(7, 2)
    assert all(part is x for part in model._batches_for_updates(x))
    model.split_batch = True
    parts = model._batches_for_updates(x)
    assert [len(p) for p in parts] == [2, 1, 1, 1, 1, 1]
    assert_close(torch.cat(parts), x)
    with pytest.raises(ValueError, match="data.batch_size"):
        model._batches_for_updates(x[:5])


class RecordingCodeLoss:
    """Stands in for model.loss.code_discriminator and keeps what the C step passes it."""

    def __init__(self):
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, prior_logits, encoded_logits):
        self.calls.append((prior_logits.detach(), encoded_logits.detach()))
        return losses.code_d_loss(prior_logits, encoded_logits)


def test_code_discriminator_step_labels_prior_codes_real(make_cfg):
    """Wiring: with an encoder whose codes sit far from the prior and C(z) = sum(z), the loss
    receives the prior's logits (small) as real and the encoder's (large) as fake."""
    cfg = make_cfg(
        *RING,
        *quick_overrides(batches=1),
        "model.schedule=[code_discriminator,encoder,generator,discriminator]",
    )
    dm, model, trainer = build_run(cfg)
    with torch.no_grad():
        model.encoder.net[-1].weight.zero_()
        model.encoder.net[-1].bias.fill_(50.0)
    model.code_discriminator = nn.Sequential(nn.Linear(2, 1, bias=False), nn.Flatten(0))
    nn.init.ones_(model.code_discriminator[0].weight)
    model.c_loss_fn = RecordingCodeLoss()
    trainer.fit(model, datamodule=dm)
    prior_logits, encoded_logits = model.c_loss_fn.calls[0]
    assert_close(encoded_logits, torch.full((32,), 100.0))
    assert prior_logits.abs().max() < 10  # sums of two N(0, 1) draws


# --- configuration errors and warnings --------------------------------------------------------


BAD_CONFIG = (ValueError, InstantiationException)  # Hydra wraps the model's ValueError


def test_schedule_names_are_checked_against_the_players(make_cfg):
    with pytest.raises(BAD_CONFIG, match=r"model.schedule names \['encoder_generator'\]"):
        build_run(
            make_cfg(*RING, "model.schedule=[encoder_generator,discriminator,code_discriminator]")
        )
    with pytest.raises(BAD_CONFIG, match=r"never updates \['code_discriminator'\]"):
        build_run(make_cfg(*RING, "model.schedule=[encoder,generator,discriminator]"))
    with pytest.raises(BAD_CONFIG, match="model.joint_encoder_generator=true"):
        build_run(make_cfg(*RING, "model/optimizer=alphagan_joint_adam"))
    with pytest.raises(BAD_CONFIG, match="generator_reconstruction_weight"):
        build_run(make_cfg(*RING, *JOINT, "model.generator_reconstruction_weight=5.0"))


def test_batch_norm_in_the_code_discriminator_warns_why(make_cfg):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_run(make_cfg(*RING))
    with pytest.warns(
        UserWarning, match="batch norm in the code discriminator breaks training"
    ) as record:
        build_run(make_cfg(*RING, "model.code_discriminator.batch_norm=true"))
    assert "seeds 000 and 002" in str(record[0].message)
    assert "model.code_discriminator.batch_norm=false" in str(record[0].message)


def test_setup_checks_the_code_size_where_the_encoder_is(make_cfg):
    """Lightning calls setup with the module's device already the accelerator's and its
    weights still on the CPU (alpha-GAN failed so on a GPU): the check runs where E is."""
    dm, model, trainer = build_run(make_cfg(*RING, *quick_overrides(batches=1)))
    dm.setup("fit")
    model.trainer = trainer
    trainer.datamodule = dm
    model._device = torch.device("meta")  # a device other than the weights'
    model.setup("fit")
    _, wrong, trainer = build_run(
        make_cfg(*RING, *quick_overrides(batches=1), "model.encoder.latent_dim=3")
    )
    wrong.trainer, trainer.datamodule = trainer, dm
    with pytest.raises(ValueError, match="model.encoder makes codes of shape"):
        wrong.setup("fit")


def test_gradient_penalty_with_batch_norm_in_a_critic_warns(make_cfg):
    with pytest.warns(UserWarning, match="model.discriminator contains batch norm"):
        build_run(make_cfg(*RING, *WGAN, "model.discriminator.batch_norm=true"))


# --- networks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [28, 32, 64])
def test_image_networks_take_every_size_and_return_logits(size):
    x = torch.randn(2, 3, size, size)
    for enc, gen, dis in (
        (
            ResidualEncoder(3, size, 8, width=8),
            ResidualGenerator(8, 3, size, width=8),
            ResidualDiscriminator(3, size, width=8),
        ),
        (
            DCGAN5Encoder(3, size, 8, width=4),
            DCGAN5Generator(8, 3, size, width=4),
            DCGAN5Discriminator(3, size, width=4),
        ),
    ):
        z = enc(x)
        assert z.shape == (2, 8)
        assert gen(z).shape == x.shape
        assert dis(x).shape == (2,)


def test_dcgan5_networks_have_seed_002s_widths():
    convs = [
        m.out_channels for m in DCGAN5Encoder(3, 32, 128).modules() if isinstance(m, nn.Conv2d)
    ]
    strides = [m.stride[0] for m in DCGAN5Encoder(3, 32, 128).modules() if isinstance(m, nn.Conv2d)]
    assert (convs, strides) == ([64, 128, 256, 512], [2, 2, 2, 1])
    celeba = [
        m.out_channels for m in DCGAN5Discriminator(3, 64).modules() if isinstance(m, nn.Conv2d)
    ]
    assert celeba == [64, 128, 256, 512, 1024]
    g = DCGAN5Generator(128, 3, 32)
    assert g.net[0].out_features == 4 * 4 * 512
    assert [
        m.out_channels for m in g.modules() if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d))
    ] == [256, 128, 64, 3]
    assert all(
        m.kernel_size == (5, 5)
        for m in g.modules()
        if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d))
    )


def test_code_discriminator_defaults_to_seed_000s_mlp_without_batch_norm():
    c = MLPCodeDiscriminator(128)
    linears = [m for m in c.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(128, 700), (700, 700), (700, 1)]
    assert not any(isinstance(m, nn.BatchNorm1d) for m in c.modules())
    assert all(m.negative_slope == 0.2 for m in c.modules() if isinstance(m, nn.LeakyReLU))
    assert c(torch.randn(5, 128)).shape == (5,)


@pytest.mark.parametrize(
    "net", [lambda: DCGAN5Encoder(3, 30, 8), lambda: ResidualGenerator(8, 3, 48)]
)
def test_networks_reject_sizes_they_cannot_take(net):
    with pytest.raises(ValueError, match="data.image_size"):
        net()


# --- checkpoints --------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", [[], JOINT], ids=["separate", "joint"])
def test_checkpoint_round_trip_keeps_encode_and_reconstruct(variant, make_cfg, tmp_path):
    cfg = make_cfg(*RING, *quick_overrides(batches=2), *variant)
    train(cfg)
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    model = AlphaGAN.load_from_checkpoint(path, weights_only=False).eval()
    again = load_checkpoint(path)
    assert isinstance(again, AlphaGAN) and model.has_encoder
    assert model.players == again.players
    x = torch.randn(16, 2)
    z = model.encode(x)
    assert z.shape == (16, 2)
    assert_close(model.reconstruct(x), model.generate(z))
    assert_close(again.reconstruct(x), model.reconstruct(x))
    assert_close(again.generate(again.fixed_z), model.generate(model.fixed_z))
    assert model.sample(5).shape == (5, 2)
    assert_close(F.l1_loss(again.encode(x), z), torch.tensor(0.0))


# --- each player's loss, exactly ------------------------------------------------------------------


def _sgd(params, loss, lr):
    params = list(params)
    grads = torch.autograd.grad(loss, params)
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            p -= lr * g


def test_one_batch_updates_each_network_by_its_own_loss(make_cfg):
    """E, G, D, C each take one SGD step on the paper's loss (log-odds R, lambda_E = 1,
    lambda_G = 5), in schedule order, on one batch with fresh prior codes per update: the model's
    parameters afterwards equal the ones computed here by hand with the same noise."""
    lr = 0.05
    sgd = [f"model.optimizer.{p}._target_=torch.optim.SGD" for p in NETWORKS]
    no_betas = [f"~model.optimizer.{p}.betas" for p in NETWORKS]
    lrs = [f"model.optimizer.{p}.lr={lr}" for p in NETWORKS]
    cfg = make_cfg(
        *RING,
        *quick_overrides(batches=1),
        *sgd,
        *no_betas,
        *lrs,
        "model.generator_reconstruction_weight=5.0",
    )
    dm, model, trainer = build_run(cfg)
    torch.manual_seed(1)
    x = torch.randn(8, 2)
    nets = {n: copy.deepcopy(getattr(model, n)) for n in NETWORKS}
    E, G, D, C = (nets[n] for n in NETWORKS)
    for net in nets.values():
        net.train()

    torch.manual_seed(123)  # the model draws its prior codes in this order
    l1 = lambda a, b: (a - b).abs().mean()  # noqa: E731  (model.loss.reconstruction)
    # E: lambda_E * L1 + R(C(E(x))), R(l) = -l.
    z_hat = E(x)
    _sgd(E.parameters(), 1.0 * l1(x, G(z_hat)) - C(z_hat).mean(), lr)
    # G: lambda_G * L1 + R(D(G(E(x)))) + R(D(G(z))), one G pass on [E(x); z].
    z = torch.randn(8, 2)
    fakes = G(torch.cat([E(x).detach(), z]))
    logits = D(fakes)
    _sgd(G.parameters(), 5.0 * l1(x, fakes[:8]) - logits[:8].mean() - logits[8:].mean(), lr)
    # D: BCE(D(x), 1) + BCE(D(G(E(x))), 0) + BCE(D(G(z)), 0).
    z = torch.randn(8, 2)
    with torch.no_grad():
        fakes = G(torch.cat([E(x), z]))
    fake_logits = D(fakes)
    d_loss = (
        F.softplus(-D(x)).mean()
        + F.softplus(fake_logits[:8]).mean()
        + F.softplus(fake_logits[8:]).mean()
    )
    _sgd(D.parameters(), d_loss, lr)
    # C: BCE(C(z), 1) + BCE(C(E(x)), 0), the prior real.
    z = torch.randn(8, 2)
    with torch.no_grad():
        z_hat = E(x)
    _sgd(C.parameters(), F.softplus(-C(z)).mean() + F.softplus(C(z_hat)).mean(), lr)

    trainer.callbacks.append(SameNoise(123))
    trainer.fit(model, datamodule=FixedBatch(x))
    for name in NETWORKS:
        for got, want in zip(
            getattr(model, name).parameters(), nets[name].parameters(), strict=True
        ):
            assert_close(got.detach(), want.detach(), msg=lambda m, name=name: f"{name}: {m}")


def test_latent_reconstruction_term(make_cfg):
    cfg = make_cfg(*RING, "model.latent_reconstruction_weight=2.5")
    _, model, _ = build_run(cfg)
    torch.manual_seed(7)
    got = model._latent_term(6, "e")
    torch.manual_seed(7)
    z = torch.randn(6, 2)
    assert_close(got, 2.5 * (z - model.encoder(model.generator(z))).abs().mean())
    model.latent_reconstruction_weight = 0.0
    assert model._latent_term(6, "e") == 0.0


def test_discriminator_rejection_refuses_a_wasserstein_critic(make_cfg):
    from ganzoo.rejection import DiscriminatorRejection

    _, wgan, _ = build_run(make_cfg(*RING, *WGAN))
    _, logistic, _ = build_run(make_cfg(*RING))
    assert logistic.realness(logistic.sample(4)).shape == (4,)
    with pytest.raises(ValueError, match="Wasserstein critic"):
        list(DiscriminatorRejection(burn_in=4).batches(wgan.eval(), 4, 4))
    refine = DiscriminatorRejection(burn_in=4, refine_steps=1)
    with pytest.raises(ValueError, match="Wasserstein critic"):
        list(refine.batches(wgan.eval(), 4, 4, real=lambda k, g: torch.zeros(k, 2)))
