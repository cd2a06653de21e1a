"""``ganzoo-study``: families x seeds on one benchmark, each job trained then evaluated, one report.

    ganzoo-study study=ring_quick                          # the quick start: three families, one seed
    ganzoo-study study=ring study.seeds=[0,1,2]            # into logs/studies/ring
    ganzoo-study study=ring study.seeds=[0,1,2,3] study.dir=<d>   # resumes <d>: runs seed 3 only
    ganzoo-study study=mnist hydra/launcher=slurm hydra.launcher.partition=<p> trainer=gpu

A study is a Hydra multirun of this module's task function over one key, ``job``
(``<family>/seed_<n>``), so jobs go through Hydra's launcher: ``parallel`` (joblib, the default:
one job per core), ``local`` (one after another, in this process) or ``slurm``. Each job composes
the ``ganzoo-train`` config of its family's experiment with the study's overrides, trains it in
``<study.dir>/<family>/seed_<n>/``, evaluates its last checkpoint with ``ganzoo-eval``'s code
into ``metrics.json`` there, and writes its TensorBoard events directly into that directory, so
``tensorboard --logdir <study.dir>`` names each run ``<family>/seed_<n>``.

Running a study again resumes it: a job whose ``metrics.json`` is complete is skipped (or, when
``study.eval`` changed since, evaluated again without training), one with a checkpoint resumes
from it (the remaining epochs only), the rest start. A job that raises writes
``error.txt`` and the study goes on. When every job has returned, :mod:`ganzoo.report` writes the
report, the table is printed, and the exit status is 1 if any job failed.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import json
import logging
import os
import shlex
import signal
import sys
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from ganzoo.callbacks.guards import Preempted
from ganzoo.config import config_dir, report_user_errors

#: Files of a job directory.
METRICS_FILE, ERROR_FILE, CONFIG_FILE, LOG_FILE = "metrics.json", "error.txt", "job.yaml", "job.log"
#: The study's resolved config, written into the study directory (read by ``ganzoo-report``).
STUDY_FILE = "study.yaml"
#: Where the metrics of real training data (the report's ceiling row) go in a study directory.
REFERENCE_DIR = "reference"
#: Keys of a job's train config that do not change what is trained (excluded from the
#: comparison that protects a resumed job from running under another config).
NOT_COMPARED = ("paths", "hydra", "ckpt_path", "logger")
#: Hydra's instantiation flags: how a config is built, not what it trains.
HYDRA_FLAGS = frozenset({"_recursive_", "_convert_"})
#: Callbacks that save or watch a run without changing what it trains (no random draws, no
#: change to any step): left out of the comparison, so that a study resumes under a ganzoo
#: whose checkpointing, progress display or divergence checks changed.
OBSERVERS = frozenset(
    {
        "pytorch_lightning.callbacks.ModelCheckpoint",
        "pytorch_lightning.callbacks.TQDMProgressBar",
        "ganzoo.callbacks.EpochCheckpoint",
        "ganzoo.callbacks.CheckpointOnException",
        "ganzoo.callbacks.DivergenceGuard",
        "ganzoo.callbacks.HParamsSummary",
        "ganzoo.callbacks.progress.PlainProgress",
    }
)


def cpu_count() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def job_names(families: Mapping[str, Any], seeds: Any) -> list[str]:
    """``<family>/seed_<n>`` for every family and seed, families first."""
    if not isinstance(seeds, Sequence) or isinstance(seeds, str):
        raise ValueError(
            f"study.seeds must be a list, e.g. study.seeds=[0,1,2] (got {seeds!r}; "
            "without brackets Hydra reads 0,1,2 as a sweep)"
        )
    if not families:
        raise ValueError("study.families is empty: name at least one family and its experiment")
    for name in families:
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(
                f"study.families.{name}: family names may hold letters, digits, '_' and '-' only"
            )
    return [f"{family}/seed_{int(seed)}" for family in families for seed in seeds]


def _register_resolvers() -> None:
    OmegaConf.register_new_resolver("ganzoo.cpu_count", cpu_count, replace=True)
    OmegaConf.register_new_resolver(
        "ganzoo.study_jobs", lambda fams, seeds: ",".join(job_names(fams, seeds)), replace=True
    )
    OmegaConf.register_new_resolver(
        "ganzoo.threads_per_job",
        lambda n_jobs: max(1, cpu_count() // max(1, int(n_jobs))),
        replace=True,
    )


_register_resolvers()


def parse_job(job: str) -> tuple[str, int]:
    family, _, seed = job.partition("/seed_")
    if not family or not seed.isdigit():
        raise ValueError(f"job={job!r} is not of the form <family>/seed_<n>")
    return family, int(seed)


def job_overrides(study: DictConfig, family: str, seed: int) -> list[str]:
    """The ``ganzoo-train`` overrides of one job: the family's experiment, the seed, the study's
    epochs and overrides, then the family's own overrides (which win)."""
    spec = study.families[family]
    if not spec or not spec.get("experiment"):
        raise ValueError(f"study.families.{family}.experiment is not set: name an experiment")
    overrides = [f"experiment={spec.experiment}", f"seed={seed}"]
    if study.get("epochs") is not None:
        overrides.append(f"trainer.max_epochs={int(study.epochs)}")
    overrides += list(study.get("overrides") or [])
    overrides += list(spec.get("overrides") or [])
    return overrides


