"""Longer checks on real MNIST (``pytest -m slow``): a family learns what it should."""

from __future__ import annotations

import pytest
import torch

from ganzoo.models import load_checkpoint
from ganzoo.train import train

pytestmark = pytest.mark.slow


def test_alphagan_mnist_reconstructs_held_out_digits_after_one_epoch(
    make_cfg, shared_data, tmp_path
):
    cfg = make_cfg(
        "experiment=alphagan_mnist",
        f"paths.data_dir={shared_data}",
        "trainer.max_epochs=1",
        "+trainer.enable_progress_bar=false",
        "data.num_workers=0",
    )
    train(cfg)
    model = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    dm = model.run_config["data"]
    from hydra.utils import instantiate

    data = instantiate(dm)
    data.setup("fit")
    x = torch.stack([data.test_set[i][0] for i in range(1000)])
    low, high = data.value_range
    with torch.no_grad():
        l1 = ((model.reconstruct(x) - x).abs() / (high - low)).mean()
    mean_image_l1 = ((data.pixel_marginals() - x).abs() / (high - low)).mean()
    # The mean training image scores about 0.15 per pixel; one epoch of alpha-GAN about 0.07.
    assert l1 < 0.6 * mean_image_l1, (float(l1), float(mean_image_l1))
