"""Write a doc whose model entities begin or end inside a spaCy token.

Without `split_tokens`, `doc.ents` are the decoded entities, as they always
were: an entity edge inside a token is counted, as held (widened to whole
tokens) by a decoded entity of its label, or dropped from doc.ents (kept in
`hf_char_ents`). The decoding reads a token through its first piece; a rule
over the pieces' types inside a token would read the untrained later pieces
of word-trained models (most English checkpoints) and write their noise.
With `split_tokens`, the tokens are first split at the entities' edges
(`splitting`), so the entities land exactly; where a split was skipped,
`char_spans.snap_to_tokens` applies its rule. Token labels
follow the spans written; a token keeps its decoded score when it kept its
characters and its label, and otherwise gets the mean over its pieces of
their probability for the label it now has.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from typing import Dict, List, Optional, Tuple

import numpy as np
from spacy.tokens import Doc

from .char_spans import CharEntities, CharEntity, snap_to_tokens
from .schemes import spans_to_iob
from .splitting import split_at
from .writing import EntityPrediction


def exact_prediction(
    doc: Doc,
    doc_index: int,
    char: CharEntities,
    decoded: EntityPrediction,
    *,
    split_tokens: bool,
    overwrite_ents: bool,
) -> Tuple[EntityPrediction, Counter, bool]:
    """What to write on doc `doc_index` of the batch `char` was read from, in
    place of `decoded` (its token-level prediction). Returns the prediction,
    counts, and whether the doc's tokens changed."""
    token_starts, token_ends, base = char.doc_tokens(doc_index)
    counts: Counter = Counter()
    ents = char.per_doc[doc_index]
    if not split_tokens:
        held, dropped = held_by_decoded(ents, decoded, token_starts, token_ends)
        counts["ents_widened"] += held
        counts["ents_dropped_in_token"] += dropped
        return decoded, counts, False
    offsets = [edge for start, end, _, _ in ents for edge in (start, end)]
    report = split_at(doc, offsets, overwrite_ents=overwrite_ents)
    counts["tokens_split"] += report.tokens_split
    counts["token_splits_skipped"] += report.skipped
    changed = report.tokens_split > 0
    starts, ends = token_starts, token_ends
    if changed:
        starts = doc.to_array("IDX").astype(np.int64)
        ends = starts + doc.to_array("LENGTH").astype(np.int64)
    spans, snapped = snap_to_tokens(ents, starts, ends)
    counts["ents_widened"] += snapped.widened
    counts["ents_narrowed"] += snapped.narrowed
    counts["ents_dropped_in_token"] += snapped.dropped
    labels: List[Optional[str]] = list(
        spans_to_iob(len(starts), [(s, e, n) for s, e, n, _ in spans])
    )
    scores = _token_scores(char, decoded, token_starts, token_ends, starts, ends, labels, base)
    return EntityPrediction(spans, labels, scores), counts, changed


def held_by_decoded(
    ents: List[CharEntity], decoded: EntityPrediction, starts: np.ndarray, ends: np.ndarray
) -> Tuple[int, int]:
    """Of the character entities with an edge inside a token: how many a
    decoded entity of their label holds (written widened to its tokens), and
    how many none does (not in doc.ents)."""
    held = dropped = 0
    # Decoded entities do not overlap: the only one that can hold an entity is
    # the last to start at or before it (a scan of all of them per entity was
    # quadratic: 17 of the 52 s a 4 M-character record took).
    spans = sorted(
        (int(starts[s]), int(ends[e - 1]), label) for s, e, label, _ in decoded.spans
    )
    edges = set(starts.tolist()) | set(ends.tolist())
    for start, end, label, _ in ents:
        if start in edges and end in edges:
            continue
        k = bisect_right(spans, start, key=lambda span: span[0]) - 1
        if k >= 0 and end <= spans[k][1] and spans[k][2] == label:
            held += 1
        else:
            dropped += 1
    return held, dropped


def _token_scores(
    char: CharEntities,
    decoded: EntityPrediction,
    old_starts: np.ndarray,
    old_ends: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    labels: List[Optional[str]],
    base: int,
) -> List[Optional[float]]:
    """Per token: its decoded score where it kept its characters and label;
    else the mean over its cells of their piece's probability for its label."""
    old: Dict[Tuple[int, int], Tuple[Optional[str], Optional[float]]] = {
        (int(s), int(e)): (label, score)
        for s, e, label, score in zip(
            old_starts.tolist(), old_ends.tolist(), decoded.token_labels, decoded.token_scores
        )
    }
    cells = char.cells
    # Cells are in text order across the batch: this doc's are one slice.
    text_end = int(ends[-1]) if len(ends) else 0
    lo, hi = np.searchsorted(cells.start, [base, base + text_end], side="left").tolist()
    cell_starts = cells.start[lo:hi] - base
    out: List[Optional[float]] = []
    for k, (start, end) in enumerate(zip(starts.tolist(), ends.tolist())):
        label = labels[k]
        before = old.get((start, end))
        if before is not None and before[0] == label:
            out.append(before[1])
            continue
        first, last = np.searchsorted(cell_starts, [start, end], side="left").tolist()
        if first == last:
            out.append(None)
            continue
        name = None if label is None or label == "O" else label[2:]
        inside = np.arange(lo + first, lo + last)
        out.append(float(char.name_probs(inside, [name] * len(inside)).mean()))
    return out
