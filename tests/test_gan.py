"""The GAN family: who each step updates, how many steps a schedule takes, and resuming."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.testing import assert_close

from conftest import FixedBatch, SameNoise, StepWatcher, count_steps, quick_overrides
from ganzoo.models import GAN, load_checkpoint
from ganzoo.train import build_run, train

RING = [
    "data=ring",
    "data.num_train=320",
    "data.num_val=64",
    "data.batch_size=32",
    "model.latent_dim=2",
]


@pytest.mark.parametrize("schedule", ["alternating", "simultaneous"])
def test_each_step_changes_only_its_own_player(schedule, make_cfg):
    cfg = make_cfg(*RING, *quick_overrides(batches=3), f"model.schedule={schedule}")
    dm, model, trainer = build_run(cfg)
    watcher = StepWatcher()
    trainer.callbacks.append(watcher)
    trainer.fit(model, datamodule=dm)
    assert len(watcher.changed) == 6
    for name, moved in watcher.changed:
        assert moved == {name}, f"the {name} step moved {moved}"


@pytest.mark.parametrize(
    ("k", "batches", "d_steps", "g_steps"), [(1, 4, 4, 4), (2, 4, 4, 2), (3, 7, 7, 2)]
)
def test_alternating_schedule_takes_k_d_steps_per_g_step(k, batches, d_steps, g_steps, make_cfg):
    cfg = make_cfg(*RING, *quick_overrides(batches=batches), f"model.k={k}")
    dm, model, trainer = build_run(cfg)

    class Count(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            self.counts = count_steps(pl_module)

    counter = Count()
    trainer.callbacks.append(counter)
    trainer.fit(model, datamodule=dm)
    assert counter.counts == {"discriminator": d_steps, "generator": g_steps}
    assert model.batches_seen == batches


def test_simultaneous_step_takes_each_gradient_from_its_own_cost(make_cfg):
    """One pylearn2 step equals SGD on D with grad of D's cost and on G with grad of G's cost,
    both taken at the same parameters, through the same forward pass."""
    cfg = make_cfg(
        *RING,
        *quick_overrides(batches=1),
        "model.schedule=simultaneous",
        "model.d_loss_weight=0.5",
        "model/optimizer=goodfellow_sgd",
        "model.optimizer.generator.momentum=0.0",
        "model.optimizer.discriminator.momentum=0.0",
    )
    dm, model, trainer = build_run(cfg)
    dm.setup("fit")
    x = next(iter(dm.train_dataloader()))[0]
    G0 = {k: v.clone() for k, v in model.generator.state_dict().items()}
    D0 = {k: v.clone() for k, v in model.discriminator.state_dict().items()}

    # Expected update, computed by hand with the same noise.
    torch.manual_seed(123)
    z = model.prior.sample(x.shape[0])
    fake = model.generator(z)
    real_logits, fake_logits = model.discriminator(x), model.discriminator(fake)
    loss_d = 0.5 * (
        torch.nn.functional.softplus(-real_logits).mean()
        + torch.nn.functional.softplus(fake_logits).mean()
    )
    loss_g = torch.nn.functional.softplus(-fake_logits).mean()
    gd = torch.autograd.grad(loss_d, list(model.discriminator.parameters()), retain_graph=True)
    gg = torch.autograd.grad(loss_g, list(model.generator.parameters()))
    want_d = [
        p.detach() - 0.1 * g for p, g in zip(model.discriminator.parameters(), gd, strict=True)
    ]
    want_g = [p.detach() - 0.1 * g for p, g in zip(model.generator.parameters(), gg, strict=True)]

    model.generator.load_state_dict(G0)
    model.discriminator.load_state_dict(D0)

    model.train()
    trainer.callbacks.append(SameNoise(123))

    trainer.fit(model, datamodule=FixedBatch(x))
    for got, want in zip(model.discriminator.parameters(), want_d, strict=True):
        assert_close(got.detach(), want)
    for got, want in zip(model.generator.parameters(), want_g, strict=True):
        assert_close(got.detach(), want)


def assert_d_step_is_sgd_on(loss_d, dm, model, trainer, lr) -> None:
    """D's first training step (plain SGD at ``lr``) equals a step on ``loss_d(x, fake)``, with
    the first training batch ``x`` and the fakes of the step's own noise (seed 123)."""
    dm.setup("fit")
    x = next(iter(dm.train_dataloader()))[0]
    D0 = {k: v.clone() for k, v in model.discriminator.state_dict().items()}
    torch.manual_seed(123)
    with torch.no_grad():
        fake = model.generator(model.prior.sample(x.shape[0]))
    gd = torch.autograd.grad(loss_d(x, fake), list(model.discriminator.parameters()))
    want = [p.detach() - lr * g for p, g in zip(model.discriminator.parameters(), gd, strict=True)]
    model.discriminator.load_state_dict(D0)

    model.train()
    trainer.callbacks.append(SameNoise(123))
    trainer.fit(model, datamodule=FixedBatch(x))
    for got, w in zip(model.discriminator.parameters(), want, strict=True):
        assert_close(got.detach(), w)


