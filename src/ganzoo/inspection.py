"""Looking at a trained model of any family: samples, reconstructions, interpolations, training
progress and files for external FID tools. ``ganzoo-sample`` (``ganzoo.sample``) serves one
request of :data:`MODES` per call; everything here works through the ``GenerativeModel`` API
(``sample``, ``generate``, ``encode``, ``reconstruct``, ``has_encoder``, ``prior``), so every
family, present or future, gets it.

The run's data is rebuilt from the config saved in the checkpoint (``paths.data_dir=<dir>``
points it at another copy); held-out images are the test split's, in order. On 2D data the
picture modes draw scatter plots over held-out points and ``export`` writes ``.npy``/``.csv``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from PIL import Image
from torch import Tensor
from torchvision.utils import make_grid, save_image

from ganzoo.callbacks.reconstructions import side_by_side
from ganzoo.callbacks.samples import scatter_figure
from ganzoo.metrics.domain import unit_range
from ganzoo.models import FAMILIES, GenerativeModel, family_class, load_checkpoint
from ganzoo.rejection import TrainingItems


class InspectionError(Exception):
    """A request ``ganzoo-sample`` cannot serve; the message says why and what to do instead."""


# --- interpolation paths ---------------------------------------------------------------------


def lerp(z0: Tensor, z1: Tensor, t: float) -> Tensor:
    """Linear interpolation ``(1 - t) z0 + t z1``; exactly ``z0`` at t=0 and ``z1`` at t=1."""
    return (1.0 - t) * z0 + t * z1


def slerp(z0: Tensor, z1: Tensor, t: float) -> Tensor:
    """Spherical interpolation row by row (Shoemake 1985; White 2016, "Sampling Generative
    Networks"): ``sin((1 - t) w) / sin(w) z0 + sin(t w) / sin(w) z1`` with ``w`` the angle between
    ``z0`` and ``z1``. It keeps Gaussian latents at a typical norm, where a straight line passes
    through the improbable region near the origin. Exactly ``z0`` at t=0 and ``z1`` at t=1;
    (anti)parallel rows, where the great circle is undefined, fall back to :func:`lerp`."""
    u0 = z0 / z0.norm(dim=1, keepdim=True)
    u1 = z1 / z1.norm(dim=1, keepdim=True)
    omega = torch.acos((u0 * u1).sum(dim=1, keepdim=True).clamp(-1.0, 1.0))
    sin_omega = torch.sin(omega)
    path = torch.sin((1.0 - t) * omega) / sin_omega * z0 + torch.sin(t * omega) / sin_omega * z1
    degenerate = ~(sin_omega.abs() > 1e-6)  # also catches NaN from zero-norm rows
    return torch.where(degenerate, lerp(z0, z1, t), path)


#: ``interpolation.methods`` entries -> path functions ``(z0, z1, t) -> z_t``.
INTERPOLATIONS: dict[str, Callable[[Tensor, Tensor, float], Tensor]] = {
    "linear": lerp,
    "slerp": slerp,
}


def interpolate(
    model: GenerativeModel,
    z0: Tensor,
    z1: Tensor,
    steps: int,
    path: Callable[[Tensor, Tensor, float], Tensor],
) -> list[Tensor]:
    """Decodings along ``path`` from each row of ``z0`` to the same row of ``z1``: one batch of
    ``len(z0)`` per step, ``steps`` steps from t=0 to t=1 inclusive. The first batch is exactly
    ``model.generate(z0)``, the last ``model.generate(z1)``."""
    if steps < 2:
        raise InspectionError(f"interpolation.steps must be >= 2, got {steps}")
    return [model.generate(path(z0, z1, i / (steps - 1))) for i in range(steps)]


# --- pictures ----------------------------------------------------------------------------------


def to_uint8(images: Tensor) -> Tensor:
    """``[0, 1]`` images to uint8 the way ``torchvision.utils.save_image`` rounds them."""
    return images.mul(255).add_(0.5).clamp_(0, 255).to("cpu", torch.uint8)


def to_pil(image: Tensor) -> Image.Image:
    """One ``(C, H, W)`` image in ``[0, 1]`` as a PIL image (mode ``L`` for one channel)."""
    array = to_uint8(image).permute(1, 2, 0).numpy()
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def figure_to_pil(fig) -> Image.Image:
    fig.canvas.draw()
    image = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB")
    plt.close(fig)
    return image


def save_gif(
    frames: Sequence[Image.Image], path: Path, frame_ms: int, last_ms: int | None = None
) -> Path:
    """An endlessly looping GIF (Pillow); ``last_ms`` holds the final frame longer."""
    durations = [frame_ms] * len(frames)
    if last_ms is not None:
        durations[-1] = last_ms
    frames[0].save(path, save_all=True, append_images=list(frames[1:]), duration=durations, loop=0)
    return path


def save_figure(fig, path: Path) -> Path:
    fig.savefig(path)
    plt.close(fig)
    return path


# --- one request --------------------------------------------------------------------------------


class Inspection:
    """What a mode needs, built on first use: the model, its run's held-out data, a seeded noise
    stream, and the output directory."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.ckpt_path = Path(cfg.ckpt_path) if cfg.get("ckpt_path") else None
        self.out = Path(cfg.out) if cfg.get("out") else None

    @cached_property
    def model(self) -> GenerativeModel:
        if self.ckpt_path is None:
            raise InspectionError(
                f"mode={self.cfg.mode} needs a model: pass ckpt_path=<run>/checkpoints/last.ckpt"
            )
        try:
            model = load_checkpoint(self.ckpt_path, map_location="cpu")
        except ValueError as err:
            raise InspectionError(str(err)) from err
        return model.to(self.device).eval()

    @cached_property
    def device(self) -> torch.device:
        name = self.cfg.device
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        return torch.device(name)

    @cached_property
    def output_dir(self) -> Path:
        """``out``, or ``<run>/inspection`` beside the checkpoint's run."""
        out = self.out or self.run_dir / "inspection"
        out.mkdir(parents=True, exist_ok=True)
        return out

    @cached_property
    def run_dir(self) -> Path:
        """``run_dir``, or the run the checkpoint belongs to (``<run>/checkpoints/<file>.ckpt``)."""
        if self.cfg.get("run_dir"):
            return Path(self.cfg.run_dir)
        if self.ckpt_path is None:
            raise InspectionError(
                f"mode={self.cfg.mode} needs a run: pass ckpt_path=<run>/checkpoints/last.ckpt "
                "or run_dir=<run>"
            )
        return self.ckpt_path.resolve().parent.parent

    def noise(self) -> torch.Generator | None:
        """A fresh generator seeded with ``seed`` (``seed=null``: unseeded)."""
        if self.cfg.get("seed") is None:
            return None
        return torch.Generator(self.device).manual_seed(int(self.cfg.seed))

    def sample_batches(self, n: int, batch_size: int) -> Iterator[Tensor]:
        """``n`` samples in batches, from the seeded noise stream; with ``rejection=...``, the
        ones that sampler keeps (``ganzoo.rejection``)."""
        noise = self.noise()
        if self.cfg.get("rejection"):
            rejection = instantiate(self.cfg.rejection)
            yield from rejection.batches(
                self.model,
                n,
                batch_size,
                noise,
                real=TrainingItems(self.training_set, self.device),
            )
            return
        for i in range(0, n, batch_size):
            yield self.model.sample(min(batch_size, n - i), generator=noise)

    # --- the model's kind of data ----------------------------------------------------------

    @cached_property
    def points(self) -> bool:
        """Whether the model makes 2D points (``(N, 2)``) rather than images."""
        return self.model.generate(self.model.fixed_z[:1]).dim() == 2

    @cached_property
    def data_config(self) -> dict[str, Any]:
        run = self.model.run_config or {}
        data = dict(run.get("data") or {})
        if not data:
            raise InspectionError(
                f"{self.ckpt_path} holds no run config (it was not trained by ganzoo-train), so "
                f"mode={self.cfg.mode} cannot rebuild its data"
            )
        if self.cfg.paths.get("data_dir") is not None and "data_dir" in data:
            data["data_dir"] = self.cfg.paths.data_dir
        return data

    @cached_property
    def value_range(self) -> tuple[float, float]:
        """The run's ``data.value_range`` as ``make_grid`` / ``save_image`` take it (the range
        ``normalize=True`` maps to [0, 1]); ``(0, 1)`` when the run has none."""
        run_data = (self.model.run_config or {}).get("data") or {}
        value_range = run_data.get("value_range")
        return (0.0, 1.0) if value_range is None else tuple(float(v) for v in value_range)

    def unit(self, x: Tensor) -> Tensor:
        """Images in the run's ``data.value_range`` to [0, 1] (one file per image, not a grid)."""
        return unit_range(x, self.value_range)

    @cached_property
    def training_set(self):
        """The run's training split."""
        datamodule = instantiate(self.data_config)
        datamodule.setup("fit")
        return datamodule.train_set

    @cached_property
    def held_out_set(self):
        """The run's test split (its validation split if it has none)."""
        datamodule = instantiate(self.data_config)
        datamodule.setup("test")
        dataset = datamodule.test_set if datamodule.test_set is not None else datamodule.val_set
        if dataset is None or len(dataset) == 0:
            raise InspectionError(f"{type(datamodule).__name__} has no held-out split to show")
        return dataset

    def held_out_batches(self, n: int, batch_size: int) -> Iterator[Tensor]:
        """The first ``min(n, size)`` held-out inputs, in order, ``batch_size`` at a time."""
        dataset = self.held_out_set
        n = min(n, len(dataset))
        for start in range(0, n, batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, n))]
            yield torch.stack([GenerativeModel.inputs(item) for item in items]).to(self.device)

    def held_out(self, n: int) -> Tensor:
        """Exactly ``n`` held-out inputs (an error if the split is smaller)."""
        size = len(self.held_out_set)
        if n > size:
            raise InspectionError(
                f"mode={self.cfg.mode} needs {n} held-out items but the test split has {size}: "
                "lower n"
            )
        return next(self.held_out_batches(n, n))

    def data_points(self) -> Tensor:
        return torch.cat(list(self.held_out_batches(self.cfg.scatter.num_data_points, 10_000)))

    def require_encoder(self) -> None:
        if not self.model.has_encoder:
            raise InspectionError(
                f"mode={self.cfg.mode} needs an encoder, and the {type(self.model).__name__} "
                "family has no encoder. Families with one: "
                f"{', '.join(encoder_families()) or 'none installed'}; "
                "pass the checkpoint of such a run"
            )


