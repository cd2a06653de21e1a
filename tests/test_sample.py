"""ganzoo-sample: every mode on checkpoints of the GAN family and of an encoder family (a tiny
test-local one), on images and on 2D points; files, sizes, counts and pixels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from PIL import Image
from torch.testing import assert_close

from conftest import REPO, compose_run, quick_overrides
from ganzoo.config import config_dir
from ganzoo.inspection import (
    INTERPOLATIONS,
    InspectionError,
    inspect,
    interpolate,
    lerp,
    slerp,
    to_uint8,
)
from ganzoo.metrics.domain import unit_range
from ganzoo.models import load_checkpoint
from ganzoo.rejection import DiscriminatorRejection, JacobianTruncation
from ganzoo.sample import main
from ganzoo.train import train
from tiny_family import register, train_tiny

RING = [
    "data=ring",
    "data.num_train=320",
    "data.num_val=64",
    "data.num_test=50",
    "data.batch_size=32",
    "model.latent_dim=2",
]
TWO_EPOCHS = ["trainer.max_epochs=2"]


def mnist(fake_mnist: Path) -> list[str]:
    return ["data=mnist", f"paths.data_dir={fake_mnist}", "data.val_size=64", "data.batch_size=16"]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory, fake_mnist) -> dict[str, Path]:
    """last.ckpt of 2-epoch runs of a few steps: GAN and the tiny encoder family, on fake MNIST
    and on the ring."""
    root = tmp_path_factory.mktemp("runs")
    paths = {}
    for name, data in (("mnist", mnist(fake_mnist)), ("ring", RING)):
        train(compose_run([*quick_overrides(), *data, *TWO_EPOCHS], root / f"gan_{name}"))
        paths[f"gan_{name}"] = root / f"gan_{name}" / "checkpoints" / "last.ckpt"
        data = [d for d in data if not d.startswith("model.")]
        paths[f"ae_{name}"] = train_tiny([*data, *TWO_EPOCHS], root / f"ae_{name}")
    GlobalHydra.instance().clear()
    return paths


@pytest.fixture(autouse=True)
def _tiny_family(monkeypatch):
    register(monkeypatch)


def request(ckpt: Path, out: Path, mode: str, *overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(
            "sample", overrides=[f"ckpt_path={ckpt}", f"mode={mode}", f"out={out}", *overrides]
        )
    GlobalHydra.instance().clear()
    return cfg


def run(ckpt: Path, out: Path, mode: str, *overrides: str) -> list[Path]:
    return inspect(request(ckpt, out, mode, *overrides))


def png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def cell(grid: np.ndarray, row: int, col: int, size: int = 28, pad: int = 2) -> np.ndarray:
    """Image (row, col) of a torchvision grid (padding 2) of ``size`` x ``size`` images."""
    top, left = pad + row * (size + pad), pad + col * (size + pad)
    return grid[top : top + size, left : left + size]


def expected(images: torch.Tensor) -> np.ndarray:
    """Images in [0, 1] as the uint8 RGB pixels a saved grid holds."""
    return to_uint8(images).expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy()


def held_out(ckpt: Path, n: int) -> torch.Tensor:
    """The first ``n`` test-split inputs of the checkpoint's run, rebuilt from its saved config."""
    dm = instantiate(load_checkpoint(ckpt).run_config["data"])
    dm.setup("test")
    return torch.stack([dm.test_set[i][0] for i in range(n)])


