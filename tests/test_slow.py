"""Longer checks on real MNIST (``pytest -m slow``): each family's MNIST recipe learns digits.

Each test trains one of the family's MNIST recipes for a bounded number of batches on
``../shared/data``, then measures it with ``ganzoo-eval``'s code: the samples must score well
above a collapsed model (one digit, or the mean image: classifier score about 1), and an encoder
family must reconstruct held-out digits better than the mean training image does.
"""

from __future__ import annotations

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from conftest import compose_run
from ganzoo.evaluate import evaluate
from ganzoo.models import load_checkpoint
from ganzoo.train import train

pytestmark = pytest.mark.slow

#: Domain metrics on 2,000 samples against 2,000 test images; no Parzen (minutes on CPU).
MNIST_EVAL = [
    "~metrics.parzen",
    "~metrics.mode_statistics",
    "~metrics.stacked_mnist",
    "metrics.domain.num_real=2000",
    "metrics.domain.num_generated=2000",
    "metrics.reconstruction.num_images=1000",
]


@pytest.fixture(scope="module")
def classifier_cache(tmp_path_factory):
    """One domain classifier for the module (trained on first use, on real MNIST)."""
    return tmp_path_factory.mktemp("classifier")


def mean_image_l1(model) -> float:
    """Held-out L1 per pixel ([0, 1] units) of the mean training image, on 1,000 test digits."""
    data = instantiate(model.run_config["data"])
    data.setup("fit")
    x = torch.stack([data.test_set[i][0] for i in range(1000)])
    low, high = data.value_range if data.value_range is not None else (0.0, 1.0)
    return float(((data.pixel_marginals() - x).abs() / (high - low)).mean())


# Calibration: seed 0, ``pytest -m slow tests/test_slow.py`` with one torch thread; the measured
# values are in each row's comment, the thresholds below them and above a collapsed model's.
@pytest.mark.parametrize(
    ("experiment", "overrides", "min_score", "max_recon_vs_mean"),
    [
        # goodfellow2014_mnist (Goodfellow et al.'s MLPs), 10 epochs on one torch thread
        # (6 minutes here): measured score 5.38, every class at least 3.8% of the samples.
        # With two threads the same seed collapsed onto one digit by epoch 7 (the recipe is
        # that fragile). The mnist study's InfoGAN networks at batch 64 took 10 minutes for
        # 400 batches here and still scored 1.8.
        ("goodfellow2014_mnist", ["trainer.max_epochs=10"], 3.5, None),
        # vaegan_mnist_conv, 150 batches of 128 (7 minutes here): measured score 1.03 and
        # held-out L1 0.155 against the mean image's 0.150, i.e. not yet learning. ganzoo has no
        # VAE/GAN MNIST recipe that makes digits in a bounded CPU run yet; strict, so
        # that a recipe that passes has to be written in here.
        pytest.param(
            "vaegan_mnist_conv",
            ["+trainer.limit_train_batches=150"],
            2.0,
            1.0,
            marks=pytest.mark.xfail(
                strict=True, reason="vaegan_mnist_conv is still at the mean image after 150 batches"
            ),
        ),
        # alphagan_mnist (ganzoo's MLP recipe), one epoch of 500 batches (3 minutes): measured
        # score 2.02 (blurry digits of few classes), held-out L1 0.071 against the mean image's 0.15.
        ("alphagan_mnist", [], 1.5, 0.6),
    ],
    ids=["gan", "vaegan", "alphagan"],
)
def test_each_familys_mnist_recipe_makes_digits(
    experiment,
    overrides,
    min_score,
    max_recon_vs_mean,
    make_cfg,
    shared_data,
    classifier_cache,
    tmp_path,
):
    torch.set_num_threads(1)  # the calibration's numerics (the suite's default is 2)
    cfg = make_cfg(
        f"experiment={experiment}",
        f"paths.data_dir={shared_data}",
        "trainer.max_epochs=1",
        "+trainer.enable_progress_bar=false",
        *overrides,  # after max_epochs=1: an override may set it again
    )
    train(cfg)
    GlobalHydra.instance().clear()
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    eval_cfg = compose_run(
        [f"ckpt_path={ckpt}", f"out={tmp_path / 'eval'}", f"paths.cache_dir={classifier_cache}"]
        + MNIST_EVAL,
        tmp_path / "eval",
        "eval",
    )
    try:
        metrics = evaluate(eval_cfg)["metrics"]
    finally:
        GlobalHydra.instance().clear()
    assert metrics["classifier_score"]["value"] > min_score, metrics["classifier_score"]
    if max_recon_vs_mean is None:
        assert "recon_l1_test" not in metrics
        return
    baseline = mean_image_l1(load_checkpoint(ckpt))
    recon = metrics["recon_l1_test"]["value"]
    assert recon < max_recon_vs_mean * baseline, (recon, baseline)
