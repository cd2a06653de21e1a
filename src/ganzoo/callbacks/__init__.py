"""Callbacks: sample grids, schedules, evaluation during training."""

from ganzoo.callbacks.evaluation import Evaluation
from ganzoo.callbacks.mixtures import ModeCoverage
from ganzoo.callbacks.reconstructions import ReconstructionGrid
from ganzoo.callbacks.samples import SampleGrid
from ganzoo.callbacks.schedules import MomentumSchedule

__all__ = ["Evaluation", "ModeCoverage", "MomentumSchedule", "ReconstructionGrid", "SampleGrid"]
