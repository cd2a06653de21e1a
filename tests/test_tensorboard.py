"""TensorBoard as a researcher reads it: a real server on 127.0.0.1 over a small sweep's logs,
asked through its HTTP API for the scalars, the images and the HPARAMS table the runs wrote."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from torch.testing import assert_close

from conftest import compose_run, quick_overrides
from ganzoo.callbacks.hparams import flatten
from ganzoo.train import train
from tiny_family import register, train_tiny

DEADLINE_S = 120
GAN_SCALARS = {
    "train/loss_d",
    "train/loss_g",
    "train/d_real",
    "train/d_fake",
    "val/loss_d",
    "val/loss_g",
    "val/d_real",
    "val/d_fake",
}
LRS = (1e-4, 1e-3)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TensorBoard:
    """``python -m tensorboard.main`` on 127.0.0.1 and a free port; JSON over HTTP."""

    def __init__(self, logdir: Path, log: Path):
        self.port = free_port()
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tensorboard.main",
                    "--logdir",
                    str(logdir),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--load_fast=false",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def get(self, route: str, body: dict | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{route}",
            data=data,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
        return raw if route.startswith("/data/plugin/images/individualImage") else json.loads(raw)

    def wait_for(self, route: str, ready, deadline: float) -> Any:
        """Poll ``route`` until ``ready(answer)`` (the server loads the logs in the background)."""
        answer = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"tensorboard exited with {self.proc.returncode}:\n{self.log.read_text()}"
                )
            try:
                answer = self.get(route)
                if ready(answer):
                    return answer
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.5)
        pytest.fail(
            f"tensorboard did not serve {route} in {DEADLINE_S} s; last answer {answer}:\n"
            + self.log.read_text()
        )

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def tensorboard(tmp_path) -> Iterator:
    servers = []

    def start(logdir: Path) -> TensorBoard:
        servers.append(TensorBoard(logdir, tmp_path / "tensorboard.log"))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def test_tensorboard_serves_scalars_images_and_the_hparams_table(
    tmp_path, fake_mnist, monkeypatch, tensorboard
):
    # A sweep of two GAN runs over the generator's learning rate, laid out as `ganzoo-train -m`
    # lays out its jobs (<sweep>/<job number>/), and one run of an encoder family.
    sweep = tmp_path / "sweep"
    data = ["data=mnist", f"paths.data_dir={fake_mnist}", "data.val_size=64", "data.batch_size=16"]
    common = [*quick_overrides(batches=3), *data, "trainer.log_every_n_steps=1"]
    final = {}
    for job, lr in enumerate(LRS):
        cfg = compose_run([*common, f"model.optimizer.generator.lr={lr}"], sweep / str(job))
        final[f"{job}/tensorboard"] = train(cfg)
    register(monkeypatch)
    train_tiny([*data, "trainer.log_every_n_steps=1"], sweep / "autoencoder")

    board = tensorboard(sweep)
    deadline = time.monotonic() + DEADLINE_S
    runs = {"0/tensorboard", "1/tensorboard", "autoencoder/tensorboard"}
    scalars = board.wait_for(
        "/data/plugin/scalars/tags", lambda tags: set(tags) == runs and all(tags.values()), deadline
    )
    for run in ("0/tensorboard", "1/tensorboard"):
        assert GAN_SCALARS <= set(scalars[run]), scalars[run]
    assert {"train/loss_recon", "val/loss_recon"} <= set(scalars["autoencoder/tensorboard"])

    images = board.wait_for("/data/plugin/images/tags", lambda tags: set(tags) == runs, deadline)
    assert set(images["0/tensorboard"]) == set(images["1/tensorboard"]) == {"samples"}
    assert set(images["autoencoder/tensorboard"]) == {"samples", "reconstructions"}
    (entry,) = board.get("/data/plugin/images/images?run=0/tensorboard&tag=samples&sample=0")
    picture = Image.open(
        BytesIO(board.get(f"/data/plugin/images/individualImage?{entry['query']}"))
    )
    assert picture.size == (8 * 30 + 2, 8 * 30 + 2)  # the 64 fixed-noise samples, 8 per row

    # HPARAMS: one row per run; the swept value is marked as differing; metrics are final values.
    experiment = board.get("/data/plugin/hparams/experiment", {"experimentName": ""})
    hparams = {h["name"]: h for h in experiment["hparamInfos"]}
    assert hparams["model.optimizer.generator.lr"]["differs"] is True
    assert hparams["model.latent_dim"]["differs"] is False
    assert not any(name.startswith(("paths.", "callbacks.", "logger.")) for name in hparams)
    assert {m["name"]["tag"] for m in experiment["metricInfos"]} >= GAN_SCALARS
    groups = board.get(
        "/data/plugin/hparams/session_groups",
        {
            "experimentName": "",
            "allowedStatuses": [
                "STATUS_UNKNOWN",
                "STATUS_SUCCESS",
                "STATUS_FAILURE",
                "STATUS_RUNNING",
            ],
            "colParams": [
                {"hparam": "model.optimizer.generator.lr"},
                {"metric": {"tag": "val/loss_d"}},
            ],
            "startIndex": 0,
            "sliceSize": 10,
        },
    )
    rows = {group["name"]: group for group in groups["sessionGroups"]}
    assert set(rows) == runs
    for job, lr in enumerate(LRS):
        row = rows[f"{job}/tensorboard"]
        assert row["hparams"]["model.optimizer.generator.lr"] == lr
        shown = {m["name"]["tag"]: m["value"] for m in row["metricValues"]}
        for name in ("val/loss_d", "val/d_real", "train/loss_g"):
            assert_close(torch.tensor(shown[name]), torch.tensor(final[f"{job}/tensorboard"][name]))


def test_flatten_names_hyperparameters_as_overrides_do():
    config = {
        "seed": 0,
        "paths": {"data_dir": "data"},
        "model": {
            "_target_": "ganzoo.models.GAN",
            "_recursive_": False,
            "optimizer": {"generator": {"_partial_": True, "lr": 1e-3, "betas": [0.5, 0.999]}},
            "prior": None,
        },
        "trainer": {"max_epochs": 5, "default_root_dir": "logs/x"},
    }
    assert flatten(config, exclude=("paths", "trainer.default_root_dir")) == {
        "seed": 0,
        "model._target_": "ganzoo.models.GAN",
        "model.optimizer.generator.lr": 1e-3,
        "model.optimizer.generator.betas": "[0.5, 0.999]",
        "model.prior": "None",
        "trainer.max_epochs": 5,
    }


def test_training_curve_script_tabulates_a_resumed_runs_epochs(tmp_path):
    """scripts/training_curve.py reads every event file of a run (a resumed run writes a second
    one), keys values by the epoch Lightning logs beside them, and keeps the last of a repeat."""
    import importlib.util

    from torch.utils.tensorboard import SummaryWriter

    spec = importlib.util.spec_from_file_location(
        "training_curve", Path(__file__).parents[1] / "scripts" / "training_curve.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    logs = tmp_path / "run" / "tensorboard"
    # First process: epochs 0-2 (0-based, as Lightning logs them); resumed: epoch 2 again, 3.
    for part, epochs in enumerate([(0, 1, 2), (2, 3)]):
        writer = SummaryWriter(logs, filename_suffix=f".{part}")
        for epoch in epochs:
            step = 100 * (epoch + 1)
            writer.add_scalar("epoch", epoch, step)
            writer.add_scalar("val/parzen_ll", 10.0 * epoch + part, step)
        writer.close()
    values = script.curves(tmp_path / "run", ["val/parzen_ll"])
    assert values == {"val/parzen_ll": {1: 0.0, 2: 10.0, 3: 21.0, 4: 31.0}}
    rows = script.table(values, every=2).splitlines()
    assert rows[2:] == ["| 1 | 0 |", "| 2 | 10 |", "| 4 | 31 |"]
    assert script.plot(values, tmp_path / "curve.png").stat().st_size > 0
    with pytest.raises(SystemExit, match="no scalar 'val/fid'"):
        script.curves(tmp_path / "run", ["val/fid"])
