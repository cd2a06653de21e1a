"""Markdown table of ``ganzoo-eval`` reports, one row per ``metrics.json`` (for docs/results.md).

    python scripts/results_table.py results/gan/metrics.json results/vaegan/metrics.json ...

Columns: the run, its family and epochs, then each metric as ``value`` (``± se`` for the Parzen
estimate, ``± std`` for KID); a metric a report lacks (e.g. reconstruction for the GAN) is "-".
The protocol line under the table names sample counts, split, seed and the feature network.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = {
    "FID (domain)": ("fid_domain", None),
    "KID (domain)": ("kid_domain", "kid_domain_std"),
    "precision": ("precision_domain", None),
    "recall": ("recall_domain", None),
    "density": ("density_domain", None),
    "coverage": ("coverage_domain", None),
    "classifier score": ("classifier_score", None),
    "Parzen LL (nats)": ("parzen_ll", "parzen_se"),
    "recon L1 (test)": ("recon_l1_test", None),
    "recon MSE (test)": ("recon_mse_test", None),
    "recon SSIM (test)": ("recon_ssim_test", None),
}


def cell(metrics: dict, key: str, spread: str | None) -> str:
    if key not in metrics:
        return "-"
    text = f"{metrics[key]['value']:.4g}"
    return f"{text} ± {metrics[spread]['value']:.2g}" if spread in metrics else text


def table(paths: list[str]) -> str:
    lines = [
        "| run | family | epochs | " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * (3 + len(COLUMNS)),
    ]
    protocols = []
    for path in paths:
        report = json.loads(Path(path).read_text())
        m, ckpt = report["metrics"], report["checkpoint"]
        run = Path(ckpt["path"]).parents[1].name
        cells = [cell(m, key, spread) for key, spread in COLUMNS.values()]
        lines.append(f"| {run} | {ckpt['family']} | {ckpt['epoch']} | " + " | ".join(cells) + " |")
        if "fid_domain" in m:
            p = m["fid_domain"]
            f = p["features"]
            protocols.append(
                f"{run}: {p['num_generated']} samples vs {p['num_real']} {p['split']} images, "
                f"seed {p['seed']}, domain classifier sha256 {f['weights_sha256'][:12]} "
                f"(test accuracy {f['test_accuracy']:.4f}); Parzen: "
                f"{m['parzen_ll']['num_generated']} samples, sigma {m['parzen_sigma']['value']:.3g}"
            )
    return "\n".join(lines + [""] + [f"- {p}" for p in protocols])


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python scripts/results_table.py <metrics.json> [<metrics.json> ...]")
    print(table(sys.argv[1:]))
