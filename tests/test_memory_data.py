"""The in-memory data path: batches by index from tensors on the device,
a seeded order per epoch, DDP shards, and an exact mid-epoch resume through a real Trainer."""

from __future__ import annotations

import json

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn
from torch.testing import assert_close
from torch.utils.data import DataLoader

from ganzoo.data import CIFAR10DataModule, MNISTDataModule, RingDataModule
from ganzoo.data.base import BaseDataModule, split_indices
from ganzoo.data.memory import InMemoryBatches, PointTensors
from ganzoo.data.stacked_mnist import StackedMNISTDataModule


def numbered(n: int) -> PointTensors:
    """Points whose value is their index, so that batches say which items they hold."""
    return PointTensors(torch.arange(n, dtype=torch.float32).unsqueeze(1))


def items(batches) -> list[list[int]]:
    return [b[0][:, 0].long().tolist() for b in batches]


# --- every item once, seeded orders ---------------------------------------------------------


@pytest.mark.parametrize(("n", "batch_size", "drop_last"), [(100, 10, True), (103, 10, False)])
def test_every_item_once_per_epoch(n, batch_size, drop_last):
    loader = InMemoryBatches(numbered(n), batch_size, seed=0, drop_last=drop_last)
    assert len(loader) == (n // batch_size if drop_last else -(-n // batch_size))
    for _ in range(2):
        seen = sum(items(loader), [])
        assert sorted(seen) == list(range(n))


def test_drop_last_drops_only_the_short_batch():
    seen = items(InMemoryBatches(numbered(103), 10, seed=0, drop_last=True))
    assert len(seen) == 10 and all(len(b) == 10 for b in seen)


def test_a_new_order_every_epoch_and_the_same_for_the_same_seed():
    a, b = (InMemoryBatches(numbered(50), 5, seed=7) for _ in range(2))
    a_epochs = [sum(items(a), []) for _ in range(3)]
    torch.manual_seed(123)  # the order does not come from the global RNG
    torch.rand(10)
    b_epochs = [sum(items(b), []) for _ in range(3)]
    assert a_epochs == b_epochs
    assert a_epochs[0] != a_epochs[1] != a_epochs[2]
    other = InMemoryBatches(numbered(50), 5, seed=8)
    assert sum(items(other), []) != a_epochs[0]


def test_neighbouring_seeds_do_not_share_shifted_orders():
    a, b = InMemoryBatches(numbered(50), 50, seed=0), InMemoryBatches(numbered(50), 50, seed=1)
    assert not torch.equal(a.order(1), b.order(0))


def test_shuffle_false_keeps_the_data_order():
    loader = InMemoryBatches(numbered(25), 10, seed=0, shuffle=False, drop_last=False)
    assert items(loader) == [list(range(10)), list(range(10, 20)), list(range(20, 25))]


# --- the same values as the torchvision path ------------------------------------------------


def _same_as_torchvision(make) -> None:
    fast, slow = make(in_memory=True), make(in_memory=False)
    fast.setup("fit"), slow.setup("fit")
    for split in ("train", "val", "test"):
        a, b = getattr(fast, f"{split}_set"), getattr(slow, f"{split}_set")
        assert len(a) == len(b)
        idx = torch.tensor([0, 3, len(a) - 1])
        xb, yb = next(iter(DataLoader(torch.utils.data.Subset(b, idx.tolist()), batch_size=3)))
        xa, ya = a.gather(idx)
        assert xa.dtype == xb.dtype == torch.float32 and ya.dtype == yb.dtype
        assert torch.equal(xa, xb) and torch.equal(ya, yb)  # bit for bit
        assert torch.equal(a[3][0], b[3][0]) and a[3][1] == b[3][1]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"value_range": (-1, 1), "val_size": 16, "split_seed": 3},
        {"value_range": (-1, 1), "image_size": 32, "channels": 3, "val_size": 16},
    ],
)
def test_mnist_in_memory_gives_the_torchvision_values(fake_mnist, kwargs):
    kwargs.setdefault("val_size", 56)

    def make(**flags):
        return MNISTDataModule(fake_mnist, num_workers=0, **kwargs, **flags)

    _same_as_torchvision(make)


