"""Stacked MNIST (Metz et al. 2017; VEEGAN; PacGAN): three MNIST digits as the RGB channels.

An image is ``(digit_a, digit_b, digit_c)`` stacked as channels, with label ``100 a + 10 b + c``:
1,000 modes. The triples are drawn uniformly, with a seeded generator, from the digits of the
matching MNIST split (train from MNIST's training part, val from its held-out part, test from
MNIST's test set), so the data is the same on every machine for a given seed. The single-digit
data stays available as ``digits`` (an :class:`~ganzoo.data.MNISTDataModule` in [0, 1]): the
evaluation suite trains its per-channel classifier there.

Only the digits (uint8) and the triples' indices are stored; a batch is stacked when it is served.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from ganzoo.data.base import BaseDataModule, check_value_range
from ganzoo.data.images import MNISTDataModule
from ganzoo.data.memory import MemoryDataset, to_value_range


class StackedDigits(MemoryDataset):
    """``(image, label)`` items: image ``i`` stacks ``digits[index[i, c]]`` as channel ``c``.

    Args:
        digits: uint8 ``(M, H, W)`` single digits; labels: their int64 classes ``(M,)``.
        index: int64 ``(N, channels)`` digit indices of each stacked image.
        value_range: ``[0, 1]`` or ``[-1, 1]``.
    """

    def __init__(self, digits: Tensor, labels: Tensor, index: Tensor, value_range):
        self.digits, self.labels, self.index = digits, labels.long(), index.long()
        self.value_range = value_range
        places = 10 ** torch.arange(index.shape[1] - 1, -1, -1, device=index.device)
        self.places = places  # label = sum of digit * 10^(channels - 1 - c)

    def __len__(self) -> int:
        return self.index.shape[0]

    @property
    def device(self) -> torch.device:
        return self.index.device

    def gather(self, index: Tensor) -> tuple[Tensor, Tensor]:
        triples = self.index[index]  # (B, channels)
        images = to_value_range(self.digits[triples], self.value_range)  # (B, channels, H, W)
        return images, (self.labels[triples] * self.places).sum(1)

    def to(self, device) -> StackedDigits:
        if torch.device(device) == self.device:
            return self
        return StackedDigits(
            self.digits.to(device), self.labels.to(device), self.index.to(device), self.value_range
        )


class StackedMNISTDataModule(BaseDataModule):
    """Stacked MNIST of ``num_train`` / ``num_val`` / ``num_test`` images drawn with ``seed``.

    Args:
        data_dir: where MNIST lives (torchvision layout).
        image_size: side of each digit (28, or e.g. 32 for DCGAN networks).
        num_channels: digits per image (3: 1,000 modes).
        value_range: ``[0, 1]`` or ``[-1, 1]``.
        val_size, split_seed: MNIST's own train / validation split (see :class:`MNISTDataModule`).
        in_memory, shuffle_seed: batches stacked on the device in a seeded order (default), or a
            ``DataLoader`` with ``num_workers`` workers (see :class:`~ganzoo.data.BaseDataModule`).
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
        in_memory: bool = True,
        shuffle_seed: int | None = None,
    ):
        super().__init__(
            batch_size=batch_size,
            num_workers=num_workers,
            pin_memory=pin_memory,
            drop_last=drop_last,
            in_memory=in_memory,
            shuffle_seed=shuffle_seed,
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
            in_memory=True,
        )

    def prepare_data(self) -> None:
        self.digits.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        self.digits.setup(stage)
        sets = {}
        for offset, split in enumerate(("train", "val", "test")):
            source = getattr(self.digits, f"{split}_set")
            n = self.sizes[split]
            if n == 0 or source is None or len(source) == 0:
                sets[split] = None
                continue
            generator = torch.Generator().manual_seed(self.seed + offset)
            index = torch.randint(len(source), (n, self.num_channels), generator=generator)
            sets[split] = StackedDigits(source.images[:, 0], source.labels, index, self.value_range)
        self.train_set, self.val_set, self.test_set = sets["train"], sets["val"], sets["test"]
