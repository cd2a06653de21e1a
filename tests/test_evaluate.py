"""``ganzoo-eval`` end to end, the evaluation callback, Stacked MNIST, and the encoder path."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image
from torch import nn

from conftest import REPO, compose_run, quick_overrides
from ganzoo.data.stacked_mnist import StackedMNISTDataModule
from ganzoo.evaluate import data_config, evaluate
from ganzoo.metrics import EvalContext, Reconstruction, run_metrics
from ganzoo.metrics.domain import sha256_file
from ganzoo.models import FAMILIES
from ganzoo.models.base import GenerativeModel
from ganzoo.train import train

#: Small protocols for tiny data (fake MNIST: 192 train, 64 val, 64 test images).
SMALL = [
    "metrics.domain.num_generated=100",
    "metrics.domain.kid_subset_size=32",
    "metrics.parzen.num_samples=100",
    "metrics.parzen.num_sigma_points=32",
    "metrics.reconstruction.num_images=64",
    "metrics.stacked_mnist.num_samples=300",
    "metrics.domain.features.epochs=1",
    "metrics.stacked_mnist.features.epochs=1",
    "batch_size=50",
]
FAKE_MNIST = ["data.val_size=64", "data.batch_size=16"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Evaluation runs many small tensor ops: on a shared CPU one thread avoids OpenMP stalls."""
    torch.set_num_threads(1)


def trained_checkpoint(tmp_path: Path, name: str, *overrides: str) -> Path:
    cfg = compose_run([*overrides, *quick_overrides()], tmp_path / name)
    train(cfg)
    GlobalHydra.instance().clear()
    return tmp_path / name / "checkpoints" / "last.ckpt"


def run_eval(ckpt: Path, out: Path, cache: Path, *overrides: str) -> dict:
    cfg = compose_run(
        [f"ckpt_path={ckpt}", f"out={out}", f"paths.cache_dir={cache}", *overrides], out, "eval"
    )
    try:
        return evaluate(cfg)
    finally:
        GlobalHydra.instance().clear()


@pytest.fixture(scope="module")
def mnist_ckpt(tmp_path_factory, fake_mnist) -> Path:
    tmp = tmp_path_factory.mktemp("mnist_run")
    return trained_checkpoint(
        tmp, "gan", "experiment=gan_mnist_infogan", f"paths.data_dir={fake_mnist}", *FAKE_MNIST
    )


def test_ganzoo_eval_on_a_gan_mnist_checkpoint(mnist_ckpt, tmp_path):
    report = run_eval(mnist_ckpt, tmp_path / "out", tmp_path / "cache", *SMALL)
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["metrics"].keys() == report["metrics"].keys()
    m = saved["metrics"]
    for name in ("fid", "kid", "precision", "recall", "density", "coverage"):
        assert f"{name}_domain" in m, name
    for key in ("classifier_score", "label_histogram", "parzen_ll", "parzen_se"):
        assert key in m, key
    assert {"reconstruction", "mode_statistics", "stacked_mnist"} == set(saved["skipped"])
    assert "no encoder" in saved["skipped"]["reconstruction"]
    fid = m["fid_domain"]
    assert (fid["num_real"], fid["num_generated"], fid["split"], fid["seed"]) == (
        64,
        100,
        "test",
        0,
    )
    weights = Path(fid["features"]["weights"])
    assert weights.parent == tmp_path / "cache" / "domain_classifiers"
    assert fid["features"]["weights_sha256"] == sha256_file(weights)
    assert 0.0 <= m["precision_domain"]["value"] <= 1.0 and m["fid_domain"]["value"] >= 0.0
    assert len(m["label_histogram"]["value"]) == 10
    assert sum(m["label_histogram"]["value"]) == pytest.approx(1.0)
    parzen = m["parzen_ll"]
    assert (parzen["num_real"], parzen["num_generated"], parzen["num_sigma_points"]) == (
        64,
        100,
        32,
    )
    assert parzen["sigmas"] == pytest.approx(torch.logspace(-1, 0, 10).tolist(), rel=1e-5)
    assert min(abs(m["parzen_sigma"]["value"] - s) for s in parzen["sigmas"]) < 1e-5
    assert saved["checkpoint"]["family"] == "GAN" and saved["checkpoint"]["sha256"] == sha256_file(
        mnist_ckpt
    )
    # The picture: the first 64 samples scored, an 8 x 8 grid of 28-pixel digits (2-pixel gaps).
    assert Image.open(tmp_path / "out" / "eval_samples.png").size == (8 * 30 + 2, 8 * 30 + 2)
    # scripts/results_table.py turns reports into docs/results.md rows.
    spec = importlib.util.spec_from_file_location(
        "results_table", REPO / "scripts" / "results_table.py"
    )
    results_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(results_table)
    row = results_table.table([str(tmp_path / "out" / "metrics.json")]).splitlines()[2]
    parzen_cell = f"{parzen['value']:.4g} ± {m['parzen_se']['value']:.2g}"
    assert (
        row.startswith("| gan | GAN | 1 | ")
        and parzen_cell in row
        and row.endswith("| - | - | - |")
    )


