"""Token probabilities → entity spans / tags, with post-processing (pure, no model)."""

from __future__ import annotations

from typing import List, Optional

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacy_hf_tagger.labels.decoding import (
    _apply_words,
    _fill_gaps,
    _tie_to_previous,
    predict_entities,
    predict_tags,
    tag_name_map,
)
from spacy_hf_tagger.labels.schemes import LabelScheme, read_label_scheme, spans_to_iob


def scheme_of(labels):
    return read_label_scheme(dict(enumerate(labels)))


# "O" deliberately not at id 0: a zero row's argmax (0 = B-LOC) must not leak through.
IOB = scheme_of(["B-LOC", "I-LOC", "O", "B-PER", "I-PER"])
B_LOC, I_LOC, OUT, B_PER, I_PER = range(5)
NAMES = {"LOC": "LOC", "PER": "PER"}


def rows(*specs, n_labels=5):
    """One probability row per spec: (label id, probability) with the rest spread
    evenly, or None for a token with no piece (all-zero row).

    Scores are type probabilities: in IOB with 5 labels, an entity label at p
    scores p + (1 - p) / 4 (its other prefix holds a quarter of the rest), so
    0.75 -> 0.8125, 0.5 -> 0.625, 0.25 -> 0.4375; O at p scores p."""
    out = np.zeros((len(specs), n_labels), dtype=np.float32)
    for k, spec in enumerate(specs):
        if spec is None:
            continue
        label, p = spec
        out[k] = (1.0 - p) / (n_labels - 1)
        out[k, label] = p
    return out


def mask(*flags):
    return np.array(flags, dtype=bool)


# --- predict_entities ----------------------------------------------------------------


def test_gap_fill_new_york():
    # "New  York is nice": the extra space is a spaCy token with no piece
    probs = rows((B_LOC, 0.75), None, (I_LOC, 0.5), (OUT, 0.75), (OUT, 0.5))
    has_piece = mask(True, False, True, True, True)
    pred, below = predict_entities(IOB, probs, has_piece, NAMES, 0.0)
    assert below == 0
    assert [s[:3] for s in pred.spans] == [(0, 3, "LOC")]
    # the span score is the mean over the tokens that have a prediction
    assert pred.spans[0][3] == pytest.approx((0.8125 + 0.625) / 2)
    assert pred.token_labels == ["B-LOC", "I-LOC", "I-LOC", "O", "O"]
    assert pred.token_scores == [0.8125, None, 0.625, 0.75, 0.5]


def test_gap_fill_several_piece_less_tokens():
    probs = rows((B_LOC, 0.75), None, None, (I_LOC, 0.5))
    pred, _ = predict_entities(IOB, probs, mask(True, False, False, True), NAMES, 0.0)
    assert [s[:3] for s in pred.spans] == [(0, 4, "LOC")]
    assert pred.spans[0][3] == pytest.approx((0.8125 + 0.625) / 2)
    assert pred.token_labels == ["B-LOC", "I-LOC", "I-LOC", "I-LOC"]
    assert pred.token_scores == [0.8125, None, None, 0.625]


@pytest.mark.parametrize(
    ("before", "after", "spans", "labels"),
    [
        # a new B- after the gap: two entities, the gap is outside
        (B_LOC, B_LOC, [(0, 1, "LOC"), (2, 3, "LOC")], ["B-LOC", "O", "B-LOC"]),
        # another type after the gap
        (B_LOC, I_PER, [(0, 1, "LOC"), (2, 3, "PER")], ["B-LOC", "O", "B-PER"]),
        # nothing open before the gap
        (OUT, I_LOC, [(2, 3, "LOC")], ["O", "O", "B-LOC"]),
        # the entity does not go on after the gap
        (I_LOC, OUT, [(0, 1, "LOC")], ["B-LOC", "O", "O"]),
    ],
)
def test_gap_not_filled(before, after, spans, labels):
    probs = rows((before, 0.75), None, (after, 0.75))
    pred, _ = predict_entities(IOB, probs, mask(True, False, True), NAMES, 0.0)
    assert [s[:3] for s in pred.spans] == spans
    assert pred.token_labels == labels
    assert pred.token_scores[1] is None


