"""The benchmark scripts under scripts/ still run (their numbers are measured elsewhere, never in
tests: docs/performance.md)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

from conftest import REPO


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the script takes ~10 minutes")
def test_gpu_benchmark_runs_briefly_on_cpu_and_writes_its_rows(tmp_path):
    rows = tmp_path / "rows.md"
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_benchmark.sh"), str(rows)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = rows.read_text()
    assert "no GPU here" in text
    # One ratio row of the step benchmark and two of the data benchmark, each a number.
    assert re.search(r"^\| gan_ring \| [\d.,]+ \| [\d.,]+ \| \d+\.\d+ \|", text, re.M), text
    assert re.search(r"^\| MNIST \(100\) \| [\d,]+ \| [\d,]+ .*\| \d+\.\d \|$", text, re.M), text
    assert re.search(r"^\| CIFAR-10-shaped \(64\) \|", text, re.M), text


@pytest.mark.slow
def test_study_benchmark_runs_both_ways_and_prints_a_ratio():
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "benchmark_study.py"),
            "--seeds",
            "0",
            "--batches",
            "3",
            "--repeats",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"\| \d+\.\d+ \|\s*$", done.stdout, re.M), done.stdout
