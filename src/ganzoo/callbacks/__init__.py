"""Callbacks: sample grids, schedules, evaluation during training."""

from ganzoo.callbacks.guards import CheckpointOnException
from ganzoo.callbacks.mixtures import ModeCoverage
from ganzoo.callbacks.reconstructions import ReconstructionGrid
from ganzoo.callbacks.samples import SampleGrid
from ganzoo.callbacks.schedules import MomentumSchedule

__all__ = [
    "CheckpointOnException",
    "ModeCoverage",
    "MomentumSchedule",
    "ReconstructionGrid",
    "SampleGrid",
]
