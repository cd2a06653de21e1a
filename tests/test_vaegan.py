"""VAE/GAN: loss values, networks, gradient routing, update schedule, gate, checkpoints."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.errors import InstantiationException
from torch import nn
from torch.testing import assert_close
from torch.utils.data import DataLoader, TensorDataset

from conftest import StepWatcher, count_steps, quick_overrides
from ganzoo import losses
from ganzoo.models import build_model
from ganzoo.models.vaegan import VAEGAN, gated_step
from ganzoo.nets.vaegan import (
    ConvDecoder,
    ConvEncoder,
    ConvFeatureDiscriminator,
    MLPDecoder,
    MLPEncoder,
    MLPFeatureDiscriminator,
)
from ganzoo.optim import PowerAnnealing
from ganzoo.train import build_run

SHAPE = (1, 4, 4)
LATENT = 3
PLAYERS = ("encoder", "generator", "discriminator")

# --- pure losses --------------------------------------------------------------------------


def test_kl_matches_closed_form():
    # mu = (1, 0), var = (1, 4): KL = 1/2 (1 + 0 - 1 - 0) + 1/2 (0 + 4 - 1 - log 4) + 1/2 mu^2
    mu = torch.tensor([[1.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)]])
    assert_close(
        losses.kl_standard_normal(mu, logvar), torch.tensor(0.5 + 0.5 * (3.0 - math.log(4.0)))
    )

    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros(5, 7), torch.ones(5, 7))
    expected = torch.distributions.kl_divergence(q, p).sum(dim=1).mean()
    assert_close(losses.kl_standard_normal(mu, logvar), expected)


def test_feature_likelihoods_on_hand_made_features():
    real = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    fake = torch.tensor([[1.0, 0.0, 0.0], [1.0, 3.0, 1.0]])
    # squared distances per sample: 1 and 4
    assert_close(losses.feature_gaussian_nll(real, fake), torch.tensor(0.5 * (1.0 + 4.0) / 2))
    assert_close(
        losses.feature_gaussian_nll(real, fake, sigma=2.0), torch.tensor((1.0 + 4.0) / 2 / 8)
    )
    assert_close(losses.feature_mse(real, fake), torch.tensor(5.0 / 6.0))
    # feature maps are summed over every non-batch dim
    maps_real, maps_fake = real.reshape(2, 3, 1, 1), fake.reshape(2, 3, 1, 1)
    assert_close(losses.feature_gaussian_nll(maps_real, maps_fake), torch.tensor(1.25))


def test_three_term_gan_loss_on_known_logits():
    real, prior, recon = (
        torch.tensor([2.0, 0.0]),
        torch.tensor([-1.0, 1.0]),
        torch.tensor([0.5, -0.5]),
    )

    def log_sigmoid(logits):
        return torch.log(torch.sigmoid(logits))

    expected_three = -(
        log_sigmoid(real).mean()
        + torch.log(1 - torch.sigmoid(prior)).mean()
        + torch.log(1 - torch.sigmoid(recon)).mean()
    )
    assert_close(losses.d_loss_vaegan(real, prior, recon), expected_three)
    expected_two = -(log_sigmoid(real).mean() + torch.log(1 - torch.sigmoid(prior)).mean())
    assert_close(losses.d_loss_vaegan(real, prior), expected_two)
    zeros = torch.zeros(4)
    assert_close(losses.d_loss_vaegan(zeros, zeros, zeros), torch.tensor(3 * math.log(2.0)))
    assert_close(losses.d_loss_vaegan(zeros, zeros, None), torch.tensor(2 * math.log(2.0)))

    # decoder: -L_GAN (its fake terms) or the non-saturating form
    minimax = (
        torch.log(1 - torch.sigmoid(prior)).mean() + torch.log(1 - torch.sigmoid(recon)).mean()
    )
    assert_close(losses.dec_gan_loss_minimax(prior, recon), minimax)
    assert_close(losses.dec_gan_loss_minimax(prior), torch.log(1 - torch.sigmoid(prior)).mean())
    nonsat = -(log_sigmoid(prior).mean() + log_sigmoid(recon).mean())
    assert_close(losses.dec_gan_loss_nonsaturating(prior, recon), nonsat)
    assert_close(losses.dec_gan_loss_nonsaturating(prior), -log_sigmoid(prior).mean())


# --- networks -----------------------------------------------------------------------------


def test_larsen_64_networks_have_the_official_shapes():
    x = torch.randn(2, 3, 64, 64)
    mu, logvar = ConvEncoder(latent_dim=128)(x)
    assert mu.shape == logvar.shape == (2, 128)
    assert ConvDecoder(latent_dim=128, output_activation=nn.Tanh())(mu).shape == (2, 3, 64, 64)
    d = ConvFeatureDiscriminator().eval()
    logits, features = d.forward_with_features(x)
    assert logits.shape == (2,)
    assert features.shape == (2, 256, 8, 8)  # Dis_l = the 4th convolution
    assert isinstance(d.layers[3], nn.Conv2d)
    assert_close(d.features(x), features)
    assert_close(d(x), logits)


def test_mnist_conv_variant_and_size_errors():
    x = torch.randn(2, 1, 28, 28)
    mu, _ = ConvEncoder(latent_dim=20, channels=1, image_size=28, widths=(64, 128))(x)
    dec = ConvDecoder(latent_dim=20, channels=1, image_size=28, fc_channels=128, widths=(64, 32))
    assert dec(mu).shape == (2, 1, 28, 28)
    d = ConvFeatureDiscriminator(channels=1, image_size=28, widths=(64, 128), feature_layer=3)
    assert d.features(x).shape == (2, 128, 7, 7)
    with pytest.raises(ValueError, match="data.image_size=30"):
        ConvEncoder(latent_dim=20, channels=1, image_size=30, widths=(64, 128))
    with pytest.raises(ValueError, match="data.image_size=28"):
        ConvFeatureDiscriminator(channels=1, image_size=28)  # 3 halvings need a multiple of 8
    with pytest.raises(ValueError, match="feature_layer=7"):
        ConvFeatureDiscriminator(feature_layer=7)


def test_seed003_mlps_put_dropout_before_every_linear_layer():
    enc = MLPEncoder([1, 28, 28], latent_dim=20)
    dec = MLPDecoder(20, [1, 28, 28], output_activation=nn.Tanh())
    d = MLPFeatureDiscriminator([1, 28, 28])
    for net, widths in (
        (enc, [1024, 1024, 1024, 20, 20]),
        (dec, [1024, 1024, 1024, 784]),
        (d, [1024, 512, 256, 1]),
    ):
        modules = list(net.modules())
        linears = [i for i, m in enumerate(modules) if isinstance(m, nn.Linear)]
        assert [modules[i].out_features for i in linears] == widths
        for i in linears:
            if net is enc and modules[i] is enc.head.logvar:
                continue  # the two heads share the dropout before the mean's head
            before = [m for m in modules[:i] if isinstance(m, (nn.Dropout, nn.Linear))]
            assert isinstance(before[-1], nn.Dropout) and before[-1].p == 0.1
        acts = [m for m in modules if isinstance(m, nn.LeakyReLU)]
        assert len(acts) == 3 and all(a.negative_slope == 0.2 for a in acts)
    x = torch.randn(3, 1, 28, 28)
    d.eval()
    logits, similarity = d.forward_with_features(x)
    assert similarity.shape == (3, 1)  # seed 003's similarity: the logit
    assert_close(similarity.squeeze(1), logits)


# --- a tiny model, trained by Lightning ---------------------------------------------------


def tiny_model(opt: str = "torch.optim.SGD", lr: float = 0.0, loss=None, **kwargs) -> VAEGAN:
    shape = list(SHAPE)
    nets = {
        "encoder": {
            "_target_": "ganzoo.nets.vaegan.MLPEncoder",
            "in_shape": shape,
            "latent_dim": LATENT,
            "hidden": [8],
            "dropout": 0.0,
        },
        "generator": {
            "_target_": "ganzoo.nets.vaegan.MLPDecoder",
            "latent_dim": LATENT,
            "out_shape": shape,
            "hidden": [8],
            "dropout": 0.0,
            "output_activation": {"_target_": "torch.nn.Tanh"},
        },
        "discriminator": {
            "_target_": "ganzoo.nets.vaegan.MLPFeatureDiscriminator",
            "in_shape": shape,
            "hidden": [8, 6],
            "dropout": 0.0,
            "feature_layer": 2,
        },
    }
    defaults = dict(
        optimizer={p: {"_target_": opt, "_partial_": True, "lr": lr} for p in PLAYERS},
        loss=loss
        or {
            "d": {"_target_": "ganzoo.losses.d_loss_vaegan", "_partial_": True},
            "g": {"_target_": "ganzoo.losses.dec_gan_loss_minimax", "_partial_": True},
        },
        llike={"_target_": "ganzoo.losses.feature_gaussian_nll", "_partial_": True},
        latent_dim=LATENT,
        num_fixed_samples=4,
    )
    torch.manual_seed(0)
    return build_model({"_target_": "ganzoo.models.vaegan.VAEGAN", **nets, **defaults, **kwargs})


def data(n: int = 6, batches: int = 1) -> torch.Tensor:
    return torch.rand(n * batches, *SHAPE, generator=torch.Generator().manual_seed(1)) * 2 - 1


def fit(model: VAEGAN, x: torch.Tensor, batch_size: int, callbacks=()) -> pl.Trainer:
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=list(callbacks),
    )
    trainer.fit(model, train_dataloaders=DataLoader(TensorDataset(x), batch_size=batch_size))
    return trainer


def grads(model: VAEGAN, player: str) -> list[torch.Tensor]:
    return [
        torch.zeros_like(p) if p.grad is None else p.grad.clone()
        for p in model.player_parameters(player)
    ]


def params(model: VAEGAN, player: str) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.player_parameters(player)]


def all_zero(tensors) -> bool:
    return all(bool((t == 0).all()) for t in tensors)


def same(a, b) -> bool:
    return all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


class SeedEachBatch(pl.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        torch.manual_seed(1234)


def test_gan_term_alone_gives_the_encoder_no_gradient():
    # Reconstructions are discriminated, so a wrong routing would reach the encoder through x~.
    model = tiny_model(gamma=0.0, beta=0.0, kl_weight=0.0, discriminate_reconstructions=True)
    fit(model, data(), batch_size=6)
    assert all_zero(grads(model, "encoder"))
    assert not all_zero(grads(model, "generator"))
    assert not all_zero(grads(model, "discriminator"))


def zero_d_loss(real, prior, recon=None):
    return 0.0 * (real.sum() + prior.sum() + (0.0 if recon is None else recon.sum()))


def zero_dec_loss(prior, recon=None):
    return 0.0 * (prior.sum() + (0.0 if recon is None else recon.sum()))


def test_feature_likelihood_alone_gives_the_discriminator_no_gradient():
    model = tiny_model(
        loss={
            "d": {"_target_": f"{__name__}.zero_d_loss", "_partial_": True},
            "g": {"_target_": f"{__name__}.zero_dec_loss", "_partial_": True},
        },
        gamma=1.0,
        beta=1.0,
        kl_weight=0.0,
    )
    fit(model, data(), batch_size=6)
    assert all_zero(grads(model, "discriminator"))
    assert not all_zero(grads(model, "encoder"))
    assert not all_zero(grads(model, "generator"))


def test_each_player_gets_exactly_the_gradient_of_its_own_loss():
    gamma, beta, kl_weight = 2.0, 3.0, 0.5
    model = tiny_model(gamma=gamma, beta=beta, kl_weight=kl_weight)  # SGD lr 0: nothing moves
    x = data()
    fit(model, x, batch_size=6, callbacks=[SeedEachBatch()])

    # The same batch, by hand: the draws in the model's order (reparameterisation, then prior).
    torch.manual_seed(1234)
    eps, z_p = torch.randn(6, LATENT), torch.randn(6, LATENT)
    mu, logvar = model.encoder(x)
    x_tilde = model.generator(mu + torch.exp(0.5 * logvar) * eps)
    l_real, f_real = model.discriminator.forward_with_features(x)
    l_recon, f_recon = model.discriminator.forward_with_features(x_tilde)
    l_prior = model.discriminator(model.generator(z_p))
    kl = (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).sum(1).mean()
    llike = 0.5 * (f_recon - f_real).pow(2).sum(1).mean()
    gan = F.softplus(-l_real).mean() + F.softplus(l_prior).mean() + F.softplus(l_recon).mean()
    minus_gan = -(F.softplus(l_prior).mean() + F.softplus(l_recon).mean())
    expected = {
        "encoder": kl_weight * kl + beta * llike,
        "generator": gamma * llike + minus_gan,
        "discriminator": gan,
    }
    for player, loss in expected.items():
        want = torch.autograd.grad(loss, list(model.player_parameters(player)), retain_graph=True)
        for got, w in zip(grads(model, player), want, strict=True):
            assert_close(got, w)


def test_each_optimizer_step_changes_only_its_own_players_parameters():
    model = tiny_model(opt="torch.optim.Adam", lr=1e-2)
    watcher = StepWatcher()
    fit(model, data(batches=2), batch_size=6, callbacks=[watcher])
    assert watcher.changed == [(p, {p}) for p in PLAYERS] * 2


def test_one_device_steps_skip_the_toggles_and_match_the_toggled_whole_backward(monkeypatch):
    # On one device each backward is restricted to its player's parameters and nothing is
    # frozen; DDP's path (the others frozen, whole backward) must train bit for bit the same.
    x = data(batches=3)
    toggles = []
    toggle = pl.LightningModule.toggle_optimizer
    monkeypatch.setattr(
        pl.LightningModule,
        "toggle_optimizer",
        lambda self, opt: (toggles.append(opt), toggle(self, opt))[1],
    )

    def trained() -> dict[str, list[torch.Tensor]]:
        model = tiny_model(opt="torch.optim.Adam", lr=1e-2)
        fit(model, x, batch_size=6, callbacks=[SeedEachBatch()])
        return {p: params(model, p) for p in PLAYERS}

    restricted = trained()
    assert toggles == []
    monkeypatch.setattr(VAEGAN, "restricted_backward", property(lambda self: False))
    whole = trained()
    assert len(toggles) == 3 * 3  # three players, three batches
    for player in PLAYERS:
        assert same(restricted[player], whole[player]), player


class CountSteps(pl.Callback):
    def on_train_start(self, trainer, pl_module):
        self.counts = count_steps(pl_module)


def test_experiment_takes_one_step_per_player_per_batch_and_round_trips(
    make_cfg, fake_mnist, tmp_path
):
    # vaegan_mnist_conv (BatchNorm everywhere, Dis_l a hidden conv layer), narrowed to run fast.
    small = [
        "model.encoder.widths=[8,8]",
        "model.encoder.fc=16",
        "model.generator.fc_channels=8",
        "model.generator.widths=[8,8]",
        "model.discriminator.first_width=4",
        "model.discriminator.widths=[8,8]",
        "model.discriminator.fc=16",
    ]
    cfg = make_cfg(
        "experiment=vaegan_mnist_conv",
        *quick_overrides(batches=3),
        f"paths.data_dir={fake_mnist}",
        "data.val_size=64",
        "data.batch_size=16",
        *small,
        output_dir=tmp_path / "run",
    )
    datamodule, model, trainer = build_run(cfg)
    counter = CountSteps()
    trainer.callbacks.append(counter)
    trainer.fit(model, datamodule=datamodule)
    assert counter.counts == {"encoder": 3, "generator": 3, "discriminator": 3}
    logged = set(trainer.callback_metrics)
    for tag in ("kl", "llike", "gan", "dec_gan", "enc", "dec", "d"):
        assert f"train/loss_{tag}" in logged
    assert {
        "train/d_real",
        "train/d_fake",
        "train/d_recon",
        "train/recon_mse",
        "val/recon_mse",
    } <= logged
    assert (tmp_path / "run" / "reconstructions" / "epoch_0001.png").is_file()

    loaded = VAEGAN.load_from_checkpoint(
        tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu"
    ).eval()
    model.eval()
    x = torch.rand(5, 1, 28, 28) * 2 - 1
    assert loaded.encode(x).shape == (5, 20)
    assert loaded.posterior(x)[1].shape == (5, 20)
    assert loaded.encode_sample(x).shape == (5, 20)
    assert loaded.reconstruct(x).shape == (5, 1, 28, 28)
    assert loaded.sample(3).shape == (3, 1, 28, 28)
    with torch.no_grad():
        assert_close(loaded.reconstruct(x), model.reconstruct(x))


# --- the equilibrium gate -----------------------------------------------------------------


def test_gate_skips_the_discriminator_step_exactly():
    # Every loss is below 10: D's update is skipped; the decoder's never (nothing exceeds 100).
    model = tiny_model(opt="torch.optim.Adam", lr=1e-2, gate_low=10.0, gate_high=100.0)
    before = {p: params(model, p) for p in PLAYERS}
    trainer = fit(model, data(batches=2), batch_size=6)
    assert same(params(model, "discriminator"), before["discriminator"])
    assert not same(params(model, "encoder"), before["encoder"])
    assert not same(params(model, "generator"), before["generator"])
    d_opt = trainer.optimizers[PLAYERS.index("discriminator")]
    assert all(all_zero(v for v in s.values() if torch.is_tensor(v)) for s in d_opt.state.values())
    assert trainer.callback_metrics["train/d_update"] == 0.0


def test_gate_skips_the_decoder_step_or_only_its_gan_term():
    # Every loss is above -1: the decoder's update is skipped; D is never gated (gate_low null).
    model = tiny_model(opt="torch.optim.Adam", lr=1e-2, gate_high=-1.0)
    before = params(model, "generator")
    fit(model, data(batches=2), batch_size=6)
    assert same(params(model, "generator"), before)
    assert not all_zero(grads(model, "generator"))  # the gradient was there; the step was undone

    # Only the GAN term switched off: with gamma = 0 the decoder gets no gradient at all...
    model = tiny_model(gamma=0.0, gate_high=-1.0, gate_whole_decoder_step=False)
    fit(model, data(), batch_size=6)
    assert all_zero(grads(model, "generator"))
    # ... while an open gate passes its GAN gradient.
    model = tiny_model(gamma=0.0, gate_high=100.0, gate_whole_decoder_step=False)
    fit(model, data(), batch_size=6)
    assert not all_zero(grads(model, "generator"))


@pytest.mark.parametrize(
    ("real", "fake", "d_open", "dec_open"),
    [
        (0.7, 0.7, True, True),  # near equilibrium: both update
        (0.1, 0.7, False, True),  # D too good on real data: D waits
        (0.7, 2.0, True, False),  # D too good on fakes... and the decoder too bad: decoder waits
        (0.1, 2.0, True, True),  # both would wait: both update (official code)
    ],
)
def test_gate_follows_the_official_rule(real, fake, d_open, dec_open):
    model = tiny_model(gate_low=0.33, gate_high=1.03, discriminate_reconstructions=False)
    # logits whose BCE(l, 1) = real and BCE(l, 0) = fake: l = -log(exp(c) - 1) and log(exp(c) - 1)
    terms = {
        "real_logits": torch.full((4,), -math.log(math.expm1(real))),
        "prior_logits": torch.full((4,), math.log(math.expm1(fake))),
        "recon_logits": torch.full((4,), 100.0),  # not discriminated: ignored by the gate
    }
    assert_close(losses.bce_real(terms["real_logits"]), torch.tensor(real))
    got_d, got_dec = model.gate(terms)
    assert (bool(got_d), bool(got_dec)) == (d_open, dec_open)


def test_gated_step_is_a_plain_step_or_none():
    def make():
        torch.manual_seed(0)
        w = nn.Parameter(torch.randn(3))
        return w, torch.optim.Adam([w], lr=0.1)

    w, opt = make()
    w2, opt2 = make()
    for _ in range(2):
        for p, o, gate in ((w, opt, torch.tensor(True)), (w2, opt2, None)):
            o.zero_grad()
            (p**2).sum().backward()
            gated_step(o, gate)
    assert_close(w, w2)
    state = {k: v.clone() for k, v in opt.state[w].items()}
    saved = w.detach().clone()
    opt.zero_grad()
    (w**2).sum().backward()
    gated_step(opt, torch.tensor(False))
    assert torch.equal(w.detach(), saved)
    assert all(torch.equal(opt.state[w][k], v) for k, v in state.items())


# --- options and errors -------------------------------------------------------------------


def test_kl_per_pixel_divides_by_the_values_of_one_sample():
    model = tiny_model(beta=5.0, kl_per_pixel=True)
    terms = {
        "kl": torch.tensor(32.0),
        "llike": torch.tensor(2.0),
        "gan": torch.tensor(1.0),
        "dec_gan": torch.tensor(-1.0),
        "x_tilde": torch.zeros(3, *SHAPE),
    }
    loss = model.player_losses(terms)
    assert_close(loss["encoder"], torch.tensor(32.0 / 16 + 5.0 * 2.0))
    assert_close(loss["generator"], torch.tensor(1.0 * 2.0 - 1.0))
    assert_close(loss["discriminator"], torch.tensor(1.0))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="model.gate_low"):
        tiny_model(gate_low=1.0, gate_high=0.5)
    with pytest.raises(ValueError, match="model.gamma"):
        tiny_model(gamma=-1.0)
    with pytest.raises(InstantiationException, match="feature layer"):
        tiny_model(
            discriminator={"_target_": "ganzoo.nets.MLPDiscriminator", "in_shape": list(SHAPE)}
        )


def test_power_annealing_follows_the_official_schedule():
    w = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=1.0)
    sched = PowerAnnealing(opt, final_lr=0.2, num_stages=4, stage_length=2, power=1.0)
    seen = []
    for _ in range(12):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [1.0, 1.0, 0.8, 0.8, 0.6, 0.6, 0.4, 0.4, 0.2, 0.2, 0.2, 0.2]
    assert_close(torch.tensor(seen), torch.tensor(expected))
