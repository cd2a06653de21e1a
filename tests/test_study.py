"""``ganzoo-study`` and ``ganzoo-report``: a small study end to end, resumed, extended and broken."""

from __future__ import annotations

import csv
import json
import math
import re
import shlex
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import threadpoolctl
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ganzoo import report as report_mod
from ganzoo import study
from ganzoo.config import config_dir

# Two families x two seeds on a tiny ring, one short epoch each, jobs one after another in this
# process (so that Trainer.fit can be counted).
TINY = [
    "study=ring",
    "~study.families.vaegan",
    "study.seeds=[0,1]",
    "study.epochs=1",
    'study.overrides=["data.num_train=300","data.num_val=50","callbacks.mode_coverage.num_samples=100"]',
    'study.eval=["metrics.mode_statistics.num_samples=200"]',
    "hydra/launcher=local",
]


@pytest.fixture
def fits(monkeypatch):
    """The job directories ``Trainer.fit`` was called for, in order."""
    calls: list[str] = []
    original = pl.Trainer.fit

    def counting_fit(self, *args, **kwargs):
        calls.append(
            Path(self.default_root_dir)
            .relative_to(Path(self.default_root_dir).parents[1])
            .as_posix()
        )
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pl.Trainer, "fit", counting_fit)
    return calls


def run_study(monkeypatch, *overrides: str) -> int:
    """``ganzoo-study <overrides>`` in this process; its exit status."""
    monkeypatch.setattr(sys, "argv", ["ganzoo-study", *overrides])
    try:
        study.main()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def metric(job_dir: Path, name: str) -> float:
    return float(json.loads((job_dir / "metrics.json").read_text())["metrics"][name]["value"])


