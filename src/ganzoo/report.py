"""``ganzoo-report <study_dir>``: the comparison table, per-job numbers and pictures of a study.

Reads every ``<study_dir>/<family>/seed_<n>/metrics.json`` (written by ``ganzoo-study``) and the
study's record ``<study_dir>/study.yaml`` (columns, which way each is better, published rows),
and writes into ``<study_dir>``:

- ``report.md``: one row per family, one column per metric, ``mean +- std (n)`` over seeds (std
  is the sample standard deviation, ``ddof=1``; ``-`` for one seed), the best mean in bold (every
  family that ties for it); the published rows; the evaluation protocol of every column; the failed jobs;
- ``report.json`` and ``report.csv``: the per-job numbers;
- ``metrics.png`` (every job's value by family), ``curves.png`` (the study's validation curve of
  every job over epochs, from the TensorBoard events) and ``samples.png`` (for each family's
  median-seed job, the samples its evaluation scored, drawn by the study's sampler; a job
  evaluated before ``ganzoo-eval`` pictured them shows its last training grid instead).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

METRICS_FILE, ERROR_FILE, STUDY_FILE = "metrics.json", "error.txt", "study.yaml"
#: ``ganzoo-eval``'s picture of the samples it scored, beside ``metrics.json``.
PICTURE_FILE = "eval_samples.png"
#: ``ganzoo-study``'s real-data row: training items scored as samples (``study.reference``).
REFERENCE_DIR = "reference"
#: Protocol entries too long for a table cell (kept in report.json).
BULKY = {"sigmas", "sigma_mean_ll", "value", "seconds", "acceptance", "rejection_measured"}


@dataclass
class Job:
    family: str
    seed: int
    dir: Path
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None
    #: Not failed, not finished: unfinished (a checkpoint, no metrics) or not started.
    pending: bool = False

    @property
    def name(self) -> str:
        return f"{self.family}/seed_{self.seed}"

    def value(self, metric: str) -> float | None:
        entry = self.metrics.get(metric)
        value = entry.get("value") if entry else None
        return float(value) if isinstance(value, (int, float)) else None


def find_jobs(study_dir: Path) -> list[Job]:
    """Every ``<family>/seed_<n>`` directory of the study with a result or an error."""
    jobs = []
    for seed_dir in sorted(study_dir.glob("*/seed_*")):  # reference/ is not a family
        suffix = seed_dir.name.removeprefix("seed_")
        if not seed_dir.is_dir() or not suffix.isdigit():
            continue
        job = Job(seed_dir.parent.name, int(suffix), seed_dir)
        error = seed_dir / ERROR_FILE
        if error.is_file():
            job.error = error.read_text().splitlines()[0] if error.read_text() else "failed"
        else:
            try:
                job.metrics = json.loads((seed_dir / METRICS_FILE).read_text())["metrics"]
            except (OSError, ValueError, KeyError):
                job.error = "unfinished: no metrics.json (run the study again to resume it)"
                job.pending = True
        jobs.append(job)
    return sorted(jobs, key=lambda j: (j.family, j.seed))


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``None`` for a single value)."""
    n = len(values)
    mean = math.fsum(values) / n
    if n == 1:
        return mean, None
    if not all(math.isfinite(v) for v in values):
        return mean, math.nan
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


def fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if math.isinf(x) or math.isnan(x):
        return str(x)
    if x != 0 and (abs(x) >= 1e4 or abs(x) < 1e-3):
        return f"{x:.3g}"
    return f"{x:.4g}" if abs(x) < 10 else f"{x:.1f}"


