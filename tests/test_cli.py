"""``ganzoo-train`` as a user runs it: run directories, sweeps, and errors that say what to do."""

from __future__ import annotations

import pytest

from conftest import ganzoo_train
from ganzoo.train import objective

TINY_RING = [
    "experiment=gan_ring",
    "data.num_train=200",
    "data.num_val=50",
    "trainer.max_epochs=1",
    "+trainer.enable_progress_bar=false",
    "callbacks.mode_coverage.num_samples=100",
]


def test_run_dir_is_honoured_and_holds_checkpoint_logs_and_samples(tmp_path):
    run = tmp_path / "my_run"
    done = ganzoo_train(*TINY_RING, f"hydra.run.dir={run}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "samples" / "epoch_0001.png").is_file()
    assert (run / ".hydra" / "config.yaml").is_file()
    assert "val/modes" in done.stdout and "tensorboard --logdir" in done.stdout


def test_multirun_gives_every_job_its_own_directory(tmp_path):
    sweep = tmp_path / "sweep"
    done = ganzoo_train("-m", *TINY_RING, "seed=0,1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for job in ("0", "1"):
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["model=nosuchfamily"], "Could not find 'model/nosuchfamily'"),
        (["data=nosuchdata"], "Could not find 'data/nosuchdata'"),
        (["data=mnist", "paths.data_dir=NOWHERE"], "data.download=true"),
        (
            [
                "data=mnist",
                "paths.data_dir=FAKE",
                "data.val_size=64",
                "model/generator=dcgan",
                "model/discriminator=dcgan",
                "data.image_size=30",
            ],
            "data.image_size=30 is not an image size",
        ),
        (
            ["experiment=gan_ring", "model/lr_scheduler=linear_decay"],
            "model.lr_scheduler.all.total_iters has no value (???): set it",
        ),
    ],
)
def test_bad_input_fails_with_a_clear_message(args, expected, tmp_path, fake_mnist):
    args = [
        a.replace("NOWHERE", str(tmp_path / "nowhere")).replace("FAKE", str(fake_mnist))
        for a in args
    ]
    done = ganzoo_train(*args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert done.returncode != 0
    assert expected in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_objective_returns_the_named_metric():
    from omegaconf import OmegaConf

    assert objective(OmegaConf.create({"optimized_metric": "val/modes"}), {"val/modes": 7.0}) == 7.0
    assert objective(OmegaConf.create({"optimized_metric": None}), {"val/modes": 7.0}) is None
    with pytest.raises(KeyError, match="val/fid"):
        objective(OmegaConf.create({"optimized_metric": "val/fid"}), {"val/modes": 7.0})


@pytest.mark.parametrize(("nvml_loads", "kept"), [(False, False), (True, True)])
def test_lightnings_nvml_check_is_dropped_only_where_nvml_cannot_load(
    nvml_loads, kept, monkeypatch
):
    import ganzoo.train

    def cdll(name):
        if not nvml_loads:
            raise OSError(f"{name}: cannot open shared object file")
        return object()

    monkeypatch.setattr(ganzoo.train.sys, "platform", "linux")
    monkeypatch.setattr(ganzoo.train.ctypes, "CDLL", cdll)
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    ganzoo.train.no_nvml_retries()
    assert ("PYTORCH_NVML_BASED_CUDA_CHECK" in ganzoo.train.os.environ) == kept
