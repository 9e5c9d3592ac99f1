"""Encode gold token labels as subword training targets.

Uses the very alignment inference uses (`align.pieces.align_pieces`), so what the
model is trained on is exactly what it is later read back through. The first
piece that starts in a token carries the token's label; the token's other
pieces are ignored, or (with `label_all_pieces`) carry the token's
continuation label. Pieces that run in from an earlier token are ignored:
they already carry that token's label.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..align.pieces import TokenAlignment
from .schemes import LabelScheme

IGNORE_INDEX = -100


def biluo_to_scheme_ids(
    scheme: LabelScheme, tags: Sequence[Optional[str]]
) -> Tuple[np.ndarray, List[str]]:
    """Map spaCy's aligned BILUO tags to the model's label ids.

    Missing tags (None, "-", "") become IGNORE_INDEX. BILUO reads as BIOES for
    BIOES models and as IOB2 for IOB models. Returns the ids and the entity
    types the scheme has no label for (they are ignored too).
    """
    index = scheme.label_index
    outside = scheme.outside_id
    unknown: List[str] = []
    ids = np.full(len(tags), IGNORE_INDEX, dtype=np.int64)
    for k, tag in enumerate(tags):
        if tag is None or tag in ("-", ""):
            continue
        if tag == "O":
            if outside is not None:
                ids[k] = outside
            continue
        prefix, _, type_ = tag.partition("-")
        wanted = {"B": "B", "I": "I", "L": "E", "U": "S"}.get(prefix, prefix)
        if scheme.kind == "iob":
            wanted = {"E": "I", "S": "B"}.get(wanted, wanted)
        elif scheme.kind == "io":
            wanted = "I"
        label = index.get((wanted, type_))
        if label is None and wanted in ("E", "S"):
            label = index.get(({"E": "I", "S": "B"}[wanted], type_))
        if label is None and wanted == "B":
            # IOB1 models may have no B-X at all: I-X is how they start X.
            label = index.get(("I", type_))
        if label is None:
            unknown.append(type_)
            continue
        ids[k] = label
    return ids, unknown


def tags_to_ids(scheme: LabelScheme, tags: Sequence[Optional[str]]) -> Tuple[np.ndarray, List[str]]:
    """Map gold tag strings to label ids of a tagging model; unknown tags are ignored."""
    index = {label: i for i, label in enumerate(scheme.labels)}
    ids = np.full(len(tags), IGNORE_INDEX, dtype=np.int64)
    unknown: List[str] = []
    for k, tag in enumerate(tags):
        if not tag:
            continue
        label = index.get(tag)
        if label is None:
            unknown.append(tag)
        else:
            ids[k] = label
    return ids, unknown


def piece_targets(
    token_label_ids: np.ndarray,
    alignment: TokenAlignment,
    n_pieces: int,
    *,
    label_all_pieces: bool = False,
    continuation: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Target label id for each piece (IGNORE_INDEX where it gets no loss)."""
    targets = np.full(n_pieces, IGNORE_INDEX, dtype=np.int64)
    if len(alignment.piece) == 0:
        return targets
    starting = ~alignment.continues
    pieces = alignment.piece[starting]
    tokens = alignment.token[starting]
    # Pairs are sorted by (token, continues, piece): the first starting pair of
    # each token is its head piece.
    head = np.r_[True, tokens[1:] != tokens[:-1]]
    # Each piece starts in exactly one token, so it appears once here.
    labels = token_label_ids[tokens]
    if not label_all_pieces:
        targets[pieces[head]] = labels[head]
        return targets
    if continuation is not None:
        later = ~head & (labels != IGNORE_INDEX)
        labels[later] = continuation[labels[later]]
    targets[pieces] = labels
    return targets
