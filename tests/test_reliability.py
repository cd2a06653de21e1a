"""Reliability: exact resume for every family, preemption, divergence, evaluation that leaves
training alone, atomic checkpoints and one-line errors for bad checkpoint files."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO
from ganzoo.callbacks.guards import AtomicCheckpointIO, Diverged, Preempted
from ganzoo.models import CheckpointError, load_checkpoint
from ganzoo.train import train

TESTS = Path(__file__).resolve().parent

RING = [
    "data=ring",
    "data.num_train=192",
    "data.num_val=32",
    "data.batch_size=32",  # 6 batches an epoch
    "model.latent_dim=2",
    "data.num_workers=0",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
    "~logger",
    "~callbacks.samples",
    "~callbacks.hparams",
    "~callbacks.reconstructions",
    "callbacks.mode_coverage.num_samples=100",
]
GAN = [
    "model=gan",
    "model.generator.hidden=[16,16]",
    "model.generator.batch_norm=true",
    "model.discriminator.hidden=[16,16]",
    "model.discriminator.dropout=0.2",
]
VAEGAN = [
    "model=vaegan",
    "model.encoder.hidden=[16]",
    "model.generator.hidden=[16,16]",
    "model.discriminator.hidden=[16,16]",
]
ALPHAGAN = [
    "model=alphagan",
    "model.encoder.hidden=[16]",
    "model.generator.hidden=[16,16]",
    "model.generator.batch_norm=true",
    "model.discriminator.hidden=[16,16]",
    "model.discriminator.dropout=0.2",
    "model.code_discriminator.hidden=[16]",
    "model.ema.decay=0.9",
]
FAMILIES = {
    "gan_alternating": GAN,
    "gan_simultaneous": [
        *GAN,
        "model.schedule=simultaneous",
        "model/optimizer=goodfellow_sgd",
        "model/lr_scheduler=goodfellow_decay",
        "model.lr_scheduler.generator.decay_factor=1.01",
        "model.lr_scheduler.discriminator.decay_factor=1.01",
        "+callbacks.momentum._target_=ganzoo.callbacks.MomentumSchedule",
        "+callbacks.momentum.start_epoch=0",
        "+callbacks.momentum.saturate_epoch=4",
    ],
    "vaegan": VAEGAN,
    "vaegan_gate": [*VAEGAN, "model.gate_low=0.6", "model.gate_high=0.8"],
    "alphagan_separate": ALPHAGAN,
    "alphagan_joint": [
        *ALPHAGAN,
        "model.joint_encoder_generator=true",
        "model/optimizer=alphagan_joint_adam",
        "model.schedule=[encoder_generator,encoder_generator,discriminator,code_discriminator]",
    ],
    "alphawgan_gp": [
        *ALPHAGAN,
        "model.discriminator.dropout=0.0",
        "model.generator.batch_norm=false",
        "model/loss=alphagan_wasserstein",
        "model.gradient_penalty_weight=10",
        "model.fake_weight=0.5",
    ],
}


def checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def assert_identical(a: dict, b: dict, where: str = "") -> None:
    """Every tensor equal (``torch.equal``), every other value equal, recursively."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert set(a) == set(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_identical(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            assert_identical(u, v, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_training_state(a: Path, b: Path) -> None:
    ca, cb = checkpoint(a), checkpoint(b)
    assert ca["epoch"] == cb["epoch"]
    assert_identical(ca["state_dict"], cb["state_dict"], "state_dict")
    assert_identical(ca["optimizer_states"], cb["optimizer_states"], "optimizer_states")
    assert_identical(ca["lr_schedulers"], cb["lr_schedulers"], "lr_schedulers")
    assert ca["ganzoo"]["batches_seen"] == cb["ganzoo"]["batches_seen"]
    assert_identical(ca["ganzoo"]["rng"], cb["ganzoo"]["rng"], "rng")


