"""Hydra callbacks (``hydra.callbacks`` in ``conf/hydra/default.yaml`` and the Optuna searches):
code Hydra runs around every job and sweep, before ganzoo's own code.

- :class:`QuietNotices`: drop third-party advertisements, known-harmless deprecation warnings and
  libraries' setup chatter (listed in :data:`SILENCED_LOGS`, :data:`SILENCED_WARNINGS` and
  :data:`QUIET_LOGGERS`) from a run's output; every other warning stays.
- :class:`SweepDirectory`: create the sweep directory when a multirun starts, so that a sweeper
  can keep its state there (the Optuna study's SQLite file) before the first job runs.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

#: ``(logger, message regex)``: log records dropped. Lightning's advertisements for its cloud
#: services, printed by every Trainer.
SILENCED_LOGS: tuple[tuple[str, str], ...] = (
    ("pytorch_lightning.utilities.rank_zero", r"Tip: .*\[(litlogger|litmodels)\]"),
    ("lightning.pytorch.utilities.rank_zero", r"Tip: .*\[(litlogger|litmodels)\]"),
)

#: ``logger: level``: libraries' INFO chatter about their own setup, raised to WARNING (optuna's
#: storage runs alembic, which logs every plugin it sets up; MLflow announces its database tables).
QUIET_LOGGERS: dict[str, int] = {
    "alembic": logging.WARNING,
    "mlflow.store.db.utils": logging.WARNING,
}

#: ``(category, message regex)``: warnings ignored. Each is raised inside a library about that
#: library's own use of another one, so a ganzoo user can do nothing about it.
SILENCED_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    # torch >= 2.10 deprecates LeafSpec, which pytorch_lightning 2.6's _pytree still uses.
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
    (DeprecationWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
    # optuna 2.x's storage models under SQLAlchemy 1.4 (the optuna extra pins both).
    (
        Warning,
        r"Deprecated API features detected! These feature\(s\) are not compatible with SQLAlchemy 2\.0",
    ),
)


class _DropMatching(logging.Filter):
    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


class _AtLeast(logging.Filter):
    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


def silence_known_notices() -> None:
    """Install the filters of :data:`SILENCED_LOGS` and :data:`SILENCED_WARNINGS` and the levels
    of :data:`QUIET_LOGGERS` (idempotent)."""
    for name, pattern in SILENCED_LOGS:
        logger = logging.getLogger(name)
        if not any(
            isinstance(f, _DropMatching) and f.pattern.pattern == pattern for f in logger.filters
        ):
            logger.addFilter(_DropMatching(pattern))
    for name, level in QUIET_LOGGERS.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)  # for records of its children (alembic.*)
        if not any(isinstance(f, _AtLeast) for f in logger.filters):
            # for its own records: a library's logging.config.dictConfig (MLflow's, at import)
            # resets the levels of existing child loggers, not their filters
            logger.addFilter(_AtLeast(level))
    for category, pattern in SILENCED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=category)


class QuietNotices(Callback):
    """Silence the known notices in every job (and in the sweep's own process)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        silence_known_notices()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        silence_known_notices()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        silence_known_notices()


class SweepDirectory(Callback):
    """Create ``hydra.sweep.dir`` when a multirun starts (Hydra's launcher makes it only when it
    launches the first batch of jobs, after the sweeper has opened its storage)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)
