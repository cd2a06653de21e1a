"""Every experiment composes, instantiates and trains a few steps on tiny data of its shape."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import quick_overrides
from ganzoo.config import config_dir
from ganzoo.train import build_run, train

EXPERIMENTS = sorted(p.stem for p in (Path(config_dir()) / "experiment").glob("*.yaml"))


def data_overrides(cfg_data_target: str, request) -> list[str]:
    """Point the run at tiny data of the right kind, made by the fixtures."""
    if "MNIST" in cfg_data_target:
        return [f"paths.data_dir={request.getfixturevalue('fake_mnist')}", "data.val_size=64"]
    if "CIFAR10" in cfg_data_target:
        return [f"paths.data_dir={request.getfixturevalue('fake_cifar10')}", "data.val_size=20"]
    if "CelebA" in cfg_data_target:
        # The fake CelebA has 8 training images: keep a last, smaller batch.
        return [
            f"paths.data_dir={request.getfixturevalue('fake_celeba')}",
            "++data.drop_last=false",
        ]
    return ["data.num_train=400", "data.num_val=100"]


def test_experiments_found():
    assert {
        "goodfellow2014_mnist",
        "gan_mnist_mlp",
        "gan_mnist_mlp_bn",
        "gan_mnist_infogan",
        "gan_ring",
        "gan_grid",
    } <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_trains_a_few_steps(experiment, make_cfg, request, tmp_path):
    probe = make_cfg(f"experiment={experiment}")
    overrides = [
        f"experiment={experiment}",
        *quick_overrides(),
        *data_overrides(probe.data._target_, request),
    ]
    if probe.data.get("batch_size", 0) > 16 and not any(
        o.startswith("data.batch_size=") for o in overrides
    ):
        overrides.append("data.batch_size=16")
    cfg = make_cfg(*overrides, output_dir=tmp_path / experiment)
    metrics = train(cfg)
    assert any(k.startswith("train/") for k in metrics), metrics
    assert all(
        torch.isfinite(torch.tensor(v)) for k, v in metrics.items() if k.startswith("train/loss")
    )
    assert (tmp_path / experiment / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("group", ["data", "model", "trainer", "logger", "callbacks"])
def test_every_group_option_composes(group, make_cfg):
    options = sorted(p.stem for p in (Path(config_dir()) / group).glob("*.yaml"))
    assert options
    for option in options:
        cfg = make_cfg(f"{group}={option}")
        assert cfg[group] is not None


@pytest.mark.parametrize("net", ["mlp", "infogan", "dcgan", "goodfellow_mnist"])
def test_networks_instantiate_for_mnist(net, make_cfg, fake_mnist):
    cfg = make_cfg(
        "data=mnist",
        f"model/generator={net}",
        f"model/discriminator={net}",
        f"paths.data_dir={fake_mnist}",
        "data.val_size=64",
    )
    _, model, _ = build_run(cfg)
    x = model.sample(4)
    assert x.shape == (4, 1, 28, 28)
    assert model.discriminator(x).shape == (4,)


def test_vaegan_mnist_recipe_is_set_up_as_the_official_code(make_cfg, fake_mnist):
    """vaegan_mnist_ema: Dis_l a hidden layer of D (not its logit), D not shown reconstructions,
    the official equilibrium gate, gamma 0.1 on the summed feature likelihood, a moving average
    of the decoder and the encoder only."""
    cfg = make_cfg(
        "experiment=vaegan_mnist_ema", f"paths.data_dir={fake_mnist}", "data.val_size=64"
    )
    assert (cfg.model.gate_low, cfg.model.gate_high) == (0.33, 1.03)
    assert cfg.model.discriminate_reconstructions is False
    assert (cfg.model.gamma, cfg.model.llike._target_) == (
        0.1,
        "ganzoo.losses.feature_gaussian_nll",
    )
    _, model, _ = build_run(cfg)
    x = model.sample(4)
    logits, features = model.discriminator.forward_with_features(x)
    assert logits.shape == (4,)
    assert features.shape == (4, 512)  # D's first hidden layer, before its activation
    assert (model.ema_decay, model.ema_networks) == (0.999, ("generator", "encoder"))


def test_slurm_launcher_and_hparams_search_compose(tmp_path):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "experiment=gan_ring",
                "hparams_search=mixture_grid",
                "hydra/launcher=slurm",
                "hydra.launcher.partition=gpu",
            ],
            return_hydra_config=True,
        )
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.partition == "gpu"
    assert cfg.hydra.sweeper.params["model.k"] == "1,5"
    assert cfg.optimized_metric == "val/reverse_kl"


def test_alphagan_grid_unitscale_is_the_ring_recipe_on_the_grid_shrunk_by_four(make_cfg):
    # The nets' scales 4 and 1/4 and both reconstruction weights over 4, nothing else changed.
    ring_cfg = make_cfg("experiment=alphagan_ring_grecon")
    grid_cfg = make_cfg("experiment=alphagan_grid_unitscale")
    assert grid_cfg.model.generator.output_scale == 4.0
    assert grid_cfg.model.encoder.input_scale == grid_cfg.model.discriminator.input_scale == 0.25
    for key in ("reconstruction_weight", "generator_reconstruction_weight"):
        assert grid_cfg.model[key] == ring_cfg.model[key] / 4
    for cfg in (ring_cfg, grid_cfg):
        cfg.model.generator.output_scale = 1.0
        cfg.model.encoder.input_scale = cfg.model.discriminator.input_scale = 1.0
        cfg.model.reconstruction_weight = cfg.model.generator_reconstruction_weight = 0.0
    assert grid_cfg.model == ring_cfg.model
    assert grid_cfg.trainer.max_epochs == ring_cfg.trainer.max_epochs


def test_gan_mnist_ttur_changes_only_the_generator_s_rate(make_cfg):
    base = make_cfg("experiment=gan_mnist_infogan_ema")
    ttur = make_cfg("experiment=gan_mnist_ttur")
    assert (ttur.model.optimizer.generator.lr, ttur.model.optimizer.discriminator.lr) == (
        5e-4,
        2e-4,
    )
    ttur.model.optimizer.generator.lr = base.model.optimizer.generator.lr
    assert ttur.model == base.model
    assert ttur.data == base.data and ttur.trainer == base.trainer


def test_gan_mnist_ttur_long_is_gan_mnist_ttur_with_g_at_2e_3_for_9_epochs(make_cfg):
    base = make_cfg("experiment=gan_mnist_ttur")
    long = make_cfg("experiment=gan_mnist_ttur_long")
    assert (long.model.optimizer.generator.lr, long.model.optimizer.discriminator.lr) == (
        2e-3,
        2e-4,
    )
    assert (base.trainer.max_epochs, long.trainer.max_epochs) == (6, 9)
    long.model.optimizer.generator.lr = base.model.optimizer.generator.lr
    long.trainer.max_epochs = base.trainer.max_epochs
    assert long.model == base.model and long.data == base.data and long.trainer == base.trainer


def test_gan_grid_pacgan2_lr3e4_changes_only_the_two_rates(make_cfg):
    base = make_cfg("experiment=gan_grid_pacgan2")
    fast = make_cfg("experiment=gan_grid_pacgan2_lr3e4")
    rates = fast.model.optimizer.generator.lr, fast.model.optimizer.discriminator.lr
    assert rates == (3e-4, 3e-4) and base.model.optimizer.generator.lr == 1e-4
    fast.model.optimizer.generator.lr = fast.model.optimizer.discriminator.lr = 1e-4
    assert fast.model == base.model and fast.data == base.data and fast.trainer == base.trainer


def test_gan_grid_pacgan2_lr3e4_r1_adds_only_lazy_r1(make_cfg):
    base = make_cfg("experiment=gan_grid_pacgan2_lr3e4")
    r1 = make_cfg("experiment=gan_grid_pacgan2_lr3e4_r1")
    assert (base.model.r1_gamma, base.model.r1_every) == (0.0, 1)
    assert (r1.model.r1_gamma, r1.model.r1_every) == (0.003, 4)
    r1.model.r1_gamma, r1.model.r1_every = base.model.r1_gamma, base.model.r1_every
    assert r1.model == base.model and r1.data == base.data and r1.trainer == base.trainer


def test_vaegan_mnist_long_is_vaegan_mnist_drecon_trained_twice_as_long(make_cfg):
    base = make_cfg("experiment=vaegan_mnist_drecon")
    long = make_cfg("experiment=vaegan_mnist_long")
    assert (base.trainer.max_epochs, long.trainer.max_epochs) == (40, 80)
    assert long.model == base.model and long.data == base.data
    long.trainer.max_epochs = base.trainer.max_epochs
    assert long.trainer == base.trainer


def test_lr_decay_recipe_decays_over_the_whole_run(make_cfg, tmp_path):
    """gan_ring_lrdecay's linear decay spans the run it is given: 32 epochs of 1,000 batches as
    shipped, and whatever epochs, samples and batch size it is overridden to; both rates end at
    1% of their start."""
    shipped = make_cfg("experiment=gan_ring_lrdecay").model.lr_scheduler
    assert shipped.all.total_iters == 32_000
    assert make_cfg("experiment=alphagan_ring_lrdecay").model.lr_scheduler.all.total_iters == 28_000
    # alphagan_ring_grecon: 18 epochs, decay over all of them, G's reconstruction weight 5, E's 1.
    grecon = make_cfg("experiment=alphagan_ring_grecon").model
    assert grecon.lr_scheduler.all.total_iters == 18_000
    assert (grecon.reconstruction_weight, grecon.generator_reconstruction_weight) == (1.0, 5.0)
    vaegan = make_cfg("experiment=vaegan_ring_lrdecay").model
    assert vaegan.lr_scheduler.all.total_iters == 20_000
    assert (vaegan.kl_weight, vaegan.gamma, vaegan.llike._target_) == (
        0.1,
        0.1,
        "ganzoo.losses.feature_gaussian_nll",
    )
    # gan_ring_pacgan2 draws 200 samples a step (100 packed pairs): 64 epochs of 500 batches.
    packed = make_cfg("experiment=gan_ring_pacgan2")
    assert (packed.model.pack, packed.data.batch_size) == (2, 200)
    assert packed.model.lr_scheduler.all.total_iters == 32_000
    # The grid recipes are the ring recipes on the grid, with every setting above kept.
    for ring, grid in [
        ("gan_ring_pacgan2", "gan_grid_pacgan2"),
        ("vaegan_ring_lrdecay", "vaegan_grid_lrdecay"),
        ("alphagan_ring_lrdecay", "alphagan_grid_lrdecay"),
        ("alphagan_ring_grecon", "alphagan_grid_grecon"),
    ]:
        ring_cfg, grid_cfg = make_cfg(f"experiment={ring}"), make_cfg(f"experiment={grid}")
        assert grid_cfg.data._target_ == "ganzoo.data.GridDataModule"
        assert grid_cfg.model == ring_cfg.model
        assert grid_cfg.trainer.max_epochs == ring_cfg.trainer.max_epochs
        assert grid_cfg.data.batch_size == ring_cfg.data.batch_size
    cfg = make_cfg(
        "experiment=gan_ring_lrdecay",
        *quick_overrides(),
        "trainer.max_epochs=2",
        "~trainer.limit_train_batches",
        "data.num_train=400",
        "data.num_val=100",
        "data.batch_size=16",
        output_dir=tmp_path / "run",
    )
    assert cfg.model.lr_scheduler.all.total_iters == 2 * (400 // 16)
    train(cfg)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert [s["last_epoch"] for s in ckpt["lr_schedulers"]] == [50, 50]
    for state in ckpt["optimizer_states"]:
        assert state["param_groups"][0]["lr"] == pytest.approx(1e-6)


def test_train_batches_resolver_names_its_bad_input():
    from ganzoo.config import train_batches

    assert train_batches(3, 1050, 100) == 30  # the last, partial batch is dropped
    assert train_batches(3, 1050, 100, 100) == 27  # less a held-out validation split
    with pytest.raises(ValueError, match="num_train - held_out >= batch_size"):
        train_batches(1, 10, 100)


@pytest.mark.parametrize(("val_size", "batches"), [(10000, 50 * 500), (5000, 50 * 550)])
def test_mnist_decay_spans_the_training_split_left_by_val_size(val_size, batches, make_cfg):
    cfg = make_cfg("experiment=alphagan_mnist_lrdecay", f"data.val_size={val_size}")
    assert cfg.model.lr_scheduler.all.total_iters == batches


@pytest.mark.parametrize("experiment", ["gan_ring", "vaegan_ring", "alphagan_ring"])
def test_lr_scheduler_all_reaches_every_player_and_a_players_own_entry_wins(experiment, make_cfg):
    cfg = make_cfg(
        f"experiment={experiment}",
        "model/lr_scheduler=linear_decay",
        "model.lr_scheduler.all.total_iters=10",
        "+model.lr_scheduler.discriminator._target_=torch.optim.lr_scheduler.ConstantLR",
        "+model.lr_scheduler.discriminator._partial_=true",
    )
    _, model, _ = build_run(cfg)
    optimizers, schedulers = model.configure_optimizers()
    kinds = [type(s["scheduler"]).__name__ for s in schedulers]
    assert len(kinds) == len(optimizers) == len(model.players)
    expected = ["ConstantLR" if p == "discriminator" else "LinearLR" for p in model.players]
    assert kinds == expected


def test_packed_resolver_widens_the_first_axis_or_the_channels():
    from ganzoo.config import packed

    assert list(packed([2], 4)) == [8] and list(packed([3, 32, 32], 2)) == [6, 32, 32]
    assert packed(3, 2) == 6 and list(packed([2])) == [2]
    with pytest.raises(ValueError, match="model.pack"):
        packed([2], 0)