def test_cifar10_in_memory_gives_the_torchvision_values(fake_cifar10):
    def make(**flags):
        return CIFAR10DataModule(
            fake_cifar10, val_size=10, num_workers=0, value_range=(-1, 1), **flags
        )

    _same_as_torchvision(make)


def test_stacked_mnist_in_memory_gives_the_dataloader_values(fake_mnist):
    def make(**flags):
        return StackedMNISTDataModule(
            fake_mnist, num_train=50, num_val=20, num_test=20, val_size=56, num_workers=0,
            value_range=(-1, 1), **flags,
        )  # fmt: skip

    _same_as_torchvision(make)
    dm = make(in_memory=True)
    dm.setup()
    x, y = dm.train_set[0]
    digits = dm.digits.train_set
    a, b, c = dm.train_set.index[0].tolist()
    assert y == 100 * int(digits.labels[a]) + 10 * int(digits.labels[b]) + int(digits.labels[c])
    assert_close(x[1], digits[b][0][0] * 2 - 1)


def test_ring_batches_are_its_points(tmp_path):
    dm = RingDataModule(num_train=300, batch_size=100, shuffle_seed=0)
    dm.setup()
    loader = dm.train_dataloader()
    assert isinstance(loader, InMemoryBatches)
    got = torch.cat([b[0] for b in loader])
    assert_close(got.sort(0).values, dm.train_set.points.sort(0).values)


def test_the_seeded_split_holds_out_the_same_items_as_before():
    # ganzoo's split before random_split: the last val_size items of randperm(n, seed), sorted.
    n, val, seed = 1000, 100, 5
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    train, held = split_indices(n, val, seed)
    assert held == sorted(perm[n - val :].tolist()) and train == sorted(perm[: n - val].tolist())
    assert split_indices(n, val, None) == (list(range(900)), list(range(900, 1000)))


def test_image_folders_and_celeba_stay_on_the_dataloader_path(tmp_path):
    from ganzoo.data import CelebADataModule, ImageFolderDataModule

    with pytest.raises(ValueError, match="data.in_memory=false"):
        ImageFolderDataModule(tmp_path, in_memory=True)
    assert not CelebADataModule(tmp_path).in_memory


def test_the_dataloader_path_stays_available(fake_mnist):
    dm = MNISTDataModule(fake_mnist, val_size=56, num_workers=0, in_memory=False)
    dm.setup()
    assert isinstance(dm.train_dataloader(), DataLoader)


# --- checkpoints ----------------------------------------------------------------------------


def test_state_restored_mid_epoch_yields_exactly_the_remaining_batches():
    whole = InMemoryBatches(numbered(60), 6, seed=3)
    items(whole)  # epoch 0
    epoch1 = items(whole)
    interrupted = InMemoryBatches(numbered(60), 6, seed=3)
    items(interrupted)
    it = iter(interrupted)
    first = [next(it)[0][:, 0].long().tolist() for _ in range(4)]
    state = interrupted.state_dict()
    assert (state["epoch"], state["position"]) == (1, 4)
    resumed = InMemoryBatches(numbered(60), 6, seed=99)  # the seed comes from the state
    resumed.load_state_dict(state)
    assert first + items(resumed) == epoch1
    assert sorted(sum(items(resumed), [])) == list(range(60))  # then a whole new epoch


class Recorder(pl.LightningModule):
    """Records the item numbers of every training batch, in order, to a JSON file per rank."""

    def __init__(self, out: str):
        super().__init__()
        self.out = out
        self.layer = nn.Linear(1, 1)
        self.seen: list[list[int]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch[0][:, 0].long().tolist())
        return self.layer(batch[0]).square().mean()

    def on_train_end(self):
        with open(f"{self.out}.rank{self.global_rank}.json", "w") as f:
            json.dump(self.seen, f)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


