"""Write decoded predictions onto a Doc: entities, span groups, token attributes.

The one place that mutates Docs. Entities from earlier components (rules)
survive unless `overwrite_ents`; predictions that cannot go into `doc.ents`
are returned so the caller can count and report them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np
from spacy.tokens import Doc, Span, SpanGroup, Token

BIO_ATTR = "hf_bio"
SCORE_ATTR = "hf_score"
# doc._.hf_char_ents: the model's entities at exact character offsets,
# a tuple of (start_char, end_char, label, score), as a DocBin gives it back.
CHAR_ENTS_ATTR = "hf_char_ents"


def register_extensions() -> None:
    """Declare the token and span extensions once; values are msgpack-friendly."""
    if not Token.has_extension(BIO_ATTR):
        Token.set_extension(BIO_ATTR, default=None)
    if not Token.has_extension(SCORE_ATTR):
        Token.set_extension(SCORE_ATTR, default=None)
    if not Span.has_extension(SCORE_ATTR):
        Span.set_extension(SCORE_ATTR, default=None)
    if not Doc.has_extension(CHAR_ENTS_ATTR):
        Doc.set_extension(CHAR_ENTS_ATTR, default=None)


@dataclass(slots=True)
class EntityPrediction:
    """Spans to write for one doc, over token indices, with per-token outputs."""

    spans: List[Tuple[int, int, str, float]]
    token_labels: List[Optional[str]]
    token_scores: List[Optional[float]]


@dataclass(slots=True)
class WriteReport:
    """What happened while writing one doc's predictions."""

    conflicts: List[Tuple[int, int, str]] = field(default_factory=list)
    replaced: int = 0


def write_entities(
    doc: Doc,
    prediction: EntityPrediction,
    *,
    set_ents: bool,
    spans_key: Optional[str],
    overwrite_ents: bool,
    token_idx: Optional[np.ndarray] = None,
) -> WriteReport:
    """Write one doc's entity predictions.

    With `overwrite_ents=False` an existing entity wins every conflict and the
    losing prediction is reported; with True the prediction wins and the
    existing entities it overlaps are removed. `token_idx` (the tokens'
    char offsets, `doc.to_array("IDX")`) may be passed when already at hand.

    Our extensions describe what the component wrote. `span._.hf_score` is
    set on the predictions that are in `doc.ents` (or, when entities are not
    written, in the spans group); a prediction that lost to an earlier
    component keeps its score only in the group's `attrs["scores"]` (span
    extensions are keyed by character offsets, so a score on it would show on
    the rule's entity over the same characters). Tokens of an entity another
    component set get `hf_bio`/`hf_score` None: the model's view of them is
    in the spans group.
    """
    report = WriteReport()
    spans = [Span(doc, s, e, label=label) for s, e, label, _ in prediction.spans]
    scores = [score for *_, score in prediction.spans]
    labels = prediction.token_labels
    token_scores = prediction.token_scores
    written = spans
    if set_ents:
        existing = list(doc.ents)
        taken = np.zeros(len(doc), dtype=bool)
        if overwrite_ents:
            for span in spans:
                taken[span.start : span.end] = True
            kept = [ent for ent in existing if not taken[ent.start : ent.end].any()]
            report.replaced = len(existing) - len(kept)
            final = kept + spans
        else:
            for ent in existing:
                taken[ent.start : ent.end] = True
            same = {(ent.start, ent.end, ent.label_) for ent in existing}
            final = list(existing)
            written = []
            for span in spans:
                if (span.start, span.end, span.label_) in same:
                    written.append(span)  # the earlier component already says the same
                elif taken[span.start : span.end].any():
                    report.conflicts.append((span.start, span.end, span.label_))
                else:
                    final.append(span)
                    written.append(span)
            kept = existing
        final.sort(key=lambda s: s.start)
        doc.set_ents(final, default="outside")
        ours = {(s.start, s.end) for s in written}
        others = [ent for ent in kept if (ent.start, ent.end) not in ours]
        if others:
            labels, token_scores = list(labels), list(token_scores)
            for ent in others:
                labels[ent.start : ent.end] = [None] * (ent.end - ent.start)
                token_scores[ent.start : ent.end] = [None] * (ent.end - ent.start)
    written_ids = {id(span) for span in written}
    if _direct_keys():
        user_data = doc.user_data
        for span, score in zip(spans, scores):
            if id(span) in written_ids:
                user_data[("._.", SCORE_ATTR, span.start_char, span.end_char)] = float(score)
    else:
        for span, score in zip(spans, scores):
            if id(span) in written_ids:
                span._.set(SCORE_ATTR, float(score))
    if spans_key is not None:
        group = SpanGroup(doc, name=spans_key, spans=spans)
        group.attrs["scores"] = [float(s) for s in scores]
        doc.spans[spans_key] = group
    write_token_outputs(doc, labels, token_scores, token_idx)
    return report


def _keys_match() -> bool:
    """Whether token and span extensions are stored in user_data under
    ("._.", name, token idx, None) and ("._.", name, start_char, end_char).

    That layout has held since spaCy v2; writing the dict directly is several
    times faster than going through `token._` / `span._` for every value. If a
    spaCy release changes it, the public API is used instead.
    """
    from spacy.vocab import Vocab

    doc = Doc(Vocab(), words=["a", "b"])
    doc[1]._.set(BIO_ATTR, "probe")
    doc[1:2]._.set(SCORE_ATTR, 0.5)
    return (
        doc.user_data.get(("._.", BIO_ATTR, 2, None)) == "probe"
        and doc.user_data.get(("._.", SCORE_ATTR, 2, 3)) == 0.5
    )


_DIRECT_KEYS: Optional[bool] = None


def _direct_keys() -> bool:
    global _DIRECT_KEYS
    if _DIRECT_KEYS is None:
        _DIRECT_KEYS = _keys_match()
    return _DIRECT_KEYS


def write_token_outputs(
    doc: Doc,
    labels: Sequence[Optional[str]],
    scores: Sequence[Optional[float]],
    token_idx: Optional[np.ndarray] = None,
) -> None:
    """Set token._.hf_bio and token._.hf_score on every token."""
    if _direct_keys():
        offsets = (doc.to_array("IDX") if token_idx is None else token_idx).tolist()
        user_data = doc.user_data
        user_data.update(zip([("._.", BIO_ATTR, i, None) for i in offsets], labels))
        user_data.update(zip([("._.", SCORE_ATTR, i, None) for i in offsets], scores))
        return
    for token, label, score in zip(doc, labels, scores):
        token._.set(BIO_ATTR, label)
        token._.set(SCORE_ATTR, score)


def write_tags(
    doc: Doc,
    tags: Sequence[Optional[str]],
    scores: Sequence[Optional[float]],
    *,
    attrs: Sequence[str],
    token_idx: Optional[np.ndarray] = None,
) -> None:
    """Write tags to token.tag_ and/or token.pos_; None leaves a token as it was."""
    for token, tag in zip(doc, tags):
        if tag is None:
            continue
        for attr in attrs:
            setattr(token, f"{attr}_", tag)
    write_token_outputs(doc, tags, scores, token_idx)
