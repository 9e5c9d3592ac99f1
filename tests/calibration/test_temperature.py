"""Calibrated probabilities and the `temperature` setting's per-label table,
on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from spacy_hf_tagger.calibration.temperature import (
    as_setting,
    calibrated_probs,
    check_temperature,
    label_temperatures,
    temperature_groups,
)
from spacy_hf_tagger.errors import ConfigError
from spacy_hf_tagger.labels.schemes import read_label_scheme

IOB = read_label_scheme(dict(enumerate(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])))
TAGS = read_label_scheme(dict(enumerate(["NOUN", "VERB", "X"])))


def test_one_temperature_is_softmax_of_logits_over_t() -> None:
    # q ∝ p^(1/2): sqrt(0.5), sqrt(0.25), sqrt(0.25) = 0.70711, 0.5, 0.5.
    q = calibrated_probs(np.array([[0.5, 0.25, 0.25]], dtype=np.float32), np.full(3, 2.0))
    np.testing.assert_allclose(q, [[0.414214, 0.292893, 0.292893]], atol=1e-6)
    z = np.array([[2.0, -1.0, 0.5, 3.0]])
    p = np.exp(z) / np.exp(z).sum()
    expected = np.exp(z / 1.7) / np.exp(z / 1.7).sum()
    np.testing.assert_allclose(calibrated_probs(p, np.full(4, 1.7)), expected, rtol=1e-12)


def test_per_label_temperatures_and_rows_that_stay() -> None:
    probs = np.array([[0.5, 0.25, 0.25], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.6, 0.4, 0.0]])
    q = calibrated_probs(probs, np.array([1.0, 1.0, 0.5]))
    # Row 0: 0.5, 0.25, 0.25^2 = 0.0625, over 0.8125.
    np.testing.assert_allclose(q[0], [0.615385, 0.307692, 0.076923], atol=1e-6)
    assert q[1].tolist() == [0.0, 0.0, 0.0]  # a token no piece covers
    assert q[2].tolist() == [0.0, 1.0, 0.0]
    # A tiny temperature sharpens without underflow: 1 / (1 + (2/3)^100).
    q = calibrated_probs(probs[3:], np.full(3, 0.01))
    assert q[0, 0] == pytest.approx(1.0) and q[0, 2] == 0.0 and np.isfinite(q).all()


def test_no_temperature_returns_the_probabilities_themselves() -> None:
    probs = np.array([[0.2, 0.8]], dtype=np.float32)
    assert calibrated_probs(probs, None) is probs
    assert label_temperatures(IOB, 1.0) is None
    assert label_temperatures(IOB, {}) is None
    assert label_temperatures(IOB, {"PER": 1.0, "O": 1}) is None


def test_groups_are_entity_types_and_o_or_tags() -> None:
    keys, groups = temperature_groups(IOB)
    assert keys == ("LOC", "PER", "O")
    assert groups.tolist() == [2, 1, 1, 0, 0]
    keys, groups = temperature_groups(TAGS)
    assert keys == ("NOUN", "VERB", "X") and groups.tolist() == [0, 1, 2]
    no_outside = read_label_scheme(dict(enumerate(["B-PER", "I-PER"])))
    assert temperature_groups(no_outside)[0] == ("PER",)


def test_label_temperatures_from_a_number_or_a_table() -> None:
    assert label_temperatures(IOB, 2).tolist() == [2.0] * 5
    # Left-out keys keep 1.
    assert label_temperatures(IOB, {"PER": 1.5, "O": 0.8}).tolist() == [0.8, 1.5, 1.5, 1, 1]
    assert label_temperatures(TAGS, {"VERB": 3}).tolist() == [1.0, 3.0, 1.0]
    with pytest.raises(ConfigError) as info:
        label_temperatures(IOB, {"PERSON": 1.2, "B-PER": 1.1})
    message = str(info.value)
    assert "['B-PER', 'PERSON']" in message and "['LOC', 'PER', 'O']" in message


@pytest.mark.parametrize(
    "value, shown",
    [
        (0, "temperature=0 "),
        (-1.0, "temperature=-1.0"),
        (True, "temperature=True"),
        ("hot", "temperature='hot'"),
        (1000, "temperature=1000"),
        (float("nan"), "temperature=nan"),
        ({"PER": 0.0}, "temperature['PER']=0.0"),
        ({"PER": None}, "temperature['PER']=None"),
        ({"": 1.0}, "the key ''"),
    ],
)
def test_check_temperature_names_the_value_and_the_fix(value: object, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_temperature(value)
    assert shown in str(info.value)
    assert "calibrate" in str(info.value)


def test_valid_temperatures_pass() -> None:
    for value in (1, 1.0, 0.01, 100, {"PER": 2, "O": 0.5}, {}):
        check_temperature(value)


def test_as_setting_rounds_what_it_stores() -> None:
    assert as_setting(("*",), np.array([1.234567]), per_label=False) == 1.2346
    assert as_setting(("PER", "O"), np.array([1.5, 0.812345]), per_label=True) == {
        "PER": 1.5,
        "O": 0.8123,
    }