def test_piece_less_tokens_at_edges_are_outside():
    probs = rows(None, (B_LOC, 0.75), (I_LOC, 0.75), None)
    pred, _ = predict_entities(IOB, probs, mask(False, True, True, False), NAMES, 0.0)
    assert pred.spans == [(1, 3, "LOC", 0.8125)]
    assert pred.token_labels == ["O", "B-LOC", "I-LOC", "O"]
    assert pred.token_scores == [None, 0.8125, 0.8125, None]


def test_piece_less_row_argmax_is_not_used():
    # the zero row of a piece-less token would argmax to id 0 (B-LOC)
    probs = rows(None, None)
    pred, below = predict_entities(IOB, probs, mask(False, False), NAMES, 0.0)
    assert pred.spans == []
    assert pred.token_labels == ["O", "O"]
    assert pred.token_scores == [None, None]
    assert below == 0


def test_gap_fill_bioes():
    scheme = scheme_of(["O", "B-X", "I-X", "E-X", "S-X"])
    probs = rows((1, 0.75), None, (3, 0.75))
    pred, _ = predict_entities(scheme, probs, mask(True, False, True), {"X": "X"}, 0.0)
    # X holds four of the five labels: 0.75 + 3 * 0.0625
    assert pred.spans == [(0, 3, "X", 0.9375)]
    assert pred.token_labels == ["B-X", "I-X", "I-X"]
    # S- closes its entity: no fill after it
    probs = rows((4, 0.75), None, (3, 0.75))
    pred, _ = predict_entities(scheme, probs, mask(True, False, True), {"X": "X"}, 0.0)
    assert [s[:3] for s in pred.spans] == [(0, 1, "X"), (2, 3, "X")]
    assert pred.token_labels == ["B-X", "O", "B-X"]


def test_bioes_token_labels_are_iob2():
    scheme = scheme_of(["O", "B-X", "I-X", "E-X", "S-X"])
    probs = rows((1, 0.5), (2, 0.5), (3, 0.5), (4, 0.5), (0, 0.5), (3, 0.5))
    pred, _ = predict_entities(scheme, probs, mask(*[True] * 6), {"X": "X"}, 0.0)
    assert [s[:3] for s in pred.spans] == [(0, 3, "X"), (3, 4, "X"), (5, 6, "X")]
    assert pred.token_labels == ["B-X", "I-X", "I-X", "B-X", "O", "B-X"]


def test_threshold_drops_and_counts():
    probs = rows((B_LOC, 0.75), None, (I_LOC, 0.5), (OUT, 0.75), (B_PER, 0.75))
    has_piece = mask(True, False, True, True, True)
    pred, below = predict_entities(IOB, probs, has_piece, NAMES, 0.75)
    assert below == 1  # LOC scored (0.8125 + 0.625) / 2 = 0.71875
    assert pred.spans == [(4, 5, "PER", 0.8125)]
    assert pred.token_labels == ["O", "O", "O", "O", "B-PER"]
    # tokens outside every written span report the probability of "O"
    assert pred.token_scores == [0.0625, None, 0.125, 0.75, 0.8125]


def test_threshold_is_inclusive():
    probs = rows((B_PER, 0.75), (OUT, 0.75))
    pred, below = predict_entities(IOB, probs, mask(True, True), NAMES, 0.8125)
    assert pred.spans == [(0, 1, "PER", 0.8125)]
    assert below == 0
    pred, below = predict_entities(IOB, probs, mask(True, True), NAMES, 0.8125001)
    assert pred.spans == []
    assert below == 1


def test_ignored_types_are_not_counted_as_below_threshold():
    probs = rows((B_LOC, 0.25), (B_PER, 0.75), (I_PER, 0.75))
    pred, below = predict_entities(IOB, probs, mask(True, True, True), {"LOC": None}, 0.5)
    assert pred.spans == [(1, 3, "PER", 0.8125)]
    assert below == 0
    assert pred.token_labels == ["O", "B-PER", "I-PER"]


def test_label_map_renames_spans_and_token_labels():
    probs = rows((B_LOC, 0.75), (I_LOC, 0.75), (B_PER, 0.5))
    names = {"LOC": "GPE", "PER": "PERSON"}
    pred, _ = predict_entities(IOB, probs, mask(True, True, True), names, 0.0)
    assert pred.spans == [(0, 2, "GPE", 0.8125), (2, 3, "PERSON", 0.625)]
    assert pred.token_labels == ["B-GPE", "I-GPE", "B-PERSON"]