def _compared(cfg: DictConfig, resolve: bool) -> dict:
    plain = OmegaConf.to_container(cfg, resolve=resolve)
    for key in NOT_COMPARED:
        plain.pop(key, None)
    callbacks = plain.get("callbacks") or {}
    plain["callbacks"] = {
        name: c
        for name, c in callbacks.items()
        if not (isinstance(c, dict) and c.get("_target_") in OBSERVERS)
    }
    return _without_flags(plain)


def _as_yaml(plain: dict) -> str:
    return OmegaConf.to_yaml(OmegaConf.create(plain), sort_keys=True)


def compared_config(cfg: DictConfig, resolve: bool = False) -> str:
    """What a job trains, as YAML: the train config less paths, loggers, Hydra's instantiation
    flags and the ``OBSERVERS`` callbacks, unresolved (so directories interpolated from
    ``paths`` compare equal) unless ``resolve``."""
    return _as_yaml(_compared(cfg, resolve))


def trains_the_same(saved: DictConfig, train_cfg: DictConfig) -> bool:
    """Whether a job's saved config (``job.yaml``) trains what ``train_cfg`` trains: the same
    text, or the same values once both are resolved under ``train_cfg``'s paths (a recipe that
    now writes a value another way, e.g. through a resolver, leaves its trained jobs valid),
    where a key the saved config lacks counts as the same when it is a parameter of its node's
    ``_target_`` at that parameter's default (one added to ganzoo since the job was trained,
    whose default keeps the former behaviour, e.g. ``model.r1_every: 1``)."""
    if compared_config(saved) == compared_config(train_cfg):
        return True
    saved = saved.copy()
    with open_dict(saved):
        for key in NOT_COMPARED:
            if key in train_cfg:
                saved[key] = train_cfg[key]
    try:
        before, after = _compared(saved, resolve=True), _compared(train_cfg, resolve=True)
    except Exception:  # a value that no longer resolves: not the same training
        return False
    return _as_yaml(before) == _as_yaml(_without_added_defaults(before, after))


def _without_added_defaults(saved: Any, wanted: Any) -> Any:
    """``wanted`` less the keys that ``saved`` lacks and whose value is the default of that
    parameter of the node's ``_target_`` (the same target in both)."""
    if not (isinstance(saved, dict) and isinstance(wanted, dict)):
        return wanted
    target = wanted.get("_target_")
    defaults = _signature_defaults(target) if target and target == saved.get("_target_") else {}
    kept = {}
    for key, value in wanted.items():
        if key in saved:
            kept[key] = _without_added_defaults(saved[key], value)
        elif not (key in defaults and defaults[key] == value):
            kept[key] = value
    return kept


