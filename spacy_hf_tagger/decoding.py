"""From per-token label probabilities to what gets written: spans or tags.

Post-processing (label_map, ignore_labels, threshold) happens here, so the
per-token BIO labels are derived from the final spans and agree with them by
construction. Pure functions over numpy arrays.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from .labels import LabelScheme, decode_spans
from .writing import EntityPrediction


def _fill_gaps(scheme: LabelScheme, label_ids: np.ndarray, has_piece: np.ndarray) -> np.ndarray:
    """Let entities run across tokens that no piece covers (e.g. extra spaces).

    A run of piece-less tokens between a token of entity type X and a token
    that continues X (I-X / E-X) becomes I-X; every other piece-less token is O.
    """
    if has_piece.all():
        return label_ids
    label_ids = label_ids.copy()
    outside = scheme.outside_id if scheme.outside_id is not None else -1
    inside_of = {t: i for i, (p, t) in enumerate(zip(scheme.prefixes, scheme.types)) if p == "I"}
    n = len(label_ids)
    i = 0
    while i < n:
        if has_piece[i]:
            i += 1
            continue
        j = i
        while j < n and not has_piece[j]:
            j += 1
        fill = outside
        if i > 0 and j < n:
            before, after = label_ids[i - 1], label_ids[j]
            type_ = scheme.types[before] if before >= 0 else ""
            if (
                before >= 0
                and after >= 0
                and scheme.prefixes[before] in ("B", "I")
                and scheme.prefixes[after] in ("I", "E")
                and scheme.types[after] == type_
                and type_ in inside_of
            ):
                fill = inside_of[type_]
        label_ids[i:j] = fill
        i = j
    return label_ids


def _tie_to_previous(scheme: LabelScheme, label_ids: np.ndarray, tied: np.ndarray) -> np.ndarray:
    """Make each tied token continue whatever the token before it is.

    A tied token is covered only by a piece that began in the previous token,
    so the two share one prediction: O stays O, an entity of type X runs on
    as I-X (a BIOES end or single on the previous token is opened up).
    """
    label_ids = label_ids.copy()
    index = {(p, t): i for i, (p, t) in enumerate(zip(scheme.prefixes, scheme.types))}
    outside = scheme.outside_id if scheme.outside_id is not None else -1
    for i in np.flatnonzero(tied).tolist():
        if i == 0:
            continue
        before = int(label_ids[i - 1])
        if before < 0 or scheme.prefixes[before] == "O":
            label_ids[i] = outside
            continue
        type_ = scheme.types[before]
        inside = index.get(("I", type_))
        if inside is None:
            continue
        label_ids[i] = inside
        opened = {"E": ("I", type_), "S": ("B", type_)}.get(scheme.prefixes[before])
        if opened is not None and opened in index:
            label_ids[i - 1] = index[opened]
        if i + 1 < len(label_ids) and not tied[i + 1]:
            after = int(label_ids[i + 1])
            # Close a BIOES entity on the tied token when the next one leaves it.
            if scheme.kind == "bioes" and (
                after < 0 or scheme.types[after] != type_ or scheme.prefixes[after] in "BSO"
            ):
                end = index.get(("E", type_))
                if end is not None:
                    label_ids[i] = end
    return label_ids


def _apply_words(
    scheme: LabelScheme,
    label_ids: np.ndarray,
    starts: np.ndarray,
    glued_punct: np.ndarray,
) -> np.ndarray:
    """Give every token of a multi-token word its first token's entity, and keep
    glued punctuation from beginning an entity (see `words`)."""
    label_ids = label_ids.copy()
    index = {(p, t): i for i, (p, t) in enumerate(zip(scheme.prefixes, scheme.types))}
    outside = scheme.outside_id if scheme.outside_id is not None else -1
    prefixes, types = scheme.prefixes, scheme.types
    for i in np.flatnonzero(starts != np.arange(len(starts))).tolist():
        head = int(label_ids[starts[i]])
        if head < 0 or prefixes[head] == "O":
            label_ids[i] = outside
            continue
        inside = index.get(("I", types[head]))
        if inside is None:
            continue
        opened = {"E": "I", "S": "B"}.get(prefixes[head])
        if opened is not None and (opened, types[head]) in index:
            label_ids[starts[i]] = index[(opened, types[head])]
        label_ids[i] = inside
    for i in np.flatnonzero(glued_punct).tolist():
        if starts[i] != i:
            continue
        current = int(label_ids[i])
        if current < 0 or prefixes[current] == "O":
            continue
        before = int(label_ids[i - 1]) if i > 0 else -1
        continues = (
            prefixes[current] in ("I", "E")
            and before >= 0
            and prefixes[before] in ("B", "I")
            and types[before] == types[current]
        )
        if not continues:
            label_ids[i] = outside
    return label_ids


def predict_entities(
    scheme: LabelScheme,
    token_probs: np.ndarray,
    has_piece: np.ndarray,
    type_names: Mapping[str, Optional[str]],
    threshold: float,
    *,
    tied: Optional[np.ndarray] = None,
    word_starts: Optional[np.ndarray] = None,
    glued_punct: Optional[np.ndarray] = None,
) -> Tuple[EntityPrediction, int]:
    """Decode one doc's token probabilities into entity spans and IOB2 labels.

    `type_names` maps each model type to its output label, or None to drop
    it; `tied` marks tokens that must share the previous token's entity (see
    `_tie_to_previous`). Returns the prediction and how many spans the
    threshold removed.
    """
    n_tokens = len(token_probs)
    if n_tokens == 0:
        return EntityPrediction([], [], []), 0
    label_ids = token_probs.argmax(axis=1) if token_probs.shape[1] else np.zeros(0, int)
    scores = token_probs[np.arange(n_tokens), label_ids]
    outside = scheme.outside_id
    label_ids = np.where(has_piece, label_ids, outside if outside is not None else -1)
    # Tie first: gaps are filled from the labels the tied tokens end up with.
    if tied is not None and tied.any():
        label_ids = _tie_to_previous(scheme, label_ids, tied)
        scores = token_probs[np.arange(n_tokens), np.maximum(label_ids, 0)]
    if word_starts is not None and glued_punct is not None:
        label_ids = _apply_words(scheme, label_ids, word_starts, glued_punct)
        scores = token_probs[np.arange(n_tokens), np.maximum(label_ids, 0)]
    label_ids = _fill_gaps(scheme, label_ids, has_piece)
    # Piece-less tokens have no score of their own: span scores skip them.
    scores = np.where(has_piece, scores.astype(np.float64), np.nan)
    decoded = decode_spans(scheme, label_ids, scores)

    spans: List[Tuple[int, int, str, float]] = []
    below = 0
    for span in decoded:
        name = type_names.get(span.label, span.label)
        if name is None:
            continue
        if span.score < threshold:
            below += 1
            continue
        spans.append((span.start, span.end, name, span.score))

    token_labels = ["O"] * n_tokens
    in_span = np.zeros(n_tokens, dtype=bool)
    for start, end, name, _ in spans:
        token_labels[start] = f"B-{name}"
        for k in range(start + 1, end):
            token_labels[k] = f"I-{name}"
        in_span[start:end] = True
    out_probs = (
        token_probs[:, outside] if outside is not None else np.zeros(n_tokens, dtype=np.float32)
    )
    token_scores: List[Optional[float]] = []
    for k in range(n_tokens):
        if not has_piece[k]:
            token_scores.append(None)
        elif in_span[k]:
            token_scores.append(float(scores[k]))
        else:
            token_scores.append(float(out_probs[k]))
    return EntityPrediction(spans, token_labels, token_scores), below


def predict_tags(
    scheme: LabelScheme,
    token_probs: np.ndarray,
    has_piece: np.ndarray,
    tag_names: Mapping[str, str],
) -> Tuple[List[Optional[str]], List[Optional[float]]]:
    """Best tag per token (renamed by `tag_names`); None where no piece covers it."""
    n_tokens = len(token_probs)
    if n_tokens == 0:
        return [], []
    label_ids = token_probs.argmax(axis=1)
    scores = token_probs[np.arange(n_tokens), label_ids]
    tags: List[Optional[str]] = []
    out_scores: List[Optional[float]] = []
    for k in range(n_tokens):
        if has_piece[k]:
            raw = scheme.labels[int(label_ids[k])]
            tags.append(tag_names.get(raw, raw))
            out_scores.append(float(scores[k]))
        else:
            tags.append(None)
            out_scores.append(None)
    return tags, out_scores


def tag_name_map(scheme: LabelScheme, label_map: Mapping[str, str]) -> Dict[str, str]:
    """Output name for each raw tag of a tagging model."""
    return {label: label_map.get(label, label) for label in scheme.labels}
