"""`labels.exact.held_by_decoded`: which exact entities with an edge inside a
token a written entity holds, checked against its definition over arbitrary
tokens and entities (it once scanned every written entity per exact one:
17 of the 52 s a 4 M-character record took)."""

from __future__ import annotations

from typing import List, Tuple

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from spacy_hf_tagger.labels.exact import held_by_decoded
from spacy_hf_tagger.labels.writing import EntityPrediction

LABELS = ("PER", "LOC")


def _definition(
    ents: List[Tuple[int, int, str, float]],
    spans: List[Tuple[int, int, str, float]],
    starts: np.ndarray,
    ends: np.ndarray,
) -> Tuple[int, int]:
    edges = set(starts.tolist()) | set(ends.tolist())
    chars = [(int(starts[s]), int(ends[e - 1]), label) for s, e, label, _ in spans]
    held = dropped = 0
    for start, end, label, _ in ents:
        if start in edges and end in edges:
            continue
        if any(s <= start and end <= e and label == lab for s, e, lab in chars):
            held += 1
        else:
            dropped += 1
    return held, dropped


@st.composite
def _cases(draw: st.DrawFn) -> tuple:
    lengths = draw(st.lists(st.integers(1, 6), min_size=1, max_size=30))
    # Tokens glued (punctuation), one space apart, or two.
    gaps = draw(st.lists(st.integers(0, 2), min_size=len(lengths), max_size=len(lengths)))
    starts = np.cumsum([0] + [n + g for n, g in zip(lengths[:-1], gaps)]).astype(np.int64)
    ends = starts + np.array(lengths, dtype=np.int64)
    n = len(lengths)
    # Written entities: disjoint token ranges, in any order.
    cuts = sorted(set(draw(st.lists(st.integers(0, n), max_size=12))))
    spans = []
    for a, b in zip(cuts, cuts[1:]):
        if draw(st.booleans()):
            spans.append((a, b, draw(st.sampled_from(LABELS)), 0.9))
    spans = draw(st.permutations(spans))
    text_end = int(ends[-1])
    ents = []
    for _ in range(draw(st.integers(0, 15))):
        a = draw(st.integers(0, text_end - 1))
        b = draw(st.integers(a + 1, text_end))
        ents.append((a, b, draw(st.sampled_from(LABELS)), 0.8))
    return ents, spans, starts, ends


@settings(max_examples=300, deadline=None)
@given(_cases())
def test_held_and_dropped_follow_the_definition(case: tuple) -> None:
    ents, spans, starts, ends = case
    decoded = EntityPrediction(list(spans), [], [])
    assert held_by_decoded(ents, decoded, starts, ends) == _definition(ents, spans, starts, ends)


def test_an_entity_inside_a_token_of_a_written_entity_is_held() -> None:
    starts = np.array([0, 6, 12])  # "Angela MerkelX visited"
    ends = np.array([5, 11, 19])
    spans = [(0, 2, "PER", 0.9)]
    ents = [(0, 10, "PER", 0.9), (6, 10, "LOC", 0.7), (13, 15, "PER", 0.6)]
    decoded = EntityPrediction(spans, [], [])
    assert held_by_decoded(ents, decoded, starts, ends) == (1, 2)