def test_study_runs_reports_by_hand_numbers_and_resumes_without_training(
    tmp_path, monkeypatch, fits, capsys
):
    d = tmp_path / "study"
    assert run_study(monkeypatch, *TINY, f"study.dir={d}") == 0
    jobs = ["gan/seed_0", "gan/seed_1", "alphagan/seed_0", "alphagan/seed_1"]
    assert fits == jobs
    for job in jobs:
        assert (d / job / "metrics.json").is_file()
        assert (d / job / "checkpoints" / "last.ckpt").is_file()
        assert not (d / job / "error.txt").exists()
    printed = capsys.readouterr().out
    assert "| family | modes | high_quality | reverse_kl |" in printed
    assert f"tensorboard --logdir {d}" in printed

    # The report's mean and sample std, computed by hand from the jobs' metrics.json.
    table = json.loads((d / "report.json").read_text())["families"]
    for family in ("gan", "alphagan"):
        for name in ("modes", "high_quality", "reverse_kl"):
            a, b = (metric(d / family / f"seed_{s}", name) for s in (0, 1))
            mean, std = (a + b) / 2, abs(a - b) / math.sqrt(2)
            stats = table[family][name]
            assert stats["n"] == 2
            if math.isfinite(mean):
                assert stats["mean"] == pytest.approx(mean, rel=1e-12, abs=1e-12)
                assert stats["std"] == pytest.approx(std, rel=1e-12, abs=1e-12)
            else:
                assert stats["mean"] == mean
            text = f"{report_mod.fmt(mean)} +- {report_mod.fmt(stats['std'])} (2)"
            assert text in (d / "report.md").read_text()
    with open(d / "report.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["family"], r["seed"]) for r in rows) == sorted(
        (j.split("/")[0], j[-1]) for j in jobs
    )
    for picture in ("metrics.png", "curves.png", "samples.png"):
        assert (d / picture).stat().st_size > 0
    # The ceiling row: training points scored as samples cover every mode.
    reference = json.loads((d / "reference" / "metrics.json").read_text())["metrics"]
    assert reference["modes"]["value"] == 8
    assert "| real data (training items as samples) | 8 |" in (d / "report.md").read_text()

    # Again: every job is complete, nothing trains.
    fits.clear()
    assert run_study(monkeypatch, *TINY, f"study.dir={d}") == 0
    assert fits == []

    # Under other evaluation settings (discriminator rejection): evaluated again, not trained,
    # on study.threads_per_job threads, numpy's and scikit-learn's pools included.
    before = metric(d / "gan" / "seed_0", "high_quality")
    drs = 'study.eval=["metrics.mode_statistics.num_samples=200","rejection=drs","rejection.burn_in=100"]'
    threads = []
    original_evaluate = study.evaluate_job

    def counting_threads(cfg, job_dir):
        blas = [pool["num_threads"] for pool in threadpoolctl.threadpool_info()]
        threads.append((torch.get_num_threads(), *blas))
        original_evaluate(cfg, job_dir)

    monkeypatch.setattr(study, "evaluate_job", counting_threads)
    torch_threads = torch.get_num_threads()
    try:
        assert run_study(monkeypatch, *TINY, "study.threads_per_job=1", drs, f"study.dir={d}") == 0
    finally:
        torch.set_num_threads(torch_threads)
    assert fits == []
    assert len(threads) == len(jobs) and {n for t in threads for n in t} == {1}
    for job in jobs:
        saved = json.loads((d / job / "metrics.json").read_text())
        assert saved["eval"]["study_eval"][1:] == ["rejection=drs", "rejection.burn_in=100"]
        assert saved["metrics"]["high_quality"]["rejection"]["burn_in"] == 100
    assert "rejection" in (d / "report.md").read_text()  # the protocol names the sampler
    seed_0 = d / "gan" / "seed_0"
    job = report_mod.Job(
        "gan", 0, seed_0, json.loads((seed_0 / "metrics.json").read_text())["metrics"]
    )
    assert report_mod.sample_picture(job) == (
        seed_0 / "eval_samples.png",  # what DRS kept, not the training grid
        "evaluated, discriminator rejection sampling",
    )
    command = OmegaConf.load(d / "study.yaml")["command"]
    assert shlex.split(command)[-2] == drs  # quoted as the shell needs, to paste back
    for row in json.loads((d / "report.json").read_text())["jobs"]:
        assert 0.0 < row["acceptance"] < 1.0
    assert run_study(monkeypatch, *TINY, f"study.dir={d}") == 0  # back: evaluated again
    assert fits == []
    assert metric(d / "gan" / "seed_0", "high_quality") == before

    # One job's metrics.json gone: only that job runs again.
    (d / "gan" / "seed_1" / "metrics.json").unlink()
    assert run_study(monkeypatch, *TINY, f"study.dir={d}") == 0
    assert fits == ["gan/seed_1"]
    assert (d / "gan" / "seed_1" / "metrics.json").is_file()

    # A seed more: only the new jobs run, and the report has three seeds per family.
    fits.clear()
    more = [o if not o.startswith("study.seeds") else "study.seeds=[0,1,2]" for o in TINY]
    assert run_study(monkeypatch, *more, f"study.dir={d}") == 0
    assert fits == ["gan/seed_2", "alphagan/seed_2"]
    table = json.loads((d / "report.json").read_text())["families"]
    assert table["gan"]["modes"]["n"] == table["alphagan"]["modes"]["n"] == 3

    # TensorBoard names each job's run <family>/seed_<n>.
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    runs = EventMultiplexer().AddRunsFromDirectory(str(d)).Runs()
    assert set(runs) == {f"{f}/seed_{s}" for f in ("gan", "alphagan") for s in (0, 1, 2)}

    # A job.yaml from a ganzoo whose plumbing differed (Hydra's instantiation flags, observer
    # callbacks such as the progress display or the divergence checks) still matches.
    saved = d / "gan" / "seed_0" / "job.yaml"
    old = OmegaConf.load(saved)
    old.model._recursive_ = False
    old.callbacks.bar = {
        "_target_": "pytorch_lightning.callbacks.TQDMProgressBar",
        "refresh_rate": 3,
    }
    old.callbacks.divergence = {
        "_target_": "ganzoo.callbacks.DivergenceGuard",
        "every_n_batches": 7,
    }
    OmegaConf.save(old, saved)
    fits.clear()
    assert run_study(monkeypatch, *TINY, f"study.dir={d}") == 0
    assert fits == []

    # So does one whose recipe wrote a value another way (a literal where an interpolation is
    # now): the same value once resolved. Another value is refused (below).
    text = saved.read_text()
    assert "shuffle_seed: ${seed}" in text
    saved.write_text(text.replace("shuffle_seed: ${seed}", "shuffle_seed: 0"))
    assert run_study(monkeypatch, *TINY, f"study.dir={d}") == 0
    assert fits == []
    saved.write_text(text.replace("shuffle_seed: ${seed}", "shuffle_seed: 5"))
    assert run_study(monkeypatch, *TINY, f"study.dir={d}") == 1
    assert "shuffle_seed: 5" in (d / "gan" / "seed_0" / "error.txt").read_text()

    # A job trained before a parameter existed (no model.r1_every in its job.yaml) matches at
    # that parameter's default (1, GAN's signature), not at another value.
    assert "  r1_every: 1\n" in text
    saved.write_text(text.replace("  r1_every: 1\n", ""))
    assert run_study(monkeypatch, *TINY, f"study.dir={d}") == 0
    assert fits == []
    lazy = [
        o.replace('"data.num_train=300"', '"data.num_train=300","model.r1_every=2"') for o in TINY
    ]
    assert run_study(monkeypatch, *lazy, f"study.dir={d}") == 1
    assert fits == []
    assert "r1_every: 2" in (d / "gan" / "seed_0" / "error.txt").read_text()
    saved.write_text(text)

    # A changed training config is refused for an existing job instead of mixing results.
    fits.clear()
    changed = [*TINY, "study.epochs=2"]
    assert run_study(monkeypatch, *changed, f"study.dir={d}") == 1
    assert fits == []
    refused = (d / "gan" / "seed_0" / "error.txt").read_text().splitlines()[0]
    assert "another config" in refused
    assert "-  max_epochs: 1; +  max_epochs: 2" in refused  # names what changed


