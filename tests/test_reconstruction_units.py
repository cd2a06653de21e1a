"""Reconstruction errors in one unit everywhere: per pixel in [0, 1], in training logs and in
evaluation alike, whatever the data's value range."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("experiment", ["alphagan_mnist", "vaegan_mnist_mlp"])
def test_training_logs_reconstruction_in_the_units_of_evaluation(experiment, fake_mnist, tmp_path):
    """val/recon_l1 and val/recon_mse of a run on [-1, 1] pixels are per pixel in [0, 1] units,
    as ganzoo-eval's reconstruction metrics are."""
    import torch

    from conftest import compose_run, quick_overrides
    from ganzoo.metrics.reconstruction import reconstruction_errors
    from ganzoo.train import build_run

    cfg = compose_run(
        [
            f"experiment={experiment}",
            f"paths.data_dir={fake_mnist}",
            "data.val_size=64",
            "logger=csv",
            *quick_overrides(batches=2),
        ],
        tmp_path / "run",
    )
    datamodule, model, trainer = build_run(cfg)
    trainer.fit(model, datamodule=datamodule)
    assert tuple(datamodule.value_range) == (-1.0, 1.0)
    model.eval()
    with torch.no_grad():
        if experiment.startswith("vaegan"):
            reconstruct = lambda x: model.generator(model.posterior(x)[0])  # noqa: E731
        else:
            reconstruct = model.reconstruct
        expected = reconstruction_errors(
            reconstruct, (b[0] for b in datamodule.val_dataloader()), datamodule.value_range
        )
    for name in ("l1", "mse"):
        logged = float(trainer.callback_metrics[f"val/recon_{name}"])
        assert logged == pytest.approx(expected[name], rel=1e-4)
