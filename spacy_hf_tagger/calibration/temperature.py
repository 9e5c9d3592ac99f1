"""The `temperature` setting: per-label temperatures, and the calibrated
probabilities scores are read from.

A model's softmax is often sure of itself beyond its accuracy: an entity it
scores 0.99 may be right nine times in ten. Temperature scaling divides the
logits by T before the softmax; we only keep probabilities, so it is
q_l ∝ p_l^(1/T_l), which for one global T is exactly softmax(z/T) (the
per-row constant of log p cancels). With one T per label the same formula
keeps q a distribution, where dividing each logit separately would too, but
argmaxes could then move: that is why decoding never reads q. Entities are
decoded from the model's own probabilities and only their scores (and the
`threshold` that reads them) come from q, so calibration cannot change which
entities are found.

Per-label temperatures are keyed by what a score is about: the model's entity
types (every prefix of a type shares its T, since a score sums a type's
prefixes) and "O"; for tagging models, the tags. Labels the table leaves out
keep T = 1.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple, Union

import numpy as np

from ..errors import ConfigError
from ..labels.schemes import LabelScheme

Temperature = Union[float, Mapping[str, float]]
OUTSIDE = "O"
# Outside these, a temperature is almost surely a mistake (a score of 0.5
# turned into 1e-30 or into a constant), and the fit stops there too.
MIN_TEMPERATURE = 0.01
MAX_TEMPERATURE = 100.0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_temperature(value: Any) -> None:
    """Raise ConfigError unless `value` is a temperature or a {label: T} table;
    which labels a table may name is checked once the model is known
    (`label_temperatures`)."""
    what = (
        f"Use a number from {MIN_TEMPERATURE:g} to {MAX_TEMPERATURE:g} (1.0 = the model's "
        "own probabilities; above 1 softens over-confident scores), or a table "
        '{label: temperature} over the model\'s entity types and "O", e.g. '
        '{"PER": 1.4, "O": 1.1}, as `python -m spacy_hf_tagger calibrate` writes it.'
    )
    if isinstance(value, Mapping):
        for key, t in value.items():
            if not isinstance(key, str) or not key:
                raise ConfigError(f"temperature has the key {key!r}: keys are labels. {what}")
            if not _is_number(t) or not MIN_TEMPERATURE <= float(t) <= MAX_TEMPERATURE:
                raise ConfigError(f"temperature[{key!r}]={t!r} is not a temperature. {what}")
        return
    if not _is_number(value) or not MIN_TEMPERATURE <= float(value) <= MAX_TEMPERATURE:
        raise ConfigError(f"temperature={value!r} is not a temperature. {what}")


def temperature_groups(scheme: LabelScheme) -> Tuple[Tuple[str, ...], np.ndarray]:
    """The keys a temperature table may use, and for each label id the index
    of its key: entity types then "O" (when the model has an O label), or the
    tags."""
    if not scheme.is_entity:
        return tuple(scheme.labels), np.arange(len(scheme.labels))
    keys = tuple(scheme.entity_types) + ((OUTSIDE,) if scheme.outside_id is not None else ())
    index = {key: k for k, key in enumerate(keys)}
    groups = [
        index[OUTSIDE if prefix == "O" else type_]
        for prefix, type_ in zip(scheme.prefixes, scheme.types)
    ]
    return keys, np.asarray(groups, dtype=np.int64)


def label_temperatures(scheme: LabelScheme, temperature: Temperature) -> Optional[np.ndarray]:
    """The temperature of each label id, or None when every one is 1 (scores
    are then read from the model's probabilities as they are, bit for bit)."""
    keys, groups = temperature_groups(scheme)
    if isinstance(temperature, Mapping):
        unknown = sorted(set(temperature) - set(keys))
        if unknown:
            raise ConfigError(
                f"temperature names labels this model does not have: {unknown[:8]}. "
                f"Its keys are the model's labels: {list(keys)[:16]}"
                f"{' ...' if len(keys) > 16 else ''}."
            )
        per_key = np.array([float(temperature.get(key, 1.0)) for key in keys])
    else:
        per_key = np.full(len(keys), float(temperature))
    if np.all(per_key == 1.0):
        return None
    return per_key[groups]


def calibrated_probs(probs: np.ndarray, temperatures: Optional[np.ndarray]) -> np.ndarray:
    """q[i, l] ∝ probs[i, l] ** (1 / temperatures[l]), row by row (float64).

    Computed on log-probabilities, shifted by each row's maximum, so small
    temperatures do not underflow; a probability of 0 stays 0, and rows that
    are all zero (tokens no piece covers) stay all zero. None: `probs` as
    they are.
    """
    if temperatures is None:
        return probs
    p = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore"):
        logits = np.log(p) / np.asarray(temperatures, dtype=np.float64)
    top = logits.max(axis=1, keepdims=True) if len(p) else np.zeros((0, 1))
    live = np.isfinite(top[:, 0])
    out = np.zeros_like(p)
    shifted = np.exp(logits[live] - top[live])
    out[live] = shifted / shifted.sum(axis=1, keepdims=True)
    return out


def as_setting(keys: Tuple[str, ...], per_key: np.ndarray, per_label: bool) -> Temperature:
    """The fitted temperatures as the setting stores them, rounded to 4
    decimals (what is stored is what gets measured)."""
    if not per_label:
        return round(float(per_key[0]), 4)
    table: Dict[str, float] = {key: round(float(t), 4) for key, t in zip(keys, per_key)}
    return table