def encoder_families() -> list[str]:
    """Names of the installed families that can encode and reconstruct."""
    names = []
    for name in FAMILIES:
        try:
            if family_class(name).has_encoder:
                names.append(name)
        except ImportError:
            continue
    return names


# --- modes -----------------------------------------------------------------------------------


def samples(ins: Inspection) -> list[Path]:
    """``samples.png``: ``n`` samples in a grid of ``nrow`` columns (a scatter plot on 2D data)."""
    x = torch.cat(list(ins.sample_batches(ins.cfg.n, ins.cfg.batch_size)))
    path = ins.output_dir / "samples.png"
    if ins.points:
        return [save_figure(scatter_figure(x, ins.data_points(), title=f"{len(x)} samples"), path)]
    save_image(x, path, nrow=ins.cfg.nrow, normalize=True, value_range=ins.value_range)
    return [path]


def reconstructions(ins: Inspection) -> list[Path]:
    """``reconstructions.png``: rows of ``nrow`` held-out inputs alternate with rows of their
    reconstructions (``n`` rounded down to a multiple of ``nrow``); on 2D data, held-out points
    and their reconstructions in one scatter plot."""
    ins.require_encoder()
    x = ins.held_out(ins.cfg.n)
    recon = ins.model.reconstruct(x)
    path = ins.output_dir / "reconstructions.png"
    if ins.points:
        fig = scatter_figure(recon, x, title="held-out points (blue), reconstructions (orange)")
        return [save_figure(fig, path)]
    nrow = min(ins.cfg.nrow, len(x))
    grid = side_by_side(x, recon, nrow)
    save_image(grid, path, nrow=nrow, normalize=True, value_range=ins.value_range)
    return [path]