def _signature_defaults(target: str) -> dict[str, Any]:
    """The defaults of the parameters of the class or function ``target`` names ({} when it no
    longer imports)."""
    try:
        params = inspect.signature(hydra.utils.get_object(target)).parameters.values()
    except Exception:
        return {}
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def _without_flags(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_flags(v) for k, v in node.items() if k not in HYDRA_FLAGS}
    if isinstance(node, list):
        return [_without_flags(v) for v in node]
    return node


def is_complete(job_dir: Path) -> bool:
    """Whether the job has a readable ``metrics.json``."""
    try:
        return "metrics" in json.loads((job_dir / METRICS_FILE).read_text())
    except (OSError, ValueError):
        return False


def resume_checkpoint(job_dir: Path) -> Path | None:
    """The newest of the job's ``last.ckpt`` and ``interrupted.ckpt``, if any."""
    found = [job_dir / "checkpoints" / n for n in ("last.ckpt", "interrupted.ckpt")]
    found = [p for p in found if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


@contextlib.contextmanager
def job_output(path: Path) -> Iterator[None]:
    """Send what a job prints (stdout, stderr, and the console handlers of Python logging,
    Lightning's included) to ``path``, so parallel jobs do not interleave on the terminal."""
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    handlers = [
        h
        for lg in loggers
        for h in lg.handlers
        if type(h) is logging.StreamHandler and h.stream in (sys.stdout, sys.stderr)
    ]
    with open(path, "a", buffering=1) as log_file:
        old = [h.setStream(log_file) for h in handlers]
        try:
            with contextlib.redirect_stdout(log_file), contextlib.redirect_stderr(log_file):
                yield
        finally:
            for h, stream in zip(handlers, old, strict=True):
                h.setStream(stream)


def compose_job(cfg: DictConfig, family: str, seed: int, job_dir: Path) -> DictConfig:
    """The job's ``ganzoo-train`` config, with its logs and files in ``job_dir``."""
    train_cfg = hydra.compose(config_name="train", overrides=job_overrides(cfg.study, family, seed))
    with open_dict(train_cfg):
        train_cfg.task_name = family
        train_cfg.paths.data_dir = cfg.paths.data_dir  # the study's paths serve every job
        train_cfg.paths.cache_dir = cfg.paths.cache_dir
        train_cfg.paths.output_dir = str(job_dir)
        train_cfg.trainer.enable_progress_bar = False
        if train_cfg.get("logger") and "tensorboard" in train_cfg.logger:
            # Events directly in the job directory: TensorBoard names the run <family>/seed_<n>.
            train_cfg.logger.tensorboard.name = ""
            train_cfg.logger.tensorboard.version = ""
    return train_cfg


@contextlib.contextmanager
def job_threads(threads: int) -> Iterator[None]:
    """Run a job on ``threads`` threads (``study.threads_per_job``): torch's pool and, where
    threadpoolctl is installed (with scikit-learn, for rejection=expost), the BLAS and OpenMP
    pools of numpy and scikit-learn, which otherwise take every core in every job."""
    torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=threads):
        yield


