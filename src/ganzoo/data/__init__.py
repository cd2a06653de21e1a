"""LightningDataModules. They know nothing of families: a batch is ``x`` or ``(x, label)``."""

from ganzoo.data.base import BaseDataModule, DatasetMissingError
from ganzoo.data.images import (
    CelebADataModule,
    CIFAR10DataModule,
    FashionMNISTDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
)
from ganzoo.data.toy import GridDataModule, RingDataModule

__all__ = [
    "BaseDataModule",
    "CelebADataModule",
    "CIFAR10DataModule",
    "DatasetMissingError",
    "FashionMNISTDataModule",
    "GridDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "RingDataModule",
]
