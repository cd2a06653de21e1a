"""Shared fixtures: composing run configs, tiny datasets in torchvision's layouts, short runs."""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from ganzoo.config import config_dir

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _small_threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real MNIST / Fashion-MNIST copies beside the repository (read-only)."""
    if not (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"real MNIST not found under {SHARED_DATA}")
    return SHARED_DATA


# --- configs ------------------------------------------------------------------------------


def compose_run(
    overrides: Sequence[str], output_dir: Path, config_name: str = "train"
) -> DictConfig:
    """Compose a run config as ``ganzoo-train`` would, with ``paths.output_dir`` at ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # as in the task function ganzoo-train runs
        cfg.paths.output_dir = str(output_dir)
    return cfg


def quick_overrides(batches: int = 2) -> list[str]:
    """Trainer settings for a run of a few steps on CPU, without worker processes."""
    return [
        "trainer.max_epochs=1",
        f"+trainer.limit_train_batches={batches}",
        "+trainer.limit_val_batches=1",
        "+trainer.enable_progress_bar=false",
        "+trainer.enable_model_summary=false",
        "data.num_workers=0",
    ]


@pytest.fixture
def make_cfg(tmp_path) -> Callable[..., DictConfig]:
    def make(*overrides: str, output_dir: Path | None = None) -> DictConfig:
        return compose_run(overrides, output_dir or tmp_path / "run")

    yield make
    GlobalHydra.instance().clear()


# --- tiny datasets in torchvision's layouts ------------------------------------------------


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file (the MNIST format): magic, dims, big-endian uint8 data."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_fake_mnist(
    root: Path, folder: str = "MNIST", n_train: int = 256, n_test: int = 64, seed: int = 0
) -> Path:
    """Random 28x28 digits-shaped data in ``root/<folder>/raw`` (readable by torchvision)."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = (rng.random((n, 28, 28)) < 0.2) * rng.integers(128, 256, (n, 28, 28))
        _write_idx(raw / f"{split}-images-idx3-ubyte", images)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n))
    return root


@pytest.fixture(scope="session")
def fake_mnist(tmp_path_factory) -> Path:
    """A data_dir holding tiny MNIST and Fashion-MNIST (256 train, 64 test images each)."""
    root = tmp_path_factory.mktemp("fake_data")
    write_fake_mnist(root, "MNIST")
    write_fake_mnist(root, "FashionMNIST", seed=1)
    return root


def write_fake_cifar10(root: Path, n_per_batch: int = 20, n_test: int = 20, seed: int = 0) -> Path:
    """CIFAR-10's python pickles with random images in ``root/cifar-10-batches-py``."""
    rng = np.random.default_rng(seed)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else n_per_batch
        batch = {
            "data": rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8),
            "labels": rng.integers(0, 10, n).tolist(),
        }
        with open(base / name, "wb") as f:
            pickle.dump(batch, f)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    return root


def write_fake_celeba(root: Path, n: int = 12, seed: int = 0) -> Path:
    """CelebA's aligned layout with ``n`` random 178x218 JPEGs and its partition/attribute files."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    base = root / "celeba"
    (base / "img_align_celeba").mkdir(parents=True, exist_ok=True)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    for name in names:
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(
            base / "img_align_celeba" / name
        )
    parts = [0] * (n - 4) + [1, 1, 2, 2]
    (base / "list_eval_partition.txt").write_text(
        "".join(f"{m} {p}\n" for m, p in zip(names, parts, strict=True))
    )
    (base / "identity_CelebA.txt").write_text("".join(f"{m} 1\n" for m in names))
    attrs = ["Smiling", "Male"]
    (base / "list_attr_celeba.txt").write_text(
        f"{n}\n{' '.join(attrs)}\n" + "".join(f"{m} 1 -1\n" for m in names)
    )
    (base / "list_bbox_celeba.txt").write_text(
        f"{n}\nimage_id x_1 y_1 width height\n" + "".join(f"{m} 0 0 178 218\n" for m in names)
    )
    (base / "list_landmarks_align_celeba.txt").write_text(
        f"{n}\nlefteye_x lefteye_y\n" + "".join(f"{m} 60 100\n" for m in names)
    )
    return root


def _exists(path, md5=None) -> bool:
    return Path(path).is_file()


@pytest.fixture
def fake_cifar10(tmp_path, monkeypatch) -> Path:
    """A data_dir with tiny CIFAR-10; torchvision's MD5 checks become existence checks."""
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", _exists)
    return write_fake_cifar10(tmp_path / "cifar_data")


@pytest.fixture
def fake_celeba(tmp_path, monkeypatch) -> Path:
    """A data_dir with tiny CelebA; torchvision's MD5 checks become existence checks."""
    monkeypatch.setattr("torchvision.datasets.celeba.check_integrity", _exists)
    return write_fake_celeba(tmp_path / "celeba_data")


class StepWatcher(pl.Callback):
    """Around every optimizer step: which networks' parameters it changed.

    ``changed`` lists ``(player, {moved network names})`` per step; ``networks`` defaults to the
    module's players (pass the network names when a player spans several networks).
    """

    def __init__(self, networks: Sequence[str] | None = None):
        self.networks = networks
        self.changed: list[tuple[str, set[str]]] = []

    def on_train_start(self, trainer, pl_module):
        networks = self.networks or pl_module.players

        def params(net):
            return [t.detach().clone() for t in getattr(pl_module, net).parameters()]

        def moved(before, net):
            current = getattr(pl_module, net).parameters()
            return any(not torch.equal(a, b) for a, b in zip(before, current, strict=True))

        for name, opt in zip(pl_module.players, trainer.optimizers, strict=True):
            snapshot: dict[str, list[torch.Tensor]] = {}

            def pre(optimizer, args, kwargs, snapshot=snapshot):
                snapshot.update({net: params(net) for net in networks})

            def post(optimizer, args, kwargs, name=name, snapshot=snapshot):
                self.changed.append((name, {net for net in networks if moved(snapshot[net], net)}))

            opt.register_step_pre_hook(pre)
            opt.register_step_post_hook(post)


class SameNoise(pl.Callback):
    """Seed the global generator at the start of every training batch, so that a step taken by
    hand with the same seed draws the same noise."""

    def __init__(self, seed: int = 123):
        self.seed = seed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        torch.manual_seed(self.seed)


class FixedBatch(pl.LightningDataModule):
    """One training batch: the tensor ``x``, whole."""

    def __init__(self, x: torch.Tensor):
        super().__init__()
        self.x = x

    def train_dataloader(self):
        return torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(self.x), batch_size=len(self.x)
        )


def count_steps(model) -> dict[str, int]:
    """Attach optimizer-step counters to ``model``'s optimizers (call after they exist)."""
    counts: dict[str, int] = {}
    for name, opt in zip(model.players, model.trainer.optimizers, strict=True):
        counts[name] = 0

        def hook(optimizer, args, kwargs, name=name):
            counts[name] += 1

        opt.register_step_post_hook(hook)
    return counts


def resolved(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


def ganzoo_train(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """``ganzoo-train <args>`` as a user runs it, output to pipes (as under nohup or SLURM),
    without the environment's HYDRA_FULL_ERROR or PYTHONWARNINGS."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run(
        [sys.executable, "-m", "ganzoo.train", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
