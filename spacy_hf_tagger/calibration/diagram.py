"""The reliability diagram: per bin, how often entities were right against
how sure their scores were, before and after calibration, as a PNG.

One row per data set, one column per pipeline (before, after). Each bin's bar
is its accuracy, the mark on it its mean score; the gap between them is what
ECE adds up, weighted by the count printed in the bar. matplotlib comes with
the `calibrate` extra and is imported here only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence, Tuple

import numpy as np

from .reliability import Reliability

# (row title, column title, bins)
Panel = Tuple[str, str, Reliability]


def write_reliability_diagram(path: Path, panels: Sequence[Sequence[Panel]]) -> None:
    """Draw `panels` (rows of panels) into the PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(panels), max(len(row) for row in panels)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(5.2 * n_cols, 4.9 * n_rows), squeeze=False, sharey=True
    )
    for r, row in enumerate(panels):
        for c, (set_name, title, bins) in enumerate(row):
            _draw(axes[r][c], f"{set_name}: {title}", bins, c == 0, legend=r == c == 0)
        for c in range(len(row), n_cols):
            axes[r][c].axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _draw(ax: Any, title: str, bins: Reliability, first_column: bool, legend: bool) -> None:
    width = 1.0 / bins.n_bins
    lefts = np.arange(bins.n_bins) * width
    centers = lefts + width / 2
    filled = bins.counts > 0
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.45", linewidth=1, label="perfectly calibrated")
    ax.bar(
        lefts[filled],
        bins.accuracy[filled],
        width=width,
        align="edge",
        color="#4C72B0",
        edgecolor="white",
        label="accuracy (share of entities right)",
    )
    gap_low = np.minimum(bins.accuracy, bins.confidence)[filled]
    gap_high = np.maximum(bins.accuracy, bins.confidence)[filled]
    ax.bar(
        lefts[filled],
        gap_high - gap_low,
        bottom=gap_low,
        width=width,
        align="edge",
        color="#DD8452",
        alpha=0.45,
        edgecolor="#DD8452",
        hatch="//",
        label="gap to mean score",
    )
    ax.scatter(
        centers[filled], bins.confidence[filled], marker="_", s=220, color="black", zorder=3,
        label="mean score",
    )
    for x, n, acc in zip(centers[filled], bins.counts[filled], bins.accuracy[filled]):
        inside = acc > 0.16
        ax.text(
            x,
            acc - 0.02 if inside else acc + 0.02,
            f"{n:,}",
            ha="center",
            va="top" if inside else "bottom",
            rotation=90,
            fontsize=8,
            color="white" if inside else "black",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xticks(np.linspace(0, 1, bins.n_bins + 1))
    ax.tick_params(labelsize=8)
    ax.set_xlabel("entity score (bins of 0.1; entities per bin in the bars)", fontsize=9)
    if first_column:
        ax.set_ylabel("share of entities right", fontsize=9)
    ax.set_title(f"{title}\nECE {bins.ece:.4f} over {bins.n:,} entities", fontsize=10)
    if legend:
        ax.legend(loc="upper left", fontsize=7, frameon=False)