def test_a_failing_job_is_recorded_and_the_others_finish(tmp_path, monkeypatch, fits, capsys):
    d = tmp_path / "study"
    broken = '+study.families.broken={experiment:gan_ring,overrides:["model.optimizer.generator.lr=-1.0"]}'
    one_seed = [o if not o.startswith("study.seeds") else "study.seeds=[0]" for o in TINY]
    status = run_study(monkeypatch, *one_seed, "~study.families.alphagan", broken, f"study.dir={d}")
    assert status == 1
    assert (d / "gan" / "seed_0" / "metrics.json").is_file()
    error = (d / "broken" / "seed_0" / "error.txt").read_text()
    assert error.splitlines()[0].startswith("ValueError: Invalid learning rate")
    printed = capsys.readouterr().out
    assert "FAILED broken/seed_0: ValueError: Invalid learning rate" in printed
    assert (
        "broken/seed_0 | - | - | - | - | ValueError: Invalid learning rate"
        in (d / "report.md").read_text()
    )
    # ganzoo-report alone gives the same verdict, and can write the report elsewhere.
    assert report_mod.main([str(d)]) == 1
    assert report_mod.main([str(d), "--out", str(tmp_path / "published")]) == 1
    assert "FAILED broken/seed_0" in capsys.readouterr().out
    for name in ("report.md", "report.json", "report.csv", "metrics.png"):
        assert (tmp_path / "published" / name).is_file()


