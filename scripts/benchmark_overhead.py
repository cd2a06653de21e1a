"""How much ganzoo's GAN training loop costs over a hand-written PyTorch loop doing the same work.

Both loops train the same networks (copies of one initialisation) on the same batches with the
same schedule (Algorithm 1, k=1, non-saturating loss, Adam). The baseline is plain PyTorch; the
other is ``ganzoo.models.GAN`` under a Lightning ``Trainer`` (manual optimization,
``toggled_optimizer``, logging), timed from the start to the end of its training epoch. Each is timed over ``--batches`` batches, ``--repeats`` times,
interleaved so that machine noise hits both alike; the script reports the median seconds per
batch of each and their ratio (ganzoo / baseline). Ratios, not seconds, are comparable across
machines.

    python scripts/benchmark_overhead.py                       # MLPs on 2D points (tiny work)
    python scripts/benchmark_overhead.py --image               # DCGAN nets on 32x32 images
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from ganzoo.losses import d_loss_standard, g_loss_nonsaturating
from ganzoo.models import GAN
from ganzoo.nets import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator


def networks(image: bool, latent: int):
    if image:
        return DCGANGenerator(latent, channels=3, image_size=32, width=32), DCGANDiscriminator(
            3, 32, width=32
        )
    return MLPGenerator(latent, [2], hidden=[400] * 4, batch_norm=True), MLPDiscriminator(
        [2], hidden=[200] * 3, maxout_pieces=5
    )


def plain_loop(g, d, loader, latent: int) -> float:
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=1e-4, betas=(0.5, 0.999))
    start = time.perf_counter()
    for (x,) in loader:
        with torch.no_grad():
            fake = g(torch.randn(x.shape[0], latent))
        loss_d = d_loss_standard(d(x), d(fake))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        loss_g = g_loss_nonsaturating(d(g(torch.randn(x.shape[0], latent))))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
    return time.perf_counter() - start


def ganzoo_loop(g, d, loader, latent: int) -> float:
    adam = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-4, "betas": [0.5, 0.999]}
    model = GAN(
        generator=g,
        discriminator=d,
        optimizer={"generator": adam, "discriminator": adam},
        loss={"d": d_loss_standard, "g": g_loss_nonsaturating},
        latent_dim=latent,
    )
    clock = _Clock()
    trainer = pl.Trainer(
        callbacks=[clock],
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, train_dataloaders=loader)
    return clock.elapsed


class _Clock(pl.Callback):
    """Times the training loop itself, not the Trainer's one-off set-up."""

    def on_train_epoch_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.elapsed = time.perf_counter() - self.start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--image", action="store_true", help="DCGAN nets on 32x32 RGB instead of MLPs on 2D"
    )
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pl.seed_everything(0, verbose=False)
    latent = 64 if args.image else 2
    shape = (3, 32, 32) if args.image else (2,)
    data = torch.randn(args.batches * args.batch_size, *shape)
    loader = DataLoader(TensorDataset(data), batch_size=args.batch_size, shuffle=False)
    g0, d0 = networks(args.image, latent)

    times = {"baseline": [], "ganzoo": []}
    for _ in range(args.repeats):
        times["baseline"].append(
            plain_loop(copy.deepcopy(g0), copy.deepcopy(d0), loader, latent) / args.batches
        )
        times["ganzoo"].append(
            ganzoo_loop(copy.deepcopy(g0), copy.deepcopy(d0), loader, latent) / args.batches
        )
    base, ours = statistics.median(times["baseline"]), statistics.median(times["ganzoo"])
    print(
        f"work: {'DCGAN 32x32' if args.image else 'MLP 2D'}, batch {args.batch_size}, {args.batches} batches x {args.repeats} repeats"
    )
    print(f"baseline (plain PyTorch) {base * 1e3:8.3f} ms/batch")
    print(f"ganzoo (Lightning GAN)   {ours * 1e3:8.3f} ms/batch")
    print(f"ratio ganzoo / baseline  {ours / base:8.3f}")


if __name__ == "__main__":
    main()
