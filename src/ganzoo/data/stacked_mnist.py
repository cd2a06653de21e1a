"""Stacked MNIST (Metz et al. 2017; VEEGAN; PacGAN): three MNIST digits as the RGB channels.

An image is ``(digit_a, digit_b, digit_c)`` stacked as channels, with label ``100 a + 10 b + c``:
1,000 modes. The triples are drawn uniformly, with a seeded generator, from the digits of the
matching MNIST split (train from MNIST's training part, val from its held-out part, test from
MNIST's test set), so the data is the same on every machine for a given seed. The single-digit
data stays available as ``digits`` (an :class:`~ganzoo.data.MNISTDataModule` in [0, 1]): the
evaluation suite trains its per-channel classifier there.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ganzoo.data.base import BaseDataModule, ToRange, check_value_range
from ganzoo.data.images import MNISTDataModule


class StackedDigits(Dataset):
    """``(image, label)`` items: image ``i`` stacks ``digits[index[i, c]]`` as channel ``c``."""

    def __init__(self, digits: Tensor, labels: Tensor, index: Tensor, to_range: ToRange):
        self.digits, self.labels, self.index, self.to_range = digits, labels, index, to_range

    def __len__(self) -> int:
        return self.index.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        idx = self.index[i]
        image = self.digits[idx].float().div(255.0)  # (channels, H, W) in [0, 1]
        label = 0
        for digit in self.labels[idx].tolist():
            label = 10 * label + digit
        return self.to_range(image), label


@torch.no_grad()
def _digit_tensors(dataset: Dataset) -> tuple[Tensor, Tensor]:
    """All items of a single-digit split as uint8 ``(N, H, W)`` images and int64 labels."""
    xs, ys = [], []
    for x, y in DataLoader(dataset, batch_size=2000, num_workers=0):
        xs.append(x[:, 0].mul(255.0).round().to(torch.uint8))
        ys.append(y.long())
    return torch.cat(xs), torch.cat(ys)


class StackedMNISTDataModule(BaseDataModule):
    """Stacked MNIST of ``num_train`` / ``num_val`` / ``num_test`` images drawn with ``seed``.

    Args:
        data_dir: where MNIST lives (torchvision layout).
        image_size: side of each digit (28, or e.g. 32 for DCGAN networks).
        num_channels: digits per image (3: 1,000 modes).
        value_range: ``[0, 1]`` or ``[-1, 1]``.
        val_size, split_seed: MNIST's own train / validation split (see :class:`MNISTDataModule`).
    """

    name = "StackedMNIST"

    def __init__(
        self,
        data_dir: str | Path,
        batch_size: int = 64,
        image_size: int = 28,
        num_channels: int = 3,
        num_train: int = 100_000,
        num_val: int = 10_000,
        num_test: int = 10_000,
        seed: int = 0,
        value_range: Sequence[float] = (0.0, 1.0),
        val_size: int = 10_000,
        split_seed: int | None = None,
        download: bool = False,
        channels: int | None = None,
        shape: Sequence[int] | None = None,
        num_workers: int = 2,
        pin_memory: bool = False,
        drop_last: bool = True,
    ):
        super().__init__(
            batch_size=batch_size,
            num_workers=num_workers,
            pin_memory=pin_memory,
            drop_last=drop_last,
        )
        if channels is not None and channels != num_channels:
            raise ValueError(
                f"data.channels={channels} must equal data.num_channels={num_channels} "
                "for Stacked MNIST"
            )
        self.num_channels = num_channels
        self.shape = (num_channels, image_size, image_size)
        self.check_shape(shape)
        self.value_range = check_value_range(value_range)
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.seed = seed
        self.digits = MNISTDataModule(
            data_dir,
            batch_size=batch_size,
            image_size=image_size,
            channels=1,
            value_range=(0.0, 1.0),
            download=download,
            val_size=val_size,
            split_seed=split_seed,
            num_workers=0,
        )

    def prepare_data(self) -> None:
        self.digits.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        self.digits.setup(stage)
        to_range = ToRange(*self.value_range)
        sets = {}
        for offset, split in enumerate(("train", "val", "test")):
            source = getattr(self.digits, f"{split}_set")
            n = self.sizes[split]
            if n == 0 or source is None or len(source) == 0:
                sets[split] = None
                continue
            images, labels = _digit_tensors(source)
            generator = torch.Generator().manual_seed(self.seed + offset)
            index = torch.randint(len(images), (n, self.num_channels), generator=generator)
            sets[split] = StackedDigits(images, labels, index, to_range)
        self.train_set, self.val_set, self.test_set = sets["train"], sets["val"], sets["test"]