def interpolation(ins: Inspection) -> list[Path]:
    """``interpolation_<method>.png`` (one row per pair, ``steps`` columns from one end to the
    other) and ``interpolation_<method>.gif`` (the pairs morphing, there and back) for each of
    ``interpolation.methods``. Ends: prior samples, or with ``interpolation.from_data=true`` the
    encodings of ``2 * pairs`` held-out images (encoder families)."""
    opts = ins.cfg.interpolation
    unknown = [m for m in opts.methods if m not in INTERPOLATIONS]
    if unknown:
        raise InspectionError(
            f"interpolation.methods has {unknown}; valid methods: {sorted(INTERPOLATIONS)}"
        )
    pairs = opts.pairs
    if opts.from_data:
        ins.require_encoder()
        z = ins.model.encode(ins.held_out(2 * pairs))
    else:
        z = ins.model.prior.sample(2 * pairs, generator=ins.noise())
    z0, z1 = z[:pairs], z[pairs:]
    written = []
    for method in opts.methods:
        frames = interpolate(ins.model, z0, z1, opts.steps, INTERPOLATIONS[method])
        png, gif = (ins.output_dir / f"interpolation_{method}.{ext}" for ext in ("png", "gif"))
        if ins.points:
            pictures = _interpolation_scatter(ins, frames, method)
            save_figure(pictures[0], png)
            stills = [figure_to_pil(fig) for fig in pictures[1:]]
        else:
            grids = {"normalize": True, "value_range": ins.value_range}
            rows = torch.stack(frames, dim=1).flatten(0, 1)
            save_image(rows, png, nrow=opts.steps, **grids)
            nrow = min(pairs, ins.cfg.nrow)
            stills = [to_pil(make_grid(frame, nrow=nrow, **grids)) for frame in frames]
        save_gif(stills + stills[-2:0:-1], gif, frame_ms=opts.frame_ms)
        written += [png, gif]
    return written


