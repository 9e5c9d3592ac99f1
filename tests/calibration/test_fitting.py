"""The fit's data, losses and search: hand-computed scores and losses, and
known temperatures recovered from synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from spacy_hf_tagger.calibration.fitting import (
    EntityData,
    TokenData,
    entity_nll,
    entity_scores,
    fit_temperatures,
    objective_loss,
    token_nll,
)
from spacy_hf_tagger.calibration.temperature import calibrated_probs

pytest.importorskip("scipy", reason="fitting needs scipy (the `calibrate` extra)")


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _draw(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One class per row, drawn from the row's probabilities."""
    cumulative = probs.cumsum(axis=1)
    return (rng.random((len(probs), 1)) > cumulative).sum(axis=1).clip(0, probs.shape[1] - 1)


# Labels O, B-X, I-X; entity 0 has two rows (type X: P(B-X) + P(I-X) = 0.8
# and 0.6), entity 1 has none (every token piece-less).
ENTITIES = EntityData(
    rows=np.array([[0.2, 0.5, 0.3], [0.4, 0.1, 0.5]]),
    owner=np.array([0, 0]),
    columns=np.array([[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]]),
    correct=np.array([True, False]),
)


def test_entity_scores_and_loss_by_hand() -> None:
    np.testing.assert_allclose(entity_scores(ENTITIES, None), [0.7, 0.0])
    # -(log 0.7 + log(1 - 1e-7)) / 2: a score of 0 for a wrong entity costs nothing.
    assert entity_nll(ENTITIES, None) == pytest.approx(-np.log(0.7) / 2, rel=1e-6)
    t = np.full(3, 2.0)
    q = calibrated_probs(ENTITIES.rows, t)
    expected = (q[:, 1:].sum(axis=1)).mean()
    assert entity_scores(ENTITIES, t)[0] == pytest.approx(expected)


def test_token_nll_reads_the_gold_class_over_its_labels() -> None:
    data = TokenData(
        probs=np.array([[0.2, 0.5, 0.3], [0.9, 0.05, 0.05]]),
        gold=np.array([1, 0]),
        classes=np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]),
    )
    # Class X = B-X + I-X: 0.8; O: 0.9.
    assert token_nll(data, None) == pytest.approx(-(np.log(0.8) + np.log(0.9)) / 2)


def test_one_temperature_is_recovered_from_tokens() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, size=(20000, 5))
    gold = _draw(rng, _softmax(z / 2.0))  # the truth is softer than the model
    data = TokenData(_softmax(z), gold, np.eye(5))
    (t,) = fit_temperatures(objective_loss("token", data, ENTITIES), np.zeros(5, int), 1)
    assert t == pytest.approx(2.0, rel=0.05)
    assert token_nll(data, np.full(5, t)) < token_nll(data, None)


def test_per_label_temperatures_are_recovered() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2.5, size=(60000, 4))
    groups = np.array([0, 1, 1, 2])
    truth = np.array([0.7, 1.5, 3.0])
    p = _softmax(z)
    data = TokenData(p, _draw(rng, calibrated_probs(p, truth[groups])), np.eye(4))
    found = fit_temperatures(lambda t: token_nll(data, t), groups, 3)
    np.testing.assert_allclose(found, truth, rtol=0.1)


def test_entity_objective_recovers_the_temperature_of_entity_scores() -> None:
    # One-row entities of type X (labels O, B-X, I-X), right as often as the
    # score at T = 1.6 says.
    rng = np.random.default_rng(2)
    z = rng.normal(0, 3, size=(20000, 3)) + np.array([0.0, 2.0, 1.0])
    p = _softmax(z)
    columns = np.tile([0.0, 1.0, 1.0], (len(p), 1))
    owner = np.arange(len(p))
    blank = EntityData(p, owner, columns, np.zeros(len(p), bool))
    true_scores = entity_scores(blank, np.full(3, 1.6))
    data = EntityData(p, owner, columns, rng.random(len(p)) < true_scores)
    tokens = TokenData(p[:1], np.zeros(1, int), np.eye(3))
    (t,) = fit_temperatures(objective_loss("entity", tokens, data), np.zeros(3, int), 1)
    assert t == pytest.approx(1.6, rel=0.08)


def test_unknown_objective() -> None:
    with pytest.raises(ValueError, match="objective='span'"):
        objective_loss("span", TokenData(np.zeros((0, 3)), np.zeros(0, int), np.eye(3)), ENTITIES)
