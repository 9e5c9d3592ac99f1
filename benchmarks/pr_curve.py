"""Draw precision against recall over `o_bias` (a helper of `accuracy.py --o-bias`).

Two panels sharing the precision axis: exact-span recall (the CoNLL measure,
light curves of equal F1 behind), and the share of gold entities inside
predicted ones of any type (what redacting them needs). One line per text
rendering, one point per bias, labelled with it. matplotlib is imported only
here (the `plots` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence, Tuple

# (o_bias, precision, recall, covered), in percent
CurvePoint = Tuple[float, float, float, float]

_MARKERS = ("o", "s", "^", "D")


def plot_pr_curve(
    curves: Dict[str, Sequence[CurvePoint]], path: Path, title: str, subtitle: str = ""
) -> None:
    """Save `curves` (a name, e.g. "spaced", to its points) as a PNG at `path`."""
    try:
        import matplotlib
    except ImportError as error:
        raise SystemExit(
            "--plot needs matplotlib: pip install -e '.[plots]' (or pip install matplotlib)"
        ) from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    points = [p for pts in curves.values() for p in pts]
    if not points:
        raise SystemExit("--plot: no o_bias rows to draw")
    precisions = [p for _, p, _, _ in points]
    y_lo, y_hi = min(precisions) - 1.0, max(precisions) + 1.0

    fig, axes = plt.subplots(1, 2, figsize=(10.0, 4.6), dpi=150, sharey=True)
    panels = (
        (axes[0], 2, "recall, exact spans (%)", "exact spans (CoNLL scoring)"),
        (axes[1], 3, "gold entities inside predicted ones, any type (%)", "coverage (redaction)"),
    )
    for ax, k, xlabel, heading in panels:
        xs_all = [p[k] for p in points]
        pad = max(0.3, 0.08 * (max(xs_all) - min(xs_all)))
        x_lo, x_hi = min(xs_all) - pad, max(xs_all) + 3 * pad
        if k == 2:
            r = np.linspace(x_lo, x_hi, 200)
            for f1 in range(int(y_lo) - 10, int(y_hi) + 10):
                p = f1 * r / (2 * r - f1)
                ok = (p >= y_lo) & (p <= y_hi)
                if not ok.any():
                    continue
                ax.plot(r[ok], p[ok], color="0.88", linewidth=0.7, zorder=0)
                j = int(np.flatnonzero(ok)[-1])
                ax.annotate(
                    f"F1 {f1}", (r[j], p[j]), fontsize=6, color="0.6", ha="right", va="bottom"
                )
        for i, (name, pts) in enumerate(curves.items()):
            ordered = sorted(pts)
            ax.plot(
                [p[k] for p in ordered],
                [p[1] for p in ordered],
                marker=_MARKERS[i % len(_MARKERS)],
                markersize=4,
                linewidth=1.3,
                label=name,
            )
            if i == 0:
                for point in ordered:
                    ax.annotate(
                        f"{point[0]:g}",
                        (point[k], point[1]),
                        textcoords="offset points",
                        xytext=(6, 2),
                        fontsize=8,
                    )
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(y_lo, y_hi)
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_title(heading, fontsize=9)
        ax.grid(True, color="0.93", linewidth=0.6)
    axes[0].set_ylabel("precision, exact spans (%)", fontsize=9)
    axes[1].legend(title="text (labels: o_bias)", fontsize=8, title_fontsize=8, loc="lower left")
    fig.suptitle(title + (f"\n{subtitle}" if subtitle else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