def test_types_missing_from_type_names_keep_their_name():
    probs = rows((B_LOC, 0.75))
    pred, _ = predict_entities(IOB, probs, mask(True), {}, 0.0)
    assert pred.spans == [(0, 1, "LOC", 0.8125)]


def test_piece_less_tokens_outside_in_scheme_without_o_label():
    scheme = scheme_of(["B-PER", "I-PER"])
    assert scheme.outside_id is None
    probs = np.array([[0, 0], [0.25, 0.75], [0, 0]], dtype=np.float32)
    pred, _ = predict_entities(scheme, probs, mask(False, True, False), {"PER": "PER"}, 0.0)
    # B-PER 0.25 + I-PER 0.75: the token is PER with probability 1
    assert pred.spans == [(1, 2, "PER", 1.0)]
    assert pred.token_labels == ["O", "B-PER", "O"]


def test_empty_doc():
    pred, below = predict_entities(IOB, np.zeros((0, 5), dtype=np.float32), mask(), NAMES, 0.0)
    assert (pred.spans, pred.token_labels, pred.token_scores, below) == ([], [], [], 0)


def test_fill_gaps_directly():
    label_ids = np.array([B_LOC, B_LOC, I_LOC, B_PER, B_LOC, I_LOC, B_PER, I_PER])
    has_piece = mask(True, False, True, True, False, True, False, True)
    out = _fill_gaps(IOB, label_ids, has_piece)
    assert out.tolist() == [B_LOC, I_LOC, I_LOC, B_PER, OUT, I_LOC, OUT, I_PER]
    # input untouched; all-pieces input comes back as is
    assert label_ids.tolist() == [B_LOC, B_LOC, I_LOC, B_PER, B_LOC, I_LOC, B_PER, I_PER]
    assert _fill_gaps(IOB, label_ids, mask(*[True] * 8)) is label_ids


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_predict_entities_properties(data):
    n = data.draw(st.integers(0, 14))
    weights = data.draw(
        st.lists(st.lists(st.integers(1, 9), min_size=5, max_size=5), min_size=n, max_size=n)
    )
    probs = np.array(weights, dtype=np.float32).reshape(n, 5)
    if n:
        probs /= probs.sum(axis=1, keepdims=True)
    has_piece = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    probs[~has_piece] = 0.0
    names = data.draw(
        st.fixed_dictionaries(
            {"LOC": st.sampled_from(["LOC", "GPE", None]), "PER": st.sampled_from(["PER", None])}
        )
    )
    threshold = data.draw(st.sampled_from([0.0, 0.3, 0.5]))
    pred, below = predict_entities(IOB, probs, has_piece, names, threshold)
    all_pred, all_below = predict_entities(IOB, probs, has_piece, names, 0.0)
    assert all_below == 0
    # the threshold only removes spans, and counts what it removes
    assert set(pred.spans) <= set(all_pred.spans)
    assert below == len(all_pred.spans) - len(pred.spans)
    end = 0
    for start, stop, label, score in pred.spans:
        assert end <= start < stop <= n
        end = stop
        assert label in {v for v in names.values() if v is not None}
        assert score >= threshold
        # entity boundaries fall on tokens that the model saw
        assert has_piece[start]
        assert has_piece[stop - 1]
    # the IOB2 token labels agree with the spans exactly
    assert pred.token_labels == spans_to_iob(n, [s[:3] for s in pred.spans])
    assert len(pred.token_scores) == n
    for k in range(n):
        assert (pred.token_scores[k] is None) == (not has_piece[k])


# --- predict_tags --------------------------------------------------------------------


def test_predict_tags():
    scheme = scheme_of(["NOUN", "VERB", "PUNCT"])
    probs = rows((1, 0.5), None, (0, 0.75), (2, 1.0), n_labels=3)
    names = tag_name_map(scheme, {"NOUN": "N"})
    assert names == {"NOUN": "N", "VERB": "VERB", "PUNCT": "PUNCT"}
    tags, scores = predict_tags(scheme, probs, mask(True, False, True, True), names)
    assert tags == ["VERB", None, "N", "PUNCT"]
    assert scores == [0.5, None, 0.75, 1.0]


