"""How well scores match how often they are right: reliability bins and the
expected calibration error (ECE).

An entity is right when a gold entity has exactly its span and label; its
confidence is its score. Scores in [0, 1] fall into `n_bins` equal-width
bins ([0, 0.1), [0.1, 0.2), ..., [0.9, 1.0] for 10: a score of 1.0 belongs
to the last one), and ECE = sum over bins of (n_bin / N) * |accuracy - mean
confidence|: 0 when an entity scored 0.9 is right nine times in ten, for
every score. Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_BINS = 10


@dataclass(frozen=True)
class Reliability:
    """Per bin: how many entities, their mean confidence and their accuracy
    (NaN for empty bins); and the ECE over all of them."""

    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    ece: float

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    @property
    def n_bins(self) -> int:
        return len(self.counts)


def bin_index(confidence: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """The bin of each confidence: floor(c * n_bins), with 1.0 in the last bin."""
    c = np.asarray(confidence, dtype=np.float64)
    outside = ~((c >= 0.0) & (c <= 1.0))  # NaN too
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"confidences must lie in [0, 1]: {int(outside.sum())} do not (NaN included), "
            f"the first at {first} ({float(c[first])!r})"
        )
    return np.minimum((c * n_bins).astype(np.int64), n_bins - 1)


def reliability(confidence: np.ndarray, correct: np.ndarray, n_bins: int = N_BINS) -> Reliability:
    """Bin `confidence` (scores in [0, 1]) against `correct` (bools)."""
    c = np.asarray(confidence, dtype=np.float64)
    right = np.asarray(correct, dtype=np.float64)
    if c.shape != right.shape:
        raise ValueError(f"{c.shape[0]} confidences but {right.shape[0]} correctness values")
    bins = bin_index(c, n_bins)
    counts = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(bins, weights=c, minlength=n_bins) / counts
        accuracy = np.bincount(bins, weights=right, minlength=n_bins) / counts
    filled = counts > 0
    n = int(counts.sum())
    gaps = np.abs(accuracy[filled] - mean_conf[filled]) * counts[filled]
    ece = float(gaps.sum() / n) if n else 0.0
    return Reliability(counts, mean_conf, accuracy, ece)


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = N_BINS
) -> float:
    """ECE of `confidence` against `correct` over `n_bins` equal-width bins."""
    return reliability(confidence, correct, n_bins).ece
