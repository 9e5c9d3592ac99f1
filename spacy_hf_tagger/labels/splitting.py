"""Split spaCy tokens where the model's entities begin or end inside them.

With `split_tokens`, `김태웅이고` becomes `김태웅` + `이고` before the entity
is written, so `doc.ents` holds the name and not the name plus its grammar.

spaCy's `retokenize().split` moves the tokens after the split and fills the
new ones from whatever was in memory there: tags, entity types and sentence
starts of the *next* tokens, and span groups keep token indices that now
point elsewhere (spaCy 3.8). So what a split token carried is handed to its
parts explicitly, as spaCy documents it ("inherited from the original
token"): tag, POS, morphology, lemma, a dependency (the later parts attach to
the first with spaCy's "subtok" label); sentence starts stay where they
were; entities and span groups of earlier components are re-set at their
character offsets, which a split never moves. Token extensions of other
components stay on the first part (spaCy keys them by character offset).

A token inside an entity an earlier component set is not split while that
entity wins conflicts (`overwrite_ents` false): its token stays as that
component saw it, the split is counted as skipped, and the model's entity is
reported as the conflict it is.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np
from spacy.tokens import Doc, Span, SpanGroup, Token

# What a split token hands to each of its parts, when the doc has it.
_INHERITED = ("TAG", "POS", "MORPH")
# spaCy's dependency label for a token split off a word (its parser's own).
SUBTOKEN_DEP = "subtok"


@dataclass
class SplitReport:
    """Boundaries inside tokens: how many tokens were split, and how many
    boundaries were skipped (a token in an earlier component's entity)."""

    tokens_split: int = 0
    skipped: int = 0


def _cuts_per_token(doc: Doc, offsets: Sequence[int]) -> Dict[int, List[int]]:
    """Offsets strictly inside a token, grouped by token index (in order)."""
    if not len(doc):
        return {}
    starts = doc.to_array("IDX").astype(np.int64)
    ends = starts + doc.to_array("LENGTH").astype(np.int64)
    cuts: Dict[int, List[int]] = {}
    for offset in sorted(set(offsets)):
        t = int(np.searchsorted(starts, offset, side="right")) - 1
        if t >= 0 and starts[t] < offset < ends[t]:
            cuts.setdefault(t, []).append(int(offset))
    return cuts


def split_at(doc: Doc, offsets: Sequence[int], *, overwrite_ents: bool) -> SplitReport:
    """Split `doc`'s tokens at the character `offsets` that fall inside one."""
    report = SplitReport()
    cuts = _cuts_per_token(doc, offsets)
    if not cuts:
        return report
    for i in list(cuts):
        if not overwrite_ents and doc[i].ent_iob_ in ("B", "I"):
            report.skipped += len(cuts.pop(i))
    if not cuts:
        return report
    ents = [(e.start_char, e.end_char, e.label, e.kb_id, e.id) for e in doc.ents]
    # Characters of tokens with no entity annotation (not even O): their
    # parts stay without one.
    unannotated = [(t.idx, t.idx + len(t)) for t in doc if t.ent_iob == 0]
    groups = {
        name: (
            [(s.start_char, s.end_char, s.label, s.kb_id, s.id) for s in group],
            dict(group.attrs),
        )
        for name, group in doc.spans.items()
    }
    annotated = [attr for attr in _INHERITED if doc.has_annotation(attr)]
    parsed = doc.has_annotation("DEP")
    has_lemma = doc.has_annotation("LEMMA")
    sentences = not parsed and doc.has_annotation("SENT_START")
    # (first part's char offset, the token's sentence start, later parts' offsets)
    starts: List[Tuple[int, object, List[int]]] = []
    text = doc.text  # built from every token: once, not once per split
    with doc.retokenize() as retokenizer:
        for i, token_cuts in cuts.items():
            token = doc[i]
            edges = [token.idx, *token_cuts, token.idx + len(token)]
            orths = [text[a:b] for a, b in zip(edges[:-1], edges[1:])]
            retokenizer.split(
                token,
                orths,
                _heads(token, len(orths), parsed),
                _attrs(token, orths, annotated, parsed, has_lemma),
            )
            starts.append((token.idx, token.is_sent_start, token_cuts))
            report.tokens_split += 1
    if not parsed:
        # The parts after the first hold what was in memory; a parse sets
        # sentence starts through heads instead.
        by_char = {t.idx: t for t in doc}
        for first, sent_start, later in starts:
            by_char[first].is_sent_start = sent_start
            for offset in later:
                by_char[offset].is_sent_start = False if sentences else None
    doc.set_ents(
        [_span(doc, saved) for saved in ents],
        missing=[doc[t.i : t.i + 1] for t in doc if _inside(t.idx, unannotated)]
        if unannotated
        else None,
        default="outside",
    )
    for name, (spans, attrs) in groups.items():
        group = SpanGroup(
            doc,
            name=name,
            spans=[_span(doc, saved) for saved in spans],
        )
        group.attrs.update(attrs)
        doc.spans[name] = group
    return report


def _span(doc: Doc, saved: Tuple[int, int, int, int, int]) -> Span:
    """A span saved as (start char, end char, label, kb id, id) back on `doc`
    (its edges were token edges and a split moves none)."""
    start, end, label, kb_id, span_id = saved
    span = doc.char_span(start, end, label=label, kb_id=kb_id, span_id=span_id)
    if span is None:  # a split cuts tokens inside, never at a saved span's edge
        raise RuntimeError(f"chars {start}-{end} are no longer on token edges after a split")
    return span


def _inside(offset: int, ranges: Sequence[Tuple[int, int]]) -> bool:
    """Whether `offset` falls in one of the (start, end) character `ranges`
    (sorted, as a doc's tokens are)."""
    k = bisect.bisect_right(ranges, offset, key=lambda r: r[0]) - 1
    return k >= 0 and ranges[k][0] <= offset < ranges[k][1]


def _heads(token: Token, n: int, parsed: bool) -> List[object]:
    """The first part keeps the token's head; later parts attach to the first
    (or, in an unparsed doc, each is its own head, as every token there is)."""
    if not parsed:
        return [(token, k) for k in range(n)]
    first: object = token.head if token.head.i != token.i else (token, 0)
    return [first] + [(token, 0)] * (n - 1)


def _attrs(
    token: Token,
    orths: List[str],
    annotated: List[str],
    parsed: bool,
    has_lemma: bool,
) -> Dict[str, List[object]]:
    n = len(orths)
    attrs: Dict[str, List[object]] = {}
    for attr in annotated:
        value = str(token.morph) if attr == "MORPH" else getattr(token, f"{attr.lower()}_")
        attrs[attr] = [value] * n
    if parsed:
        # The retokenizer stores the label's hash: the string must be known.
        token.vocab.strings.add(SUBTOKEN_DEP)
        attrs["DEP"] = [token.dep_] + [SUBTOKEN_DEP] * (n - 1)
    if has_lemma:
        attrs["LEMMA"] = [token.lemma_ if n == 1 else orth for orth in orths]
    return attrs