def test_predict_tags_ptb_labels_and_empty():
    scheme = scheme_of(["-LRB-", "PRP$", "HYPH"])
    probs = rows((1, 0.5), (0, 0.5), n_labels=3)
    names = tag_name_map(scheme, {})
    assert predict_tags(scheme, probs, mask(True, True), names) == (["PRP$", "-LRB-"], [0.5, 0.5])
    assert predict_tags(scheme, np.zeros((0, 3), dtype=np.float32), mask(), names) == ([], [])


# --- scores after repair: the model's probability for the entity's type ------------

BIOES = scheme_of(["O", "B-X", "I-X", "E-X", "S-X"])
X_NAMES = {"X": "X"}


def test_scores_are_type_probabilities_whatever_the_prefix():
    # Hand-computed: each token's score sums the probabilities of its type's labels.
    probs = np.array(
        [
            #  B-LOC I-LOC  O     B-PER I-PER
            [0.05, 0.05, 0.10, 0.10, 0.70],  # I-PER with nothing open: repaired to B-PER
            [0.05, 0.05, 0.10, 0.20, 0.60],  # I-PER continues
            [0.30, 0.10, 0.60, 0.00, 0.00],  # O
        ],
        dtype=np.float32,
    )
    pred, below = predict_entities(IOB, probs, mask(True, True, True), NAMES, 0.0)
    assert pred.token_labels == ["B-PER", "I-PER", "O"]
    assert pred.token_scores == pytest.approx([0.80, 0.80, 0.60])
    assert pred.spans == [(0, 2, "PER", pytest.approx(0.80))]
    # The threshold acts on the type probability: P(B-PER) of the first token was
    # 0.10, yet the model was 0.80 sure of PER, so 0.75 keeps the entity.
    pred, below = predict_entities(IOB, probs, mask(True, True, True), NAMES, 0.75)
    assert [s[:3] for s in pred.spans] == [(0, 2, "PER")] and below == 0
    pred, below = predict_entities(IOB, probs, mask(True, True, True), NAMES, 0.81)
    assert pred.spans == [] and below == 1


def test_bioes_single_extended_by_a_tied_token_is_one_entity():
    # "Sarah's": S-X on "Sarah", and "'s" is tied to it (a piece ran in).
    probs = np.array(
        [
            #  O     B-X   I-X   E-X   S-X
            [0.05, 0.05, 0.05, 0.05, 0.80],
            [0.90, 0.00, 0.00, 0.10, 0.00],  # its own (overridden) row
            [0.70, 0.10, 0.00, 0.00, 0.20],
        ],
        dtype=np.float32,
    )
    tied = mask(False, True, False)
    pred, _ = predict_entities(BIOES, probs, mask(True, True, True), X_NAMES, 0.0, tied=tied)
    assert [s[:3] for s in pred.spans] == [(0, 2, "X")]
    assert pred.token_labels == ["B-X", "I-X", "O"]
    # S-X became B-X, yet "Sarah" scores what the model said about X: 0.95.
    assert pred.token_scores == pytest.approx([0.95, 0.10, 0.70])
    assert pred.spans[0][3] == pytest.approx((0.95 + 0.10) / 2)


def test_bioes_tied_token_before_a_new_entity_ends_its_own():
    # The tied token must close its entity (E-X) so the next S-X starts a new one.
    probs = np.array(
        [
            #  O     B-X   I-X   E-X   S-X
            [0.00, 0.10, 0.00, 0.00, 0.90],
            [0.00, 0.00, 0.00, 0.00, 1.00],
            [0.00, 0.00, 0.00, 0.00, 1.00],
        ],
        dtype=np.float32,
    )
    tied = mask(False, True, False)
    pred, _ = predict_entities(BIOES, probs, mask(True, True, True), X_NAMES, 0.0, tied=tied)
    assert [s[:3] for s in pred.spans] == [(0, 2, "X"), (2, 3, "X")]
    assert pred.token_labels == ["B-X", "I-X", "B-X"]


