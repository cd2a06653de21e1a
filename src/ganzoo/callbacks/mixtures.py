"""Mode-coverage figures on 2D mixtures, computed at every validation."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from ganzoo.callbacks.media import log_figure  # noqa: E402
from ganzoo.metrics.mixtures import mode_statistics  # noqa: E402


def histogram_figure(counts: Tensor, title: str = ""):
    """A bar chart of the high-quality samples nearest to each mode, with the level a uniform
    histogram of as many samples would have (reverse KL 0)."""
    fig, ax = plt.subplots(figsize=(5, 2.5), dpi=100)
    counts = counts.detach().cpu()
    ax.bar(range(len(counts)), counts.numpy(), color="tab:orange")
    ax.axhline(float(counts.sum()) / len(counts), color="tab:blue", lw=1, ls="--", label="uniform")
    ax.set_xlabel("mode")
    ax.set_ylabel("high-quality samples")
    ax.legend(loc="upper right", fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


class ModeCoverage(pl.Callback):
    """Logs ``val/modes``, ``val/high_quality`` (%) and ``val/reverse_kl`` from ``num_samples``
    generated points, when the datamodule is a Gaussian mixture (it has ``modes`` and ``std``);
    with ``histogram``, also the per-mode histogram of high-quality samples as the picture
    ``mode_histogram`` to every logger that takes images. Does nothing on other data, so it can
    stay in the default callbacks."""

    def __init__(
        self,
        num_samples: int = 2500,
        threshold: float = 3.0,
        seed: int = 1234,
        histogram: bool = True,
    ):
        self.num_samples = num_samples
        self.threshold = threshold
        self.seed = seed
        self.histogram = histogram

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dm = trainer.datamodule
        if trainer.sanity_checking or not hasattr(dm, "modes"):
            return
        generator = torch.Generator(pl_module.device).manual_seed(self.seed + trainer.current_epoch)
        samples = pl_module.sample(self.num_samples, generator=generator)
        stats = mode_statistics(samples, dm.modes, dm.std, self.threshold)
        pl_module.log_dict({f"val/{k}": stats[k] for k in ("modes", "high_quality", "reverse_kl")})
        if self.histogram and trainer.global_rank == 0 and trainer.loggers:
            epoch = trainer.current_epoch + 1
            title = f"epoch {epoch}: {int(stats['modes'])} of {len(dm.modes)} modes"
            fig = histogram_figure(stats["counts"], title)
            log_figure(trainer, "mode_histogram", fig, epoch)
            plt.close(fig)
