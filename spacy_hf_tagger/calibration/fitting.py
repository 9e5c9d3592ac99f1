"""Fitting temperatures on a dev set: the data a fit reads and the losses it
minimises.

Two objectives, both over the model's raw probabilities and the
temperatures of `temperature.calibrated_probs`:

- "token": the mean negative log-likelihood of each token's gold class
  (an entity type, whatever the prefix, or O) under the calibrated
  probabilities: the standard temperature-scaling fit, which calibrates every
  token score.
- "entity": the mean binary cross-entropy between each predicted entity's
  score (the mean over its tokens of its type's calibrated probability, as
  decoding computes it) and whether it is right: it calibrates exactly the
  score the entity-level ECE measures.

Temperatures are searched in log space within [MIN_TEMPERATURE,
MAX_TEMPERATURE], one per group of labels (one group: a global T).
scipy is imported when a fit runs (the `calibrate` extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np

from ..labels.schemes import LabelScheme
from .temperature import (
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    Temperature,
    as_setting,
    calibrated_probs,
    label_temperatures,
    temperature_groups,
)

OBJECTIVES = ("token", "entity")
# Scores of exactly 0 or 1 would make the cross-entropy infinite.
_EPS = 1e-7


@dataclass(frozen=True)
class TokenData:
    """Tokens with a gold class: `probs` [n, n_labels] (the model's), `gold`
    [n] the index of each token's class in `classes` [n_classes, n_labels]
    (1 on the labels that make up the class: an entity type's prefixes, or O)."""

    probs: np.ndarray
    gold: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.gold)


@dataclass(frozen=True)
class EntityData:
    """Predicted entities: `rows` [m, n_labels] the model's probabilities of
    their tokens (those a piece covers), `owner` [m] the entity of each row,
    `columns` [n_entities, n_labels] 1 on the labels of each entity's type,
    `correct` [n_entities] whether a gold entity has its span and label."""

    rows: np.ndarray
    owner: np.ndarray
    columns: np.ndarray
    correct: np.ndarray

    def __len__(self) -> int:
        return len(self.correct)


def entity_scores(data: EntityData, temperatures: Optional[np.ndarray]) -> np.ndarray:
    """Each entity's score under `temperatures` (None: the model's own): the
    mean over its rows of its type's probability; 0 for an entity with no row,
    as decoding scores it."""
    n = len(data)
    q = calibrated_probs(data.rows, temperatures)
    per_row = (np.asarray(q, dtype=np.float64) * data.columns[data.owner]).sum(axis=1)
    sums = np.bincount(data.owner, weights=per_row, minlength=n)
    counts = np.bincount(data.owner, minlength=n)
    return np.divide(sums, counts, out=np.zeros(n), where=counts > 0)


def token_nll(data: TokenData, temperatures: Optional[np.ndarray]) -> float:
    """Mean negative log-likelihood of the tokens' gold classes."""
    q = np.asarray(calibrated_probs(data.probs, temperatures), dtype=np.float64)
    gold_prob = (q * data.classes[data.gold]).sum(axis=1)
    return float(-np.log(np.maximum(gold_prob, _EPS)).mean())


def entity_nll(data: EntityData, temperatures: Optional[np.ndarray]) -> float:
    """Mean binary cross-entropy of entity scores against correctness."""
    s = np.clip(entity_scores(data, temperatures), _EPS, 1.0 - _EPS)
    right = data.correct.astype(np.float64)
    return float(-(right * np.log(s) + (1.0 - right) * np.log(1.0 - s)).mean())


def fit_temperatures(
    loss: Callable[[np.ndarray], float], groups: np.ndarray, n_groups: int
) -> np.ndarray:
    """The temperature of each of `n_groups` groups that minimises
    `loss(per-label temperatures)`; `groups[l]` is label l's group."""
    from scipy.optimize import minimize, minimize_scalar

    lo, hi = np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE)

    def of_logs(log_t: np.ndarray) -> float:
        return loss(np.exp(np.asarray(log_t, dtype=np.float64))[groups])

    if n_groups == 1:
        found = minimize_scalar(
            lambda x: of_logs(np.array([x])), bounds=(lo, hi), method="bounded",
            options={"xatol": 1e-6},
        )
        return np.exp(np.array([found.x]))
    found = minimize(
        of_logs,
        np.zeros(n_groups),
        method="L-BFGS-B",
        bounds=[(lo, hi)] * n_groups,
        options={"ftol": 1e-12, "gtol": 1e-8},
    )
    return np.exp(found.x)


def objective_loss(
    objective: str, tokens: TokenData, entities: EntityData
) -> Callable[[np.ndarray], float]:
    """The loss a fit with `objective` minimises."""
    if objective == "token":
        return lambda t: token_nll(tokens, t)
    if objective == "entity":
        return lambda t: entity_nll(entities, t)
    raise ValueError(f"objective={objective!r}: use one of {OBJECTIVES}")


def fit_setting(
    scheme: LabelScheme,
    tokens: TokenData,
    entities: EntityData,
    objective: str,
    per_label: bool,
) -> Tuple[Temperature, Optional[np.ndarray]]:
    """Fit `objective` on the data: one temperature, or one per key of the
    scheme's table (`temperature_groups`). Returns the `temperature` setting
    as stored (rounded) and the per-label temperatures it stands for."""
    keys, groups = temperature_groups(scheme)
    if not per_label:
        keys, groups = ("*",), np.zeros_like(groups)
    fitted = fit_temperatures(objective_loss(objective, tokens, entities), groups, len(keys))
    setting = as_setting(keys, fitted, per_label)
    return setting, label_temperatures(scheme, setting)
