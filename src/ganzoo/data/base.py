"""Pieces every datamodule shares: value ranges, splits, loaders, and the missing-data error."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset


class DatasetMissingError(FileNotFoundError):
    """A dataset is absent or incomplete where the config says it is."""


def missing_dataset(name: str, root: str | Path, detail: str = "") -> DatasetMissingError:
    """The error that says where ganzoo looked and the two ways out."""
    extra = f" ({detail})" if detail else ""
    return DatasetMissingError(
        f"{name} was not found, or is incomplete, under {Path(root).resolve()}{extra}. "
        f"Either download it there with data.download=true, or point paths.data_dir=<dir> "
        f"(or the GANZOO_DATA_DIR environment variable) at a directory that holds it."
    )


class ToRange:
    """Map a tensor in [0, 1] to ``[low, high]``."""

    def __init__(self, low: float, high: float):
        self.low, self.high = low, high

    def __call__(self, x: Tensor) -> Tensor:
        return x if (self.low, self.high) == (0.0, 1.0) else x * (self.high - self.low) + self.low


def check_value_range(value_range: Sequence[float]) -> tuple[float, float]:
    low, high = (float(v) for v in value_range)
    if (low, high) not in ((0.0, 1.0), (-1.0, 1.0)):
        raise ValueError(f"data.value_range must be [0, 1] or [-1, 1], got {list(value_range)}")
    return low, high


def split_train_val(
    dataset: Dataset, val_size: int, split_seed: int | None
) -> tuple[Subset, Subset]:
    """Hold out ``val_size`` items: the last ones (Goodfellow's 50k/10k MNIST split) when
    ``split_seed`` is None, else a random subset drawn with that seed."""
    n = len(dataset)
    if not 0 <= val_size < n:
        raise ValueError(
            f"data.val_size={val_size} must be in [0, {n}) for a training set of {n} items"
        )
    if split_seed is None:
        idx = torch.arange(n)
    else:
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    train_idx, val_idx = idx[: n - val_size], idx[n - val_size :]
    if split_seed is not None:
        train_idx, val_idx = train_idx.sort().values, val_idx.sort().values
    return Subset(dataset, train_idx.tolist()), Subset(dataset, val_idx.tolist())


class BaseDataModule(pl.LightningDataModule):
    """Loaders over ``train_set`` / ``val_set`` / ``test_set``, which subclasses create in ``setup``."""

    #: Shape of one sample, e.g. ``(1, 28, 28)`` or ``(2,)``.
    shape: tuple[int, ...]
    #: The range sample values live in, ``None`` for unbounded data (2D mixtures).
    value_range: tuple[float, float] | None

    def __init__(
        self,
        batch_size: int,
        num_workers: int = 0,
        pin_memory: bool = False,
        drop_last: bool = True,
    ):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.drop_last = drop_last
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self._marginals: Tensor | None = None

    def _loader(self, dataset: Dataset | None, shuffle: bool, drop_last: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(
                f"{type(self).__name__}.setup() must run before its loaders are used"
            )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            drop_last=drop_last,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True, drop_last=self.drop_last)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False, drop_last=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False, drop_last=False)

    def check_shape(self, declared: Sequence[int] | None) -> None:
        """``data.shape`` in a config is what networks interpolate; it must be the real one."""
        if declared is not None and tuple(declared) != tuple(self.shape):
            raise ValueError(
                f"data.shape={list(declared)} but {type(self).__name__} yields samples of shape "
                f"{list(self.shape)}: fix data.shape (or data.channels / data.image_size)"
            )

    @torch.no_grad()
    def pixel_marginals(self) -> Tensor:
        """Per-pixel mean of the training split, shaped like one sample (cached)."""
        if self._marginals is None:
            if self.train_set is None:
                self.setup("fit")
            total, count = None, 0
            for batch in DataLoader(self.train_set, batch_size=1000, num_workers=self.num_workers):
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                s = x.double().sum(0)
                total = s if total is None else total + s
                count += x.shape[0]
            self._marginals = (total / count).float()
        return self._marginals
