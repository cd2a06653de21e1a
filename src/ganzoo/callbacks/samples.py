"""Sample grids from the fixed noise batch, saved as PNGs and sent to every logger."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402
from torchvision.utils import make_grid, save_image  # noqa: E402

from ganzoo.callbacks.media import log_figure, log_image  # noqa: E402
from ganzoo.metrics.suite import evaluating  # noqa: E402


def display_range(datamodule) -> tuple[float, float]:
    """The data's ``value_range`` as the tuple ``make_grid(normalize=True, value_range=...)``
    maps to [0, 1] (``(0, 1)`` when the data has none)."""
    value_range = getattr(datamodule, "value_range", None)
    return (0.0, 1.0) if value_range is None else tuple(float(v) for v in value_range)


def scatter_figure(samples: Tensor, data: Tensor | None = None, title: str = ""):
    """A matplotlib figure of 2D samples (orange) over data points (blue)."""
    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    if data is not None:
        ax.scatter(data[:, 0].cpu(), data[:, 1].cpu(), s=2, alpha=0.3, c="tab:blue", label="data")
    ax.scatter(
        samples[:, 0].cpu(), samples[:, 1].cpu(), s=2, alpha=0.5, c="tab:orange", label="samples"
    )
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=7, markerscale=3)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


class SampleGrid(pl.Callback):
    """Every ``every_n_epochs`` epochs, decode the module's ``fixed_z`` in eval mode.

    Images: a grid saved as ``<dirpath>/epoch_XXXX.png`` and logged as ``samples`` to every
    logger (:mod:`ganzoo.callbacks.media`); 2D data: a scatter plot over validation points
    instead. The PNGs also feed ``ganzoo-sample mode=progress``.
    """

    def __init__(
        self,
        dirpath: str | Path,
        every_n_epochs: int = 1,
        nrow: int = 8,
        num_data_points: int = 2500,
    ):
        if every_n_epochs < 1:
            raise ValueError(f"callbacks.samples.every_n_epochs must be >= 1, got {every_n_epochs}")
        self.dirpath = Path(dirpath)
        self.every_n_epochs = every_n_epochs
        self.nrow = nrow
        self.num_data_points = num_data_points
        self.last_path: Path | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if epoch % self.every_n_epochs and epoch != trainer.max_epochs:
            return
        if trainer.global_rank == 0:
            self.render(trainer, pl_module, epoch)

    @torch.no_grad()
    def render(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int) -> Path:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / f"epoch_{epoch:04d}.png"
        dm = trainer.datamodule
        with evaluating(pl_module):
            samples = pl_module.generate(pl_module.fixed_z)
            if samples.dim() == 2:
                # The fixed batch is small; a scatter plot wants more points of the same generator.
                samples = pl_module.sample(
                    self.num_data_points, generator=torch.Generator(pl_module.device).manual_seed(0)
                )
        if samples.dim() == 2:
            fig = scatter_figure(samples, _points(dm, self.num_data_points), title=f"epoch {epoch}")
            fig.savefig(path)
            log_figure(trainer, "samples", fig, epoch)
            plt.close(fig)
        else:
            grid = make_grid(samples, nrow=self.nrow, normalize=True, value_range=display_range(dm))
            save_image(grid, path)
            log_image(trainer, "samples", grid, epoch)
        self.last_path = path
        return path


def _points(datamodule, n: int) -> Tensor | None:
    dataset = getattr(datamodule, "val_set", None) or getattr(datamodule, "train_set", None)
    if dataset is None:
        return None
    return torch.stack([dataset[i][0] for i in range(min(n, len(dataset)))])
