"""Callbacks: sample grids, schedules, evaluation during training."""

from ganzoo.callbacks.hparams import HParamsSummary
from ganzoo.callbacks.mixtures import ModeCoverage
from ganzoo.callbacks.reconstructions import ReconstructionGrid
from ganzoo.callbacks.samples import SampleGrid
from ganzoo.callbacks.schedules import MomentumSchedule

__all__ = ["HParamsSummary", "ModeCoverage", "MomentumSchedule", "ReconstructionGrid", "SampleGrid"]