def run_job(cfg: DictConfig) -> str:
    """Hydra task function: train and evaluate one job; returns ``done``, ``skipped`` or
    ``failed`` (and writes ``error.txt``); never raises, except on Ctrl-C."""
    family, seed = parse_job(cfg.job)
    job_dir = Path(HydraConfig.get().runtime.output_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        train_cfg = compose_job(cfg, family, seed, job_dir)
        wanted = compared_config(train_cfg)
        saved = job_dir / CONFIG_FILE
        # Compared the same way: a job.yaml written by an older ganzoo may hold what it dropped.
        if saved.is_file() and not trains_the_same(OmegaConf.load(saved), train_cfg):
            before = compared_config(OmegaConf.load(saved))
            changed = [
                line
                for line in difflib.unified_diff(
                    before.splitlines(), wanted.splitlines(), lineterm="", n=0
                )
                if line[:1] in "+-" and line[:3] not in ("+++", "---")
            ]
            raise ValueError(
                f"{job_dir} holds a job trained under another config ({saved} vs this "
                f"study's: {'; '.join(changed[:4])}): choose a new study.dir, or delete that "
                "job directory"
            )
        (job_dir / ERROR_FILE).unlink(missing_ok=True)
        if is_complete(job_dir):
            if evaluated_with(job_dir) == study_eval(cfg):
                print(f"[{cfg.job}] complete, skipped", flush=True)
                return "skipped"
            print(f"[{cfg.job}] trained; evaluating under the new study.eval", flush=True)
            with job_threads(int(cfg.study.threads_per_job)), job_output(job_dir / LOG_FILE):
                evaluate_job(cfg, job_dir)
            print(f"[{cfg.job}] evaluated in {time.perf_counter() - start:.0f} s", flush=True)
            return "done"
        saved.write_text(wanted)
        ckpt = resume_checkpoint(job_dir)
        with open_dict(train_cfg):
            train_cfg.ckpt_path = str(ckpt) if ckpt else None
        print(f"[{cfg.job}] {'resuming ' + ckpt.name if ckpt else 'training'}", flush=True)
        with job_threads(int(cfg.study.threads_per_job)), job_output(job_dir / LOG_FILE):
            from ganzoo.train import train

            train(train_cfg)
            evaluate_job(cfg, job_dir)
    except Preempted as err:  # not a failure: the job resumes from its checkpoint next time
        # Without the error's ganzoo-train command, which would carry the study's overrides;
        # the study's command, printed next, resumes the job.
        print(f"[{cfg.job}] interrupted: {err.stopped}", flush=True)
        raise StudyInterrupted(err.signum) from None
    except Exception as err:  # a failed job is recorded; the study goes on
        (job_dir / ERROR_FILE).write_text(
            f"{type(err).__name__}: {err}\n\n{traceback.format_exc()}"
        )
        print(f"[{cfg.job}] FAILED: {type(err).__name__}: {err}", flush=True)
        return "failed"
    print(f"[{cfg.job}] done in {time.perf_counter() - start:.0f} s", flush=True)
    return "done"


def study_eval(cfg: DictConfig) -> list[str]:
    """The study's ``ganzoo-eval`` overrides (``study.eval``)."""
    return [str(o) for o in cfg.study.get("eval") or []]


def evaluated_with(job_dir: Path) -> list[str]:
    """The ``study.eval`` overrides the job's ``metrics.json`` was made with ([] when it does
    not say: written before ganzoo recorded them)."""
    report = json.loads((job_dir / METRICS_FILE).read_text())
    return list(report.get("eval", {}).get("study_eval") or [])


def evaluate_job(cfg: DictConfig, job_dir: Path) -> None:
    """``ganzoo-eval`` of the job's last checkpoint into ``<job_dir>/metrics.json``, which
    records the study's overrides (a study run again under others evaluates the job again)."""
    from ganzoo.evaluate import evaluate

    ckpt = job_dir / "checkpoints" / "last.ckpt"
    overrides = [f"ckpt_path={ckpt}", f"out={job_dir}", *study_eval(cfg)]
    eval_cfg = hydra.compose(config_name="eval", overrides=overrides)
    with open_dict(eval_cfg):
        eval_cfg.paths.cache_dir = cfg.paths.cache_dir
    report = evaluate(eval_cfg)
    if not report["metrics"]:
        raise ValueError(f"no metric applies to {ckpt}: {report['skipped']}")
    report["eval"]["study_eval"] = study_eval(cfg)
    (job_dir / METRICS_FILE).write_text(json.dumps(report, indent=2))


class StudyInterrupted(KeyboardInterrupt):
    """A signal stopped the study (or one of its jobs); every job keeps its checkpoint."""

    def __init__(self, signum: int):
        super().__init__(f"signal {signum}")
        self.signum = signum


def _interrupt(signum: int, frame: Any) -> None:
    raise StudyInterrupted(signum)


class TrainingSamples(torch.nn.Module):
    """Training items drawn at random, in the place of a model's samples: scored against the
    held-out split with the same metrics, they show each column's ceiling (the report's row
    ``real data``)."""

    has_encoder = False

    def __init__(self, datamodule: Any):
        super().__init__()
        self.data = datamodule.train_set
        self.register_buffer("anchor", torch.zeros(()))

    @property
    def device(self) -> torch.device:
        return self.anchor.device

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        from ganzoo.models.base import GenerativeModel

        idx = torch.randint(len(self.data), (n,), generator=generator, device=self.device)
        items = [GenerativeModel.inputs(self.data[int(i)]) for i in idx]
        return torch.stack([torch.as_tensor(x) for x in items]).to(self.device)


def evaluate_reference(cfg: DictConfig) -> Path:
    """``<study.dir>/reference/metrics.json``: the study's metrics of training data taken as
    samples (the first family's data and the study's evaluation settings)."""
    from hydra.utils import instantiate

    from ganzoo.metrics.suite import EvalContext, run_metrics

    out = Path(cfg.study.dir) / REFERENCE_DIR
    family = next(iter(cfg.study.families))
    train_cfg = compose_job(cfg, family, int(cfg.study.seeds[0]), out)
    eval_cfg = hydra.compose(
        config_name="eval", overrides=["ckpt_path=none", *(cfg.study.get("eval") or [])]
    )
    with open_dict(eval_cfg):
        eval_cfg.paths.cache_dir = cfg.paths.cache_dir
    datamodule = instantiate(train_cfg.data)
    datamodule.setup("fit")
    ctx = EvalContext(
        TrainingSamples(datamodule),
        datamodule,
        split=eval_cfg.split,
        seed=eval_cfg.seed,
        batch_size=eval_cfg.batch_size,
    )
    results, skipped = run_metrics(instantiate(eval_cfg.metrics) or {}, ctx)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "what": "training items drawn at random (seeded) in the place of samples",
        "data": OmegaConf.to_container(train_cfg.data, resolve=True),
        "metrics": results,
        "skipped": skipped,
    }
    (out / METRICS_FILE).write_text(json.dumps(record, indent=2))
    return out / METRICS_FILE