# --- exact resume ---------------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_resume_mid_epoch_is_bit_identical(family, make_cfg, tmp_path):
    """Interrupted at the end of batch 3 of epoch 2 (an exception in a callback), resumed from
    interrupted.ckpt: the same parameters, optimizer and scheduler states as a straight run.

    The data are ganzoo's in-memory ring (its loader's position is in the checkpoint)."""
    common = [*RING, *FAMILIES[family], "trainer.max_epochs=2"]
    train(make_cfg(*common, output_dir=tmp_path / "straight"))

    crash = [
        "+callbacks.crash._target_=reliability_probes.RaiseAt",
        "+callbacks.crash.epoch=1",
        "+callbacks.crash.batch=2",
    ]
    with pytest.raises(RuntimeError, match="interrupted by the test"):
        train(make_cfg(*common, *crash, output_dir=tmp_path / "crashed"))
    saved = tmp_path / "crashed" / "checkpoints" / "interrupted.ckpt"
    assert checkpoint(saved)["ganzoo"]["batches_seen"] == 6 + 3
    state = checkpoint(saved)["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]
    assert (state["epoch"], state["position"]) == (1, 3)

    train(make_cfg(*common, f"ckpt_path={saved}", output_dir=tmp_path / "resumed"))
    assert_same_training_state(
        tmp_path / "straight" / "checkpoints" / "last.ckpt",
        tmp_path / "resumed" / "checkpoints" / "last.ckpt",
    )


@pytest.mark.parametrize("family", ["gan_simultaneous", "vaegan"])
def test_resume_at_an_epoch_boundary_is_bit_identical(family, make_cfg, tmp_path):
    """The issue's measurement: 2 epochs straight against 1 epoch, then resume last.ckpt for the
    second, with the torchvision-style DataLoader (shuffled from the global generator)."""
    common = [*RING, *FAMILIES[family]]
    train(make_cfg(*common, "trainer.max_epochs=2", output_dir=tmp_path / "straight"))
    train(make_cfg(*common, "trainer.max_epochs=1", output_dir=tmp_path / "first"))
    first = tmp_path / "first" / "checkpoints" / "last.ckpt"
    train(
        make_cfg(*common, "trainer.max_epochs=2", f"ckpt_path={first}", output_dir=tmp_path / "b")
    )
    assert_same_training_state(
        tmp_path / "straight" / "checkpoints" / "last.ckpt",
        tmp_path / "b" / "checkpoints" / "last.ckpt",
    )


# --- preemption -----------------------------------------------------------------------------


def ganzoo(module: str, *args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(TESTS)]),
    }
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_sigterm_finishes_the_batch_exits_143_and_the_printed_command_resumes_exactly(tmp_path):
    """A real SIGTERM during batch 4 of epoch 2 of a ganzoo-train process; the line it prints
    resumes the run, which ends bit-identical to a straight run."""
    common = [*RING, *FAMILIES["vaegan_gate"], "trainer.max_epochs=2"]
    straight = ganzoo("ganzoo.train", *common, f"hydra.run.dir={tmp_path / 's'}", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr

    run = tmp_path / "run"
    kill = ["+callbacks.kill._target_=reliability_probes.SignalAt", "+callbacks.kill.epoch=1"]
    killed = ganzoo(
        "ganzoo.train",
        *common,
        *kill,
        "+callbacks.kill.batch=3",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    assert killed.returncode == 143, killed.stderr
    lines = [ln for ln in killed.stderr.splitlines() if ln.startswith("ganzoo-train: stopped")]
    assert len(lines) == 1, killed.stderr
    saved = run / "checkpoints" / "interrupted.ckpt"
    assert f"checkpoint {saved}" in lines[0] and "by SIGTERM after epoch 2, batch 4" in lines[0]
    command = shlex.split(lines[0].split("resume with: ", 1)[1])
    assert command[0] == "ganzoo-train" and f"ckpt_path={saved}" in command
    assert checkpoint(saved)["ganzoo"]["batches_seen"] == 6 + 4

    # The printed command, as the user would run it (the SignalAt callback fires only at
    # batch 3 of epoch 1, which the resumed run does not see again).
    resumed = ganzoo("ganzoo.train", *command[1:], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_training_state(
        tmp_path / "s" / "checkpoints" / "last.ckpt", run / "checkpoints" / "last.ckpt"
    )


def test_ctrl_c_stops_train_with_an_exception_and_restores_the_handlers(make_cfg, tmp_path):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    cfg = make_cfg(
        *RING,
        *FAMILIES["gan_alternating"],
        "trainer.max_epochs=2",
        "+callbacks.kill._target_=reliability_probes.SignalAt",
        "+callbacks.kill.epoch=0",
        "+callbacks.kill.batch=2",
        "+callbacks.kill.signal=SIGINT",
    )
    with pytest.raises(Preempted) as stop:
        train(cfg)
    assert stop.value.exit_code == 130
    assert stop.value.checkpoint == (tmp_path / "run" / "checkpoints" / "interrupted.ckpt")
    assert "stopped by SIGINT after epoch 1, batch 3" in str(stop.value)
    assert checkpoint(stop.value.checkpoint)["ganzoo"]["batches_seen"] == 3
    assert {s: signal.getsignal(s) for s in before} == before


def test_slurm_requeue_signal_finishes_the_batch_requeues_and_the_job_resumes_by_itself(
    make_cfg, tmp_path, monkeypatch
):
    """Lightning's SLURM auto-requeue, on a batch boundary: SIGUSR1 writes hpc_ckpt_1.ckpt and
    calls scontrol; the requeued job (same directory, no ckpt_path) resumes from it exactly."""
    for key, value in {
        "SLURM_NTASKS": "1",
        "SLURM_JOB_NAME": "ganzoo",
        "SLURM_JOB_ID": "4242",
        "SLURM_NODELIST": "localhost",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
    }.items():
        monkeypatch.setenv(key, value)
    requeued = []
    monkeypatch.setattr("ganzoo.train.requeue_slurm_job", lambda job: requeued.append(job) or 0)
    common = [*RING, *FAMILIES["gan_alternating"], "trainer.max_epochs=2"]
    train(make_cfg(*common, output_dir=tmp_path / "straight"))

    usr1 = [
        "+callbacks.kill._target_=reliability_probes.SignalAt",
        "+callbacks.kill.epoch=1",
        "+callbacks.kill.batch=1",
        "+callbacks.kill.signal=SIGUSR1",
    ]
    with pytest.raises(Preempted, match="SLURM requeue.*job 4242 requeued") as stop:
        train(make_cfg(*common, *usr1, output_dir=tmp_path / "job"))
    assert requeued == ["4242"] and stop.value.exit_code == 128 + signal.SIGUSR1
    hpc = tmp_path / "job" / "hpc_ckpt_1.ckpt"
    assert stop.value.checkpoint == hpc and checkpoint(hpc)["ganzoo"]["batches_seen"] == 6 + 2

    train(make_cfg(*common, output_dir=tmp_path / "job"))  # the requeued job: same directory
    assert_same_training_state(
        tmp_path / "straight" / "checkpoints" / "last.ckpt",
        tmp_path / "job" / "checkpoints" / "last.ckpt",
    )


# --- Lightning's calls around the backward and the step ----------------------------------------


@pytest.mark.parametrize(
    "family", ["gan_alternating", "gan_simultaneous", "vaegan_gate", "alphagan_separate"]
)
def test_direct_calls_train_exactly_as_lightnings_and_hooks_still_run(make_cfg, tmp_path, family):
    """Without a hook around them, ``loss.backward`` and the optimizers' steps are called directly;
    a callback that uses those hooks gets Lightning's calls back, each hook once per backward or
    step. Both runs train bit for bit alike and count the same optimizer steps."""
    from reliability_probes import CountStepHooks, RecordPlainCalls

    common = [*RING, *FAMILIES[family], "trainer.max_epochs=2"]
    RecordPlainCalls.flags = None
    plain = tmp_path / "plain"
    train(
        make_cfg(
            *common,
            "+callbacks.flags._target_=reliability_probes.RecordPlainCalls",
            output_dir=plain,
        )
    )
    assert RecordPlainCalls.flags == (True, True)

    hooked = tmp_path / "hooked"
    train(
        make_cfg(
            *common,
            "+callbacks.count._target_=reliability_probes.CountStepHooks",
            output_dir=hooked,
        )
    )
    counts = CountStepHooks.counts
    assert counts["plain"] == (False, False)
    assert counts["before_backward"] == counts["after_backward"] > 0
    assert counts["before_optimizer_step"] == counts["global_step"] > 0

    a, b = plain / "checkpoints" / "last.ckpt", hooked / "checkpoints" / "last.ckpt"
    assert_same_training_state(a, b)
    assert checkpoint(a)["global_step"] == checkpoint(b)["global_step"] == counts["global_step"]


def test_callbacks_skip_only_the_per_batch_hooks_they_do_not_override():
    import pytorch_lightning as pl

    from ganzoo.train import skip_noop_hooks
    from reliability_probes import CountStepHooks, RaiseAt

    count, raiser = CountStepHooks(), RaiseAt(epoch=0, batch=0)
    skip_noop_hooks([count, raiser])
    assert callable(count.on_before_backward) and callable(count.on_before_optimizer_step)
    assert count.on_train_batch_end is None and count.on_before_zero_grad is None
    assert callable(raiser.on_train_batch_end) and raiser.on_before_backward is None
    assert callable(raiser.on_train_epoch_end)  # not a per-batch hook: left alone
    assert pl.Callback.on_train_batch_end is not None  # the class is untouched


# --- divergence -----------------------------------------------------------------------------


def test_nan_in_one_players_loss_stops_in_process_naming_it(make_cfg, tmp_path):
    cfg = make_cfg(
        *RING,
        *FAMILIES["vaegan"],
        "trainer.max_epochs=2",
        "+callbacks.poison._target_=reliability_probes.PoisonLoss",
        "+callbacks.poison.attribute=d_loss_fn",
        "+callbacks.poison.epoch=0",
        "+callbacks.poison.batch=1",
    )
    with pytest.raises(Diverged, match="epoch 1, batch 2: the discriminator's loss is nan"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints" / "interrupted.ckpt").exists()


def test_divergence_exits_non_zero_and_keeps_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    poison = [
        "+callbacks.poison._target_=reliability_probes.PoisonLoss",
        "+callbacks.poison.attribute=d_loss_fn",
        "+callbacks.poison.epoch=1",
        "+callbacks.poison.batch=2",
    ]
    done = ganzoo(
        "ganzoo.train",
        *RING,
        *FAMILIES["gan_alternating"],
        "trainer.max_epochs=3",
        *poison,
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    assert done.returncode == 3, done.stderr
    last = run / "checkpoints" / "last.ckpt"
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("ganzoo-train: training")]
    assert len(lines) == 1, done.stderr
    assert "diverged at epoch 2, batch 3: the discriminator's loss is nan" in lines[0]
    assert f"Last good checkpoint: {last}" in lines[0]
    saved = checkpoint(last)
    assert saved["epoch"] == 0  # written after epoch 1, never overwritten
    assert all(
        torch.isfinite(t).all() for t in saved["state_dict"].values() if t.is_floating_point()
    )
    assert not (run / "checkpoints" / "interrupted.ckpt").exists()


def test_a_crash_after_a_step_that_made_weights_nan_saves_no_checkpoint(make_cfg, tmp_path):
    """Parameters are checked every 100th batch, but the checkpoint written on an exception is
    checked before it is saved: NaN weights are never saved."""
    crash = [
        "+callbacks.crash._target_=reliability_probes.PoisonParametersAndRaiseAt",
        "+callbacks.crash.epoch=0",
        "+callbacks.crash.batch=2",
    ]
    cfg = make_cfg(*RING, *FAMILIES["gan_alternating"], "trainer.max_epochs=1", *crash)
    with pytest.raises(RuntimeError, match="interrupted by the test"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints" / "interrupted.ckpt").exists()


def test_no_checkpoint_is_written_with_nan_weights(make_cfg, tmp_path):
    """Weights made NaN after the guard's check of an epoch's last batch: the end-of-epoch
    checkpoint is refused by the guard's own check of every save."""
    poison = [
        "+callbacks.poison._target_=reliability_probes.PoisonParametersAndRaiseAt",
        "+callbacks.poison.epoch=1",
        "+callbacks.poison.batch=5",  # the last of 6
        "+callbacks.poison.crash=false",
    ]
    cfg = make_cfg(*RING, *FAMILIES["gan_alternating"], "trainer.max_epochs=2", *poison)
    with pytest.raises(Diverged, match="non-finite parameters in discriminator"):
        train(cfg)
    saved = checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert saved["epoch"] == 0  # epoch 1's checkpoint, never overwritten
    assert all(
        torch.isfinite(t).all() for t in saved["state_dict"].values() if t.is_floating_point()
    )


def test_divergence_guard_can_be_switched_off(make_cfg):
    cfg = make_cfg(
        *RING,
        *FAMILIES["gan_alternating"],
        "trainer.max_epochs=1",
        "callbacks.divergence=null",
        "+callbacks.poison._target_=reliability_probes.PoisonLoss",
        "+callbacks.poison.attribute=g_loss_fn",
        "+callbacks.poison.epoch=0",
        "+callbacks.poison.batch=4",
    )
    train(cfg)  # silently NaN, as asked


# --- evaluation leaves training alone -------------------------------------------------------


def test_evaluation_on_a_cold_cache_trains_exactly_as_without_it(make_cfg, fake_mnist, tmp_path):
    common = [
        "experiment=gan_mnist_mlp",
        f"paths.data_dir={fake_mnist}",
        "data.val_size=64",
        "data.batch_size=32",
        "model.generator.hidden=[16]",
        "model.discriminator.hidden=[16]",
        "trainer.max_epochs=2",
        "+trainer.limit_train_batches=3",
        "+trainer.enable_progress_bar=false",
        "data.num_workers=0",
        "~logger",
    ]
    train(make_cfg(*common, output_dir=tmp_path / "plain"))
    evaluation = [
        "callbacks=evaluation",
        f"paths.cache_dir={tmp_path / 'cold_cache'}",
        "callbacks.evaluation.metrics.parzen.num_samples=100",
        "callbacks.evaluation.metrics.parzen.num_sigma_points=20",
        "callbacks.evaluation.metrics.parzen.num_points=20",
        "callbacks.evaluation.metrics.domain.num_real=64",
        "callbacks.evaluation.metrics.domain.num_generated=64",
        "callbacks.evaluation.metrics.domain.features.epochs=1",
        "~logger",
    ]
    metrics = train(make_cfg(*common, *evaluation, output_dir=tmp_path / "evaluated"))
    assert "val/parzen_ll" in metrics
    a = checkpoint(tmp_path / "plain" / "checkpoints" / "last.ckpt")
    b = checkpoint(tmp_path / "evaluated" / "checkpoints" / "last.ckpt")
    assert_identical(a["state_dict"], b["state_dict"], "state_dict")
    assert_identical(a["optimizer_states"], b["optimizer_states"], "optimizer_states")


# --- checkpoint files -----------------------------------------------------------------------


def test_atomic_checkpoint_io_never_leaves_a_truncated_file(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"a": torch.ones(3)}, path)

    def dies_while_writing(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_while_writing)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"a": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path)["a"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """Bad files and the words their one-line error must hold."""
    root = tmp_path_factory.mktemp("bad")
    from conftest import compose_run

    cfg = compose_run(
        [
            *RING,
            *FAMILIES["gan_alternating"],
            "+trainer.limit_train_batches=2",
            "trainer.max_epochs=1",
        ],
        root / "run",
    )
    train(cfg)
    good = root / "run" / "checkpoints" / "last.ckpt"
    data = good.read_bytes()
    files = {}
    files["missing"] = (root / "nowhere.ckpt", "does not exist")
    (root / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    files["truncated"] = (root / "truncated.ckpt", "truncated or corrupt")
    (root / "notes.txt").write_text("12 monkeys\n")
    files["not_a_checkpoint"] = (root / "notes.txt", "not a PyTorch checkpoint")
    torch.save({"weights": torch.ones(2)}, root / "plain.pt")
    files["not_lightning"] = (root / "plain.pt", "not a Lightning checkpoint")
    raw = torch.load(good, weights_only=False)
    for name, change, words in (
        ("no_ganzoo", lambda c: c.pop("ganzoo"), "not a ganzoo checkpoint"),
        ("unknown_family", lambda c: c["ganzoo"].update(family="DiffusionGAN"), "unknown"),
        ("newer_format", lambda c: c["ganzoo"].update(format=99), "newer than this ganzoo"),
        (
            "unbuildable",
            lambda c: c["ganzoo"]["model"].pop("generator"),
            "cannot rebuild",
        ),
    ):
        ckpt = {**raw, "ganzoo": {**raw["ganzoo"], "model": dict(raw["ganzoo"]["model"])}}
        change(ckpt)
        torch.save(ckpt, root / f"{name}.ckpt")
        files[name] = (root / f"{name}.ckpt", words)
    return files


@pytest.mark.parametrize(
    "kind",
    [
        "missing",
        "truncated",
        "not_a_checkpoint",
        "not_lightning",
        "no_ganzoo",
        "unknown_family",
        "newer_format",
        "unbuildable",
    ],
)
def test_load_checkpoint_names_the_file_and_what_is_wrong(kind, bad_checkpoints):
    path, words = bad_checkpoints[kind]
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert str(path) in message and words in message and "\n" not in message


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("ganzoo.train", [*RING, *FAMILIES["gan_alternating"]]),
        pytest.param("ganzoo.evaluate", [], marks=pytest.mark.slow),
        pytest.param("ganzoo.sample", ["mode=samples"], marks=pytest.mark.slow),
    ],
)
def test_every_entry_point_gives_one_line_for_a_truncated_checkpoint(
    module, args, bad_checkpoints, tmp_path
):
    path, words = bad_checkpoints["truncated"]
    done = ganzoo(module, *args, f"ckpt_path={path}", f"hydra.run.dir={tmp_path}/r", cwd=tmp_path)
    assert done.returncode == 1
    err = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
    assert len(err) == 1, done.stderr
    assert str(path) in err[0] and words in err[0]
    assert "Traceback" not in done.stderr


def test_resuming_a_checkpoint_of_another_family_is_refused(bad_checkpoints, make_cfg):
    path = bad_checkpoints["truncated"][0].parent / "run" / "checkpoints" / "last.ckpt"
    cfg = make_cfg(*RING, *FAMILIES["vaegan"], f"ckpt_path={path}")
    with pytest.raises(ValueError, match="holds a GAN model but this run's model is a VAEGAN"):
        train(cfg)


# --- DDP: two CPU processes (gloo) ------------------------------------------------------------

DDP = [
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=3",
]


@pytest.mark.parametrize(
    "family",
    [
        "vaegan_gate",
        pytest.param("gan_simultaneous", marks=pytest.mark.slow),
        pytest.param("alphagan_separate", marks=pytest.mark.slow),
    ],
)
def test_ddp_trains_every_family_with_per_rank_noise_and_a_loadable_checkpoint(family, tmp_path):
    run = tmp_path / "run"
    noise = [
        "+callbacks.noise._target_=reliability_probes.RecordNoise",
        f"+callbacks.noise.dirpath={run / 'noise'}",
    ]
    done = ganzoo(
        "ganzoo.train",
        *RING,
        *FAMILIES[family],
        *DDP,
        *noise,
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    z = [torch.load(run / "noise" / f"noise_rank{r}.pt") for r in (0, 1)]
    assert not torch.equal(z[0], z[1]), "both ranks drew the same noise"
    last = run / "checkpoints" / "last.ckpt"
    assert len(checkpoint(last)["ganzoo"]["rng"]) == 2  # one random state per rank

    evaluated = ganzoo(
        "ganzoo.evaluate",
        f"ckpt_path={last}",
        f"out={tmp_path / 'eval'}",
        "device=cpu",
        cwd=tmp_path,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert (tmp_path / "eval" / "metrics.json").is_file()


@pytest.mark.slow
def test_ddp_sigterm_resumes_bit_identical(tmp_path):
    """Two CPU ranks, SIGTERM to rank 0 during batch 2 of epoch 2: both ranks stop after the
    batch, the checkpoint holds both ranks' random states, and the resumed run ends as the
    straight one (VAE/GAN with its gate, decided on the ranks' mean losses)."""
    common = [*RING, *FAMILIES["vaegan_gate"], *DDP[:3], "trainer.max_epochs=2"]
    straight = ganzoo("ganzoo.train", *common, f"hydra.run.dir={tmp_path / 's'}", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr[-3000:]
    run = tmp_path / "run"
    kill = ["+callbacks.kill._target_=reliability_probes.SignalAt", "+callbacks.kill.epoch=1"]
    killed = ganzoo(
        "ganzoo.train",
        *common,
        *kill,
        "+callbacks.kill.batch=1",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    assert killed.returncode == 143, killed.stderr[-3000:]
    lines = [ln for ln in killed.stderr.splitlines() if ln.startswith("ganzoo-train: stopped")]
    assert len(lines) == 1, killed.stderr[-3000:]
    command = shlex.split(lines[0].split("resume with: ", 1)[1])
    resumed = ganzoo("ganzoo.train", *command[1:], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_training_state(
        tmp_path / "s" / "checkpoints" / "last.ckpt", run / "checkpoints" / "last.ckpt"
    )