def test_report_pictures_a_job_by_its_evaluation_else_by_its_last_training_grid(tmp_path):
    job = report_mod.Job("vaegan", 0, tmp_path, {"modes": {"value": 8.0}})
    assert report_mod.sample_picture(job) is None
    (tmp_path / "samples").mkdir()
    for epoch in (9, 10):
        (tmp_path / "samples" / f"epoch_{epoch:04d}.png").write_bytes(b"png")
    assert report_mod.sample_picture(job) == (tmp_path / "samples/epoch_0010.png", "epoch_0010")
    (tmp_path / report_mod.PICTURE_FILE).write_bytes(b"png")
    assert report_mod.sample_picture(job) == (tmp_path / "eval_samples.png", "evaluated")
    method = "ex-post density estimation (Ghosh et al. 2020), a Gaussian mixture on E(x)"
    job.metrics["modes"]["rejection"] = {"method": method}
    assert report_mod.sample_picture(job)[1] == "evaluated, ex-post density estimation"


def test_report_of_a_directory_without_jobs_says_so(tmp_path, capsys):
    assert report_mod.main([str(tmp_path)]) == 2
    assert "holds no <family>/seed_<n> job directories" in capsys.readouterr().err


def test_seeds_must_be_a_list():
    with pytest.raises(ValueError, match=r"study.seeds=\[0,1,2\]"):
        study.job_names({"gan": {}}, 0)


STUDIES = sorted(p.stem for p in (Path(config_dir()) / "study").glob("*.yaml"))


@pytest.mark.parametrize("name", STUDIES)
def test_every_shipped_study_composes_with_its_jobs(name):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("study", overrides=[f"study={name}"], return_hydra_config=True)
        jobs = str(cfg.hydra.sweeper.params.job).split(",")
        assert len(jobs) == len(cfg.study.families) * len(cfg.study.seeds)
        seed = cfg.study.seeds[-1]
        for family in cfg.study.families:  # the seed changes nothing else: one job per family
            assert f"{family}/seed_{seed}" in jobs
            train_cfg = compose("train", overrides=study.job_overrides(cfg.study, family, seed))
            assert train_cfg.seed == seed
            OmegaConf.resolve(train_cfg.model)
            if name == "stacked_mnist":
                assert train_cfg.data._target_.endswith("StackedMNISTDataModule")
                assert train_cfg.data.channels == 3
        assert set(cfg.study.metrics) and all(
            v in ("max", "min", "none") for v in cfg.study.metrics.values()
        )


def test_a_preempted_job_stops_the_study_and_resumes_exactly_where_it_was(
    tmp_path, monkeypatch, fits, capsys
):
    """A job stopped by a signal is not a failure: the study stops with the command that
    resumes it, and running that command resumes the job from its checkpoint."""
    from ganzoo.callbacks.guards import Preempted

    d = tmp_path / "study"
    one = [o if not o.startswith("study.seeds") else "study.seeds=[0]" for o in TINY]
    one = [*one, "~study.families.alphagan", f"study.dir={d}"]
    original = study.evaluate_job

    def preempt_once(cfg, job_dir):
        monkeypatch.setattr(study, "evaluate_job", original)
        ckpt = job_dir / "checkpoints" / "interrupted.ckpt"
        ckpt.write_bytes((job_dir / "checkpoints" / "last.ckpt").read_bytes())  # the newest
        stopped = f"stopped by SIGTERM after epoch 0, batch 3; checkpoint {ckpt}"
        raise Preempted(stopped, 15, ckpt, resume="ganzoo-train job=gan/seed_0 study=...")

    monkeypatch.setattr(study, "evaluate_job", preempt_once)
    assert run_study(monkeypatch, *one) == 143
    out, err = capsys.readouterr()
    ckpt = d / "gan" / "seed_0" / "checkpoints" / "interrupted.ckpt"
    # the job's line names its checkpoint, not a ganzoo-train command made of study overrides
    assert (
        f"[gan/seed_0] interrupted: stopped by SIGTERM after epoch 0, batch 3; checkpoint {ckpt}"
        in out
    )
    assert "ganzoo-train" not in out + err
    assert "Resume the study with: ganzoo-study " in err
    assert not (d / "gan" / "seed_0" / "error.txt").exists()
    fits.clear()
    assert run_study(monkeypatch, *one) == 0
    assert fits == ["gan/seed_0"]  # resumed from interrupted.ckpt, then evaluated
    assert (d / "gan" / "seed_0" / "metrics.json").is_file()


