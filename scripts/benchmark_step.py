"""What a batch of ``ganzoo-train`` costs, in its real configs, over a hand-written PyTorch loop.

For each experiment, two kinds of run train the same networks (one initialisation) with the same
optimizers on the same in-memory data and batch size:

- **ganzoo**: ``ganzoo.train.train(cfg)``, the function behind ``ganzoo-train``, with the shipped
  config as it is (TensorBoard logging, progress bar, checkpoints, sample grids, validation and
  every default callback on) and ``trainer.limit_train_batches=N``;
- **hand loop**: plain PyTorch doing the family's updates, written as one would by hand: the same
  loss functions, each player's step with the other players' parameters frozen (as Lightning's
  ``toggled_optimizer`` does) or its gradient taken with ``torch.autograd.grad``, data batches
  indexed from the same uint8 tensor.

Start-up and end-of-epoch work (validation, checkpoints, sample grids) are excluded in one of two
ways. ``--method runs`` (the definition): each kind runs for two lengths ``N1 < N2`` and the
marginal cost per batch is ``(T(N2) - T(N1)) / (N2 - N1)``. ``--method inrun`` (default): one run
of each kind, clocked at the start of batch ``N1`` and of batch ``N2`` (a Lightning callback for
ganzoo), the same marginal cost without the run-to-run noise of two start-ups, which on a shared
machine swamps the difference. On CPU the clock is the process's CPU time
(``time.process_time``, all its threads: on a machine shared with other jobs, wall time mostly
measures them); on a GPU, wall time (``--clock`` chooses). Runs are interleaved, repeated, and
the median marginal cost of each kind is compared: the printed ratio is ganzoo / hand loop
(target on CPU: at most 1.05). Ratios, not
seconds, are comparable across machines.

    python scripts/benchmark_step.py                            # the six configs, CPU
    python scripts/benchmark_step.py --configs gan_ring --repeats 3
    python scripts/benchmark_step.py --trainer gpu_bf16 --compile   # on a GPU
    python scripts/benchmark_step.py --profile gan_mnist_infogan    # torch.profiler tables
    python scripts/benchmark_step.py --decompose vaegan_ring        # where the extra time goes

MNIST comes from ``--data-dir`` (default ``../shared/data`` beside the repository) or, when it is
not there, from a synthetic MNIST of the same shape written to a temporary directory.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import logging
import math
import os
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

import ganzoo.train
from ganzoo.config import config_dir
from ganzoo.train import build_run, train

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [
    "gan_ring",
    "vaegan_ring",
    "alphagan_ring",
    "gan_mnist_infogan",
    "alphagan_mnist",
    "vaegan_mnist_conv",
]


# --- configs and data -----------------------------------------------------------------------


def compose_run(overrides: list[str], output_dir: Path):
    """A run config exactly as ``ganzoo-train <overrides>`` composes it."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
        cfg.paths.output_dir = str(output_dir)
    return cfg


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def synthetic_mnist(root: Path) -> Path:
    """Random digits-shaped data with MNIST's sizes (60k + 10k) in torchvision's layout."""
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 60_000), ("t10k", 10_000)):
        images = (rng.random((n, 28, 28)) < 0.2) * rng.integers(128, 256, (n, 28, 28))
        _write_idx(raw / f"{split}-images-idx3-ubyte", images)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n))
    return root


