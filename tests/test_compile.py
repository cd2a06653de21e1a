"""``model.compile``: every family trains a few steps with its networks under ``torch.compile``."""

from __future__ import annotations

import pytest
import torch

from conftest import quick_overrides
from ganzoo.train import train

FAMILIES = ["gan_ring", "vaegan_ring", "alphagan_ring"]


def _train_compiled(experiment: str, compile_value: str, make_cfg, tmp_path):
    cfg = make_cfg(
        f"experiment={experiment}",
        *quick_overrides(batches=3),
        "data.num_train=300",
        "data.num_val=100",
        f"model.compile={compile_value}",
        output_dir=tmp_path / experiment,
    )
    metrics = train(cfg)
    assert all(torch.isfinite(torch.tensor(v)) for k, v in metrics.items() if "loss" in k)
    ckpt = torch.load(tmp_path / experiment / "checkpoints" / "last.ckpt", weights_only=False)
    # Compiled in place: the checkpoint holds the plain networks' parameter names.
    assert not any("_orig_mod" in k for k in ckpt["state_dict"])
    assert ckpt["ganzoo"]["model"]["compile"] not in (False, None)
    return metrics


@pytest.mark.parametrize("experiment", FAMILIES)
def test_every_family_trains_compiled(experiment, make_cfg, tmp_path):
    """TorchDynamo's graph capture run eagerly: the code generator alone takes minutes of C++
    compilation on CPU (the slow tests below run it, with the default backend)."""
    _train_compiled(experiment, "{backend: eager}", make_cfg, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("experiment", FAMILIES)
def test_every_family_trains_compiled_by_inductor(experiment, make_cfg, tmp_path):
    _train_compiled(experiment, "true", make_cfg, tmp_path)


def test_networks_are_compiled_in_place_once(make_cfg, tmp_path):
    from ganzoo.train import build_run

    cfg = make_cfg("experiment=alphagan_ring", "model.compile={backend: eager}")
    _, model, _ = build_run(cfg)
    names = [n for n, _ in model.named_parameters()]
    model.configure_model()
    model.configure_model()
    for net in (model.encoder, model.generator, model.discriminator, model.code_discriminator):
        assert net._compiled_call_impl is not None
    assert [n for n, _ in model.named_parameters()] == names
    off = make_cfg("experiment=gan_ring")
    _, plain, _ = build_run(off)
    plain.configure_model()
    assert plain.generator._compiled_call_impl is None