def test_bioes_tied_token_inside_a_running_entity_continues_it():
    probs = np.array(
        [
            #  O     B-X   I-X   E-X   S-X
            [0.00, 0.90, 0.00, 0.00, 0.10],
            [1.00, 0.00, 0.00, 0.00, 0.00],
            [0.00, 0.00, 0.20, 0.80, 0.00],
        ],
        dtype=np.float32,
    )
    tied = mask(False, True, False)
    pred, _ = predict_entities(BIOES, probs, mask(True, True, True), X_NAMES, 0.0, tied=tied)
    assert [s[:3] for s in pred.spans] == [(0, 3, "X")]
    assert pred.token_labels == ["B-X", "I-X", "I-X"]
    assert pred.token_scores == pytest.approx([1.0, 0.0, 1.0])


def test_bioes_end_of_entity_reopened_by_a_tied_token():
    # E-X on the last token, then a tied token: E-X opens to I-X, one entity.
    probs = np.array(
        [
            #  O     B-X   I-X   E-X   S-X
            [0.00, 0.90, 0.00, 0.00, 0.10],
            [0.00, 0.00, 0.30, 0.70, 0.00],
            [1.00, 0.00, 0.00, 0.00, 0.00],
        ],
        dtype=np.float32,
    )
    tied = mask(False, False, True)
    pred, _ = predict_entities(BIOES, probs, mask(True, True, True), X_NAMES, 0.0, tied=tied)
    assert [s[:3] for s in pred.spans] == [(0, 3, "X")]
    assert pred.token_labels == ["B-X", "I-X", "I-X"]


def test_bioes_tied_token_then_a_gap_then_a_continuation_is_one_entity():
    # "Sarah's  friend" with the model's I-X on "friend": the tied "'s" must not
    # close the entity (no E-X on it), so the piece-less gap joins the two.
    probs = np.array(
        [
            #  O     B-X   I-X   E-X   S-X
            [0.00, 0.90, 0.00, 0.00, 0.10],
            [1.00, 0.00, 0.00, 0.00, 0.00],
            [0.00, 0.00, 0.00, 0.00, 0.00],
            [0.00, 0.00, 0.30, 0.70, 0.00],
        ],
        dtype=np.float32,
    )
    has_piece = mask(True, True, False, True)
    tied = mask(False, True, False, False)
    pred, _ = predict_entities(BIOES, probs, has_piece, X_NAMES, 0.0, tied=tied)
    assert [s[:3] for s in pred.spans] == [(0, 4, "X")]
    assert pred.token_labels == ["B-X", "I-X", "I-X", "I-X"]
    assert pred.token_scores[2] is None


# --- repairs, directly: gaps, tied tokens, words and glued punctuation ---------------


def test_fill_gaps_into_an_inside_label_with_id_zero():
    # IOB1-style order: I-LOC is label 0, and the gap still joins B-LOC to it.
    scheme = scheme_of(["I-LOC", "B-LOC", "O"])
    out = _fill_gaps(scheme, np.array([1, 1, 0]), mask(True, False, True))
    assert out.tolist() == [1, 0, 0]


def test_fill_gaps_without_an_inside_label_leaves_the_gap_outside():
    # B-X, gap, E-X but no I-X to fill with: the gap is O, so two entities.
    scheme = scheme_of(["O", "B-X", "E-X"])
    out = _fill_gaps(scheme, np.array([1, 1, 2]), mask(True, False, True))
    assert out.tolist() == [1, 0, 2]
    probs = rows((1, 0.75), None, (2, 0.75), n_labels=3)
    pred, _ = predict_entities(scheme, probs, mask(True, False, True), X_NAMES, 0.0)
    assert [s[:3] for s in pred.spans] == [(0, 1, "X"), (2, 3, "X")]
    assert pred.token_labels == ["B-X", "O", "B-X"]


def test_tie_continues_an_entity_whose_label_id_is_zero():
    # B-LOC is label 0 in IOB
    out = _tie_to_previous(IOB, np.array([B_LOC, OUT]), mask(False, True))
    assert out.tolist() == [B_LOC, I_LOC]


def test_tie_after_a_single_that_cannot_be_opened():
    # No B-X to open S-X into: the head stays S-X, the tied token is I-X.
    scheme = scheme_of(["O", "I-X", "E-X", "S-X"])
    labels = np.array([3, 0])
    out = _tie_to_previous(scheme, labels, mask(False, True))
    assert out.tolist() == [3, 1]
    assert labels.tolist() == [3, 0]


