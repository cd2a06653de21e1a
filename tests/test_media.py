"""Pictures reach every logger: TensorBoard, MLflow (read back from its store with MLflow's own
client, as ``mlflow ui`` would) and W&B (offline), and the PNG files stay in the run directory."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from conftest import compose_run, quick_overrides
from ganzoo.callbacks.media import figure_to_tensor, log_figure, log_image, to_uint8_hwc
from ganzoo.callbacks.samples import scatter_figure
from ganzoo.train import train

mlflow = pytest.importorskip("mlflow")

RING = [
    "experiment=gan_ring",
    "data.num_train=200",
    "data.num_val=50",
    "callbacks.mode_coverage.num_samples=100",
    "+callbacks.samples.num_data_points=100",
]


def mlflow_run(output_dir: Path):
    """The only run of the store ``logger=mlflow`` left under ``output_dir``, and its client."""
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{output_dir}/mlflow/mlflow.db")
    runs = [
        run
        for exp in client.search_experiments()
        for run in client.search_runs([exp.experiment_id])
    ]
    assert len(runs) == 1, runs
    return client, runs[0]


def image_steps(client, run_id: str) -> dict[str, set[int]]:
    """``{key: {steps}}`` of the images logged with ``log_image(key=..., step=...)``."""
    found: dict[str, set[int]] = {}
    for artifact in client.list_artifacts(run_id, "images"):
        name = Path(artifact.path).name  # "<key>+step+<step>+timestamp+...png"
        if name.endswith(".png") and "+step+" in name:
            key, _, step = name.split("+")[:3]
            found.setdefault(key, set()).add(int(step))
    return found


def fake_trainer(*loggers):
    return SimpleNamespace(loggers=list(loggers), global_rank=0, global_step=7)


def test_to_uint8_hwc_rounds_as_save_image():
    image = torch.tensor([[[0.0, 0.5]], [[1.0, 0.25]], [[0.999, 0.001]]])  # (3, 1, 2)
    array = to_uint8_hwc(image)
    assert array.shape == (1, 2, 3) and array.dtype == np.uint8
    assert array.tolist() == [[[0, 255, 255], [128, 64, 0]]]
    assert to_uint8_hwc(torch.ones(1, 2, 2)).shape == (2, 2)


def test_log_image_reaches_tensorboard_and_mlflow_and_skips_csv(tmp_path):
    from pytorch_lightning.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = TensorBoardLogger(tmp_path, name="tb", version="")
    ml = MLFlowLogger(
        experiment_name="media",
        tracking_uri=f"sqlite:///{tmp_path}/mlflow/mlflow.db",
        artifact_location=str(tmp_path / "mlflow" / "artifacts"),
    )
    trainer = fake_trainer(tb, ml, CSVLogger(tmp_path, name="csv"))
    grid = torch.rand(3, 10, 12)
    log_image(trainer, "samples", grid, step=3)
    fig = scatter_figure(torch.randn(50, 2), torch.randn(50, 2), title="t")
    log_figure(trainer, "scatter", fig, step=4)
    tb.experiment.flush()
    ml.finalize("success")

    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    events.Reload()
    assert set(events.Tags()["images"]) == {"samples", "scatter"}
    (tb_image,) = events.Images("samples")
    assert (tb_image.step, tb_image.width, tb_image.height) == (3, 12, 10)

    client, run = mlflow_run(tmp_path)
    assert image_steps(client, run.info.run_id) == {"samples": {3}, "scatter": {4}}
    (png,) = [
        a.path
        for a in client.list_artifacts(run.info.run_id, "images")
        if a.path.endswith(".png") and "samples+" in a.path
    ]
    local = client.download_artifacts(run.info.run_id, png, str(tmp_path / "down"))
    assert_close_uint8(np.asarray(Image.open(local).convert("RGB")), to_uint8_hwc(grid))
    width, height = fig.canvas.get_width_height()
    assert tuple(figure_to_tensor(fig).shape) == (3, height, width)


def assert_close_uint8(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape and np.array_equal(a, b)


def test_log_image_reaches_wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from pytorch_lightning.loggers import WandbLogger

    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = WandbLogger(project="ganzoo-test", save_dir=str(tmp_path), offline=True)
    log_image(fake_trainer(logger), "samples", torch.rand(3, 8, 8), step=2)
    logger.experiment.finish()
    media = list((tmp_path / "wandb").glob("offline-run-*/files/media/images/samples_*.png"))
    assert len(media) == 1, sorted(p.name for p in (tmp_path / "wandb").rglob("*"))


def test_gan_ring_with_mlflow_leaves_scalars_params_and_pictures(tmp_path):
    out = tmp_path / "run"
    train(compose_run([*RING, *quick_overrides(), "logger=mlflow", "trainer.max_epochs=2"], out))
    GlobalHydra.instance().clear()

    client, run = mlflow_run(out)
    assert run.info.status == "FINISHED"
    assert {"val/modes", "val/reverse_kl", "val/loss_d", "train/lr_generator"} <= set(
        run.data.metrics
    )
    steps = client.get_metric_history(run.info.run_id, "val/modes")
    assert len(steps) == 2
    # The run's resolved config, as Lightning's MLFlowLogger flattens it ("/" between keys).
    assert run.data.params["model/k"] == "1"
    assert run.data.params["model/optimizer/generator/lr"] == "0.0001"
    assert run.data.params["data/num_train"] == "200"
    assert run.data.tags["run_dir"] == str(out)
    assert image_steps(client, run.info.run_id) == {"samples": {1, 2}, "mode_histogram": {1, 2}}
    assert sorted(p.name for p in (out / "samples").glob("*.png")) == [
        "epoch_0001.png",
        "epoch_0002.png",
    ]


def test_encoder_family_logs_reconstructions_to_mlflow(tmp_path, fake_mnist):
    out = tmp_path / "run"
    overrides = [
        "experiment=alphagan_mnist",
        f"paths.data_dir={fake_mnist}",
        "data.val_size=64",
        "data.batch_size=16",
        "logger=mlflow",
        *quick_overrides(),
    ]
    train(compose_run(overrides, out))
    GlobalHydra.instance().clear()

    client, run = mlflow_run(out)
    assert image_steps(client, run.info.run_id) == {"samples": {1}, "reconstructions": {1}}
    assert (out / "reconstructions" / "epoch_0001.png").is_file()
    assert (out / "samples" / "epoch_0001.png").is_file()