@dataclass
class Report:
    study_dir: Path
    study: dict[str, Any]
    jobs: list[Job]
    columns: dict[str, str]  # metric -> "max" | "min" | "none" (not ranked)
    rows: dict[str, dict[str, tuple[float, float | None, int]]]  # family -> metric -> stats
    best: dict[str, set[str]]  # metric -> the families with the best mean (ties: all)
    reference: dict[str, float] = field(default_factory=dict)  # real data's value per metric
    files: list[Path] = field(default_factory=list)

    @property
    def failed(self) -> list[Job]:
        return [j for j in self.jobs if j.error and not j.pending]

    @property
    def pending(self) -> list[Job]:
        return [j for j in self.jobs if j.pending]

    def cell(self, family: str, metric: str) -> str:
        stats = self.rows[family].get(metric)
        if stats is None:
            return "n/a"
        mean, std, n = stats
        text = f"{fmt(mean)} +- {fmt(std)} ({n})" if std is not None else f"{fmt(mean)} (1)"
        return f"**{text}**" if family in self.best.get(metric, ()) else text

    def table(self) -> list[str]:
        cols = list(self.columns)
        lines = [
            "| family | " + " | ".join(cols) + " |",
            "|---|" + "---|" * len(cols),
        ]
        for family in self.rows:
            lines.append(f"| {family} | " + " | ".join(self.cell(family, c) for c in cols) + " |")
        if self.reference:
            values = [fmt(self.reference.get(c)) for c in cols]
            lines.append("| real data (training items as samples) | " + " | ".join(values) + " |")
        for ref in self.study.get("references") or []:
            values = [fmt(ref[c]) if c in ref else "" for c in cols]
            lines.append(f"| {ref['name']} (published) | " + " | ".join(values) + " |")
        return lines

    def summary(self) -> str:
        """What the study prints at its end: the table, the failures and where things are."""
        out = [f"Study {self.study.get('name', self.study_dir.name)}: mean +- std (seeds)", ""]
        out += self.table()
        for job in self.failed:
            out.append(f"FAILED {job.name}: {job.error}")
        for job in self.pending:
            out.append(f"PENDING {job.name}: {job.error}")
        out += [""] + [f"Report:       {p}" for p in self.files if p.suffix == ".md"]
        out += [f"Picture:      {p}" for p in self.files if p.suffix == ".png"]
        out.append(f"TensorBoard:  tensorboard --logdir {self.study_dir}")
        return "\n".join(out)


def build_report(study_dir: Path) -> Report:
    """Collect the jobs' numbers and the per-family statistics of a study directory."""
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise FileNotFoundError(f"{study_dir} is not a directory: give a study's directory")
    record = study_dir / STUDY_FILE
    study = OmegaConf.to_container(OmegaConf.load(record)) if record.is_file() else {}
    jobs = find_jobs(study_dir)
    if not jobs:
        raise FileNotFoundError(
            f"{study_dir} holds no <family>/seed_<n> job directories: is it a study's directory?"
        )
    found = {(j.family, j.seed) for j in jobs}
    for family in study.get("families") or {}:  # jobs of the study that have not started yet
        for seed in study.get("seeds") or []:
            if (family, int(seed)) not in found:
                missing = Job(family, int(seed), study_dir / family / f"seed_{int(seed)}")
                missing.error = "not started (run the study again to resume it)"
                missing.pending = True
                jobs.append(missing)
    jobs.sort(key=lambda j: (j.family, j.seed))
    columns = dict(study.get("metrics") or {})
    if not columns:  # every scalar metric, higher taken as better
        names = {m for j in jobs for m in j.metrics if j.value(m) is not None}
        columns = {m: "max" for m in sorted(names)}
    rows: dict[str, dict[str, tuple[float, float | None, int]]] = {}
    # The study's order of families first, then any other family found on disk.
    order = [f for f in study.get("families") or {} if any(j.family == f for j in jobs)]
    for family in dict.fromkeys(order + [j.family for j in jobs]):
        rows[family] = {}
        for metric in columns:
            values = [v for j in jobs if j.family == family and (v := j.value(metric)) is not None]
            if values:
                rows[family][metric] = (*mean_std(values), len(values))
    best = {}
    for metric, direction in columns.items():
        if direction not in ("max", "min", "none"):
            raise ValueError(
                f"study.metrics.{metric} must be max, min or none (shown, not ranked), got "
                f"{direction!r}"
            )
        if direction == "none":
            continue
        scored = [(r[metric][0], f) for f, r in rows.items() if metric in r]
        scored = [(m, f) for m, f in scored if not math.isnan(m)]
        if scored:
            top = (max if direction == "max" else min)(m for m, _ in scored)
            best[metric] = {f for m, f in scored if m == top}
    reference = {}
    try:
        measured = json.loads((study_dir / REFERENCE_DIR / METRICS_FILE).read_text())["metrics"]
        reference = {
            m: float(measured[m]["value"])
            for m in columns
            if m in measured and isinstance(measured[m].get("value"), (int, float))
        }
    except (OSError, ValueError, KeyError):
        pass
    return Report(study_dir, study, jobs, columns, rows, best, reference)


