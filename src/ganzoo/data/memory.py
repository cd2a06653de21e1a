"""The in-memory data path: a whole dataset in a few tensors on the model's device, served by index.

Datasets that fit in memory (2D mixtures, MNIST, Fashion-MNIST, Stacked MNIST, CIFAR-10: at most
a few hundred MB as uint8) are read once. Images stay uint8 and become floats in the data's value
range one batch at a time, on the device, with the same arithmetic as torchvision's ``ToTensor``
and ``Normalize`` (so both paths give the same values). No worker processes, no per-image Python.

:class:`InMemoryBatches` is what ``train_dataloader()`` returns then: an
iterable of ``(x, y)`` batches with ``__len__`` and ``state_dict`` / ``load_state_dict``, which
Lightning's fit loop saves in every checkpoint and restores on resume (stateful iterables of its
``CombinedLoader``), so a run resumed from a checkpoint written after batch ``b`` of epoch ``e``
continues with batch ``b + 1`` of the same order.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset


def to_value_range(images: Tensor, value_range: Sequence[float] | None) -> Tensor:
    """uint8 images ``(..., C, H, W)`` to floats in ``value_range`` ([0, 1] or [-1, 1]).

    Bit for bit what ``T.ToTensor()`` then ``T.Normalize(0.5, 0.5)`` (for [-1, 1]) compute, with
    scalar operands so that nothing is copied to the device per batch.
    """
    x = images.float().div_(255.0)
    if value_range is not None and tuple(float(v) for v in value_range) == (-1.0, 1.0):
        x = x.sub_(0.5).div_(0.5)
    return x


class MemoryDataset(Dataset):
    """A dataset held in tensors that serves a whole batch of indices at once (:meth:`gather`).

    It is also an ordinary map-style ``Dataset`` (``dataset[i]`` is one ``(x, y)`` item, ``y`` an
    int), which is what the evaluation suite and the callbacks read.
    """

    def __len__(self) -> int:
        raise NotImplementedError

    def gather(self, index: Tensor) -> tuple[Tensor, ...]:
        """The batch of items ``index`` (a 1-D int64 tensor on the data's device)."""
        raise NotImplementedError

    def to(self, device: torch.device | str) -> MemoryDataset:
        """A copy on ``device`` (``self`` when already there)."""
        raise NotImplementedError

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        first, *rest = self.gather(torch.tensor([i % len(self)], device=self.device))
        return (first[0], *(int(r[0]) for r in rest))

    @property
    def device(self) -> torch.device:
        raise NotImplementedError


class ImageTensors(MemoryDataset):
    """uint8 images ``(N, C, H, W)`` and int64 labels ``(N,)``; items in ``value_range``."""

    def __init__(self, images: Tensor, labels: Tensor, value_range: Sequence[float] | None):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise TypeError(
                f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        self.images, self.labels, self.value_range = images, labels.long(), value_range

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def device(self) -> torch.device:
        return self.images.device

    def gather(self, index: Tensor) -> tuple[Tensor, Tensor]:
        return to_value_range(self.images[index], self.value_range), self.labels[index]

    def to(self, device) -> ImageTensors:
        if torch.device(device) == self.device:
            return self
        return ImageTensors(self.images.to(device), self.labels.to(device), self.value_range)


class PointTensors(MemoryDataset):
    """Float points ``(N, D)``; items are 1-tuples ``(x,)`` as from a ``TensorDataset``."""

    def __init__(self, points: Tensor):
        self.points = points

    @property
    def tensors(self) -> tuple[Tensor]:
        """As ``TensorDataset.tensors``."""
        return (self.points,)

    def __len__(self) -> int:
        return self.points.shape[0]

    @property
    def device(self) -> torch.device:
        return self.points.device

    def gather(self, index: Tensor) -> tuple[Tensor]:
        return (self.points[index],)

    def __getitem__(self, i: int) -> tuple[Tensor]:
        return (self.points[i],)

    def to(self, device) -> PointTensors:
        return self if torch.device(device) == self.device else PointTensors(self.points.to(device))


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s order: both numbers mixed (NumPy's ``SeedSequence``), so that
    runs with neighbouring seeds do not share orders shifted by one epoch."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0])


class InMemoryBatches:
    """Batches of a :class:`MemoryDataset`, by index, in a seeded order per epoch.

    The order of epoch ``e`` is ``torch.randperm(n, generator=Generator().manual_seed(
    epoch_seed(seed, e)))`` (independent of the global RNG; ``shuffle=False``: ``0..n-1``). Under
    DDP, rank ``r`` of ``w`` takes ``order[r::w]`` after the order is padded with its own start to
    a multiple of ``w``, as ``DistributedSampler`` does: disjoint shards of equal length that
    cover the data.

    Args:
        dataset: the data, already on the device batches should live on.
        batch_size: items per batch (per rank).
        seed: seed of the orders (``None``: one drawn from the global RNG, kept in the state).
        shuffle: a new order every epoch (training) or the data's own order (evaluation).
        drop_last: drop the last, short batch of every epoch.
        rank, world_size: this process's shard.
        current_epoch: returns the trainer's epoch (``trainer.current_epoch``); without it epochs
            are counted here, one per pass.
    """

    def __init__(
        self,
        dataset: MemoryDataset,
        batch_size: int,
        *,
        seed: int | None = None,
        shuffle: bool = True,
        drop_last: bool = True,
        rank: int = 0,
        world_size: int = 1,
        current_epoch: Callable[[], int] | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.dataset, self.batch_size = dataset, batch_size
        self.seed = int(torch.randint(2**62, ()).item()) if seed is None else int(seed)
        self.shuffle, self.drop_last = shuffle, drop_last
        self.rank, self.world_size = rank, world_size
        self.current_epoch = current_epoch
        #: The epoch of the pass in progress (or last finished) and the batches it has yielded.
        self.epoch, self.position = 0, 0
        self._started = False
        self._resume = False

    # --- sizes ------------------------------------------------------------------------------

    @property
    def shard_size(self) -> int:
        """Items per rank and epoch (padded as ``DistributedSampler`` pads)."""
        return math.ceil(len(self.dataset) / self.world_size)

    def __len__(self) -> int:
        """Batches per epoch (per rank)."""
        n = self.shard_size
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    # --- order ------------------------------------------------------------------------------

    def order(self, epoch: int) -> Tensor:
        """This rank's item indices for ``epoch``, in order, on the data's device."""
        n = len(self.dataset)
        if self.shuffle:
            generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
            perm = torch.randperm(n, generator=generator)
        else:
            perm = torch.arange(n)
        total = self.shard_size * self.world_size
        if total > n:  # pad with the order's own start, as DistributedSampler does
            perm = torch.cat([perm, perm.repeat(math.ceil(total / n))[: total - n]])
        return perm[self.rank : total : self.world_size].to(self.dataset.device)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        # A generator: the epoch is decided at the first batch, not at iter(), because Lightning
        # calls iter() before its loops have settled the epoch of a resumed run.
        epoch = (
            self.current_epoch()
            if self.current_epoch is not None
            else (self.epoch + 1 if self._started else 0)
        )
        start = 0
        if self._resume:
            self._resume = False
            if self.current_epoch is None and self.position >= len(self):
                epoch = self.epoch + 1
            elif self.current_epoch is None or epoch == self.epoch:
                epoch, start = self.epoch, self.position
        self.epoch, self.position, self._started = epoch, start, True
        order = self.order(epoch)
        for b in range(start, len(self)):
            self.position = b + 1
            yield self.dataset.gather(order[b * self.batch_size : (b + 1) * self.batch_size])

    # --- checkpoints --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, int]:
        """Epoch, batches of it already yielded, seed and shard layout."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "world_size": self.world_size,
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue where ``state`` was taken: the next pass yields the rest of its epoch."""
        self.seed = int(state["seed"])
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        layout = (state.get("world_size", 1), state.get("batch_size", self.batch_size))
        if layout != (self.world_size, self.batch_size):
            warnings.warn(
                f"the checkpoint's data position was taken with world_size={layout[0]}, "
                f"batch_size={layout[1]}, this run has {self.world_size}, {self.batch_size}: "
                f"epoch {self.epoch} restarts from its first batch",
                UserWarning,
                stacklevel=2,
            )
            self.position = 0
        self._started, self._resume = True, True
