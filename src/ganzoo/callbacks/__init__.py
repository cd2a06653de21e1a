"""Callbacks: sample grids, schedules, guards, evaluation and summaries during training."""

from ganzoo.callbacks.evaluation import Evaluation
from ganzoo.callbacks.guards import CheckpointOnException, DivergenceGuard, EpochCheckpoint
from ganzoo.callbacks.hparams import HParamsSummary
from ganzoo.callbacks.mixtures import ModeCoverage
from ganzoo.callbacks.reconstructions import ReconstructionGrid
from ganzoo.callbacks.samples import SampleGrid
from ganzoo.callbacks.schedules import MomentumSchedule

__all__ = [
    "CheckpointOnException",
    "DivergenceGuard",
    "EpochCheckpoint",
    "Evaluation",
    "HParamsSummary",
    "ModeCoverage",
    "MomentumSchedule",
    "ReconstructionGrid",
    "SampleGrid",
]