@pytest.mark.parametrize(
    ("every", "seen", "factor"),
    [(1, 0, 1.0), (3, 0, 3.0), (3, 1, 0.0), (3, 6, 3.0)],
    ids=["every-batch", "lazy-due", "lazy-skipped", "lazy-due-again"],
)
def test_r1_penalty_adds_gamma_half_its_gradient_to_ds_step(make_cfg, every, seen, factor):
    """With model.r1_gamma, D's SGD step is that of D's loss plus gamma / 2 E ||grad_x D(x)||^2
    on the real batch (Mescheder et al. 2018), gradients taken at the same parameters; with
    model.r1_every=n (lazy R1) the penalty enters on every n-th batch only, weighted n times."""
    gamma, lr = 4.0, 0.1
    cfg = make_cfg(
        *RING,
        *quick_overrides(batches=1),
        f"model.r1_gamma={gamma}",
        f"model.r1_every={every}",
        "model/optimizer=goodfellow_sgd",
        "model.optimizer.discriminator.momentum=0.0",
    )
    dm, model, trainer = build_run(cfg)
    model.batches_seen = seen

    def loss_d(x, fake):
        xr = x.clone().requires_grad_(True)
        real_logits, fake_logits = model.discriminator(xr), model.discriminator(fake)
        (grad_x,) = torch.autograd.grad(real_logits.sum(), xr, create_graph=True)
        return (
            torch.nn.functional.softplus(-real_logits).mean()
            + torch.nn.functional.softplus(fake_logits).mean()
            + factor * gamma / 2 * grad_x.pow(2).sum(1).mean()
        )

    assert_d_step_is_sgd_on(loss_d, dm, model, trainer, lr)
    assert (model.r1_gamma, model.r1_every) == (gamma, every)


def test_r1_every_below_one_is_refused(make_cfg):
    with pytest.raises(ValueError, match="model.r1_every"):
        build_run(make_cfg(*RING, *quick_overrides(batches=1), "model.r1_every=0"))


