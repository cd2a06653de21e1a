"""Quiet runs: no advertisement or known-harmless deprecation warning in a run's output, genuine
warnings kept, and a few plain progress lines per epoch when stdout is not a terminal."""

from __future__ import annotations

import logging
import re
import subprocess
import warnings
from types import SimpleNamespace

import pytest

from conftest import ganzoo_train
from ganzoo.callbacks.hydra_callbacks import (
    SILENCED_LOGS,
    SILENCED_WARNINGS,
    silence_known_notices,
)
from ganzoo.callbacks.progress import PlainProgress

RING = [
    "experiment=gan_ring",
    "data.num_train=1000",
    "data.num_val=50",
    "callbacks.mode_coverage.num_samples=100",
    "trainer.max_epochs=1",
    "logger=mlflow",  # MLflow's database set-up chatter is silenced too
]


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory) -> subprocess.CompletedProcess:
    tmp = tmp_path_factory.mktemp("quiet")
    done = ganzoo_train(*RING, f"hydra.run.dir={tmp / 'run'}", cwd=tmp)
    assert done.returncode == 0, done.stderr
    return done


def test_a_run_prints_none_of_the_silenced_notices(ring_run):
    output = ring_run.stdout + ring_run.stderr
    for _, pattern in SILENCED_LOGS:
        assert not re.search(pattern, output), pattern
    for _, pattern in SILENCED_WARNINGS:
        assert not re.search(pattern, output), pattern
    assert "litlogger" not in output and "LeafSpec" not in output
    assert "MLflow database tables" not in output
    # ganzoo's checkpoint callbacks say what they save: no "`weights_only` was not set" notice.
    assert "weights_only" not in output
    # Lightning's own information stays.
    assert "GPU available" in output and "Trainer.fit` stopped" in output


def test_a_non_interactive_run_logs_a_few_plain_lines_per_epoch(ring_run):
    output = ring_run.stdout + ring_run.stderr
    assert "\r" not in output and "it/s]" not in output  # no progress-bar redraws
    progress = [line for line in ring_run.stdout.splitlines() if line.startswith("epoch 1/1")]
    assert len(progress) == 5, progress  # 4 training lines, 1 after validation
    assert progress[-2].startswith("epoch 1/1  batch 10/10 (100%)")
    assert "train/loss_d=" in progress[0]
    assert progress[-1].startswith("epoch 1/1  validation") and "val/modes=" in progress[-1]
    size = len(output.encode())
    assert size < 5000, f"a one-epoch run wrote {size} bytes:\n{output}"


def test_genuine_warnings_stay():
    silence_known_notices()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        silence_known_notices()  # the filters go in front of "default"
        warnings.warn(
            "`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=1
        )
        warnings.warn("something else is deprecated", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else is deprecated"]


def test_the_lightning_tip_is_dropped_and_other_records_kept():
    silence_known_notices()
    silence_known_notices()  # idempotent: one filter per logger
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    assert len(logger.filters) == len({f.pattern.pattern for f in logger.filters})
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        logger.warning("💡 Tip: For seamless cloud logging, try installing [litlogger](https://x)")
        logger.warning("GPU available: False, used: False")
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in records] == ["GPU available: False, used: False"]


class FakeBar:
    def __init__(self):
        self.enabled = True

    def disable(self):
        self.enabled = False


@pytest.mark.parametrize(("terminal", "active"), [(True, False), (False, True)])
def test_plain_progress_replaces_the_bar_only_off_a_terminal(terminal, active):
    bar = FakeBar()
    callback = PlainProgress(terminal=terminal)
    callback.setup(SimpleNamespace(progress_bar_callback=bar), None, "fit")
    assert callback.active is active and bar.enabled is not active
    # enable_progress_bar=false: no bar, no lines either
    callback.setup(SimpleNamespace(progress_bar_callback=None), None, "fit")
    assert callback.active is False


@pytest.mark.parametrize(
    ("lines", "total", "expected"),
    [(4, 10, {3, 5, 8, 10}), (4, 2, {1, 2}), (1, 7, {7}), (3, 300, {100, 200, 300})],
)
def test_plain_progress_spreads_its_lines_over_the_epoch(lines, total, expected):
    assert PlainProgress(lines_per_epoch=lines)._checkpoints(total) == expected
