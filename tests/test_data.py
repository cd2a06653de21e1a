"""Datamodules: mixtures, real MNIST, the torchvision layouts of CIFAR-10 / CelebA / folders."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image
from torch.testing import assert_close

from ganzoo.data import (
    CelebADataModule,
    CIFAR10DataModule,
    DatasetMissingError,
    FashionMNISTDataModule,
    GridDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
    RingDataModule,
)
from ganzoo.data.toy import grid_modes, ring_modes


def test_ring_has_eight_distinct_modes_on_the_unit_circle():
    modes = ring_modes()
    assert modes.shape == (8, 2)
    assert_close(modes.norm(dim=1), torch.ones(8))
    assert torch.cdist(modes, modes).add(torch.eye(8)).min() > 0.7  # no duplicated endpoint
    assert_close(modes[2], torch.tensor([0.0, 1.0]), atol=1e-6, rtol=0)


def test_grid_modes():
    modes = grid_modes()
    assert modes.shape == (25, 2)
    assert sorted(set(modes[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]


@pytest.mark.parametrize(
    ("cls", "n_modes", "std"), [(RingDataModule, 8, 0.01), (GridDataModule, 25, 0.05)]
)
def test_mixture_samples_sit_on_their_modes_and_are_reproducible(cls, n_modes, std):
    a, b = cls(num_train=5000, seed=3), cls(num_train=5000, seed=3)
    a.setup(), b.setup()
    x = a.train_set.tensors[0]
    assert_close(x, b.train_set.tensors[0])
    d = torch.cdist(x, a.modes).min(dim=1).values
    assert (d < 5 * std).all()
    counts = torch.bincount(torch.cdist(x, a.modes).argmin(dim=1), minlength=n_modes)
    assert (counts > 0).all()
    assert a.std == std


def test_real_mnist_loads_with_goodfellows_split(shared_data):
    dm = MNISTDataModule(shared_data, num_workers=0)
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (50_000, 10_000, 10_000)
    per_image = MNISTDataModule(shared_data, num_workers=0, in_memory=False)
    per_image.setup("fit")
    assert list(per_image.val_set.indices[:2]) == [50_000, 50_001]
    assert torch.equal(dm.val_set[0][0], per_image.val_set[0][0])  # in memory: the same items
    x, y = dm.train_set[0]
    assert x.shape == (1, 28, 28) and 0.0 <= x.min() and x.max() <= 1.0
    assert y == 5  # the first MNIST training digit


def test_real_fashion_mnist_in_minus_one_one(shared_data):
    dm = FashionMNISTDataModule(
        shared_data, value_range=(-1, 1), val_size=1000, split_seed=0, num_workers=0
    )
    dm.setup("fit")
    x, _ = dm.train_set[0]
    assert x.min() >= -1.0 and x.max() <= 1.0 and x.min() < 0
    assert len(dm.val_set) == 1000


def test_mnist_resized_to_rgb_32(fake_mnist):
    dm = MNISTDataModule(fake_mnist, image_size=32, channels=3, val_size=16, num_workers=0)
    dm.setup()
    assert dm.train_set[0][0].shape == (3, 32, 32)
    assert dm.shape == (3, 32, 32)


def test_cifar10_from_torchvision_layout(fake_cifar10):
    dm = CIFAR10DataModule(fake_cifar10, val_size=10, num_workers=0, value_range=(-1, 1))
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (90, 10, 20)
    assert dm.train_set[0][0].shape == (3, 32, 32)


@pytest.mark.parametrize(("crop", "center"), [([40, 15, 148, 148], None), (None, 140)])
def test_celeba_crops_and_partitions(fake_celeba, crop, center):
    dm = CelebADataModule(fake_celeba, crop=crop, center_crop=center, num_workers=0)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (8, 2, 2)
    assert dm.train_set[0][0].shape == (3, 64, 64)


def test_celeba_needs_one_crop(tmp_path):
    with pytest.raises(ValueError, match="data.crop or data.center_crop"):
        CelebADataModule(tmp_path, crop=[0, 0, 10, 10], center_crop=140)


def test_image_folder(tmp_path):
    for i in range(6):
        (tmp_path / "imgs" / "a").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 30), color=(i * 40, 0, 0)).save(tmp_path / "imgs" / "a" / f"{i}.png")
    dm = ImageFolderDataModule(
        tmp_path / "imgs", image_size=16, channels=1, val_size=2, num_workers=0
    )
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set)) == (4, 2)
    assert dm.train_set[0][0].shape == (1, 16, 16)


@pytest.mark.parametrize(
    "make",
    [
        lambda root: MNISTDataModule(root, num_workers=0),
        lambda root: CIFAR10DataModule(root, num_workers=0),
        lambda root: CelebADataModule(root, num_workers=0),
        lambda root: ImageFolderDataModule(root / "nowhere", num_workers=0),
    ],
)
def test_missing_dataset_names_the_directory_and_the_ways_out(make, tmp_path):
    with pytest.raises(DatasetMissingError) as err:
        make(tmp_path).setup("fit")
    msg = str(err.value)
    assert str(tmp_path) in msg and "data.download=true" in msg and "paths.data_dir" in msg


def test_pixel_marginals_are_the_training_mean(fake_mnist):
    dm = MNISTDataModule(fake_mnist, val_size=56, num_workers=0)
    dm.setup()
    want = torch.stack([dm.train_set[i][0] for i in range(len(dm.train_set))]).mean(0)
    assert_close(dm.pixel_marginals(), want)


def test_bad_value_range_and_shape():
    with pytest.raises(ValueError, match="data.value_range"):
        MNISTDataModule("x", value_range=(0, 255))
    with pytest.raises(ValueError, match="data.shape"):
        MNISTDataModule("x", shape=(3, 28, 28))
    with pytest.raises(ValueError, match="data.value_range must be null"):
        RingDataModule(value_range=(0, 1))
    assert math.isclose(RingDataModule().std, 0.01)