def mnist_dir(requested: str | None) -> tuple[Path, str]:
    candidates = [Path(requested)] if requested else [REPO.parent / "shared" / "data"]
    candidates.append(Path("/work/shared/data"))
    for path in candidates:
        if (path / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
            return path, f"MNIST from {path}"
    root = Path(tempfile.mkdtemp(prefix="ganzoo_bench_mnist_"))
    return synthetic_mnist(root), "synthetic MNIST-shaped data (MNIST not found)"


# --- the hand-written loops -----------------------------------------------------------------


@contextlib.contextmanager
def only(trainable: Iterable[torch.nn.Parameter], everything: list[torch.nn.Parameter]):
    """Freeze every parameter but ``trainable`` (what ``toggled_optimizer`` does)."""
    keep = {id(p) for p in trainable}
    frozen = [p for p in everything if id(p) not in keep and p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(True)


def step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def gan_updates(model, opts) -> Callable[[torch.Tensor], None]:
    """Algorithm 1 with k = 1: a D step on this batch and fresh noise, then a G step."""
    g, d, prior = model.generator, model.discriminator, model.prior
    params = list(model.parameters())
    opt_d, opt_g = opts["discriminator"], opts["generator"]

    def update(x):
        with only(d.parameters(), params):
            with torch.no_grad():
                fake = g(prior.sample(x.shape[0]))
            step(opt_d, model.d_loss_weight * model.d_loss_fn(d(x), d(fake)))
        with only(g.parameters(), params):
            step(opt_g, model.g_loss_fn(d(g(prior.sample(x.shape[0])))))

    return update


def vaegan_updates(model, opts) -> Callable[[torch.Tensor], None]:
    """Larsen et al.: one forward pass, each player's gradient of its own loss, then all steps."""
    from ganzoo import losses

    enc, dec, dis = model.encoder, model.generator, model.discriminator
    groups = {
        "encoder": list(enc.parameters()),
        "generator": list(dec.parameters()),
        "discriminator": list(dis.parameters()),
    }

    def update(x):
        n = x.shape[0]
        mu, logvar = enc(x)
        x_tilde = dec(mu + torch.exp(0.5 * logvar) * torch.randn_like(mu))
        x_prior = dec(torch.randn(n, model.latent_dim, device=x.device))
        logits, features = dis.forward_with_features(torch.cat([x, x_tilde, x_prior]))
        real_logits, recon_logits, prior_logits = logits.split(n)
        real_features, recon_features, _ = features.split(n)
        seen = recon_logits if model.discriminate_reconstructions else None
        kl = losses.kl_standard_normal(mu, logvar)
        if model.kl_per_pixel:
            kl = kl / x[0].numel()
        llike = model.llike_fn(real_features, recon_features)
        loss = {
            "encoder": model.kl_weight * kl + model.beta * llike,
            "generator": model.gamma * llike + model.g_loss_fn(prior_logits, seen),
            "discriminator": model.d_loss_fn(real_logits, prior_logits, seen),
        }
        for i, (player, params) in enumerate(groups.items()):
            grads = torch.autograd.grad(loss[player], params, retain_graph=i < 2)
            for p, grad in zip(params, grads, strict=True):
                p.grad = grad
        for player in groups:
            opts[player].step()

    return update


def alphagan_updates(model, opts) -> Callable[[torch.Tensor], None]:
    """Rosca et al., the paper's form: E, G, D, C steps in turn on the same batch."""
    e, g, d, c, prior = (
        model.encoder,
        model.generator,
        model.discriminator,
        model.code_discriminator,
        model.prior,
    )
    params = list(model.parameters())
    rec, adv, w = model.reconstruction_loss, model.adversarial_loss, model.fake_weight

    def e_step(x):
        with only(e.parameters(), params):
            z_hat = e(x)
            step(opts["encoder"], model.reconstruction_weight * rec(x, g(z_hat)) + adv(c(z_hat)))

    def g_step(x):
        with only(g.parameters(), params):
            with torch.no_grad():
                z_hat = e(x)
            n = x.shape[0]
            fakes = g(torch.cat([z_hat, prior.sample(n)]))
            recon_logits, sample_logits = d(fakes).split([n, n])
            loss = model.generator_reconstruction_weight * rec(x, fakes[:n]) + w * (
                adv(recon_logits) + adv(sample_logits)
            )
            step(opts["generator"], loss)

    def d_step(x):
        with only(d.parameters(), params):
            n = x.shape[0]
            with torch.no_grad():
                fakes = g(torch.cat([e(x), prior.sample(n)]))
            recon_logits, sample_logits = d(fakes).split([n, n])
            step(
                opts["discriminator"],
                model.d_loss_fn(d(x), recon_logits, sample_logits, fake_weight=w),
            )

    def c_step(x):
        with only(c.parameters(), params):
            with torch.no_grad():
                z_hat = e(x)
            step(opts["code_discriminator"], model.c_loss_fn(c(prior.sample(x.shape[0])), c(z_hat)))

    steps = {"encoder": e_step, "generator": g_step, "discriminator": d_step}
    steps["code_discriminator"] = c_step

    def update(x):
        for player in model.schedule:
            steps[player](x)

    return update


HAND_UPDATES = {"GAN": gan_updates, "VAEGAN": vaegan_updates, "AlphaGAN": alphagan_updates}

CLOCK = time.process_time


def hand_loop(
    cfg, batches: int, device: torch.device, bf16: bool, compiled: bool, mark: int | None = None
) -> float:
    """Seconds for ``batches`` hand-written updates (set-up excluded), or from the start of batch
    ``mark`` to the end when ``mark`` is given."""
    datamodule, model, _ = build_run(cfg)
    model.to(device).train()
    if compiled:
        for net in model.children():
            if not isinstance(net, type(model.prior)):
                net.compile()
    opt_list, _ = model.configure_optimizers()
    opts = dict(zip(model.players, opt_list, strict=True))
    family = type(model).__name__
    update = HAND_UPDATES[family](model, opts)
    data = datamodule.train_set.to(device)  # the same in-memory tensors ganzoo serves from
    bs = cfg.data.batch_size
    generator = torch.Generator().manual_seed(0)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    _sync(device)
    start = CLOCK()
    done = 0
    while done < batches:
        perm = torch.randperm(len(data), generator=generator).to(device)
        for b in range(min(len(data) // bs, batches - done)):
            if done == mark:
                _sync(device)
                start = CLOCK()
            x = data.gather(perm[b * bs : (b + 1) * bs])[0]
            with autocast:
                update(x)
            done += 1
    _sync(device)
    return CLOCK() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# --- ganzoo runs ------------------------------------------------------------------------------


def overrides_for(config: str, args, batches: int, data_dir: Path) -> list[str]:
    out = [
        f"experiment={config}",
        "trainer.max_epochs=1",
        f"+trainer.limit_train_batches={batches}",
        f"+trainer.limit_val_batches={args.val_batches}",
        f"paths.data_dir={data_dir}",
        f"trainer={args.trainer}",
    ]
    if args.compile:
        out.append("model.compile=true")
    return out


class BatchClock(pl.Callback):
    """Clock readings at the start of the training batches ``marks``."""

    def __init__(self, marks: tuple[int, ...], device: torch.device):
        self.marks, self.device, self.readings = marks, device, {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx in self.marks:
            _sync(self.device)
            self.readings[batch_idx] = CLOCK()


def ganzoo_run(
    config: str, args, batches: int, data_dir: Path, out: Path, mark: int | None = None
) -> float:
    """Seconds of ``train(cfg)`` for a run of ``batches`` training batches, or (``mark``) from the
    start of batch ``mark`` to the start of batch ``batches`` of a run one batch longer."""
    cfg = compose_run(overrides_for(config, args, batches + (mark is not None), data_dir), out)
    sink = io.StringIO()
    clock = BatchClock((mark, batches), torch.device("cuda" if "gpu" in args.trainer else "cpu"))

    def with_clock(cfg):
        datamodule, model, trainer = build_run(cfg)
        trainer.callbacks.append(clock)
        return datamodule, model, trainer

    start = CLOCK()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        with patched(ganzoo.train, "build_run", with_clock):
            train(cfg)
    if mark is None:
        return CLOCK() - start
    return clock.readings[batches] - clock.readings[mark]


@contextlib.contextmanager
def patched(module, name: str, value):
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


# --- main -------------------------------------------------------------------------------------


def lengths(config: str, args, data_dir: Path, device, bf16: bool) -> tuple[int, int]:
    """``N1 < N2`` so that their difference takes about ``--seconds`` in the hand loop."""
    cfg = compose_run(overrides_for(config, args, 10, data_dir), Path(tempfile.mkdtemp()))
    hand_loop(cfg, 3, device, bf16, args.compile)  # warm-up (and compilation)
    per_batch = hand_loop(cfg, 10, device, bf16, args.compile) / 10
    epoch = cfg.data.get("num_train") or 50_000
    diff = max(20, math.ceil(args.seconds / per_batch))
    n1 = max(10, diff // 4)
    n2 = min(n1 + diff, epoch // cfg.data.batch_size - 1)
    return n1, n2


def benchmark(config: str, args, data_dir: Path, device, bf16: bool) -> dict[str, float]:
    n1, n2 = lengths(config, args, data_dir, device, bf16)
    cfg = compose_run(overrides_for(config, args, n2, data_dir), Path(tempfile.mkdtemp()))
    hand, ours = [], []
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t = {}
            # Interleaved, and the order alternates between repeats.
            kinds = ["hand", "ganzoo"] if r % 2 == 0 else ["ganzoo", "hand"]
            if args.method == "inrun":
                for kind in kinds:
                    if kind == "hand":
                        t[kind] = hand_loop(cfg, n2, device, bf16, args.compile, mark=n1)
                    else:
                        t[kind] = ganzoo_run(config, args, n2, data_dir, Path(tmp) / "run", n1)
            else:
                for kind, n in itertools.product(kinds, (n1, n2)):
                    if kind == "hand":
                        t[kind, n] = hand_loop(cfg, n, device, bf16, args.compile)
                    else:
                        t[kind, n] = ganzoo_run(config, args, n, data_dir, Path(tmp) / f"run{n}")
                for kind in kinds:
                    t[kind] = t[kind, n2] - t[kind, n1]
        hand.append(t["hand"] / (n2 - n1))
        ours.append(t["ganzoo"] / (n2 - n1))
        print(
            f"  {config} repeat {r + 1}: hand {hand[-1] * 1e3:.2f} ms, ganzoo {ours[-1] * 1e3:.2f} "
            f"ms per batch (N = {n1}, {n2})",
            file=sys.stderr,
            flush=True,
        )
    h, o = statistics.median(hand), statistics.median(ours)
    paired = statistics.median(b / a for a, b in zip(hand, ours, strict=True))
    return {"hand": h, "ganzoo": o, "ratio": o / h, "paired": paired, "n1": n1, "n2": n2}


def decompose(config: str, args, data_dir: Path) -> None:
    """Where ganzoo's extra time per batch goes: one ganzoo run whose training batches alternate
    between the family's own ``training_step`` and the hand loop's update (on the same
    networks, optimizers and batches), clocked with ``time.perf_counter`` inside each step and
    between steps. Alternating in one run cancels the machine's drift, which separate runs do
    not. Prints the medians: the two steps, and Lightning's loop between steps."""
    batches = args.decompose_batches
    model_cls: dict[str, type] = {}
    times: dict[str, list[float]] = {"ganzoo step": [], "hand update": [], "loop": []}
    last_end: list[float] = []

    def alternating(self, batch, batch_idx):
        start = time.perf_counter()
        if last_end and batch_idx > 10:
            times["loop"].append(start - last_end[-1])
        if batch_idx % 2:
            if not hasattr(self, "_hand_update"):
                opt_list = self.optimizers(use_pl_optimizer=False)
                opts = dict(zip(self.players, opt_list, strict=True))
                family = type(self).__name__
                self._hand_update = HAND_UPDATES[family](self, opts)
            self._hand_update(self.inputs(batch))
            kind = "hand update"
        else:
            model_cls["cls"].training_step(self, batch, batch_idx)
            kind = "ganzoo step"
        end = time.perf_counter()
        if batch_idx > 10:
            times[kind].append(end - start)
        last_end.append(end)

    def with_alternation(cfg):
        datamodule, model, trainer = build_run(cfg)
        model_cls["cls"] = type(model)
        model.training_step = alternating.__get__(model)
        return datamodule, model, trainer

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_run(overrides_for(config, args, batches, data_dir), Path(tmp))
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            with patched(ganzoo.train, "build_run", with_alternation):
                train(cfg)
    print(f"== {config}: {batches} batches alternating, median ms per batch (perf_counter)")
    for kind, values in times.items():
        print(f"| {kind} | {statistics.median(values) * 1e3:.2f} | ({len(values)} batches) |")


def profile(config: str, args, data_dir: Path) -> None:
    """torch.profiler over a ganzoo run: the operators that take the time, and the hooks'."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU]
    if torch.cuda.is_available() and args.trainer.startswith("gpu"):
        activities.append(ProfilerActivity.CUDA)
    with tempfile.TemporaryDirectory() as tmp:
        ganzoo_run(config, args, 10, data_dir, Path(tmp) / "warm")
        cfg = compose_run(overrides_for(config, args, args.profile_batches, data_dir), Path(tmp))
        with torch_profile(activities=activities) as prof:
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                train(cfg)
    print(f"== {config}: {args.profile_batches} batches, top operators by self CPU time")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile_rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=CONFIGS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0, help="hand-loop time of N2 - N1")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU)")
    parser.add_argument("--clock", choices=["auto", "cpu", "wall"], default="auto")
    parser.add_argument("--method", choices=["inrun", "runs"], default="inrun")
    parser.add_argument("--trainer", default="cpu", help="trainer config: cpu, gpu, gpu_bf16")
    parser.add_argument("--compile", action="store_true", help="model.compile=true (both loops)")
    parser.add_argument("--val-batches", type=int, default=2, help="validation batches per run")
    parser.add_argument("--data-dir", default=None, help="directory holding MNIST")
    parser.add_argument("--profile", nargs="*", default=None, help="profile these configs")
    parser.add_argument("--profile-batches", type=int, default=50)
    parser.add_argument("--profile-rows", type=int, default=15)
    parser.add_argument(
        "--decompose", nargs="*", default=None, help="ganzoo's step vs the hand update, in one run"
    )
    parser.add_argument("--decompose-batches", type=int, default=600)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("GANZOO_CACHE_DIR", tempfile.mkdtemp(prefix="ganzoo_bench_cache_"))
    data_dir, data_note = mnist_dir(args.data_dir)
    if args.profile is not None:
        for config in args.profile or args.configs:
            profile(config, args, data_dir)
        return
    if args.decompose is not None:
        for config in args.decompose or args.configs:
            decompose(config, args, data_dir)
        return
    device = torch.device("cuda" if args.trainer.startswith("gpu") else "cpu")
    bf16 = args.trainer == "gpu_bf16"
    global CLOCK
    clock = args.clock if args.clock != "auto" else ("wall" if device.type == "cuda" else "cpu")
    CLOCK = time.process_time if clock == "cpu" else time.perf_counter
    print(
        f"# benchmark_step: trainer={args.trainer}, compile={args.compile}, "
        f"threads={args.threads}, repeats={args.repeats}, clock={clock}, method={args.method}, "
        f"{data_note}"
    )
    print(
        "| config | hand loop ms/batch | ganzoo ms/batch | ratio | per-repeat ratios' median | N1, N2 |"
    )
    print("|---|---|---|---|---|---|")
    for config in args.configs:
        res = benchmark(config, args, data_dir, device, bf16)
        print(
            f"| {config} | {res['hand'] * 1e3:.2f} | {res['ganzoo'] * 1e3:.2f} | "
            f"{res['ratio']:.3f} | {res['paired']:.3f} | {res['n1']}, {res['n2']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