def test_tie_on_the_first_token_or_a_doc_start_is_ignored():
    # Token 0 has nothing before it (the last token is not "before" it).
    out = _tie_to_previous(IOB, np.array([OUT, OUT, B_LOC]), mask(True, False, False))
    assert out.tolist() == [OUT, OUT, B_LOC]
    # Nothing carries over from one doc into the next.
    doc_starts = mask(True, True)
    out = _tie_to_previous(IOB, np.array([B_LOC, OUT]), mask(False, True), doc_starts)
    assert out.tolist() == [B_LOC, OUT]
    # A skipped tie does not stop the ones after it.
    out = _tie_to_previous(IOB, np.array([OUT, B_LOC, OUT]), mask(True, False, True))
    assert out.tolist() == [OUT, B_LOC, I_LOC]


def test_predict_entities_passes_doc_starts_to_ties():
    # Two docs, [LOC] and [O O]; the second doc's first token is marked tied.
    probs = rows((B_LOC, 0.75), (OUT, 0.75), (OUT, 0.75))
    tied = mask(False, True, False)
    doc_starts = mask(True, True, False)
    pred, _ = predict_entities(
        IOB, probs, mask(True, True, True), NAMES, 0.0, tied=tied, segment_starts=doc_starts
    )
    assert pred.spans == [(0, 1, "LOC", 0.8125)]
    assert pred.token_labels == ["B-LOC", "O", "O"]
    assert pred.token_scores == [0.8125, 0.75, 0.75]


IOB_NO_O = scheme_of(["B-PER", "I-PER"])


def words(
    scheme: LabelScheme, labels: List[int], glued: List[int], starts: Optional[List[int]] = None
) -> List[int]:
    """`_apply_words` over label ids, with the tokens at `glued` marked as glued
    punctuation; every token is its own word unless `starts` says otherwise."""
    n = len(labels)
    glued_mask = np.zeros(n, dtype=bool)
    glued_mask[glued] = True
    word_starts = np.arange(n) if starts is None else np.array(starts)
    label_ids = np.array(labels)
    out = _apply_words(scheme, label_ids, word_starts, glued_mask)
    assert label_ids.tolist() == labels  # input untouched
    return out.tolist()


@pytest.mark.parametrize(
    ("labels", "glued", "expected"),
    [
        # continues an entity of its type: I- after B- (label 0) or after I-
        ([B_LOC, I_LOC], [1], [B_LOC, I_LOC]),
        ([B_PER, I_PER, I_PER], [2], [B_PER, I_PER, I_PER]),
        # would begin an entity: O
        ([B_LOC, B_LOC], [1], [B_LOC, OUT]),
        ([OUT, B_PER], [1], [OUT, OUT]),
        ([OUT, I_LOC], [1], [OUT, OUT]),
        ([B_LOC, I_PER], [1], [B_LOC, OUT]),
        # on the first token nothing comes before it (not the last token)
        ([I_LOC, OUT, B_LOC], [0], [OUT, OUT, B_LOC]),
        ([I_PER, B_PER], [0], [OUT, B_PER]),
        # outside tokens stay as they are, -1 (read as outside) too
        ([OUT, OUT], [1], [OUT, OUT]),
        ([OUT, -1], [1], [OUT, -1]),
        # tokens that are not glued are never changed
        ([OUT, I_LOC, B_LOC], [], [OUT, I_LOC, B_LOC]),
    ],
)
def test_glued_punctuation_iob(labels: List[int], glued: List[int], expected: List[int]) -> None:
    assert words(IOB, labels, glued) == expected


@pytest.mark.parametrize(
    ("labels", "glued", "expected"),
    [
        # E- or I- after B- / I- of the same type continues
        ([1, 3], [1], [1, 3]),
        ([1, 2, 3], [2], [1, 2, 3]),
        ([1, 2], [1], [1, 2]),
        # after an E- or S- the entity is closed: O
        ([1, 3, 2], [2], [1, 3, 0]),
        ([4, 3], [1], [4, 0]),
        # B- and S- begin an entity: O
        ([1, 4], [1], [1, 0]),
        ([1, 1], [1], [1, 0]),
        ([0, 3], [1], [0, 0]),
        ([3], [0], [0]),
    ],
)
def test_glued_punctuation_bioes(labels: List[int], glued: List[int], expected: List[int]) -> None:
    # BIOES: 0 O, 1 B-X, 2 I-X, 3 E-X, 4 S-X
    assert words(BIOES, labels, glued) == expected


