"""Optuna searches: every search config composes for its families, a 3-trial search on tiny data
writes its SQLite study in the sweep directory, and the same command again resumes it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from conftest import ganzoo_train
from ganzoo.config import config_dir

optuna = pytest.importorskip("optuna")
pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")

TINY = [
    "data.num_train=200",
    "data.num_val=50",
    "trainer.max_epochs=1",
    "callbacks.mode_coverage.num_samples=100",
    "+trainer.enable_progress_bar=false",
]


def hydra_config(*overrides: str):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            return compose("train", overrides=list(overrides), return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


@pytest.mark.parametrize(
    ("experiment", "search", "space", "metric"),
    [
        ("gan_ring", "optuna_ring", "gan", "val/reverse_kl"),
        ("vaegan_ring", "optuna_ring", "vaegan", "val/reverse_kl"),
        ("alphagan_ring", "optuna_ring", "alphagan", "val/reverse_kl"),
        ("gan_grid", "optuna_grid", "gan", "val/reverse_kl"),
        ("gan_mnist_infogan", "optuna_mnist", "gan", "val/fid_domain"),
        ("vaegan_mnist_mlp", "optuna_mnist", "vaegan", "val/fid_domain"),
        ("alphagan_mnist", "optuna_mnist", "alphagan", "val/fid_domain"),
    ],
)
def test_every_searched_knob_is_a_key_of_the_experiment(experiment, search, space, metric):
    cfg = hydra_config(
        f"experiment={experiment}", f"hparams_search={search}", f"hparams_search/space={space}"
    )
    assert cfg.optimized_metric == metric
    sweeper = cfg.hydra.sweeper
    assert sweeper.direction == "minimize" and sweeper._target_.endswith("OptunaSweeper")
    assert OmegaConf.to_container(cfg.hydra, resolve=False)["sweeper"]["storage"] == (
        "sqlite:///${hydra.sweep.dir}/optuna.db"
    )
    assert cfg.hydra.mode.name == "MULTIRUN"
    for key in sweeper.params:
        *parent, leaf = key.split(".")
        node = OmegaConf.select(cfg, ".".join(parent))
        assert node is not None and (int(leaf) < len(node) if leaf.isdigit() else leaf in node), (
            f"{search} with {space} searches {key}, which {experiment} does not have"
        )
    if search == "optuna_mnist":
        assert "evaluation" in cfg.callbacks and cfg.callbacks.evaluation.metrics.parzen is None


def study(sweep_dir: Path):
    return optuna.load_study(study_name="gan_ring", storage=f"sqlite:///{sweep_dir}/optuna.db")


def test_a_search_writes_its_sqlite_study_and_resumes_it(tmp_path):
    args = ["experiment=gan_ring", "hparams_search=optuna_ring", *TINY, "paths.log_dir=logs"]
    sweep_dir = tmp_path / "logs" / "gan_ring" / "optuna" / "gan_ring"

    first = ganzoo_train(*args, "hydra.sweeper.n_trials=3", cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "setup plugin alembic" not in first.stdout + first.stderr  # optuna's storage chatter
    trials = study(sweep_dir).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    searched = set(hydra_config("hparams_search=optuna_ring").hydra.sweeper.params)
    assert all(set(t.params) == searched for t in trials)
    assert all(
        1 <= t.params["model.k"] <= 5 and isinstance(t.params["model.k"], int) for t in trials
    )
    assert all(t.value == math.inf or t.value >= 0 for t in trials)
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    assert len(jobs) == 3 and all((j / "checkpoints" / "last.ckpt").is_file() for j in jobs)

    # The same command again (here with 2 more trials): the finished trials are loaded, not redone.
    second = ganzoo_train(*args, "hydra.sweeper.n_trials=2", cwd=tmp_path, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    resumed = study(sweep_dir).trials
    assert [t.state.name for t in resumed] == ["COMPLETE"] * 5
    assert [(t.number, t.params, t.value) for t in resumed[:3]] == [
        (t.number, t.params, t.value) for t in trials
    ]
    new_jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    assert len(new_jobs) == 5 and set(jobs) < set(new_jobs)  # no trial directory overwritten