def test_the_same_seed_gives_the_same_numbers(mnist_ckpt, tmp_path):
    only_domain = [
        "~metrics.parzen",
        "~metrics.stacked_mnist",
        "~metrics.reconstruction",
        "~metrics.mode_statistics",
    ]
    a = run_eval(mnist_ckpt, tmp_path / "a", tmp_path / "cache", *SMALL, *only_domain)
    b = run_eval(mnist_ckpt, tmp_path / "b", tmp_path / "cache", *SMALL, *only_domain)
    assert {k: v["value"] for k, v in a["metrics"].items()} == {
        k: v["value"] for k, v in b["metrics"].items()
    }
    with pytest.raises(ValueError, match="split='bogus'"):
        run_eval(mnist_ckpt, tmp_path / "c", tmp_path / "cache", *SMALL, "split=bogus")


def test_ganzoo_eval_runs_through_the_hydra_entry_point_on_the_ring(tmp_path):
    ckpt = trained_checkpoint(
        tmp_path, "ring", "experiment=gan_ring", "data.num_train=400", "data.num_val=100"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    out = tmp_path / "eval"
    cmd = [
        sys.executable,
        "-m",
        "ganzoo.evaluate",
        f"ckpt_path={ckpt}",
        f"out={out}",
        f"paths.cache_dir={tmp_path}/c",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "reverse_kl" in proc.stdout and "skipped parzen" in proc.stdout
    m = json.loads((out / "metrics.json").read_text())["metrics"]
    assert set(m) == {"modes", "high_quality", "reverse_kl", "hq_std", "mode_counts"}
    assert m["modes"]["num_generated"] == 2500 and sum(m["mode_counts"]["value"]) <= 2500
    assert (out / ".hydra" / "config.yaml").is_file()
    assert not (tmp_path / "c").exists()  # no feature network was needed
    assert f"Picture: {out / 'eval_samples.png'}" in proc.stdout
    assert (out / "eval_samples.png").stat().st_size > 0
    proc = subprocess.run([*cmd, "picture=false"], env=env, capture_output=True, timeout=300)
    assert proc.returncode == 0 and not (out / "eval_samples.png").exists()  # no stale picture


def test_data_config_follows_the_run_unless_overridden():
    run = {
        "data": {"_target_": "ganzoo.data.MNISTDataModule", "data_dir": "/old", "batch_size": 16}
    }
    cfg = OmegaConf.create({"ckpt_path": "x.ckpt", "data": None, "paths": {"data_dir": None}})
    assert data_config(cfg, run)["data_dir"] == "/old"
    cfg.paths.data_dir = "/new"
    assert data_config(cfg, run) == {**run["data"], "data_dir": "/new"}
    assert run["data"]["data_dir"] == "/old"
    with pytest.raises(ValueError, match="data=<name>"):
        data_config(
            OmegaConf.create({"ckpt_path": "x.ckpt", "data": None, "paths": {"data_dir": None}}),
            None,
        )


def test_a_checkpoint_without_run_config_falls_back_to_the_hydra_record(mnist_ckpt, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = torch.load(mnist_ckpt, weights_only=False)
    data = ckpt["ganzoo"]["run_config"]["data"]
    ckpt["ganzoo"]["run_config"] = None
    torch.save(ckpt, run / "checkpoints" / "last.ckpt")
    with pytest.raises(ValueError, match="no run config"):
        run_eval(run / "checkpoints" / "last.ckpt", tmp_path / "o1", tmp_path / "cache", *SMALL)
    (run / ".hydra").mkdir()
    OmegaConf.save(OmegaConf.create({"data": data}), run / ".hydra" / "config.yaml")
    report = run_eval(
        run / "checkpoints" / "last.ckpt",
        tmp_path / "o2",
        tmp_path / "cache",
        *SMALL,
        "split=val",
        "seed=1",
    )
    assert report["data"]["data_dir"] == data["data_dir"]
    fid, parzen = report["metrics"]["fid_domain"], report["metrics"]["parzen_ll"]
    assert (fid["split"], fid["seed"], fid["num_real"]) == ("val", 1, 64)
    # sigma was chosen on the first 32 validation images: the likelihood is measured on the rest.
    assert (parzen["split"], parzen["first_point"], parzen["num_real"]) == ("val", 32, 32)


# --- families with an encoder ------------------------------------------------------------


class TinyAutoencoder(GenerativeModel):
    """A test-local family with an encoder: E and G linear maps, trained on reconstruction."""

    players = ("autoencoder",)
    has_encoder = True

    def __init__(self, latent_dim: int = 8, shape: tuple[int, ...] = (1, 28, 28)):
        super().__init__(
            latent_dim=latent_dim,
            prior=None,
            optimizer={"autoencoder": functools.partial(torch.optim.Adam, lr=1e-3)},
            lr_scheduler=None,
            num_fixed_samples=4,
        )
        self.save_hyperparameters(logger=False)
        size = int(torch.tensor(shape).prod())
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(size, latent_dim))
        self.generator = nn.Sequential(
            nn.Linear(latent_dim, size), nn.Sigmoid(), nn.Unflatten(1, shape)
        )

    def player_parameters(self, player):
        return self.parameters()

    def encode(self, x):
        return self.encoder(x)

    def training_step(self, batch, batch_idx):
        x = self.inputs(batch)
        opt = self.optimizers()
        self._step(opt, (self.reconstruct(x) - x).abs().mean())


@pytest.fixture
def encoder_ckpt(tmp_path, fake_mnist, monkeypatch) -> Path:
    """A checkpoint of :class:`TinyAutoencoder`, loadable by ``load_checkpoint``."""
    monkeypatch.setitem(FAMILIES, "TinyAutoencoder", __name__)
    cfg = compose_run(
        ["data=mnist", f"paths.data_dir={fake_mnist}", *FAKE_MNIST, "data.num_workers=0"], tmp_path
    )
    GlobalHydra.instance().clear()
    model = TinyAutoencoder()
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    quiet = {"enable_progress_bar": False, "enable_model_summary": False, "logger": False}
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=0,
        enable_checkpointing=False,
        **quiet,
    )
    trainer.fit(model, datamodule=instantiate(cfg.data))
    path = tmp_path / "tiny" / "checkpoints" / "last.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_ganzoo_eval_reports_reconstruction_for_a_family_with_an_encoder(encoder_ckpt, tmp_path):
    report = run_eval(
        encoder_ckpt,
        tmp_path / "out",
        tmp_path / "cache",
        *SMALL,
        "~metrics.parzen",
        "~metrics.domain",
    )
    m = report["metrics"]
    assert report["checkpoint"]["family"] == "TinyAutoencoder"
    for split in ("train", "test"):
        for err in ("l1", "mse", "ssim"):
            assert f"recon_{err}_{split}" in m
        assert m[f"recon_l1_{split}"]["split"] == split
    assert m["recon_l1_train"]["num_real"] == 64 and m["recon_l1_test"]["num_real"] == 64
    assert m["recon_l1_test"]["value"] > 0.0 and -1.0 <= m["recon_ssim_test"]["value"] <= 1.0


def test_reconstruction_of_a_perfect_encoder(fake_mnist, monkeypatch):
    from ganzoo.data import MNISTDataModule

    model = TinyAutoencoder()
    monkeypatch.setattr(model, "reconstruct", lambda x: x)
    ctx = EvalContext(model, MNISTDataModule(fake_mnist, val_size=64, num_workers=0), batch_size=32)
    results, skipped = run_metrics({"reconstruction": Reconstruction(num_images=50)}, ctx)
    assert not skipped
    assert results["recon_l1_test"]["value"] == 0.0 and results["recon_mse_train"]["value"] == 0.0
    assert results["recon_ssim_test"]["value"] == pytest.approx(1.0)
    assert results["recon_l1_train"]["num_real"] == 50


# --- Stacked MNIST -------------------------------------------------------------------------


def test_stacked_mnist_is_deterministic_and_labelled_by_its_digits(fake_mnist):
    def make(seed=0):
        dm = StackedMNISTDataModule(
            fake_mnist, num_train=50, num_val=20, num_test=30, val_size=64, seed=seed, num_workers=0
        )
        dm.setup()
        return dm

    a, b, c = make(), make(), make(seed=1)
    assert (len(a.train_set), len(a.val_set), len(a.test_set)) == (50, 20, 30)
    x, label = a.train_set[7]
    assert x.shape == (3, 28, 28) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert torch.equal(x, b.train_set[7][0]) and label == b.train_set[7][1]
    assert not torch.equal(a.train_set.index, c.train_set.index)
    digits = [a.digits.train_set[int(i)] for i in a.train_set.index[7]]
    assert label == 100 * digits[0][1] + 10 * digits[1][1] + digits[2][1]
    for ch, (img, _) in enumerate(digits):
        assert torch.allclose(x[ch], img[0], atol=1 / 255)
    assert a.test_set.digits.shape[0] == 64  # test triples come from MNIST's test set


def test_ganzoo_eval_counts_stacked_mnist_modes(tmp_path, fake_mnist):
    ckpt = trained_checkpoint(
        tmp_path,
        "stacked",
        "data=stacked_mnist",
        f"paths.data_dir={fake_mnist}",
        "data.num_train=64",
        "data.num_val=64",
        "data.num_test=64",
        "data.val_size=64",
        "data.batch_size=16",
        "model/generator=infogan",
        "model/discriminator=infogan",
    )
    report = run_eval(ckpt, tmp_path / "out", tmp_path / "cache", *SMALL, "~metrics.parzen")
    m = report["metrics"]
    assert m["stacked_modes"]["num_generated"] == 300 and m["stacked_modes"]["num_modes"] == 1000
    assert 1 <= m["stacked_modes"]["value"] <= 300
    assert 0.0 <= m["stacked_kl"]["value"] <= torch.log(torch.tensor(1000.0)).item() + 1e-6
    assert m["fid_domain"]["features"]["applied"].startswith("per channel")
    assert len(m["label_histogram"]["value"]) == 1000


# --- in training -------------------------------------------------------------------------


def test_evaluation_callback_logs_val_metrics_for_monitors(tmp_path, fake_mnist):
    overrides = [
        "experiment=gan_mnist_infogan",
        f"paths.data_dir={fake_mnist}",
        *FAKE_MNIST,
        *quick_overrides(),
        "trainer.max_epochs=2",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "callbacks=evaluation",
        "callbacks.evaluation.metrics.parzen.num_samples=100",
        "callbacks.evaluation.metrics.parzen.num_sigma_points=20",
        "callbacks.evaluation.metrics.parzen.num_points=30",
        "callbacks.evaluation.metrics.domain.num_real=64",
        "callbacks.evaluation.metrics.domain.num_generated=64",
        "callbacks.evaluation.metrics.domain.features.epochs=1",
        "+callbacks.early_stopping._target_=pytorch_lightning.callbacks.EarlyStopping",
        "+callbacks.early_stopping.monitor=val/parzen_ll",
        "+callbacks.early_stopping.mode=max",
        "+callbacks.best._target_=pytorch_lightning.callbacks.ModelCheckpoint",
        "+callbacks.best.monitor=val/fid_domain",
        "+callbacks.best.filename=best",
        "+callbacks.best.dirpath=${paths.output_dir}/checkpoints",
    ]
    cfg = compose_run(overrides, tmp_path / "run")
    metrics = train(cfg)
    GlobalHydra.instance().clear()
    for key in (
        "val/parzen_ll",
        "val/parzen_se",
        "val/fid_domain",
        "val/kid_domain",
        "val/precision_domain",
    ):
        assert key in metrics, sorted(metrics)
    assert "val/recon_l1_val" not in metrics  # the GAN has no encoder
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()
