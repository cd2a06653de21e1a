"""Pieces every datamodule shares: value ranges, splits, loaders, and the missing-data error."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset, random_split
from torchvision import transforms as T

from ganzoo.data.memory import InMemoryBatches, MemoryDataset


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


def check_value_range(value_range: Sequence[float]) -> tuple[float, float]:
    low, high = (float(v) for v in value_range)
    if (low, high) not in ((0.0, 1.0), (-1.0, 1.0)):
        raise ValueError(f"data.value_range must be [0, 1] or [-1, 1], got {list(value_range)}")
    return low, high


def range_transforms(value_range: Sequence[float]) -> list[T.Normalize]:
    """After ``ToTensor`` (which gives [0, 1]): nothing, or ``Normalize(0.5, 0.5)`` for [-1, 1]."""
    return [T.Normalize(0.5, 0.5)] if tuple(value_range) == (-1.0, 1.0) else []


def split_indices(n: int, val_size: int, split_seed: int | None) -> tuple[list[int], list[int]]:
    """Indices of the training and held-out parts of ``n`` items, each in increasing order.

    ``split_seed=None``: the last ``val_size`` items are held out (Goodfellow's 50k/10k MNIST
    split); else ``torch.utils.data.random_split`` with a generator seeded with ``split_seed``.
    """
    if not 0 <= val_size < n:
        raise ValueError(
            f"data.val_size={val_size} must be in [0, {n}) for a training set of {n} items"
        )
    if split_seed is None or val_size == 0:
        return list(range(n - val_size)), list(range(n - val_size, n))
    generator = torch.Generator().manual_seed(split_seed)
    train, val = random_split(range(n), [n - val_size, val_size], generator=generator)
    return sorted(train.indices), sorted(val.indices)


def split_train_val(
    dataset: Dataset, val_size: int, split_seed: int | None
) -> tuple[Subset, Subset]:
    """``dataset`` split by :func:`split_indices` into training and held-out subsets."""
    train, val = split_indices(len(dataset), val_size, split_seed)
    return Subset(dataset, train), Subset(dataset, val)


class BaseDataModule(pl.LightningDataModule):
    """Loaders over ``train_set`` / ``val_set`` / ``test_set``, which subclasses create in ``setup``.

    With ``in_memory`` the sets are :class:`~ganzoo.data.memory.MemoryDataset`s and the loaders
    :class:`~ganzoo.data.memory.InMemoryBatches` on the model's device, each rank its own shard,
    the training order seeded with ``shuffle_seed``; else torch
    ``DataLoader``s over the sets with ``num_workers`` worker processes.
    """

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
        in_memory: bool = False,
        shuffle_seed: int | None = None,
    ):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.drop_last = drop_last
        self.in_memory = in_memory
        self.shuffle_seed = shuffle_seed
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self._marginals: Tensor | None = None
        self._on_device: dict[tuple[str, str], MemoryDataset] = {}

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        """Lightning's transfer, except that a batch of tensors already on ``device`` (every batch
        of the in-memory path) is returned as it is, without walking the collection."""
        items = batch if isinstance(batch, (tuple, list)) else (batch,)
        if all(isinstance(t, Tensor) and t.device == device for t in items):
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def _device(self) -> torch.device:
        """The model's device (where the trainer puts it); CPU without a trainer."""
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _loader(self, split: str, shuffle: bool, drop_last: bool) -> DataLoader | InMemoryBatches:
        dataset = getattr(self, f"{split}_set")
        if dataset is None:
            raise RuntimeError(
                f"{type(self).__name__}.setup() must run before its loaders are used"
            )
        if self.in_memory and isinstance(dataset, MemoryDataset):
            device = self._device()
            key = (split, str(device))
            if key not in self._on_device:
                self._on_device[key] = dataset.to(device)
            trainer = self.trainer
            return InMemoryBatches(
                self._on_device[key],
                self.batch_size,
                seed=self.shuffle_seed,
                shuffle=shuffle,
                drop_last=drop_last,
                rank=trainer.global_rank if trainer is not None else 0,
                world_size=trainer.world_size if trainer is not None else 1,
                current_epoch=(lambda: trainer.current_epoch) if trainer is not None else None,
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

    def train_dataloader(self) -> DataLoader | InMemoryBatches:
        return self._loader("train", shuffle=True, drop_last=self.drop_last)

    def val_dataloader(self) -> DataLoader | InMemoryBatches:
        return self._loader("val", shuffle=False, drop_last=False)

    def test_dataloader(self) -> DataLoader | InMemoryBatches:
        return self._loader("test", shuffle=False, drop_last=False)

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
            if isinstance(self.train_set, MemoryDataset):
                batches = InMemoryBatches(
                    self.train_set, 1000, seed=0, shuffle=False, drop_last=False
                )
            else:
                batches = DataLoader(self.train_set, batch_size=1000, num_workers=self.num_workers)
            total, count = None, 0
            for batch in batches:
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                s = x.double().sum(0)
                total = s if total is None else total + s
                count += x.shape[0]
            self._marginals = (total / count).float()
        return self._marginals
