"""Encode gold token labels as subword training targets.

Uses the very alignment inference uses (`align.pieces.align_pieces`), so what the
model is trained on is exactly what it is later read back through. The piece
that holds a token's first character carries the token's label; the token's
other pieces are ignored, or (with `label_all_pieces`) carry the token's
continuation label.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..align.pieces import TokenAlignment, marker_pairs
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
    outside: Optional[int] = None,
) -> np.ndarray:
    """Target label id for each piece (IGNORE_INDEX where it gets no loss).

    A token's label goes on its head piece, the one holding its first
    character: the piece inference reads it through. A piece that is the head
    of several tokens ("(Ch" of "(China)": "(" and "China") takes the first
    label among them that is not `outside`, or `outside`, or IGNORE_INDEX
    when any of their labels is missing; inference keeps such a bracket out
    of the entity (`labels.decoding`). A head that is a bare word marker
    shares its label with the piece after it, unless that piece heads a
    token of its own. Tag models (`align_pieces` without `running_in_first`)
    keep one head per token: the first piece that starts in it.
    """
    targets = np.full(n_pieces, IGNORE_INDEX, dtype=np.int64)
    if len(alignment.piece) == 0:
        return targets
    token = alignment.token
    if label_all_pieces:
        # The token's other pieces continue its label; heads are written after.
        starting = ~alignment.continues
        labels = token_label_ids[token[starting]]
        if continuation is not None:
            known = labels != IGNORE_INDEX
            labels[known] = continuation[labels[known]]
        targets[alignment.piece[starting]] = labels
    # Pairs are sorted by token, each token's head piece first.
    first_pair = np.flatnonzero(np.concatenate(([True], token[1:] != token[:-1])))
    heads = alignment.piece[first_pair]
    labels = token_label_ids[token[first_pair]]
    # Rank each candidate label of a piece: missing first, then an entity
    # label, then `outside`; ties go to the earlier token.
    rank = np.where(labels == IGNORE_INDEX, 0, np.where(labels == outside, 2, 1))
    order = np.lexsort((token[first_pair], rank, heads))
    chosen = order[np.concatenate(([True], heads[order][1:] != heads[order][:-1]))]
    targets[heads[chosen]] = labels[chosen]
    # A bare word marker's word is read through the marker and the piece after
    # it together (`align.pieces.aggregate_token_probs`): both learn the label.
    # A piece that heads a token of its own keeps that token's label.
    marker, after = marker_pairs(alignment, first_pair)
    free = ~np.isin(alignment.piece[after], heads)
    targets[alignment.piece[after[free]]] = targets[alignment.piece[marker[free]]]
    return targets
