"""The recall knobs: a bias against O before decoding, and a threshold per type.

A model's argmax is tuned for F1. Users who redact personal data would rather
mark too much than miss a name; a global `threshold` can only remove entities,
so it cannot give them more. `o_bias` can: it makes O less probable before the
labels are decoded, so a token whose best label is O but where a type is
likely becomes part of an entity. Decoding alone reads the biased
probabilities: the scores written on entities and tokens stay the model's
own, so a `threshold` (one number, or one per type) still means what it says
and can take back, per type, the precision the bias gave away.

Pure functions over numpy arrays and plain values; the settings' own checks
(ranges, types) are in `settings`, these are those that need the model's
labels.
"""

from __future__ import annotations

import math
from typing import Dict, List, Mapping, Sequence, Union

import numpy as np

from ..errors import ConfigError
from .schemes import LabelScheme

#: The `threshold` table's entry for every type the table does not name.
OTHER_TYPES = "*"

#: A threshold for every span (a number) or per model type (a table).
Threshold = Union[float, Mapping[str, float]]


def bias_outside(probs: np.ndarray, outside: int, o_bias: float) -> np.ndarray:
    """Token label probabilities with log P(O) lowered by `o_bias`, each row
    renormalised (rows of zeros, tokens no piece covers, stay zeros).

    With `o_bias` 0 the array itself comes back (no copy): decoding is then
    exactly what it is without the knob. Otherwise float64, so that no two
    labels the model ranked apart come out tied. A negative bias scales the
    other labels by exp(o_bias) instead of O by exp(-o_bias): the same rows
    once renormalised, without overflow. Renormalising changes no decision
    (greedy compares labels within a row; a Viterbi path takes one state per
    token, so a row's constant factor scales every path alike); it keeps the
    rows distributions.
    """
    if o_bias == 0:
        return probs
    biased = probs.astype(np.float64)
    if o_bias > 0:
        biased[:, outside] *= math.exp(-o_bias)
    else:
        kept = biased[:, outside].copy()
        biased *= math.exp(o_bias)
        biased[:, outside] = kept
    total = biased.sum(axis=1, keepdims=True)
    np.divide(biased, total, out=biased, where=total > 0)
    return biased


def check_o_bias_fits(o_bias: float, scheme: LabelScheme) -> None:
    """Raise ConfigError when `o_bias` is set for a model that has no O label."""
    if o_bias == 0:
        return
    if not scheme.is_entity:
        raise ConfigError(
            f"o_bias={o_bias!r} lowers the probability of the O label, but this is a "
            f"tagging model: its labels are tags ({list(scheme.labels)[:8]}), with no O. "
            "Leave o_bias at 0 for a tagging model."
        )
    if scheme.outside_id is None:
        raise ConfigError(
            f"o_bias={o_bias!r} lowers the probability of the O label, but the model's "
            f"labels have no O ({list(scheme.labels)[:8]}). Leave o_bias at 0 for this "
            "model; use a threshold to trade recall for precision."
        )


def resolve_threshold(
    threshold: Threshold, entity_types: Sequence[str], label_map: Mapping[str, str]
) -> Threshold:
    """The threshold `predict_entities` applies: a number as it is, a table as
    one value per model type.

    A table names each type by the model's name or by its `label_map` name
    (two model types mapped to one name share its value); a type it does not
    name gets the table's "*" entry, or 0.0 (kept whatever its score). Raises
    ConfigError naming the table's labels the model does not have, and types
    the table names twice (by both names).
    """
    if not isinstance(threshold, Mapping):
        return float(threshold)
    other = float(threshold.get(OTHER_TYPES, 0.0))
    named: Dict[str, List[str]] = {}
    for type_ in entity_types:
        names = {type_, label_map.get(type_, type_)}
        named[type_] = sorted(name for name in names if name in threshold)
    known = {name for type_ in entity_types for name in (type_, label_map.get(type_, type_))}
    unknown = sorted(key for key in threshold if key != OTHER_TYPES and key not in known)
    if unknown:
        mapped = sorted({label_map.get(t, t) for t in entity_types} - set(entity_types))
        raise ConfigError(
            f"threshold names labels the model does not have: {unknown}. The model's "
            f"entity types are {sorted(entity_types)}"
            + (f" (after label_map: {mapped})" if mapped else "")
            + (
                ""
                if entity_types
                else " (none: it is a tagging model, and threshold applies to entities)"
            )
            + f'. Name those, or use "{OTHER_TYPES}" for every type the table does not name.'
        )
    twice = {type_: names for type_, names in named.items() if len(names) > 1}
    if twice:
        raise ConfigError(
            f"threshold names a type twice, by the model's name and by its label_map "
            f"name: {twice}. Keep one of each."
        )
    return {type_: float(threshold[names[0]]) if names else other for type_, names in named.items()}
