"""Image datamodules over torchvision's datasets: MNIST, Fashion-MNIST, CIFAR-10, CelebA, folders.

Every module yields ``(image, label)`` with images in ``value_range`` ([0, 1] or [-1, 1]) and
shaped ``(channels, image_size, image_size)``; ``channels`` and ``image_size`` are what the
networks' configs interpolate.

MNIST, Fashion-MNIST and CIFAR-10 are read into memory by default (``in_memory=True``, see
:mod:`ganzoo.data.memory`): the images pass through the same torchvision geometry once, are kept
as uint8, and become floats per batch on the device. ``in_memory=False`` keeps torchvision's
per-image transforms and a ``DataLoader``, the only path for CelebA and image folders.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from ganzoo.data.base import (
    BaseDataModule,
    check_value_range,
    missing_dataset,
    range_transforms,
    split_indices,
    split_train_val,
)
from ganzoo.data.memory import ImageTensors


class Crop:
    """Crop a fixed box ``(top, left, height, width)`` (Larsen et al.'s CelebA rows 40:188, cols 15:163)."""

    def __init__(self, top: int, left: int, height: int, width: int):
        self.box = (top, left, height, width)

    def __call__(self, img):
        return TF.crop(img, *self.box)


class ImageDataModule(BaseDataModule):
    """Shared transforms, split and missing-data handling; subclasses say how to open a split."""

    #: Human-readable dataset name for messages.
    name: str = "dataset"
    #: Native channels and side length of the stored images.
    native_channels: int = 3
    native_size: int | None = None
    #: Whether the whole dataset can be read into memory (``in_memory=True``).
    fits_in_memory: bool = True

    def __init__(
        self,
        data_dir: str | Path,
        batch_size: int = 64,
        image_size: int | None = None,
        channels: int | None = None,
        shape: Sequence[int] | None = None,
        value_range: Sequence[float] = (0.0, 1.0),
        download: bool = False,
        val_size: int = 10_000,
        split_seed: int | None = None,
        num_workers: int = 2,
        pin_memory: bool = False,
        drop_last: bool = True,
        in_memory: bool = True,
        shuffle_seed: int | None = None,
    ):
        if in_memory and not self.fits_in_memory:
            raise ValueError(
                f"data.in_memory=true is not available for {self.name}: set data.in_memory=false "
                "(torchvision's per-image loading with data.num_workers workers)"
            )
        super().__init__(
            batch_size=batch_size,
            num_workers=num_workers,
            pin_memory=pin_memory,
            drop_last=drop_last,
            in_memory=in_memory,
            shuffle_seed=shuffle_seed,
        )
        self.data_dir = Path(data_dir)
        self.image_size = image_size or self.native_size
        if self.image_size is None:
            raise ValueError(f"data.image_size must be set for {self.name}")
        self.channels = channels or self.native_channels
        if self.channels not in (1, 3):
            raise ValueError(f"data.channels must be 1 or 3, got {self.channels}")
        self.shape = (self.channels, self.image_size, self.image_size)
        self.check_shape(shape)
        self.value_range = check_value_range(value_range)
        self.download = download
        self.val_size = val_size
        self.split_seed = split_seed

    # --- subclasses ---------------------------------------------------------------------------

    def open_split(self, train: bool, transform: Any, download: bool) -> Dataset:
        """The torchvision dataset of the training (``train=True``) or test split."""
        raise NotImplementedError

    def geometry(self) -> list[Any]:
        """PIL-level transforms before ``ToTensor``: resize, then channel conversion."""
        ops: list[Any] = []
        if self.native_size is not None and self.image_size != self.native_size:
            ops += [T.Resize(self.image_size), T.CenterCrop(self.image_size)]
        return ops + self.color()

    def color(self) -> list[Any]:
        if self.channels == self.native_channels:
            return []
        return [T.Grayscale(1)] if self.channels == 1 else [T.Grayscale(3)]

    # --- LightningDataModule ------------------------------------------------------------------

    @property
    def transform(self) -> T.Compose:
        return T.Compose([*self.geometry(), T.ToTensor(), *range_transforms(self.value_range)])

    def native_tensors(self, dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor] | None:
        """uint8 ``(N, C, H, W)`` images and int64 labels read straight from a torchvision
        dataset's arrays, or ``None`` when they need PIL geometry first."""
        return None

    def as_tensors(self, dataset: Dataset) -> ImageTensors:
        """All of ``dataset`` (opened without a transform) as uint8 tensors: through its arrays
        when the stored images already have the wanted geometry, else through the same PIL
        geometry as the per-image path, once (``PILToTensor``: uint8, no rounding)."""
        tensors = self.native_tensors(dataset) if not self.geometry() else None
        if tensors is None:
            dataset.transform = T.Compose([*self.geometry(), T.PILToTensor()])
            images, labels = [], []
            for x, y in DataLoader(dataset, batch_size=1000, num_workers=self.num_workers):
                images.append(x)
                labels.append(torch.as_tensor(y))
            tensors = torch.cat(images), torch.cat(labels)
        return ImageTensors(tensors[0].contiguous(), tensors[1].long(), self.value_range)

    def _open(self, train: bool, download: bool, raw: bool = False) -> Dataset:
        """A split as torchvision opens it: with the per-image transform, or without (``raw``)."""
        try:
            return self.open_split(train, None if raw else self.transform, download)
        except RuntimeError as err:
            if "not found" in str(err).lower() or "corrupted" in str(err).lower():
                raise missing_dataset(self.name, self.data_dir) from err
            raise
        except FileNotFoundError as err:
            raise missing_dataset(self.name, self.data_dir, detail=str(err)) from err

    def prepare_data(self) -> None:
        if self.download:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._open(train=True, download=True)
            self._open(train=False, download=True)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        if not self.in_memory:
            full = self._open(train=True, download=False)
            self.train_set, self.val_set = split_train_val(full, self.val_size, self.split_seed)
            self.test_set = self._open(train=False, download=False)
            return
        full = self.as_tensors(self._open(train=True, download=False, raw=True))
        train, val = split_indices(len(full), self.val_size, self.split_seed)
        self.train_set, self.val_set = (
            ImageTensors(full.images[i], full.labels[i], self.value_range)
            for i in (torch.tensor(train, dtype=torch.long), torch.tensor(val, dtype=torch.long))
        )
        self.test_set = self.as_tensors(self._open(train=False, download=False, raw=True))


class MNISTDataModule(ImageDataModule):
    """MNIST: 60k training images (Goodfellow: first 50k train, last 10k validation), 10k test."""

    name = "MNIST"
    native_channels = 1
    native_size = 28
    dataset_cls = datasets.MNIST

    def open_split(self, train, transform, download):
        return self.dataset_cls(self.data_dir, train=train, transform=transform, download=download)

    def native_tensors(self, dataset):
        return dataset.data.unsqueeze(1), dataset.targets


class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST: the MNIST layout with Zalando's clothing images."""

    name = "FashionMNIST"
    dataset_cls = datasets.FashionMNIST


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10: 50k training images (a validation part held out), 10k test, 32x32 RGB."""

    name = "CIFAR-10"
    native_channels = 3
    native_size = 32

    def __init__(self, data_dir, val_size: int = 5_000, split_seed: int | None = 0, **kwargs):
        super().__init__(data_dir, val_size=val_size, split_seed=split_seed, **kwargs)

    def open_split(self, train, transform, download):
        return datasets.CIFAR10(self.data_dir, train=train, transform=transform, download=download)

    def native_tensors(self, dataset):
        images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2)  # (N, H, W, C) -> NCHW
        return images, torch.as_tensor(dataset.targets)


class CelebADataModule(ImageDataModule):
    """CelebA (aligned 178x218 images) with its official train / valid / test partition.

    Geometry: either a fixed ``crop: [top, left, height, width]`` box (Larsen et al.:
    ``[40, 15, 148, 148]``) or a ``center_crop`` side (Rosca et al.'s seed 002: 140), then a
    resize to ``image_size`` (64 by default).
    """

    name = "CelebA"
    native_channels = 3
    fits_in_memory = False

    def __init__(
        self,
        data_dir,
        image_size: int = 64,
        crop: Sequence[int] | None = None,
        center_crop: int | None = 140,
        **kwargs,
    ):
        if crop is not None and center_crop is not None:
            raise ValueError(
                "set either data.crop or data.center_crop for CelebA, not both (the other to null)"
            )
        if crop is not None and len(crop) != 4:
            raise ValueError(f"data.crop must be [top, left, height, width], got {list(crop)}")
        self.crop, self.center_crop = crop, center_crop
        kwargs.setdefault("val_size", 0)
        kwargs.setdefault("in_memory", False)
        super().__init__(data_dir, image_size=image_size, **kwargs)

    def geometry(self):
        box = (
            [Crop(*self.crop)]
            if self.crop is not None
            else [T.CenterCrop(self.center_crop)]
            if self.center_crop
            else []
        )
        return [*box, T.Resize(self.image_size), T.CenterCrop(self.image_size), *self.color()]

    def open_split(self, train, transform, download, split: str | None = None):
        split = split or ("train" if train else "test")
        # The identity label as target: with no target torchvision yields (image, None), which
        # the default collate function cannot batch.
        return datasets.CelebA(
            self.data_dir,
            split=split,
            target_type="identity",
            transform=transform,
            download=download,
        )

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        # The official partition has its own validation split.
        open_ = self.open_split
        try:
            self.train_set = open_(True, self.transform, False, split="train")
            self.val_set = open_(True, self.transform, False, split="valid")
            self.test_set = open_(False, self.transform, False, split="test")
        except RuntimeError as err:
            raise missing_dataset(self.name, self.data_dir) from err


def _to_rgb(img):
    return img.convert("RGB")


class ImageFolderDataModule(ImageDataModule):
    """Any folder of images in torchvision's ``ImageFolder`` layout (``root/<class>/<image>``).

    There is no test split: ``val_size`` images are held out at random with ``split_seed``
    and serve as validation and test data.
    """

    name = "image folder"
    fits_in_memory = False

    def __init__(
        self,
        data_dir,
        image_size: int = 64,
        channels: int = 3,
        val_size: int = 0,
        split_seed: int | None = 0,
        in_memory: bool = False,
        **kwargs,
    ):
        super().__init__(
            data_dir,
            image_size=image_size,
            channels=channels,
            in_memory=in_memory,
            val_size=val_size,
            split_seed=split_seed,
            **kwargs,
        )

    def geometry(self):
        gray = [T.Grayscale(1)] if self.channels == 1 else [T.Lambda(_to_rgb)]
        return [*gray, T.Resize(self.image_size), T.CenterCrop(self.image_size)]

    def open_split(self, train, transform, download):
        if download:
            raise ValueError(
                "data.download is not available for an image folder: put the images under data.data_dir"
            )
        if not self.data_dir.is_dir():
            raise missing_dataset(self.name, self.data_dir, detail="no such directory")
        return datasets.ImageFolder(self.data_dir, transform=transform)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        full = self._open(train=True, download=False)
        self.train_set, self.val_set = split_train_val(full, self.val_size, self.split_seed)
        self.test_set = self.val_set
