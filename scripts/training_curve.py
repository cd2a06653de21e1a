"""Per-epoch values of a run's scalars, read from its TensorBoard events (for docs/results.md).

    python scripts/training_curve.py RUN_DIR val/parzen_ll val/classifier_score \
        --every 5 --plot curve.png

Prints a markdown table, one row per logged epoch (every ``--every``-th, and the first and last),
one column per tag; with ``--plot``, a PNG (matplotlib) with one panel per tag over the epochs,
four to a row. RUN_DIR is a ``ganzoo-train`` run directory or a study's job directory (every
``events.out.tfevents.*`` file in it, resumed runs included).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ganzoo.report import _pyplot, _save, read_curve


def curves(run_dir: Path, tags: list[str]) -> dict[str, dict[int, float]]:
    """``{tag: {epoch: value}}``; a value logged twice for one epoch (a resumed run) keeps the last."""
    if (run_dir / "tensorboard").is_dir():  # a ganzoo-train run; a study's job holds them directly
        run_dir = run_dir / "tensorboard"
    out = {}
    for tag in tags:
        points = read_curve(run_dir, tag)
        if not points:
            raise SystemExit(f"{run_dir}: no scalar {tag!r} in its TensorBoard events")
        out[tag] = {int(epoch): value for epoch, value in points}
    return out


def table(values: dict[str, dict[int, float]], every: int) -> str:
    epochs = sorted(set().union(*values.values()))
    shown = [e for e in epochs if e % every == 0 or e in (epochs[0], epochs[-1])]
    lines = ["| epoch | " + " | ".join(values) + " |", "|---" * (len(values) + 1) + "|"]
    for e in shown:
        cells = [f"{values[t][e]:.4g}" if e in values[t] else "" for t in values]
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(values: dict[str, dict[int, float]], path: Path) -> Path:
    plt = _pyplot()
    cols = min(4, len(values))
    rows = -(-len(values) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax in axes.flat[len(values) :]:
        ax.set_visible(False)
    for ax, (tag, points) in zip(axes.flat, values.items(), strict=False):  # spare panels hidden
        epochs = sorted(points)
        ax.plot(epochs, [points[e] for e in epochs], marker=".")
        ax.set_title(tag)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    return _save(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("tags", nargs="+")
    parser.add_argument("--every", type=int, default=1, help="show every n-th epoch in the table")
    parser.add_argument("--plot", type=Path, help="write the curves to this PNG")
    args = parser.parse_args()
    values = curves(args.run_dir, args.tags)
    print(table(values, args.every))
    if args.plot:
        print(f"plot: {plot(values, args.plot)}")


if __name__ == "__main__":
    main()