def test_report_counts_jobs_not_started_as_pending_not_failed(tmp_path, capsys):
    """A study cut short: the report shows the finished seed and lists the rest as pending."""
    (tmp_path / "study.yaml").write_text(
        "name: cut\nfamilies: {gan: {experiment: gan_ring}}\nseeds: [0, 1]\nmetrics: {modes: max}\n"
    )
    job = tmp_path / "gan" / "seed_0"
    job.mkdir(parents=True)
    (job / "metrics.json").write_text(json.dumps({"metrics": {"modes": {"value": 7}}}))
    assert report_mod.main([str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "| gan | **7 (1)** |" in printed
    assert "PENDING gan/seed_1: not started" in printed and "FAILED" not in printed
    assert "1 of 2 jobs finished" in (tmp_path / "report.md").read_text()


def test_report_bolds_every_family_that_ties_for_the_best_mean(tmp_path, capsys):
    (tmp_path / "study.yaml").write_text(
        "name: tie\nfamilies: {a: {}, b: {}, c: {}}\nseeds: [0]\n"
        "metrics: {modes: max, reverse_kl: min}\n"
    )
    for family, modes, kl in (("a", 8, 0.2), ("b", 8, 0.1), ("c", 7, 0.1)):
        job = tmp_path / family / "seed_0"
        job.mkdir(parents=True)
        metrics = {"modes": {"value": modes}, "reverse_kl": {"value": kl}}
        (job / "metrics.json").write_text(json.dumps({"metrics": metrics}))
    assert report_mod.main([str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "| a | **8 (1)** | 0.2 (1) |" in printed
    assert "| b | **8 (1)** | **0.1 (1)** |" in printed
    assert "| c | 7 (1) | **0.1 (1)** |" in printed


def test_a_column_marked_none_is_shown_but_not_ranked(tmp_path, capsys):
    (tmp_path / "study.yaml").write_text(
        "name: spread\nfamilies: {a: {}, b: {}}\nseeds: [0]\nmetrics: {modes: max, hq_std: none}\n"
    )
    for family, modes, spread in (("a", 8, 0.01), ("b", 7, 0.02)):
        job = tmp_path / family / "seed_0"
        job.mkdir(parents=True)
        metrics = {"modes": {"value": modes}, "hq_std": {"value": spread}}
        (job / "metrics.json").write_text(json.dumps({"metrics": metrics}))
    assert report_mod.main([str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "| a | **8 (1)** | 0.01 (1) |" in printed
    assert "| b | 7 (1) | 0.02 (1) |" in printed
    (tmp_path / "study.yaml").write_text(
        "name: spread\nfamilies: {a: {}, b: {}}\nseeds: [0]\nmetrics: {hq_std: closest}\n"
    )
    with pytest.raises(ValueError, match="study.metrics.hq_std must be max, min or none"):
        report_mod.build_report(tmp_path)


def test_the_quick_start_trains_the_recipes_the_readme_names():
    """ring_quick inherits the ring study: each family it trains must be the constant-rate
    recipe the README's quick-start paragraph names, not a decaying recipe cut to 2 epochs."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("<!-- quickstart-output -->")[1].split("<!-- /quickstart-output -->")[0]
    sentence = re.search(r"The families\s+are (.*?)\(", block, re.S).group(1)
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("study", overrides=["study=ring_quick"])
    trained = {spec.experiment for spec in cfg.study.families.values()}
    assert trained == set(re.findall(r"`(\w+)`", sentence))