def test_samples_grid_holds_the_seeded_samples(ckpts, tmp_path):
    (path,) = run(ckpts["gan_mnist"], tmp_path, "samples", "n=20", "nrow=5", "seed=3")
    grid = png(path)
    assert path == tmp_path / "samples.png"
    assert grid.shape == (4 * 30 + 2, 5 * 30 + 2, 3)
    model = load_checkpoint(ckpts["gan_mnist"])
    want = expected(model.sample(20, generator=torch.Generator().manual_seed(3)))
    for i in range(20):
        np.testing.assert_array_equal(cell(grid, i // 5, i % 5), want[i])


@pytest.mark.parametrize("family", ["gan", "ae"])
def test_samples_of_2d_data_are_a_scatter_plot(family, ckpts, tmp_path):
    (path,) = run(ckpts[f"{family}_ring"], tmp_path, "samples", "n=200")
    assert Image.open(path).size == (400, 400)


def test_reconstructions_alternate_inputs_and_their_reconstructions(ckpts, tmp_path):
    (path,) = run(ckpts["ae_mnist"], tmp_path, "reconstructions", "n=16", "nrow=8")
    grid = png(path)
    assert grid.shape == (4 * 30 + 2, 8 * 30 + 2, 3)
    model = load_checkpoint(ckpts["ae_mnist"])
    x = held_out(ckpts["ae_mnist"], 16)
    inputs, recons = expected(x), expected(model.reconstruct(x))
    for i in range(16):
        row, col = 2 * (i // 8), i % 8
        np.testing.assert_array_equal(cell(grid, row, col), inputs[i])
        np.testing.assert_array_equal(cell(grid, row + 1, col), recons[i])


def test_reconstructions_of_2d_data_are_a_scatter_plot(ckpts, tmp_path):
    (path,) = run(ckpts["ae_ring"], tmp_path, "reconstructions", "n=50")
    assert Image.open(path).size == (400, 400)


def test_gan_reconstructions_fail_with_a_clear_message(ckpts, tmp_path):
    with pytest.raises(
        InspectionError,
        match=r"the GAN family has no encoder\. Families with one: .*TinyAutoencoder",
    ):
        run(ckpts["gan_mnist"], tmp_path, "reconstructions")
    with pytest.raises(InspectionError, match="the GAN family has no encoder"):
        run(ckpts["gan_mnist"], tmp_path, "interpolation", "interpolation.from_data=true")


def test_lerp_and_slerp_hit_their_ends_exactly():
    z0, z1 = torch.randn(2, 3, 7, generator=torch.Generator().manual_seed(0))
    for path in INTERPOLATIONS.values():
        assert torch.equal(path(z0, z1, 0.0), z0)
        assert torch.equal(path(z0, z1, 1.0), z1)


def test_slerp_follows_the_great_circle():
    z0, z1 = torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([[0.0, 2.0, 0.0]])
    assert_close(slerp(z0, z1, 0.5), torch.tensor([[2.0, 2.0, 0.0]]) / 2**0.5)
    for t in (0.1, 0.3, 0.7):
        assert_close(slerp(z0, z1, t).norm(dim=1), torch.tensor([2.0]))
    parallel = torch.tensor([[1.0, 1.0, 0.0]])
    assert_close(slerp(parallel, 3 * parallel, 0.25), lerp(parallel, 3 * parallel, 0.25))


@pytest.mark.parametrize("method", ["linear", "slerp"])
def test_interpolation_ends_are_the_decodings_of_the_ends(method, ckpts):
    model = load_checkpoint(ckpts["gan_mnist"])
    z = model.prior.sample(6, generator=torch.Generator().manual_seed(0))
    frames = interpolate(model, z[:3], z[3:], 7, INTERPOLATIONS[method])
    assert len(frames) == 7
    assert torch.equal(frames[0], model.generate(z[:3]))
    assert torch.equal(frames[-1], model.generate(z[3:]))


@pytest.mark.parametrize(("family", "from_data"), [("gan", False), ("ae", False), ("ae", True)])
def test_interpolation_grid_and_gif(family, from_data, ckpts, tmp_path):
    ckpt = ckpts[f"{family}_mnist"]
    opts = [
        "interpolation.pairs=3",
        "interpolation.steps=5",
        "seed=1",
        f"interpolation.from_data={from_data}",
    ]
    written = run(ckpt, tmp_path, "interpolation", *opts)
    assert [p.name for p in written] == [
        "interpolation_linear.png",
        "interpolation_linear.gif",
        "interpolation_slerp.png",
        "interpolation_slerp.gif",
    ]
    model = load_checkpoint(ckpt)
    if from_data:
        z = model.encode(held_out(ckpt, 6))
    else:
        z = model.prior.sample(6, generator=torch.Generator().manual_seed(1))
    first, last = expected(model.generate(z[:3])), expected(model.generate(z[3:]))
    for method in ("linear", "slerp"):
        grid = png(tmp_path / f"interpolation_{method}.png")
        assert grid.shape == (3 * 30 + 2, 5 * 30 + 2, 3)
        for row in range(3):
            np.testing.assert_array_equal(cell(grid, row, 0), first[row])
            np.testing.assert_array_equal(cell(grid, row, 4), last[row])
        gif = Image.open(tmp_path / f"interpolation_{method}.gif")
        assert gif.size == (3 * 30 + 2, 30 + 2)
        assert gif.n_frames == 5 + 3  # there and back


def test_interpolation_of_2d_data(ckpts, tmp_path):
    written = run(
        ckpts["gan_ring"],
        tmp_path,
        "interpolation",
        "interpolation.steps=4",
        "interpolation.methods=[slerp]",
    )
    assert [p.name for p in written] == ["interpolation_slerp.png", "interpolation_slerp.gif"]
    assert Image.open(written[0]).size == (400, 400)
    assert Image.open(written[1]).n_frames == 4 + 2


def test_unknown_interpolation_method_lists_the_valid_ones(ckpts, tmp_path):
    with pytest.raises(InspectionError, match=r"\['cubic'\]; valid methods: \['linear', 'slerp'\]"):
        run(ckpts["gan_mnist"], tmp_path, "interpolation", "interpolation.methods=[linear,cubic]")


@pytest.mark.parametrize("run_name", ["gan_mnist", "ae_ring"])
def test_progress_gif_has_one_frame_per_epoch(run_name, ckpts, tmp_path):
    (path,) = run(ckpts[run_name], tmp_path, "progress")
    grids = sorted((ckpts[run_name].parents[1] / "samples").glob("epoch_*.png"))
    assert len(grids) == 2
    gif = Image.open(path)
    assert gif.n_frames == 2
    assert gif.size == Image.open(grids[0]).size


def test_progress_without_sample_grids_says_where_it_looked(ckpts, tmp_path):
    with pytest.raises(InspectionError, match="no sample grids in"):
        run(ckpts["gan_mnist"], tmp_path / "out", "progress", f"run_dir={tmp_path}")


def test_export_writes_one_png_per_sample(ckpts, tmp_path):
    (folder,) = run(ckpts["gan_mnist"], tmp_path, "export", "n=10", "batch_size=4", "seed=5")
    files = sorted(folder.glob("*.png"))
    assert folder == tmp_path / "samples"
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(10)]
    assert not (tmp_path / "reconstructions").exists()
    model = load_checkpoint(ckpts["gan_mnist"])
    noise = torch.Generator().manual_seed(5)
    want = torch.cat([model.sample(k, generator=noise) for k in (4, 4, 2)])
    for i, f in enumerate(files):
        image = Image.open(f)
        assert (image.mode, image.size) == ("L", (28, 28))
        np.testing.assert_array_equal(np.asarray(image), to_uint8(want[i])[0].numpy())
    with pytest.raises(InspectionError, match="already holds PNG files"):
        run(ckpts["gan_mnist"], tmp_path, "export", "n=10")


def test_export_of_an_encoder_family_adds_held_out_reconstructions(ckpts, tmp_path):
    samples, recons = run(ckpts["ae_mnist"], tmp_path, "export", "n=70", "batch_size=32")
    assert len(list(samples.glob("*.png"))) == 70
    assert len(list(recons.glob("*.png"))) == 64  # the whole (fake) test split
    model = load_checkpoint(ckpts["ae_mnist"])
    x = held_out(ckpts["ae_mnist"], 32)
    want = unit_range(model.reconstruct(x), (0.0, 1.0))
    for i in (0, 31):
        np.testing.assert_array_equal(
            np.asarray(Image.open(recons / f"{i:06d}.png")), to_uint8(want[i])[0].numpy()
        )


def test_export_of_2d_data_writes_points(ckpts, tmp_path):
    written = run(ckpts["gan_ring"], tmp_path, "export", "n=100", "batch_size=100", "seed=2")
    assert written == [tmp_path / "samples.npy"]
    points = np.load(tmp_path / "samples.npy")
    model = load_checkpoint(ckpts["gan_ring"])
    np.testing.assert_array_equal(
        points, model.sample(100, generator=torch.Generator().manual_seed(2)).numpy()
    )
    table = np.loadtxt(tmp_path / "samples.csv", delimiter=",", skiprows=1)
    assert_close(torch.from_numpy(table).float(), torch.from_numpy(points))
    written = run(ckpts["ae_ring"], tmp_path / "ae", "export", "n=100")
    assert [p.name for p in written] == ["samples.npy", "reconstructions.npy"]
    assert np.load(written[1]).shape == (50, 2)


def test_export_with_rejection_writes_the_samples_d_keeps(ckpts, tmp_path):
    drs = ["rejection=drs", "rejection.burn_in=50", "rejection.percentile=50"]
    run(ckpts["gan_ring"], tmp_path, "export", "n=100", "batch_size=40", "seed=2", *drs)
    points = torch.from_numpy(np.load(tmp_path / "samples.npy"))
    model = load_checkpoint(ckpts["gan_ring"]).eval()
    sampler = DiscriminatorRejection(burn_in=50, percentile=50)
    kept = sampler.batches(model, 100, 40, torch.Generator().manual_seed(2))
    assert_close(points, torch.cat(list(kept)))
    assert sampler.acceptance < 1.0
    refine = ["rejection.refine_steps=20", "rejection.refine_lr=1e-3"]
    run(
        ckpts["gan_ring"],
        tmp_path / "r",
        "export",
        "n=100",
        "batch_size=40",
        "seed=2",
        *drs,
        *refine,
    )
    refined = torch.from_numpy(np.load(tmp_path / "r" / "samples.npy"))
    assert refined.shape == points.shape and not torch.equal(refined, points)  # another D judged


def test_export_with_jbt_writes_the_samples_it_keeps_for_any_family(ckpts, tmp_path):
    jbt = ["rejection=jbt", "rejection.burn_in=200", "rejection.keep=0.5"]
    for name in ("gan_ring", "ae_ring"):  # with and without a discriminator
        out = tmp_path / name
        run(ckpts[name], out, "export", "n=100", "batch_size=40", "seed=2", *jbt)
        points = torch.from_numpy(np.load(out / "samples.npy"))
        model = load_checkpoint(ckpts[name]).eval()
        sampler = JacobianTruncation(burn_in=200, keep=0.5)
        kept = sampler.batches(model, 100, 40, torch.Generator().manual_seed(2))
        assert_close(points, torch.cat(list(kept)))
        if name == "gan_ring":
            assert 0.3 < sampler.acceptance < 0.7
        else:  # a linear G: the same Jacobian everywhere, so every latent is at the threshold
            assert sampler.acceptance == 1.0


def test_export_with_expost_decodes_the_codes_density_of_an_encoder_family(ckpts, tmp_path):
    expost = ["rejection=expost", "rejection.fit_items=200", "rejection.components=[1,2]"]
    runs = {}
    for seed in (2, 2, 3):
        out = tmp_path / f"{seed}_{len(runs)}"
        run(ckpts["ae_ring"], out, "export", "n=100", "batch_size=40", f"seed={seed}", *expost)
        runs[out.name] = torch.from_numpy(np.load(out / "samples.npy"))
    first, again, other = runs.values()
    assert first.shape == (100, 2)
    assert_close(first, again)  # the seed fixes the items, the fit and the latents
    assert not torch.equal(first, other)
    plain = run(ckpts["ae_ring"], tmp_path / "plain", "export", "n=100", "batch_size=40", "seed=2")
    assert not torch.equal(torch.from_numpy(np.load(plain[0])), first)  # not the prior's
    with pytest.raises(ValueError, match="GAN family has none"):
        run(ckpts["gan_ring"], tmp_path / "gan", "export", "n=10", *expost)


def test_unknown_mode_lists_the_valid_ones(ckpts, tmp_path):
    with pytest.raises(
        InspectionError,
        match="valid modes: samples, reconstructions, interpolation, progress, export",
    ):
        run(ckpts["gan_mnist"], tmp_path, "fid")


def test_data_dir_override_is_used(ckpts, tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "elsewhere")):
        run(
            ckpts["ae_mnist"],
            tmp_path,
            "reconstructions",
            f"paths.data_dir={tmp_path / 'elsewhere'}",
        )


def test_cli_through_hydra(ckpts, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "ganzoo.sample", f"ckpt_path={ckpts['gan_mnist']}"]
    out = tmp_path / "out"
    done = subprocess.run(
        [*cmd, "mode=samples", "n=16", f"out={out}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote {out / 'samples.png'}" in done.stdout
    assert Image.open(out / "samples.png").size == (8 * 30 + 2, 2 * 30 + 2)
    # Nothing of Hydra's own (run directory, .hydra/, log file), here or in out/.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in out.iterdir()) == ["samples.png"]


def test_cli_refusal_is_a_message_not_a_traceback(ckpts, tmp_path, monkeypatch):
    """The Hydra entry turns a refusal into ``SystemExit(message)``: Python prints the message
    alone and exits with status 1."""
    argv = ["ganzoo-sample", f"ckpt_path={ckpts['gan_mnist']}", "mode=reconstructions"]
    monkeypatch.setattr(sys, "argv", [*argv, f"out={tmp_path}"])
    GlobalHydra.instance().clear()
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert str(exit_info.value.code).startswith(
        "ganzoo-sample: mode=reconstructions needs an encoder, and the GAN family has no encoder"
    )