def _interpolation_scatter(ins: Inspection, frames: list[Tensor], method: str) -> list:
    """A figure of every pair's path over held-out points, then one scatter figure per step."""
    data = ins.data_points()
    paths = torch.stack(frames, dim=1).cpu().numpy()  # (pairs, steps, 2)
    overview = scatter_figure(
        frames[0], data, title=f"{method} interpolation: {len(paths)} paths, starts in orange"
    )
    ax = overview.axes[0]
    for path in paths:
        ax.plot(path[:, 0], path[:, 1], "-o", ms=2, lw=0.8)
    steps = len(frames)
    stills = [
        scatter_figure(frame, data, title=f"{method}  t = {i / (steps - 1):.2f}")
        for i, frame in enumerate(frames)
    ]
    return [overview, *stills]


def progress(ins: Inspection) -> list[Path]:
    """``progress.gif``: the fixed-noise sample grids that training saved every epoch
    (``<run>/samples/epoch_*.png``), in epoch order, the last one held."""
    grids = sorted(
        (ins.run_dir / "samples").glob("epoch_*.png"), key=lambda p: int(p.stem.split("_")[-1])
    )
    if not grids:
        raise InspectionError(
            f"no sample grids in {ins.run_dir / 'samples'} (the SampleGrid callback writes "
            "epoch_XXXX.png there during training): pass run_dir=<run> of a ganzoo-train run"
        )
    frames = [Image.open(p).convert("RGB") for p in grids]
    opts = ins.cfg.progress
    return [
        save_gif(
            frames,
            ins.output_dir / "progress.gif",
            frame_ms=opts.frame_ms,
            last_ms=opts.last_frame_ms,
        )
    ]


def export(ins: Inspection) -> list[Path]:
    """``n`` samples as ``samples/000000.png ...`` and, for encoder families, the reconstructions
    of the first ``n`` held-out images (at most the test split) as ``reconstructions/...``, one
    file per image for external FID tools; ``batch_size`` at a time, so memory stays bounded.
    On 2D data: ``samples.npy`` / ``samples.csv`` (and ``reconstructions.*``) of points."""
    n, batch_size = ins.cfg.n, ins.cfg.batch_size
    written = [_write_all(ins, "samples", ins.sample_batches(n, batch_size))]
    if ins.model.has_encoder:
        recon = (ins.model.reconstruct(x) for x in ins.held_out_batches(n, batch_size))
        written.append(_write_all(ins, "reconstructions", recon))
    return written


def _write_all(ins: Inspection, name: str, batches: Iterator[Tensor]) -> Path:
    if ins.points:
        points = torch.cat([b.cpu() for b in batches]).numpy()
        np.save(ins.output_dir / f"{name}.npy", points)
        np.savetxt(ins.output_dir / f"{name}.csv", points, delimiter=",", header="x,y", comments="")
        print(f"{name}: {len(points)} points")
        return ins.output_dir / f"{name}.npy"
    folder = ins.output_dir / name
    if folder.is_dir() and any(folder.glob("*.png")):
        raise InspectionError(
            f"{folder} already holds PNG files: choose another out=<dir> or remove them"
        )
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for batch in batches:
        for image in ins.unit(batch):
            to_pil(image).save(folder / f"{count:06d}.png")
            count += 1
    print(f"{name}: {count} images")
    return folder


#: ``mode`` -> what it writes. Each takes the request and returns the paths it wrote.
MODES: dict[str, Callable[[Inspection], list[Path]]] = {
    "samples": samples,
    "reconstructions": reconstructions,
    "interpolation": interpolation,
    "progress": progress,
    "export": export,
}


def inspect(cfg: DictConfig) -> list[Path]:
    """Serve one ``ganzoo-sample`` request; returns the files (or folders) it wrote."""
    if cfg.mode not in MODES:
        raise InspectionError(
            f"mode={cfg.mode!r} is not a ganzoo-sample mode; valid modes: {', '.join(MODES)}"
        )
    if cfg.n < 1 or cfg.batch_size < 1:
        raise InspectionError(
            f"n and batch_size must be >= 1, got n={cfg.n}, batch_size={cfg.batch_size}"
        )
    with torch.no_grad():
        return MODES[cfg.mode](Inspection(cfg))