def test_glued_punctuation_without_an_o_label():
    # -1 is "outside" here: a glued B-PER becomes -1, an I-PER after B-PER stays.
    assert words(IOB_NO_O, [0, 0], [1]) == [0, -1]
    assert words(IOB_NO_O, [0, 1], [1]) == [0, 1]
    assert words(IOB_NO_O, [-1, -1], [1]) == [-1, -1]


def test_words_take_their_first_tokens_entity():
    # "e-mail": three tokens, one word; the first token's entity runs over it.
    assert words(IOB, [B_LOC, OUT, B_PER, OUT], [], starts=[0, 0, 0, 3]) == [
        B_LOC,
        I_LOC,
        I_LOC,
        OUT,
    ]
    # ... and O over it when the first token is O
    assert words(IOB, [OUT, B_PER], [], starts=[0, 0]) == [OUT, OUT]
    # BIOES: a single on the first token opens to B-X so the word can follow
    assert words(BIOES, [4, 0], [], starts=[0, 0]) == [1, 2]


def test_glued_token_inside_a_word_is_left_to_the_word():
    # A type with no I- label: the word cannot carry B-LOC on, and the glued
    # token inside it keeps its own label instead of being made O.
    scheme = scheme_of(["O", "B-LOC"])
    assert words(scheme, [1, 1], [1], starts=[0, 0]) == [1, 1]
    # glued tokens that start a word are still checked
    assert words(scheme, [1, 1], [1], starts=[0, 1]) == [1, 0]


def test_predict_entities_glued_punctuation_and_words():
    # "Paris-based, Lyon.": "Paris" "-" "based" are one word; "," and "." are glued.
    # The model begins a PER on ","; "." continues Lyon's LOC.
    probs = rows(
        (B_LOC, 0.75), (OUT, 0.75), (OUT, 0.75), (B_PER, 0.75), (B_LOC, 0.75), (I_LOC, 0.75)
    )
    word_starts = np.array([0, 0, 0, 3, 4, 5])
    glued = mask(False, False, False, True, False, True)
    pred, _ = predict_entities(
        IOB, probs, mask(*[True] * 6), NAMES, 0.0, word_starts=word_starts, glued_punct=glued
    )
    assert [s[:3] for s in pred.spans] == [(0, 3, "LOC"), (4, 6, "LOC")]
    assert pred.token_labels == ["B-LOC", "I-LOC", "I-LOC", "O", "B-LOC", "I-LOC"]
    # word tokens score P(LOC) from their own rows: 0.75 of O leaves 0.0625 + 0.0625
    assert pred.spans[0][3] == pytest.approx((0.8125 + 0.125 + 0.125) / 3)
    assert pred.token_scores == pytest.approx([0.8125, 0.125, 0.125, 0.0625, 0.8125, 0.8125])


def test_score_of_an_entity_with_label_id_zero():
    # Labels 0 and 1 are of different types: label 0's score is P(LOC), not P(PER).
    scheme = scheme_of(["B-LOC", "B-PER", "O", "I-LOC", "I-PER"])
    probs = np.array([[0.6, 0.1, 0.1, 0.1, 0.1], [0.1, 0.1, 0.8, 0.0, 0.0]], dtype=np.float32)
    pred, _ = predict_entities(scheme, probs, mask(True, True), NAMES, 0.0)
    assert pred.spans == [(0, 1, "LOC", pytest.approx(0.7))]
    assert pred.token_scores == pytest.approx([0.7, 0.8])


# --- predict_tags, edge cases --------------------------------------------------------


def test_predict_tags_one_token():
    scheme = scheme_of(["NOUN", "VERB"])
    probs = rows((1, 0.75), n_labels=2)
    assert predict_tags(scheme, probs, mask(True), {"VERB": "V"}) == (["V"], [0.75])


def test_predict_tags_raw_name_when_not_in_tag_names():
    scheme = scheme_of(["NOUN", "VERB", "PUNCT"])
    probs = rows((0, 0.5), (2, 0.5), n_labels=3)
    tags, scores = predict_tags(scheme, probs, mask(True, True), {"NOUN": "N"})
    assert tags == ["N", "PUNCT"]
    assert scores == [0.5, 0.5]