class StudyReport(Callback):
    """Hydra callback of a study: records the study's config before the jobs, and writes the
    report, prints its table and sets the exit status after them."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        study_dir = Path(config.study.dir)
        study_dir.mkdir(parents=True, exist_ok=True)
        record = OmegaConf.to_container(config.study, resolve=True)
        record["command"] = shlex.join(["ganzoo-study", *sys.argv[1:]])
        (study_dir / STUDY_FILE).write_text(OmegaConf.to_yaml(record))
        self._start = time.perf_counter()
        jobs = job_names(config.study.families, config.study.seeds)
        print(f"Study {config.study.name}: {len(jobs)} jobs in {study_dir}", flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from ganzoo.report import write_report

        study_dir = Path(config.study.dir)
        if config.study.get("reference") and not is_complete(study_dir / REFERENCE_DIR):
            try:
                evaluate_reference(config)
            except Exception as err:  # the study's own results stand without it
                print(f"ganzoo-study: the real-data reference row failed: {err!r}", flush=True)
        try:
            report = write_report(study_dir)
        except Exception as err:  # Hydra would turn it into a warning and exit 0
            print(f"ganzoo-study: error: the report of {study_dir} failed: {err!r}", flush=True)
            raise SystemExit(1) from err
        print(f"\nStudy finished in {time.perf_counter() - self._start:.0f} s\n", flush=True)
        print(report.summary(), flush=True)
        if report.failed:
            raise SystemExit(1)


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="study")
@report_user_errors("ganzoo-study")
def _study(cfg: DictConfig) -> str:
    return run_job(cfg)


def main() -> None:
    """``ganzoo-study``. SIGTERM (a scheduler, ``kill``) stops the study as Ctrl-C does, so the
    launcher ends its worker processes instead of leaving them running without a parent; either
    ends with the command that resumes the study and exit status 143 or 130."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        _study()
    except KeyboardInterrupt as err:
        signum = getattr(err, "signum", signal.SIGINT)
        print(
            "ganzoo-study: interrupted; every job keeps its checkpoint. Resume the study with: "
            + shlex.join(["ganzoo-study", *sys.argv[1:]]),
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(128 + signum) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()
