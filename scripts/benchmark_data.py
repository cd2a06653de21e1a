"""Batches per second of ganzoo's in-memory data path against the torchvision DataLoader path.

Both serve the training batches of the same datamodule (shuffled, ``drop_last``, in the data's
value range, on ``--device``): ``data.in_memory=true`` (one uint8 tensor on the device, batches
by index, converted per batch) and ``data.in_memory=false`` (torchvision's dataset with a PIL
transform per image, a ``DataLoader`` with ``num_workers`` workers, ``pin_memory`` on a GPU).
The DataLoader is timed with each ``--workers`` value and its best is kept. Every measurement
skips the first batch (worker start-up), takes ``--batches`` batches, and is repeated,
interleaved; the printed ratio is the median in-memory rate over the median best DataLoader
rate (target on MNIST: at least 20).

    python scripts/benchmark_data.py                   # MNIST and CIFAR-10-shaped data, CPU
    python scripts/benchmark_data.py --device cuda     # on a GPU

MNIST comes from ``--data-dir`` (default ``../shared/data``), or synthetic MNIST-shaped data when
it is not there; the CIFAR-10-shaped data is synthetic (``--cifar-images`` random 32x32 RGB
images in torchvision's layout).
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ganzoo.data import CIFAR10DataModule, MNISTDataModule

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_step import mnist_dir  # noqa: E402


def synthetic_cifar10(root: Path, n: int) -> Path:
    """``n`` random training images (5 pickled batches) and a test batch, CIFAR-10's layout."""
    rng = np.random.default_rng(0)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    for name, size in [(f"data_batch_{i}", n // 5) for i in range(1, 6)] + [("test_batch", 100)]:
        batch = {
            "data": rng.integers(0, 256, (size, 3 * 32 * 32), dtype=np.uint8),
            "labels": rng.integers(0, 10, size).tolist(),
        }
        with open(base / name, "wb") as f:
            pickle.dump(batch, f)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    return root


class _Trainer:
    """What a datamodule reads from its trainer: the device, rank and epoch."""

    def __init__(self, device: torch.device):
        self.strategy = type("Strategy", (), {"root_device": device})()
        self.global_rank, self.world_size, self.current_epoch = 0, 1, 0


def rate(make, in_memory: bool, workers: int, batches: int, device: torch.device) -> float:
    """Batches per second of the training loader (first batch excluded)."""
    dm = make(in_memory=in_memory, num_workers=workers, pin_memory=device.type == "cuda")
    dm.trainer = _Trainer(device)
    dm.setup("fit")
    loader = dm.train_dataloader()
    it = iter(loader)
    next(it)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    done = 0
    while done < batches:
        try:
            x = next(it)[0].to(device, non_blocking=True)
        except StopIteration:
            it = iter(loader)
            continue
        done += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    x.sum()  # the last batch is used
    elapsed = time.perf_counter() - start
    del it, loader
    return batches / elapsed


def compare(name: str, make, args, device: torch.device) -> None:
    mem, loader = [], {w: [] for w in args.workers}
    for _ in range(args.repeats):
        mem.append(rate(make, True, 0, args.batches * 10, device))
        for w in args.workers:
            loader[w].append(rate(make, False, w, args.batches, device))
    medians = {w: statistics.median(v) for w, v in loader.items()}
    best = max(medians, key=medians.get)
    m = statistics.median(mem)
    print(
        f"| {name} | {m:,.0f} | {medians[best]:,.0f} (num_workers={best}) | "
        f"{m / medians[best]:.1f} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, default=100, help="DataLoader batches per timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", default=None, help="directory holding MNIST")
    parser.add_argument("--cifar-images", type=int, default=10_000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.workers is None:
        args.workers = sorted({0, 1, 2, min(4, os.cpu_count() or 1)})
    device = torch.device(args.device)
    mnist, note = mnist_dir(args.data_dir)
    import torchvision.datasets.cifar as cifar  # synthetic pickles: no MD5 to match

    cifar.check_integrity = lambda path, md5=None: Path(path).is_file()
    cifar_root = synthetic_cifar10(
        Path(tempfile.mkdtemp(prefix="ganzoo_bench_cifar_")), args.cifar_images
    )
    print(
        f"# benchmark_data: device={device}, threads={args.threads}, {note}, CIFAR-10-shaped "
        f"synthetic data ({args.cifar_images} images), median of {args.repeats} repeats"
    )
    print("| data (batch) | in memory, batches/s | DataLoader, batches/s | ratio |")
    print("|---|---|---|---|")

    def make_mnist(**kw):
        return MNISTDataModule(mnist, batch_size=100, **kw)

    def make_cifar(**kw):
        return CIFAR10DataModule(
            cifar_root, batch_size=64, val_size=args.cifar_images // 10, value_range=(-1, 1), **kw
        )

    compare("MNIST (100)", make_mnist, args, device)
    compare("CIFAR-10-shaped (64)", make_cifar, args, device)


if __name__ == "__main__":
    main()
