"""``ganzoo-train``: compose a run with Hydra, train it with Lightning, return the objective.

ganzoo-train experiment=gan_ring
ganzoo-train experiment=goodfellow2014_mnist paths.data_dir=../shared/data
ganzoo-train -m experiment=gan_ring seed=0,1,2
ganzoo-train experiment=gan_ring ckpt_path=<run>/checkpoints/last.ckpt   # resume

A run that stops early raises out of :func:`train` (a study sees a failed job):
:class:`~ganzoo.callbacks.guards.Preempted` on SIGTERM or Ctrl-C, after finishing the current
batch and writing ``checkpoints/interrupted.ckpt``; :class:`~ganzoo.callbacks.guards.Diverged` on
a non-finite loss or parameter. ``ganzoo-train`` prints one line for either (where the checkpoint
is and the command that resumes it) and exits with 143 (SIGTERM), 130 (Ctrl-C) or 3 (diverged).

On SLURM, Lightning's auto-requeue is used with one change: its requeue signal (SIGUSR1; ask for
it with ``#SBATCH --signal=SIGUSR1@120``) also finishes the current batch first. The checkpoint
then becomes ``<run>/hpc_ckpt_<n>.ckpt``, the job is requeued with ``scontrol requeue``, and the
requeued job (same job id, so the same run directory when ``hydra.run.dir`` names it) resumes
from it by itself.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning_fabric.plugins.environments import SLURMEnvironment
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning_fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.exceptions import SIGTERMException

from ganzoo.callbacks.guards import (
    AtomicCheckpointIO,
    CheckpointOnException,
    Diverged,
    Preempted,
    TrainingStopped,
    batch_position,
    last_checkpoint,
    signal_name,
)
from ganzoo.config import config_dir, report_user_errors
from ganzoo.models import build_model, read_checkpoint
from ganzoo.models.base import evaluating


def no_nvml_retries() -> None:
    """Stop torch from trying to load NVML at every optimizer step where it cannot be loaded.

    Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` when imported, so that
    ``torch.cuda.is_available()`` asks NVML rather than initialising CUDA (which would spoil a
    later fork). Every ``torch.optim`` step calls it. On a machine without an NVIDIA driver NVML
    is missing: torch then tries to load it on every call (37 us against 1 us, measured on the
    CPU development machine) before falling back to the CUDA runtime's answer, which is what the
    check without the variable gives anyway. There, ganzoo removes the variable; where NVML
    loads, it stays.
    """
    if not sys.platform.startswith("linux"):
        return
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") != "1":
        return
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]


#: The callback hooks Lightning calls during every training or validation batch, each through
#: ``_call_callback_hooks``, which skips an attribute that is not callable.
PER_BATCH_HOOKS = (
    "on_train_batch_start",
    "on_train_batch_end",
    "on_before_backward",
    "on_after_backward",
    "on_before_zero_grad",
    "on_before_optimizer_step",
    "on_validation_batch_start",
    "on_validation_batch_end",
)


def skip_noop_hooks(callbacks: list[pl.Callback]) -> int:
    """Set each per-batch hook that a callback inherits unchanged from ``pl.Callback`` (a no-op)
    to None on that callback, so that Lightning's dispatch passes it by; returns how many.

    Lightning calls every hook of every callback, overridden or not, each call with a profiler
    context and the callback's ``state_key`` (about 1.6 us per callback on the CPU development
    machine, more right after a backward pass). With the 12 callbacks of a shipped config and
    three players, that is about 130 calls a batch that do nothing (docs/performance.md). A hook
    that a callback overrides is called as before.
    """
    skipped = 0
    for callback in callbacks:
        for hook in PER_BATCH_HOOKS:
            if getattr(type(callback), hook, None) is getattr(pl.Callback, hook):
                setattr(callback, hook, None)
                skipped += 1
    return skipped


def build_run(cfg: DictConfig) -> tuple[pl.LightningDataModule, pl.LightningModule, pl.Trainer]:
    """Instantiate datamodule, model and trainer (with callbacks and loggers) from a run config."""
    no_nvml_retries()
    datamodule = instantiate(cfg.data)
    if not getattr(datamodule, "download", False):
        datamodule.setup("fit")  # a missing dataset stops the run here, before anything is written
    model = build_model(cfg.model)
    check_compatible(model, datamodule)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    if cfg.trainer.get("enable_progress_bar") is False:
        # callbacks.progress_bar sets the bar's refresh rate; without a bar it has nothing to do.
        callbacks = [c for c in callbacks if not isinstance(c, pl.callbacks.ProgressBar)]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
    skip_noop_hooks(trainer.callbacks)
    return datamodule, model, trainer


@torch.no_grad()
def check_compatible(model: pl.LightningModule, datamodule: pl.LightningDataModule) -> None:
    """Fail early, naming the keys, when the generator's samples do not have the data's shape."""
    with evaluating(model):
        shape = tuple(model.generate(model.fixed_z[:2]).shape[1:])
    if shape != tuple(datamodule.shape):
        raise ValueError(
            f"model.generator makes samples of shape {list(shape)} but data ({type(datamodule).__name__}) "
            f"has shape {list(datamodule.shape)}: pick networks for this data (model/generator=..., "
            "model/discriminator=...) or set data.image_size / data.channels to match"
        )


def train(cfg: DictConfig) -> dict[str, float]:
    """Train one run; returns the final logged metrics as floats.

    Raises :class:`~ganzoo.callbacks.guards.Preempted` or :class:`~ganzoo.callbacks.guards.Diverged`
    when the run stops early (signal handlers are restored on the way out, so ``train`` can be
    called again in the same process).
    """
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path and ckpt_path not in ("last", "hpc", "best"):
        check_resumable(ckpt_path, cfg)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    datamodule, model, trainer = build_run(cfg)
    hparams = OmegaConf.to_container(cfg, resolve=True)
    hparams.pop("hydra", None)
    for node in (hparams.get("paths") or {}, hparams.get("data") or {}):
        if node.get("data_dir"):  # absolute, so that the checkpoint finds its data from anywhere
            node["data_dir"] = str(Path(node["data_dir"]).expanduser().resolve())
    model.run_config = hparams
    for lg in trainer.loggers:
        lg.log_hyperparams(hparams)
    with stop_on_signals(trainer) as received:
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        except SIGTERMException:
            signum = received[0] if received else signal.SIGTERM
            if signum == slurm_requeue_signal(trainer):
                raise requeued(trainer, signum) from None
            raise preempted(cfg, trainer, signum) from None
        except SystemExit:  # Lightning's answer to a second Ctrl-C: sys.exit(1)
            if signal.SIGINT in received:
                raise preempted(cfg, trainer, signal.SIGINT) from None
            raise
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if trainer.global_rank == 0:
        print(summary(cfg, trainer, metrics))
    return metrics


def check_resumable(ckpt_path: str, cfg: DictConfig) -> None:
    """Stop before building anything when ``ckpt_path`` cannot resume this run's model."""
    meta = read_checkpoint(ckpt_path)["ganzoo"]
    target = str(OmegaConf.select(cfg, "model._target_") or "")
    family = target.rsplit(".", 1)[-1]
    if family and meta["family"] != family:
        raise ValueError(
            f"ckpt_path={ckpt_path} holds a {meta['family']} model but this run's model is a "
            f"{family} ({target}): resume it with the config it was trained with"
        )


def slurm_requeue_signal(trainer: pl.Trainer) -> int | None:
    """The signal on which Lightning requeues a SLURM job (None: not on SLURM, or auto-requeue off)."""
    env = trainer._accelerator_connector.cluster_environment  # what Lightning's own handler reads
    if isinstance(env, SLURMEnvironment) and env.auto_requeue and env.requeue_signal is not None:
        return int(env.requeue_signal)
    return None


@contextlib.contextmanager
def stop_on_signals(trainer: pl.Trainer) -> Iterator[list[int]]:
    """While fitting, SIGTERM, SIGINT (Ctrl-C) and SLURM's requeue signal finish the current batch
    and stop training.

    Lightning stops on SIGTERM at the end of the batch (under DDP, every rank at the next batch);
    the other two are routed the same way (a handler here keeps Lightning from installing its own
    requeue handler, which saves in the middle of a batch). A second Ctrl-C interrupts at once.
    Yields the signals received. The previous handlers are back when the block ends.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum, frame):
        received.append(signum)
        if signum == signal.SIGINT and received.count(signal.SIGINT) > 1:
            raise KeyboardInterrupt
        trainer._signal_connector.received_sigterm = True  # Lightning's own stop-after-batch flag

    signums = [signal.SIGTERM, signal.SIGINT]
    if (requeue := slurm_requeue_signal(trainer)) is not None:
        signums.append(requeue)
    previous = {s: signal.getsignal(s) for s in signums}
    for s in previous:
        signal.signal(s, handler)
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def requeued(trainer: pl.Trainer, signum: int) -> Preempted:
    """SLURM asked to requeue: the checkpoint becomes the one Lightning resumes from by itself
    (``<default_root_dir>/hpc_ckpt_<n>.ckpt``), then ``scontrol requeue`` (rank 0 only)."""
    saver = next((c for c in trainer.callbacks if isinstance(c, CheckpointOnException)), None)
    saved = saver.saved if saver is not None else None
    where = f"stopped by {signal_name(signum)} (SLURM requeue) after {batch_position(trainer)}"
    if trainer.global_rank != 0:
        return Preempted(where, signum, saved)
    if saved is not None:
        hpc = Path(trainer._checkpoint_connector.hpc_save_path(trainer.default_root_dir))
        os.replace(saved, hpc)
        saved = hpc.resolve()
    job = os.environ.get("SLURM_JOB_ID", "")
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    status = requeue_slurm_job(job)
    outcome = (
        f"job {job} requeued; it resumes from it by itself"
        if status == 0
        else f"'scontrol requeue {job}' failed ({status}): resume with ckpt_path={saved}"
    )
    return Preempted(f"{where}; checkpoint {saved}; {outcome}", signum, saved)


def requeue_slurm_job(job: str) -> int:
    try:
        return subprocess.call(["scontrol", "requeue", job])
    except FileNotFoundError:
        return 127


def preempted(cfg: DictConfig, trainer: pl.Trainer, signum: int) -> Preempted:
    """The exception (one line: where the checkpoint is, how to resume) for a stop by ``signum``."""
    saver = next((c for c in trainer.callbacks if isinstance(c, CheckpointOnException)), None)
    where = f"stopped by {signal_name(signum)} after {batch_position(trainer)}"
    if saver is None or saver.saved is None:
        return Preempted(f"{where}; no checkpoint was written", signum, None)
    exact = "" if saver.exact else " (written mid-batch: resumes, but not exactly)"
    return Preempted(
        f"{where}; checkpoint {saver.saved}{exact}",
        signum,
        saver.saved,
        resume=resume_command(cfg, saver.saved),
    )


def resume_command(cfg: DictConfig, checkpoint: Path) -> str:
    """The ``ganzoo-train`` command line of this run, resuming from ``checkpoint`` in its own
    directory."""
    try:
        overrides = list(HydraConfig.get().overrides.task)
    except ValueError:  # not composed by Hydra's app: the caller's config is the run
        overrides = []
    keep = [o for o in overrides if not o.lstrip("+~").startswith(("ckpt_path=", "hydra."))]
    args = [
        *keep,
        f"ckpt_path={checkpoint}",
        f"hydra.run.dir={Path(cfg.paths.output_dir).resolve()}",
    ]
    return " ".join(["ganzoo-train", *map(shlex.quote, args)])


def summary(cfg: DictConfig, trainer: pl.Trainer, metrics: dict[str, float]) -> str:
    """Where the run's files are, how to look at them, and its validation figures."""
    out = Path(cfg.paths.output_dir)
    lines = ["", f"Run directory:   {out}"]
    ckpt = last_checkpoint(trainer)
    if ckpt:
        lines.append(f"Checkpoint:      {ckpt}")
    for lg in trainer.loggers:
        if lg.log_dir:
            lines.append(f"TensorBoard:     tensorboard --logdir {lg.log_dir}")
    grids = sorted((out / "samples").glob("epoch_*.png"))
    if grids:
        lines.append(f"Samples:         {grids[-1]}")
    shown = {k: v for k, v in sorted(metrics.items()) if k.startswith("val/")}
    if shown:
        lines.append("Validation (last epoch):")
        lines += [f"  {k:<22} {v:.4g}" for k, v in shown.items()]
    return "\n".join(lines)


def objective(cfg: DictConfig, metrics: dict[str, float]) -> float | None:
    """The value a sweeper optimises: ``optimized_metric`` of the final metrics, if set."""
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if name not in metrics:
        raise KeyError(
            f"optimized_metric={name!r} was not logged; logged metrics: {sorted(metrics)}"
        )
    value = metrics[name]
    return value if math.isfinite(value) else float("inf")


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
@report_user_errors("ganzoo-train")
def main(cfg: DictConfig) -> Any:
    try:
        return objective(cfg, train(cfg))
    except TrainingStopped as stop:
        if rank_zero_only.rank == 0:  # one line, not one per DDP rank
            print(f"ganzoo-train: {stop}", file=sys.stderr, flush=True)
        if isinstance(stop, Diverged) and _multirun() and cfg.get("optimized_metric"):
            return float("inf")  # the sweep goes on; this job's objective is the worst there is
        raise SystemExit(stop.exit_code) from None


def _multirun() -> bool:
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


if __name__ == "__main__":
    main()