class Numbered(BaseDataModule):
    """``n`` points numbered 0..n-1, in memory."""

    shape, value_range = (1,), None

    def __init__(self, n: int = 60, batch_size: int = 6, seed: int = 11):
        super().__init__(batch_size=batch_size, in_memory=True, shuffle_seed=seed)
        self.n = n

    def setup(self, stage=None):
        self.train_set = numbered(self.n)


def _trainer(tmp_path, **kwargs) -> pl.Trainer:
    kwargs.setdefault("max_epochs", 3)
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kwargs,
    )


def test_a_trainer_resumed_mid_epoch_sees_exactly_the_remaining_batches(tmp_path):
    # 10 batches an epoch; a checkpoint after every 4th batch (global steps 4, 8, 12, ...).
    ckpt = ModelCheckpoint(tmp_path / "ckpt", every_n_train_steps=4, save_top_k=-1,
                           filename="{step}")  # fmt: skip
    _trainer(tmp_path, callbacks=[ckpt]).fit(Recorder(str(tmp_path / "full")), Numbered())
    full = json.loads((tmp_path / "full.rank0.json").read_text())
    assert len(full) == 30 and full[:10] != full[10:20]
    for step in (4, 12, 20):  # mid epoch 0, mid epoch 1, at the end of epoch 1
        resumed = _trainer(tmp_path)
        out = tmp_path / f"resumed{step}"
        resumed.fit(
            Recorder(str(out)), Numbered(), ckpt_path=tmp_path / "ckpt" / f"step={step}.ckpt"
        )
        assert json.loads(out.with_suffix(".rank0.json").read_text()) == full[step:], step


def test_resuming_from_an_end_of_epoch_checkpoint_starts_the_next_order(tmp_path):
    _trainer(tmp_path).fit(Recorder(str(tmp_path / "full")), Numbered())
    full = json.loads((tmp_path / "full.rank0.json").read_text())
    first = _trainer(tmp_path, max_epochs=1, enable_checkpointing=False)
    first.fit(Recorder(str(tmp_path / "one")), Numbered())
    first.save_checkpoint(tmp_path / "epoch1.ckpt")  # after the fit: no loader state restored
    _trainer(tmp_path).fit(
        Recorder(str(tmp_path / "rest")), Numbered(), ckpt_path=tmp_path / "epoch1.ckpt"
    )
    assert json.loads((tmp_path / "rest.rank0.json").read_text()) == full[10:]


# --- DDP ------------------------------------------------------------------------------------


def test_two_process_ddp_shards_are_disjoint_and_cover_the_data(tmp_path):
    n = 56  # 28 items, 7 batches of 4 per rank
    trainer = _trainer(
        tmp_path, max_epochs=2, devices=2, strategy="ddp_spawn", enable_checkpointing=False
    )
    trainer.fit(Recorder(str(tmp_path / "ddp")), Numbered(n=n, batch_size=4))
    ranks = [json.loads((tmp_path / f"ddp.rank{r}.json").read_text()) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 2 * 7
    shards = [[sum(r[e * 7 : (e + 1) * 7], []) for r in ranks] for e in range(2)]
    for a, b in shards:
        assert len(a) == len(b) == 28 and not set(a) & set(b) and set(a) | set(b) == set(range(n))
    assert shards[0][0] != shards[1][0]  # a new order in epoch 1
    want = InMemoryBatches(numbered(n), 4, seed=11, rank=0, world_size=2).order(0)[:4]
    assert ranks[0][0] == want.tolist()  # the shard is perm[rank::world_size]


def test_uneven_shards_are_padded_as_distributed_sampler_pads():
    n = 57
    orders = [
        InMemoryBatches(numbered(n), 4, seed=11, rank=r, world_size=2).order(0).tolist()
        for r in range(2)
    ]
    perm = InMemoryBatches(numbered(n), 4, seed=11).order(0).tolist()
    padded = perm + perm[:1]
    assert orders == [padded[0::2], padded[1::2]]
    assert set(orders[0]) | set(orders[1]) == set(range(n))


# Exact resume on this data path (mid-epoch, at an epoch's end, under DDP, on SIGTERM): see
# test_reliability.py, whose runs all use the in-memory ring.