def test_pacgan_d_judges_packed_samples_and_its_step_is_the_packed_loss(make_cfg):
    """model.pack=m (PacGAN, Lin et al. 2018): D's input is m consecutive samples side by side
    (real with real, fake with fake), its logits one per packed sample, and its SGD step that
    of the standard loss on those logits."""
    m, lr = 2, 0.1
    cfg = make_cfg(
        *RING,
        *quick_overrides(batches=1),
        f"model.pack={m}",
        "model/optimizer=goodfellow_sgd",
        "model.optimizer.discriminator.momentum=0.0",
    )
    assert list(cfg.model.discriminator.in_shape) == [2 * m]
    dm, model, trainer = build_run(cfg)
    x = torch.arange(12.0).reshape(6, 2)
    assert_close(model.packed(x), torch.tensor([[0.0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]))
    assert model.packed(x[:5]).shape == (2, 4)  # the odd sample out is left out
    images = torch.randn(4, 3, 8, 8)
    assert_close(model.packed(images)[1], torch.cat([images[2], images[3]]))

    def loss_d(x, fake):
        real_logits = model.discriminator(x.reshape(-1, 2 * m))
        fake_logits = model.discriminator(fake.reshape(-1, 2 * m))
        assert real_logits.shape == (x.shape[0] // m,)
        return (
            torch.nn.functional.softplus(-real_logits).mean()
            + torch.nn.functional.softplus(fake_logits).mean()
        )

    assert_d_step_is_sgd_on(loss_d, dm, model, trainer, lr)
    with pytest.raises(ValueError, match="model.pack"):
        build_run(make_cfg(*RING, "model.pack=0"))


@pytest.mark.parametrize("schedule", ["alternating", "simultaneous"])
def test_pacgan_trains_convnets_with_packed_channels(schedule, make_cfg, fake_mnist):
    cfg = make_cfg(
        "experiment=gan_mnist_infogan",
        *quick_overrides(batches=2),
        f"paths.data_dir={fake_mnist}",
        "data.val_size=64",
        "data.batch_size=16",
        "model.pack=2",
        f"model.schedule={schedule}",
    )
    assert cfg.model.discriminator.channels == 2
    metrics = train(cfg)
    assert torch.isfinite(torch.tensor(metrics["train/loss_d"]))


def test_top_k_generator_learns_only_from_the_samples_d_rates_most_realistic(make_cfg, monkeypatch):
    """model.top_k (Sinha et al. 2020): in epoch e, G's loss is taken on the
    max(decay ** e, min_fraction) share of its batch with the highest logits; the others get no
    gradient. Off (null) by default."""
    _, plain, _ = build_run(make_cfg(*RING, *quick_overrides(batches=1)))
    assert plain.top_k is None and plain.top_k_fraction() == 1.0
    cfg = make_cfg(
        *RING, *quick_overrides(batches=1), "model.top_k={decay: 0.5, min_fraction: 0.3}"
    )
    _, model, _ = build_run(cfg)
    fractions = []
    for epoch in range(4):
        monkeypatch.setattr(GAN, "current_epoch", property(lambda self, e=epoch: e))
        fractions.append(model.top_k_fraction())
    assert fractions == [1.0, 0.5, 0.3, 0.3]

    monkeypatch.setattr(GAN, "current_epoch", property(lambda self: 1))
    logits = torch.tensor([[0.3], [-1.0], [2.0], [0.1]], requires_grad=True)
    loss = model._g_loss(logits)
    assert_close(loss, model.g_loss_fn(torch.tensor([[2.0], [0.3]])))
    (grad,) = torch.autograd.grad(loss, logits)
    assert grad[1] == 0 and grad[3] == 0 and grad[0] != 0 and grad[2] != 0
    with pytest.raises(ValueError, match="model.top_k"):
        build_run(make_cfg(*RING, "model.top_k={decay: 0.9, min_fraction: 0}"))
    with pytest.raises(ValueError, match="unknown keys"):
        build_run(make_cfg(*RING, "model.top_k={decay: 0.9, min_frac: 0.5}"))


@pytest.mark.parametrize(("seen", "std"), [(0, 0.8), (6, 0.2), (8, 0.0), (20, 0.0)])
def test_instance_noise_is_added_to_what_d_judges_and_annealed_away(make_cfg, seen, std):
    """model.instance_noise={std, batches} (Sonderby et al. 2017): at batch t D's step is the
    standard loss on real and fake samples each plus Gaussian noise of standard deviation
    std * max(0, 1 - t / batches), drawn real first; from batch `batches` on D sees them clean."""
    lr = 0.1
    cfg = make_cfg(
        *RING,
        *quick_overrides(batches=1),
        "model.instance_noise={std: 0.8, batches: 8}",
        "model/optimizer=goodfellow_sgd",
        "model.optimizer.discriminator.momentum=0.0",
    )
    dm, model, trainer = build_run(cfg)
    model.batches_seen = seen
    assert model.instance_noise_std() == pytest.approx(std)

    def loss_d(x, fake):
        if std > 0:
            x, fake = x + std * torch.randn_like(x), fake + std * torch.randn_like(fake)
        return (
            torch.nn.functional.softplus(-model.discriminator(x)).mean()
            + torch.nn.functional.softplus(model.discriminator(fake)).mean()
        )

    assert_d_step_is_sgd_on(loss_d, dm, model, trainer, lr)


@pytest.mark.parametrize("schedule", ["alternating", "simultaneous"])
def test_instance_noise_reaches_every_sample_d_judges_in_training_only(
    schedule, make_cfg, monkeypatch
):
    """Real and fake in D's step and fake in G's step are noised; validation is not. Off (null)
    by default; a config without std or batches is refused naming the key."""
    _, plain, _ = build_run(make_cfg(*RING, *quick_overrides(batches=1)))
    assert plain.instance_noise is None and plain.instance_noise_std() == 0.0
    cfg = make_cfg(
        *RING,
        *quick_overrides(batches=2),
        f"model.schedule={schedule}",
        "model.instance_noise={std: 0.5, batches: 100}",
    )
    dm, model, trainer = build_run(cfg)
    noised = []
    original = GAN.noised

    def spy(self, x):
        noised.append((self.training, x.shape[0]))
        return original(self, x)

    monkeypatch.setattr(GAN, "noised", spy)
    trainer.fit(model, datamodule=dm)
    batch = cfg.data.batch_size
    calls_per_batch = 3 if schedule == "alternating" else 2
    assert noised == [(True, batch)] * (2 * calls_per_batch)
    with pytest.raises(ValueError, match="model.instance_noise"):
        build_run(make_cfg(*RING, "model.instance_noise={std: 0.5}"))
    with pytest.raises(ValueError, match="model.instance_noise"):
        build_run(make_cfg(*RING, "model.instance_noise={std: -1, batches: 10}"))


def test_output_bias_from_marginals(make_cfg, fake_mnist):
    cfg = make_cfg(
        "experiment=goodfellow2014_mnist",
        f"paths.data_dir={fake_mnist}",
        "data.val_size=64",
        *quick_overrides(batches=1),
    )
    dm, model, trainer = build_run(cfg)
    dm.setup("fit")
    mean = dm.pixel_marginals().flatten().clamp(1e-7, 1 - 1e-7)
    model.generator.init_from_data(dm)
    assert_close(model.generator.out.bias.detach(), torch.log(mean / (1 - mean)))
    # With zero input to the output layer the generator draws the mean image.
    assert_close(torch.sigmoid(model.generator.out.bias.detach()), mean)


def test_goodfellow_resume_continues_epochs_momentum_and_lr_decay(make_cfg, tmp_path):
    common = [
        *RING,
        "model/optimizer=goodfellow_sgd",
        "model/lr_scheduler=goodfellow_decay",
        "model.schedule=simultaneous",
        "+callbacks.momentum._target_=ganzoo.callbacks.MomentumSchedule",
        "+callbacks.momentum.start_epoch=0",
        "+callbacks.momentum.saturate_epoch=4",
        "+trainer.enable_progress_bar=false",
        "data.num_workers=0",
        "+trainer.limit_train_batches=5",
        "+trainer.limit_val_batches=1",
        "model.lr_scheduler.generator.decay_factor=1.5",
        "model.lr_scheduler.discriminator.decay_factor=1.5",
    ]
    first = make_cfg(*common, "trainer.max_epochs=2", output_dir=tmp_path / "a")
    train(first)
    ckpt = tmp_path / "a" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()

    resumed = make_cfg(
        *common, "trainer.max_epochs=3", f"ckpt_path={ckpt}", output_dir=tmp_path / "b"
    )
    dm, model, trainer = build_run(resumed)
    trainer.fit(model, datamodule=dm, ckpt_path=str(ckpt))
    assert trainer.current_epoch == 3
    assert model.batches_seen == 15
    for opt in trainer.optimizers:
        group = opt.param_groups[0]
        assert group["momentum"] == pytest.approx(
            0.5 + 0.2 * 3 / 4
        )  # set at the start of the third epoch (1-based epoch 3)
        assert group["lr"] == pytest.approx(0.1 / 1.5**15)
        assert any(len(s) for s in opt.state.values()), "optimizer state was not restored"


def test_checkpoint_round_trip_rebuilds_the_model(make_cfg, tmp_path):
    cfg = make_cfg(*RING, *quick_overrides(batches=2))
    train(cfg)
    model = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert isinstance(model, GAN)
    assert model.run_config["data"]["_target_"] == "ganzoo.data.RingDataModule"
    again = GAN.load_from_checkpoint(
        tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False
    )
    assert_close(again.generate(again.fixed_z), model.generate(model.fixed_z))
    with pytest.raises(NotImplementedError, match="has no encoder"):
        model.reconstruct(torch.zeros(2, 2))
