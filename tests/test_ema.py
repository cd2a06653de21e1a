"""The moving average of G (and E): its closed form, where it is used, and its checkpoints."""

from __future__ import annotations

import json

import pytest
import pytorch_lightning as pl
import torch

from conftest import compose_run, quick_overrides
from ganzoo.models import load_checkpoint
from ganzoo.train import build_run

RING = ["data.num_train=600", "data.num_val=50", "logger=csv"]


class RecordParameters(pl.Callback):
    """Every network parameter of ``names`` after each training batch's updates."""

    def __init__(self, names):
        self.names = names
        self.seen: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen.append(
            {
                f"{n}.{k}": v.detach().clone()
                for n in self.names
                for k, v in getattr(pl_module, n).named_parameters()
            }
        )


def train(tmp_path, experiment, *overrides, batches=5):
    cfg = compose_run(
        [f"experiment={experiment}", *RING, *quick_overrides(batches), *overrides], tmp_path
    )
    datamodule, model, trainer = build_run(cfg)
    recorder = RecordParameters(model.ema_networks)
    trainer.callbacks.append(recorder)
    trainer.fit(model, datamodule=datamodule)
    return model, trainer, recorder


@pytest.mark.parametrize(
    ("experiment", "start"), [("gan_ring", 0), ("alphagan_ring", 2), ("vaegan_ring", 1)]
)
def test_average_is_the_closed_form_of_the_recorded_weights(tmp_path, experiment, start):
    decay, batches = 0.8, 5
    model, _, recorder = train(
        tmp_path,
        experiment,
        f"model.ema.decay={decay}",
        f"model.ema.start={start}",
        batches=batches,
    )
    assert set(model.ema) == set(model.ema_networks)
    assert model.ema_networks == (
        ("generator", "encoder") if experiment != "gan_ring" else ("generator",)
    )
    # Averaging starts after `start` batches with a copy, then ema = d ema + (1 - d) w.
    recorded = recorder.seen[start:]
    assert len(recorded) == batches - start
    for name in model.ema_networks:
        averaged = dict(model.ema[name].module.named_parameters())
        assert int(model.ema[name].n_averaged) == batches - start
        for key, value in averaged.items():
            weights = [r[f"{name}.{key}"] for r in recorded]
            expected = decay ** (len(weights) - 1) * weights[0]
            for i, w in enumerate(weights[1:], start=1):
                expected = expected + (1 - decay) * decay ** (len(weights) - 1 - i) * w
            torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)
            assert not torch.equal(value, getattr(model, name).get_parameter(key))


class ReferenceAverage(pl.Callback):
    """``AveragedModel.update_parameters`` itself, on a copy of G, after each batch's updates
    (callbacks' batch-end hooks run before the module's, which updates the module's average)."""

    def __init__(self, decay, start):
        self.decay, self.start, self.average = decay, start, None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        if self.average is None:
            self.average = AveragedModel(
                pl_module.generator,
                multi_avg_fn=get_ema_multi_avg_fn(self.decay),
                use_buffers=True,
            )
        if pl_module.batches_seen + 1 > self.start:
            self.average.update_parameters(pl_module.generator)


def test_average_is_bit_for_bit_that_of_averaged_model(tmp_path):
    # gan_ring's G has batch norm: running statistics and an integer batch counter are averaged
    # too (use_buffers=True).
    decay, start = 0.8, 2
    cfg = compose_run(
        [
            "experiment=gan_ring",
            *RING,
            *quick_overrides(6),
            f"model.ema.decay={decay}",
            f"model.ema.start={start}",
        ],
        tmp_path,
    )
    datamodule, model, trainer = build_run(cfg)
    reference = ReferenceAverage(decay, start)
    trainer.callbacks.append(reference)
    trainer.fit(model, datamodule=datamodule)
    ours, theirs = model.ema["generator"].state_dict(), reference.average.state_dict()
    assert int(ours["n_averaged"]) == 6 - start
    assert any(not v.is_floating_point() for v in ours.values())  # num_batches_tracked
    for key, value in theirs.items():
        assert torch.equal(ours[key], value), key


def test_sampling_uses_the_average_when_enabled_and_the_raw_networks_when_not(tmp_path):
    model, _, _ = train(tmp_path, "alphagan_ring", "model.ema.decay=0.5")
    model.eval()
    z, x = model.fixed_z[:16], torch.randn(16, 2)
    with torch.no_grad():
        torch.testing.assert_close(
            model.generate(z), model.ema["generator"].module(z), rtol=0, atol=0
        )
        torch.testing.assert_close(model.encode(x), model.ema["encoder"].module(x), rtol=0, atol=0)
        assert not torch.equal(model.generate(z), model.generator(z))
        assert model.ema_settings() == {"decay": 0.5, "start": 0, "used": True}
        model.use_ema = False
        torch.testing.assert_close(model.generate(z), model.generator(z), rtol=0, atol=0)
        torch.testing.assert_close(model.encode(x), model.encoder(x), rtol=0, atol=0)
        assert model.ema_settings()["used"] is False


def test_without_decay_there_is_no_average(tmp_path):
    model, _, _ = train(tmp_path, "gan_ring", batches=2)
    assert model.ema is None and model.ema_settings()["used"] is False


def test_average_travels_in_checkpoints_and_evaluation_records_it(tmp_path):
    from hydra import compose, initialize_config_dir

    from ganzoo.config import config_dir
    from ganzoo.evaluate import evaluate

    model, trainer, _ = train(tmp_path / "run", "gan_ring", "model.ema.decay=0.7", batches=4)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    loaded = load_checkpoint(ckpt)
    for key, value in model.ema.state_dict().items():
        assert torch.equal(loaded.ema.state_dict()[key], value), key
    z = model.fixed_z[:8]
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.generate(z), model.generate(z), rtol=0, atol=0)

    reports = {}
    for ema in ("null", "false"):
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose(
                "eval",
                overrides=[
                    f"ckpt_path={ckpt}",
                    f"out={tmp_path / ema}",
                    f"ema={ema}",
                    "data=ring",
                    "metrics.mode_statistics.num_samples=200",
                ],
            )
        evaluate(cfg)
        reports[ema] = json.loads((tmp_path / ema / "metrics.json").read_text())
    assert reports["null"]["metrics"]["modes"]["ema"] == {"decay": 0.7, "start": 0, "used": True}
    assert reports["false"]["metrics"]["modes"]["ema"]["used"] is False


def test_resumed_training_goes_on_averaging(tmp_path):
    model, trainer, _ = train(tmp_path / "a", "gan_ring", "model.ema.decay=0.9", batches=3)
    ckpt = tmp_path / "a" / "checkpoints" / "last.ckpt"
    cfg = compose_run(
        [
            "experiment=gan_ring",
            *RING,
            *quick_overrides(3),
            "model.ema.decay=0.9",
            "trainer.max_epochs=2",
            f"ckpt_path={ckpt}",
        ],
        tmp_path / "b",
    )
    datamodule, resumed, trainer = build_run(cfg)
    trainer.fit(resumed, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    assert int(resumed.ema["generator"].n_averaged) == 6
    assert resumed.batches_seen == 6