def protocol_lines(report: Report) -> list[str]:
    """How every column was measured, from the jobs' metrics.json (identical across jobs, or
    each distinct protocol listed)."""
    lines = []
    for metric in report.columns:
        seen = []
        for job in report.jobs:
            entry = job.metrics.get(metric)
            if entry is None:
                continue
            proto = {k: v for k, v in entry.items() if k not in BULKY}
            features = proto.pop("features", None) or {}
            if isinstance(features, dict):
                proto["features"] = features.get("name")
                for key in ("weights_sha256", "sha256", "test_accuracy", "num_modes", "std"):
                    if key in features:
                        proto[f"features.{key}"] = features[key]
            text = ", ".join(f"{k} {v}" for k, v in proto.items() if v is not None)
            if text not in seen:
                seen.append(text)
        lines += [f"- `{metric}`: {text}" for text in seen] or [f"- `{metric}`: not measured"]
    return lines


def acceptance(job: Job) -> float | None:
    """The share of candidate samples a rejection sampler kept for the job's metrics (None
    without one)."""
    rates = [e.get("acceptance") for e in job.metrics.values() if isinstance(e, dict)]
    return next((r for r in rates if r is not None), None)


def job_records(report: Report) -> list[dict[str, Any]]:
    """Every job's numbers, with the rejection sampler's acceptance rate when one was used."""
    records = [
        {
            "family": j.family,
            "seed": j.seed,
            "dir": str(j.dir),
            "error": j.error,
            **{m: j.value(m) for m in report.columns},
            "acceptance": acceptance(j),
        }
        for j in report.jobs
    ]
    if all(r["acceptance"] is None for r in records):
        for r in records:
            del r["acceptance"]
    return records


