"""Entity-level ECE and its bins on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from spacy_hf_tagger.calibration.reliability import (
    bin_index,
    expected_calibration_error,
    reliability,
)


def test_ece_by_hand() -> None:
    confidence = np.array([0.05, 0.15, 0.95, 0.95, 0.95, 0.95, 1.0, 0.3])
    correct = np.array([0, 1, 1, 1, 1, 0, 1, 0], dtype=bool)
    bins = reliability(confidence, correct)
    assert bins.counts.tolist() == [1, 1, 0, 1, 0, 0, 0, 0, 0, 5]
    assert bins.n == 8 and bins.n_bins == 10
    # Last bin: mean score (4 * 0.95 + 1) / 5 = 0.96, accuracy 4 / 5.
    assert bins.confidence[9] == pytest.approx(0.96)
    assert bins.accuracy[9] == pytest.approx(0.8)
    assert np.isnan(bins.accuracy[2]) and np.isnan(bins.confidence[2])
    # (1 * 0.05 + 1 * 0.85 + 1 * 0.3 + 5 * 0.16) / 8
    assert bins.ece == pytest.approx(0.25)
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.25)


def test_bin_edges() -> None:
    edges = np.array([0.0, 0.0999, 0.1, 0.3, 0.6, 0.7, 0.9, 0.99999, 1.0])
    assert bin_index(edges).tolist() == [0, 0, 1, 3, 6, 7, 9, 9, 9]
    assert bin_index(np.array([0.5, 1.0]), n_bins=4).tolist() == [2, 3]


def test_calibrated_scores_have_no_error_and_empty_sets_none() -> None:
    assert expected_calibration_error(np.full(4, 0.75), np.array([1, 1, 1, 0])) == 0.0
    assert expected_calibration_error(np.zeros(0), np.zeros(0, dtype=bool)) == 0.0
    # Two bins of 10: the same gaps in other proportions.
    scores = np.r_[np.full(10, 0.95), np.full(30, 0.55)]
    right = np.r_[np.ones(8), np.zeros(2), np.ones(15), np.zeros(15)]
    # (10 * 0.15 + 30 * 0.05) / 40
    assert expected_calibration_error(scores, right) == pytest.approx(0.075)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match=r"in \[0, 1\]: 1 do not .* at 1 \(1.2\)"):
        reliability(np.array([0.5, 1.2]), np.array([1, 0]))
    with pytest.raises(ValueError, match=r"2 do not .* at 0 \(nan\)"):
        reliability(np.array([np.nan, -0.1]), np.array([1, 0]))
    with pytest.raises(ValueError, match="2 confidences but 1"):
        reliability(np.array([0.5, 0.2]), np.array([1]))
