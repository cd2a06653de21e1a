"""Longer checks on real MNIST (``pytest -m slow``): a family learns what it should."""

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


# --- each family's MNIST recipe (the mnist study's) makes digits -----------------------------

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


@pytest.mark.parametrize(
    ("experiment", "overrides", "min_score"),
    [
        ("gan_mnist_infogan", ["data.batch_size=64", "+trainer.limit_train_batches=400"], 4.0),
        ("vaegan_mnist_conv", ["+trainer.limit_train_batches=150"], 2.0),
        ("alphagan_mnist", [], 2.0),
    ],
)
def test_each_familys_mnist_recipe_makes_digits(
    experiment, overrides, min_score, make_cfg, shared_data, classifier_cache, tmp_path
):
    """A bounded run of the recipe, then ganzoo-eval's domain metrics: the samples score well
    above a collapsed model (one digit, or the mean image: classifier score about 1), and an
    encoder family reconstructs held-out digits better than the mean training image does."""
    cfg = make_cfg(
        f"experiment={experiment}",
        f"paths.data_dir={shared_data}",
        "trainer.max_epochs=1",
        "+trainer.enable_progress_bar=false",
        *overrides,
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
    score = metrics["classifier_score"]["value"]
    assert score > min_score, metrics["classifier_score"]
    model = load_checkpoint(ckpt)
    if not model.has_encoder:
        return
    data = instantiate(model.run_config["data"])
    data.setup("fit")
    x = torch.stack([data.test_set[i][0] for i in range(1000)])
    low, high = data.value_range if data.value_range is not None else (0.0, 1.0)
    mean_image_l1 = float(((data.pixel_marginals() - x).abs() / (high - low)).mean())
    assert metrics["recon_l1_test"]["value"] < mean_image_l1, (
        metrics["recon_l1_test"],
        mean_image_l1,
    )
