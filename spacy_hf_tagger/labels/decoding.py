"""From per-token label probabilities to what gets written: spans or tags.

Post-processing (label_map, ignore_labels, threshold) happens here, so the
per-token BIO labels are derived from the final spans and agree with them by
construction. Pure functions over numpy arrays.
"""

from __future__ import annotations

from typing import Dict, Iterator, List, Mapping, Optional, Tuple

import numpy as np

from .recall import Threshold, bias_outside
from .schemes import DecodedSpan, LabelScheme, decode_spans, span_score, spans_to_iob
from .viterbi import DECODINGS, viterbi_label_ids
from .writing import EntityPrediction

# Viterbi decodings, with how each reads an IOB scheme (see `viterbi`).
_VITERBI_IOB = {"viterbi": "conlleval", "viterbi-iob2": "strict"}


def _fill_gaps(
    scheme: LabelScheme,
    label_ids: np.ndarray,
    has_piece: np.ndarray,
    segment_starts: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Let entities run across tokens that no piece covers (e.g. extra spaces).

    A run of piece-less tokens between a token of entity type X and a token
    that continues X (I-X / E-X) in the same segment becomes I-X; every other
    piece-less token is O.
    """
    if has_piece.all():
        return label_ids
    label_ids = label_ids.copy()
    prefixes, types = scheme.prefixes, scheme.types
    n = len(label_ids)
    first = np.zeros(n, dtype=bool) if segment_starts is None else segment_starts
    first_list = first.tolist()
    gaps = np.flatnonzero(~has_piece).tolist()
    k = 0
    while k < len(gaps):
        i = j = gaps[k]
        # A run ends at a token with a piece or at the start of another doc.
        while k < len(gaps) and gaps[k] == j and (j == i or not first_list[j]):
            j += 1
            k += 1
        fill = scheme.outside_or_none
        if i > 0 and not first_list[i] and j < n and not first_list[j]:
            before, after = int(label_ids[i - 1]), int(label_ids[j])
            if (
                before >= 0
                and after >= 0
                and prefixes[before] in ("B", "I")
                and prefixes[after] in ("I", "E")
                and types[after] == types[before]
            ):
                fill = scheme.label_index.get(("I", types[before]), fill)
        label_ids[i:j] = fill
    return label_ids


def _extend_entity(scheme: LabelScheme, label_ids: np.ndarray, head: int, i: int) -> Optional[str]:
    """Make token `i` continue the entity that token `head` is in (or be O with it).

    A BIOES end or single on `head` is opened up so the entity can run on.
    Returns the entity type when token `i` now continues one, else None.
    """
    head_id = int(label_ids[head])
    if head_id < 0 or scheme.prefixes[head_id] == "O":
        label_ids[i] = scheme.outside_or_none
        return None
    type_ = scheme.types[head_id]
    inside = scheme.label_index.get(("I", type_))
    if inside is None:
        return None
    label_ids[i] = inside
    opened = {"E": "I", "S": "B"}.get(scheme.prefixes[head_id])
    if opened is not None and (opened, type_) in scheme.label_index:
        label_ids[head] = scheme.label_index[(opened, type_)]
    return type_


def _tie_to_previous(
    scheme: LabelScheme,
    label_ids: np.ndarray,
    tied: np.ndarray,
    segment_starts: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Make each tied token continue whatever the token before it is.

    A tied token is covered only by a piece that began in the previous token,
    so the two share one prediction: O stays O, an entity of type X runs on
    as I-X. (In a BIOES model it stays I-X even when the next token leaves
    the entity: decoding closes it there all the same, and an E-X would keep
    a run of piece-less tokens after it from joining an I-X that follows.)
    """
    label_ids = label_ids.copy()
    for i in np.flatnonzero(tied).tolist():
        if i == 0 or (segment_starts is not None and segment_starts[i]):
            continue
        _extend_entity(scheme, label_ids, i - 1, i)
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
    first_of_word = starts == np.arange(len(starts))
    for i in np.flatnonzero(~first_of_word).tolist():
        _extend_entity(scheme, label_ids, int(starts[i]), i)
    return _never_begin(scheme, label_ids, glued_punct & first_of_word)


def _never_begin(scheme: LabelScheme, label_ids: np.ndarray, marked: np.ndarray) -> np.ndarray:
    """Make each marked token that would begin an entity O; one that continues
    the entity of the token before it stays in it."""
    label_ids = label_ids.copy()
    prefixes, types = scheme.prefixes, scheme.types
    for i in np.flatnonzero(marked).tolist():
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
            label_ids[i] = scheme.outside_or_none
    return label_ids


def _trim_edges(
    spans: List[DecodedSpan], edge_punct: np.ndarray, scores: np.ndarray
) -> List[DecodedSpan]:
    """Drop marked tokens from both ends of each span, never emptying it.

    A piece that holds a bracket or comma and the start or end of a word
    ("(Ch" of "(China)", "s," of "Blades,") gives both tokens one label: the
    word's. Taken as it is, the entity would swallow the bracket or comma,
    which separating punctuation (`align.words`) never is part of. The span
    score is recomputed over what is left.
    """
    out = []
    marked = edge_punct.tolist()
    for span in spans:
        start, end = span.start, span.end
        while end - start > 1 and marked[start]:
            start += 1
        while end - start > 1 and marked[end - 1]:
            end -= 1
        if (start, end) != (span.start, span.end):
            span = DecodedSpan(start, end, span.label, span_score(scores[start:end].tolist()))
        out.append(span)
    return out


def predict_entities(
    scheme: LabelScheme,
    token_probs: np.ndarray,
    has_piece: np.ndarray,
    type_names: Mapping[str, Optional[str]],
    threshold: Threshold,
    *,
    tied: Optional[np.ndarray] = None,
    word_starts: Optional[np.ndarray] = None,
    glued_punct: Optional[np.ndarray] = None,
    edge_punct: Optional[np.ndarray] = None,
    segment_starts: Optional[np.ndarray] = None,
    decoding: str = "greedy",
    o_bias: float = 0.0,
    score_probs: Optional[np.ndarray] = None,
) -> Tuple[EntityPrediction, int]:
    """Decode token probabilities into entity spans and IOB2 labels.

    `type_names` maps each model type to its output label, or None to drop
    it; `tied` marks tokens that must share the previous token's entity (see
    `_tie_to_previous`); `edge_punct` marks tokens that never begin an
    entity and that an entity of several tokens does not end with (see
    `_trim_edges`). The tokens may be
    those of several docs, one after the other, with `segment_starts`
    marking the first token of each doc and of each segment (sentence or
    line) the model saw on its own: nothing carries over from one to the
    next (see `split_by_doc`). `decoding` picks the labels the repairs start
    from: "greedy", each token's most probable label; "viterbi", the most
    probable sequence the scheme allows in each segment (`viterbi`);
    "viterbi-iob2", the same reading IOB labels as strict IOB2 (for
    models trained on IOB2 labels); "auto" is settled before this
    (`viterbi.resolve_decoding`). `o_bias` lowers log P(O) before decoding
    (`recall.bias_outside`; it needs an O label). Scores (and the threshold)
    read `score_probs` where given (calibrated probabilities, same shape) and
    `token_probs` otherwise, never the biased ones; so calibration changes
    scores, never entities. `threshold` is one number, or one per model type
    (a type missing from the table: 0.0). Returns the prediction and how many
    spans the threshold removed.
    """
    n_tokens = len(token_probs)
    if n_tokens == 0:
        return EntityPrediction([], [], []), 0
    # Decoding reads the biased probabilities, the scores below the model's own.
    decode_probs = token_probs
    if o_bias:
        if scheme.outside_id is None:
            raise ValueError(f"o_bias={o_bias!r} needs an O label; the scheme has none")
        decode_probs = bias_outside(token_probs, scheme.outside_id, o_bias)
    if decoding == "greedy":
        label_ids = np.where(has_piece, decode_probs.argmax(axis=1), scheme.outside_or_none)
    elif decoding in _VITERBI_IOB:
        label_ids = viterbi_label_ids(
            scheme, decode_probs, has_piece, segment_starts, iob=_VITERBI_IOB[decoding]
        )
    elif decoding == "auto":
        raise ValueError(
            'decoding="auto" depends on the model: settle it first (viterbi.resolve_decoding)'
        )
    else:
        raise ValueError(f"decoding={decoding!r}: use one of {DECODINGS}")
    # Tie first: gaps are filled from the labels the tied tokens end up with.
    if tied is not None and tied.any():
        label_ids = _tie_to_previous(scheme, label_ids, tied, segment_starts)
    if word_starts is not None and glued_punct is not None:
        label_ids = _apply_words(scheme, label_ids, word_starts, glued_punct)
    trims = edge_punct is not None and bool(edge_punct.any())
    if trims:
        # "(" of a piece "(Ch" reads China's B-: the entity begins at "China",
        # which reads the same piece as its continuation.
        label_ids = _never_begin(scheme, label_ids, edge_punct)
    label_ids = _fill_gaps(scheme, label_ids, has_piece, segment_starts)
    # Each token's score is the model's probability for the type it ends up
    # with, whatever the prefix: repair may turn a confident S-X into B-X, and
    # P(B-X) alone would then understate what the model said about X. O tokens
    # score P(O). Piece-less tokens have none, and span scores skip them.
    # Summed row by row (not a matrix product), so a token's score does not
    # depend on which other docs share its batch.
    if score_probs is None:
        score_probs = token_probs
    same_type = scheme.type_matrix[np.maximum(label_ids, 0)]
    type_probs = (score_probs.astype(np.float64) * same_type).sum(axis=1)
    scores = np.where(has_piece, type_probs, np.nan)
    decoded = decode_spans(scheme, label_ids, scores, segment_starts)
    if trims:
        decoded = _trim_edges(decoded, edge_punct, scores)

    spans: List[Tuple[int, int, str, float]] = []
    below = 0
    for span in decoded:
        name = type_names.get(span.label, span.label)
        if name is None:
            continue
        limit = threshold.get(span.label, 0.0) if isinstance(threshold, Mapping) else threshold
        if span.score < limit:
            below += 1
            continue
        spans.append((span.start, span.end, name, span.score))

    in_span = np.zeros(n_tokens, dtype=bool)
    for start, end, _, _ in spans:
        in_span[start:end] = True
    outside = scheme.outside_id
    out_probs = score_probs[:, outside] if outside is not None else np.zeros(n_tokens)
    token_scores: List[Optional[float]] = np.where(in_span, scores, out_probs).tolist()
    for k in np.flatnonzero(~has_piece).tolist():
        token_scores[k] = None
    token_labels = spans_to_iob(n_tokens, [(s, e, name) for s, e, name, _ in spans])
    return EntityPrediction(spans, token_labels, token_scores), below


def split_by_doc(
    prediction: EntityPrediction, token_bounds: np.ndarray
) -> Iterator[EntityPrediction]:
    """Cut a prediction over several docs' tokens into one per doc, with spans
    renumbered from each doc's first token (`token_bounds[i]`).

    One doc at a time, as the writer takes them: a batch's per-doc lists are
    not all alive at once, so fewer survive into the garbage collector's
    older generations (whose collections grow with what they hold)."""
    bounds = [int(b) for b in token_bounds]
    spans = prediction.spans
    k = 0
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        doc_spans = []
        while k < len(spans) and spans[k][0] < hi:
            start, end, label, score = spans[k]
            doc_spans.append((start - lo, end - lo, label, score))
            k += 1
        yield EntityPrediction(
            doc_spans, prediction.token_labels[lo:hi], prediction.token_scores[lo:hi]
        )


def predict_tags(
    scheme: LabelScheme,
    token_probs: np.ndarray,
    has_piece: np.ndarray,
    tag_names: Mapping[str, str],
    score_probs: Optional[np.ndarray] = None,
) -> Tuple[List[Optional[str]], List[Optional[float]]]:
    """Best tag per token (renamed by `tag_names`); None where no piece covers it.
    The score is the tag's probability in `score_probs` (calibrated) where
    given; the tag is always the model's own best."""
    n_tokens = len(token_probs)
    if n_tokens == 0:
        return [], []
    label_ids = token_probs.argmax(axis=1)
    if score_probs is None:
        score_probs = token_probs
    scores = score_probs[np.arange(n_tokens), label_ids]
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