def median_job(report: Report, family: str) -> Job | None:
    """The family's job whose first report metric is the median of its seeds (lower median)."""
    jobs = [j for j in report.jobs if j.family == family and not j.error]
    if not jobs:
        return None
    key = next(iter(report.columns), None)
    ranked = sorted(jobs, key=lambda j: j.value(key) if key and j.value(key) is not None else 0)
    return ranked[(len(ranked) - 1) // 2]


def read_curve(job_dir: Path, tag: str) -> list[tuple[float, float]]:
    """``(epochs completed, value)`` of one scalar from the TensorBoard events directly in
    ``job_dir``. Steps count optimizer steps, which differ between families (two per batch for
    a GAN, four for alpha-GAN), so the x axis is the epoch that Lightning logs beside it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not job_dir.is_dir():  # a job that has not started
        return []
    quiet = logging.getLogger("tensorboard")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # not one "No path found after <file>" line per job
    try:
        acc = EventAccumulator(str(job_dir), size_guidance={"scalars": 0})
        acc.Reload()
    finally:
        quiet.setLevel(level)
    tags = acc.Tags().get("scalars", [])
    if tag not in tags:
        return []
    epoch_at = {e.step: e.value for e in acc.Scalars("epoch")} if "epoch" in tags else {}
    return [
        (epoch_at[e.step] + 1 if e.step in epoch_at else i + 1, e.value)
        for i, e in enumerate(acc.Scalars(tag))
    ]


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (studies run without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def plot_metrics(report: Report, path: Path) -> Path | None:
    plt = _pyplot()
    cols = [m for m in report.columns if any(m in r for r in report.rows.values())]
    if not cols:
        return None
    families = list(report.rows)
    fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], cols, strict=True):
        data = [
            [
                v
                for j in report.jobs
                if j.family == f and (v := j.value(metric)) is not None and math.isfinite(v)
            ]
            for f in families
        ]
        ax.boxplot(data, showfliers=False, widths=0.5)
        for i, values in enumerate(data, start=1):
            offsets = [(k - (len(values) - 1) / 2) * 0.06 for k in range(len(values))]
            ax.scatter([i + o for o in offsets], values, s=14, zorder=3)
        ax.set_xticks(range(1, len(families) + 1), families, rotation=20)
        ax.set_title(f"{metric} ({report.columns[metric]} is better)", fontsize=9)
    return _save(fig, path)


def plot_curves(report: Report, path: Path) -> Path | None:
    tag = report.study.get("curve")
    if not tag:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    colours = {f: f"C{i}" for i, f in enumerate(report.rows)}
    drawn = False
    for job in report.jobs:
        curve = read_curve(job.dir, tag)
        if curve:
            label = (
                job.family
                if job.seed == min(j.seed for j in report.jobs if j.family == job.family)
                else None
            )
            ax.plot(*zip(*curve, strict=True), color=colours[job.family], alpha=0.8, label=label)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("epochs")
    ax.set_ylabel(tag)
    ax.legend(fontsize=8)
    ax.set_title(f"{tag}, every job", fontsize=9)
    return _save(fig, path)


def plot_samples(report: Report, path: Path) -> Path | None:
    import matplotlib.image as mpimg

    plt = _pyplot()
    shown = []
    for family in report.rows:
        job = median_job(report, family)
        picture = sample_picture(job) if job else None
        if picture:
            shown.append((job, *picture))
    if not shown:
        return None
    fig, axes = plt.subplots(1, len(shown), figsize=(4 * len(shown), 4.3), squeeze=False)
    for ax, (job, picture, label) in zip(axes[0], shown, strict=True):
        ax.imshow(mpimg.imread(picture), cmap="gray")
        ax.set_title(f"{job.name} ({label})", fontsize=9)
        ax.axis("off")
    return _save(fig, path)


def sample_picture(job: Job) -> tuple[Path, str] | None:
    """The picture of ``job``'s samples and its label: the samples its evaluation scored
    (``ganzoo-eval``'s picture, labelled with the sampler when there was one), else its last
    training grid (the prior's samples at that epoch, labelled with the epoch)."""
    picture = job.dir / PICTURE_FILE
    if picture.is_file():
        methods = {
            entry["rejection"]["method"]
            for entry in job.metrics.values()
            if isinstance(entry, dict) and isinstance(entry.get("rejection"), dict)
        }
        names = sorted(m.split(" (")[0] for m in methods if isinstance(m, str))
        return picture, ", ".join(["evaluated", *names])
    grids = sorted((job.dir / "samples").glob("epoch_*.png"))
    return (grids[-1], grids[-1].stem) if grids else None


def write_report(study_dir: Path, out: Path | None = None) -> Report:
    """Build the report and write report.md, report.json, report.csv and the pictures into
    ``out`` (default: the study directory)."""
    report = build_report(Path(study_dir))
    d = Path(out) if out is not None else report.study_dir
    d.mkdir(parents=True, exist_ok=True)
    records = job_records(report)
    (d / "report.json").write_text(
        json.dumps(
            {
                "study": report.study,
                "columns": report.columns,
                "families": {
                    f: {m: {"mean": s[0], "std": s[1], "n": s[2]} for m, s in r.items()}
                    for f, r in report.rows.items()
                },
                "jobs": records,
            },
            indent=2,
        )
    )
    with open(d / "report.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    report.files = [d / "report.md", d / "report.json", d / "report.csv"]
    for plot, name in (
        (plot_metrics, "metrics"),
        (plot_curves, "curves"),
        (plot_samples, "samples"),
    ):
        written = plot(report, d / f"{name}.png")
        if written:
            report.files.append(written)
    (d / "report.md").write_text(markdown(report))
    return report


def markdown(report: Report) -> str:
    study = report.study
    lines = [f"# Study `{study.get('name', report.study_dir.name)}`", ""]
    if study.get("description"):
        lines += [study["description"].strip(), ""]
    if study.get("command"):
        lines += ["Command:", "", "```bash", study["command"], "```", ""]
    done = [j for j in report.jobs if not j.error]
    lines += [
        f"{len(done)} of {len(report.jobs)} jobs finished. Each cell: mean +- sample std (number "
        "of seeds) over the finished jobs; the best mean of each column in bold. The row `real "
        "data` scores training items drawn at random as if they were samples, with the same "
        "metrics: each column's ceiling.",
        "",
    ]
    lines += report.table() + [""]
    lines += ["## Evaluation protocol", ""] + protocol_lines(report) + [""]
    lines += ["## Jobs", "", "| job | " + " | ".join(report.columns) + " | error |"]
    lines.append("|---|" + "---|" * (len(report.columns) + 1))
    for job in report.jobs:
        values = [fmt(job.value(m)) for m in report.columns]
        lines.append(f"| {job.name} | " + " | ".join(values) + f" | {job.error or ''} |")
    pictures = [p for p in report.files if p.suffix == ".png"]
    if pictures:
        lines += ["", "## Pictures", ""]
        lines += [f"![{p.stem}]({p.name})" for p in pictures]
    lines += ["", f"TensorBoard: `tensorboard --logdir {report.study_dir}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ganzoo-report",
        description="Write report.md/.json/.csv and pictures of a ganzoo-study directory.",
    )
    parser.add_argument("study_dir", type=Path, help="the study's directory (study.dir)")
    parser.add_argument(
        "--out", type=Path, default=None, help="write the report here (default: study_dir)"
    )
    args = parser.parse_args(argv)
    try:
        report = write_report(args.study_dir, args.out)
    except (FileNotFoundError, ValueError) as err:
        print(f"ganzoo-report: error: {err}", file=sys.stderr)
        return 2
    print(report.summary())
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
