"""Images per second of a small ``ganzoo-study`` run in parallel against its jobs one after another.

The same study (default: ``study=ring_quick`` with two seeds, six jobs, each one epoch cut to
``--batches`` batches) runs twice into fresh directories:

- **parallel**: ganzoo-study's default, the joblib launcher with ``study.n_jobs`` jobs at once
  (one per core) and ``study.threads_per_job`` torch threads each (cores / jobs);
- **one after another**: ``hydra/launcher=local study.n_jobs=1``, every job with all the cores'
  threads.

Throughput is the images trained by all jobs (jobs x batches x batch size) over the study's wall
time, start to end (start-up, training, each job's evaluation, the report): what a user waits
for. Runs alternate, are repeated, and the printed ratio is the median parallel throughput over
the median one-after-another throughput (target on 2 cores: at least 1.15). Jobs should be long
enough for training to dominate, as in real studies (10,000 batches and more): with jobs of 200
batches, the parallel side's start-up of each worker process (one import of torch and Lightning
per core) ate its gain (1.03x).

    python scripts/benchmark_study.py
    python scripts/benchmark_study.py --study ring_quick --seeds 0 1 --batches 3000 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from ganzoo.config import config_dir
from ganzoo.study import cpu_count


def batch_sizes(study: str) -> dict[str, int]:
    """Each family's ``data.batch_size``, from its experiment."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        families = compose("study", overrides=[f"study={study}"]).study.families
        return {
            name: int(compose("train", overrides=[f"experiment={spec.experiment}"]).data.batch_size)
            for name, spec in families.items()
        }


def run_study(args, parallel: bool) -> float:
    """Wall seconds of one study into a fresh directory."""
    with tempfile.TemporaryDirectory(prefix="ganzoo_bench_study_") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "ganzoo.study",
            f"study={args.study}",
            f"study.seeds=[{','.join(str(s) for s in args.seeds)}]",
            "study.epochs=1",
            f"study.overrides=['+trainer.limit_train_batches={args.batches}',"
            f"'+trainer.limit_val_batches={args.val_batches}']",
            f"study.dir={tmp}/study",
            f"paths.log_dir={tmp}/logs",
        ]
        if not parallel:
            cmd += ["hydra/launcher=local", "study.n_jobs=1"]
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="ring_quick")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--batches", type=int, default=1500, help="training batches per job")
    parser.add_argument("--val-batches", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    sizes = batch_sizes(args.study)
    images = sum(sizes.values()) * len(args.seeds) * args.batches
    jobs = len(sizes) * len(args.seeds)
    times = {True: [], False: []}
    for r in range(args.repeats):
        for parallel in (r % 2 == 0, r % 2 != 0):  # alternate which goes first
            times[parallel].append(run_study(args, parallel))
            print(
                f"  repeat {r + 1}: {'parallel' if parallel else 'one after another'} "
                f"{times[parallel][-1]:.1f} s",
                file=sys.stderr,
                flush=True,
            )
    seq, par = (images / statistics.median(times[p]) for p in (False, True))
    print(
        f"# benchmark_study: study={args.study}, {jobs} jobs of {args.batches} batches, "
        f"{cpu_count()} cores, median of {args.repeats} repeats (wall time)"
    )
    print("| study | one after another, images/s | parallel, images/s | ratio |")
    print("|---|---|---|---|")
    print(f"| {args.study} ({jobs} jobs) | {seq:,.0f} | {par:,.0f} | {par / seq:.2f} |")


if __name__ == "__main__":
    main()
