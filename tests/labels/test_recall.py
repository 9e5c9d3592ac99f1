"""The recall knobs, pure: `o_bias` (O made less probable before decoding) and
per-type thresholds, on hand-computed probabilities (no model).

Why: a user redacting personal data turns `o_bias` up to miss fewer names and
reads the scores to decide what to keep; the bias must change which labels
are decoded and nothing else (the scores stay the model's), and a threshold
table must act on its own type only.
"""

from __future__ import annotations

import math
from typing import Set

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacy_hf_tagger.errors import ConfigError
from spacy_hf_tagger.labels.decoding import predict_entities
from spacy_hf_tagger.labels.recall import bias_outside, check_o_bias_fits, resolve_threshold
from spacy_hf_tagger.labels.schemes import read_label_scheme
from spacy_hf_tagger.labels.viterbi import viterbi_label_ids


def scheme_of(labels):
    return read_label_scheme(dict(enumerate(labels)))


# "O" not at id 0 on purpose: the bias must find the O column, not assume it.
IOB = scheme_of(["B-LOC", "I-LOC", "O", "B-PER", "I-PER"])
B_LOC, I_LOC, OUT, B_PER, I_PER = range(5)
BIOES = scheme_of(["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"])
NAMES = {"LOC": "LOC", "PER": "PER"}
E = math.exp(-1.0)


def mask(*flags):
    return np.array(flags, dtype=bool)


# --- bias_outside -----------------------------------------------------------------------


def test_bias_outside_hand_computed():
    probs = np.array([[0.1, 0.0, 0.5, 0.3, 0.1], [0.0] * 5], dtype=np.float32)
    # o_bias 1: P(O) * e^-1, the row renormalised; the all-zero row (no piece) stays.
    total = 0.5 + 0.5 * E
    got = bias_outside(probs, OUT, 1.0)
    expected = [[0.1 / total, 0.0, 0.5 * E / total, 0.3 / total, 0.1 / total], [0.0] * 5]
    np.testing.assert_allclose(got, expected, rtol=1e-7)
    assert got.dtype == np.float64
    # o_bias -1: the same as P(O) * e^+1, computed without overflow.
    total = 0.5 + 0.5 * E
    expected = [[0.1 * E / total, 0.0, 0.5 / total, 0.3 * E / total, 0.1 * E / total], [0.0] * 5]
    np.testing.assert_allclose(bias_outside(probs, OUT, -1.0), expected, rtol=1e-7)
    # the input is never written to
    assert probs[0].tolist() == pytest.approx([0.1, 0.0, 0.5, 0.3, 0.1])


def test_bias_outside_zero_is_the_array_itself_and_extremes_stay_finite():
    probs = np.array([[0.2, 0.1, 0.4, 0.2, 0.1]], dtype=np.float32)
    assert bias_outside(probs, OUT, 0.0) is probs
    assert bias_outside(probs, OUT, 0) is probs
    high = bias_outside(probs, OUT, 1e6)
    np.testing.assert_allclose(high, [[1 / 3, 1 / 6, 0.0, 1 / 3, 1 / 6]], rtol=1e-6)
    low = bias_outside(probs, OUT, -1e6)
    np.testing.assert_array_equal(low, [[0.0, 0.0, 1.0, 0.0, 0.0]])


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.lists(st.floats(0.0, 1.0, width=32), min_size=5, max_size=5), max_size=6),
    st.floats(-20.0, 20.0),
)
def test_bias_outside_keeps_the_order_of_the_other_labels(rows, o_bias):
    probs = np.array(rows, dtype=np.float32).reshape(len(rows), 5)
    biased = bias_outside(probs, OUT, o_bias)
    assert np.isfinite(biased).all()
    others = [B_LOC, I_LOC, B_PER, I_PER]
    for before, after in zip(probs, biased):
        if before.sum() > 0 and (o_bias >= 0 or before[others].min() > 1e-30):
            if o_bias != 0:  # 0 hands the rows back as they are
                assert after.sum() == pytest.approx(1.0)
            # strictly ordered pairs stay strictly ordered: no ties made
            for i in others:
                for j in others:
                    if before[i] > before[j]:
                        assert after[i] > after[j]


# --- predict_entities with o_bias -----------------------------------------------------------

# Token 0: O is its best label (0.5) but PER is likely (B-PER 0.3); token 1 is
# surely O.
LIKELY_PER = np.array(
    [
        # B-LOC I-LOC  O     B-PER I-PER
        [0.05, 0.05, 0.50, 0.30, 0.10],
        [0.02, 0.02, 0.90, 0.02, 0.04],
    ],
    dtype=np.float32,
)


@pytest.mark.parametrize(
    ("decoding", "turns_at"),
    [
        # B-PER 0.3 against O 0.5: O's log probability must fall by log(5/3).
        ("greedy", math.log(0.5 / 0.3)),
        ("viterbi-iob2", math.log(0.5 / 0.3)),
        # Read as conlleval reads IOB, a PER beginning after O (or at the start)
        # is B-PER or I-PER: 0.4 against 0.5.
        ("viterbi", math.log(0.5 / 0.4)),
    ],
)
def test_o_bias_turns_a_likely_entity_on_and_leaves_the_scores(decoding, turns_at):
    has_piece = mask(True, True)
    plain, _ = predict_entities(IOB, LIKELY_PER, has_piece, NAMES, 0.0, decoding=decoding)
    assert plain.spans == [] and plain.token_labels == ["O", "O"]
    assert plain.token_scores == pytest.approx([0.50, 0.90])
    short, _ = predict_entities(
        IOB, LIKELY_PER, has_piece, NAMES, 0.0, decoding=decoding, o_bias=turns_at - 0.01
    )
    assert short.spans == []
    for o_bias in (turns_at + 0.01, 1.0):
        biased, below = predict_entities(
            IOB, LIKELY_PER, has_piece, NAMES, 0.0, decoding=decoding, o_bias=o_bias
        )
        assert below == 0
        assert biased.token_labels == ["B-PER", "O"]
        # Scores are the model's probabilities, not the biased ones: PER = 0.3 +
        # 0.1 (biased at 1.0 it would read 0.4 / 0.684 = 0.585); the O token
        # keeps P(O) = 0.9.
        assert biased.spans == [(0, 1, "PER", pytest.approx(0.40))]
        assert biased.token_scores == pytest.approx([0.40, 0.90])


def test_o_bias_zero_is_bit_identical():
    rng = np.random.default_rng(7)
    probs = rng.dirichlet(np.ones(5), size=40).astype(np.float32)
    has_piece = rng.random(40) < 0.9
    probs[~has_piece] = 0.0
    for decoding in ("greedy", "viterbi"):
        a, _ = predict_entities(IOB, probs, has_piece, NAMES, 0.0, decoding=decoding)
        b, _ = predict_entities(IOB, probs, has_piece, NAMES, 0.0, decoding=decoding, o_bias=0.0)
        assert a.spans == b.spans and a.token_labels == b.token_labels
        assert a.token_scores == b.token_scores  # exactly, not approximately


def test_negative_o_bias_removes_an_unsure_entity():
    probs = np.array([[0.05, 0.05, 0.30, 0.45, 0.15]], dtype=np.float32)
    kept, _ = predict_entities(IOB, probs, mask(True), NAMES, 0.0)
    assert [s[:3] for s in kept.spans] == [(0, 1, "PER")]
    # 0.30 * e^1 = 0.82 > 0.45: O wins; the O token scores the model's P(O).
    gone, _ = predict_entities(IOB, probs, mask(True), NAMES, 0.0, o_bias=-1.0)
    assert gone.spans == [] and gone.token_scores == pytest.approx([0.30])


def test_o_bias_without_an_outside_label_is_an_error():
    no_outside = scheme_of(["B-PER", "I-PER"])
    probs = np.array([[0.6, 0.4]], dtype=np.float32)
    with pytest.raises(ValueError, match=r"o_bias=1\.0 needs an O label"):
        predict_entities(no_outside, probs, mask(True), {"PER": "PER"}, 0.0, o_bias=1.0)
    pred, _ = predict_entities(no_outside, probs, mask(True), {"PER": "PER"}, 0.0)
    assert [s[:3] for s in pred.spans] == [(0, 1, "PER")]


# --- what grows with o_bias -------------------------------------------------------------------


def entity_tokens(pred) -> Set[int]:
    return {k for start, end, _, _ in pred.spans for k in range(start, end)}


@st.composite
def token_rows(draw, n_labels: int):
    """Probabilities with ties (small integer weights), piece-less tokens, tied
    tokens, words, glued and edge punctuation and segment starts: every repair
    decoding makes after the argmax."""
    n = draw(st.integers(1, 10))
    weights = draw(
        st.lists(
            st.lists(st.integers(1, 9), min_size=n_labels, max_size=n_labels),
            min_size=n,
            max_size=n,
        )
    )
    probs = np.array(weights, dtype=np.float32)
    probs /= probs.sum(axis=1, keepdims=True)

    def flags() -> np.ndarray:
        return np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)

    has_piece = flags()
    probs[~has_piece] = 0.0
    tied = flags() & has_piece
    tied[0] = False
    joins = flags()
    starts = np.zeros(n, dtype=np.int64)
    for k in range(n):
        starts[k] = starts[k - 1] if (k and joins[k]) else k
    glued = flags()
    glued[0] = False
    return dict(
        token_probs=probs,
        has_piece=has_piece,
        tied=tied,
        word_starts=starts,
        glued_punct=glued,
        edge_punct=flags(),
        segment_starts=flags(),
    )


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from([IOB, BIOES]),
    st.data(),
    st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0, 4.0, 8.0]), min_size=2, max_size=2),
)
def test_greedy_entity_tokens_only_grow_with_o_bias(scheme, data, biases):
    """With greedy decoding and no threshold, a larger o_bias never takes a token
    out of an entity: it only turns O argmaxes into the row's best other label
    (whose type the bias cannot change), and every repair after the argmax
    keeps a token in an entity once its neighbours are. (Types may be ignored:
    an ignored type's tokens are never anyone else's.)"""
    inputs = data.draw(token_rows(len(scheme.labels)))
    names = {t: (None if t == "LOC" and data.draw(st.booleans()) else t) for t in NAMES}
    low, high = sorted(biases)
    at_low, _ = predict_entities(scheme, type_names=names, threshold=0.0, o_bias=low, **inputs)
    at_high, _ = predict_entities(scheme, type_names=names, threshold=0.0, o_bias=high, **inputs)
    assert entity_tokens(at_low) <= entity_tokens(at_high)
    # A token keeps its entity's type once it has one.
    label_low = dict((k, lab) for s, e, lab, _ in at_low.spans for k in range(s, e))
    label_high = dict((k, lab) for s, e, lab, _ in at_high.spans for k in range(s, e))
    assert all(label_high[k] == lab for k, lab in label_low.items())


def test_with_a_threshold_a_bias_can_lose_an_entity():
    """Why the property above has no threshold: the bias can grow a confident
    span by an unsure token, and the span's mean score then falls below it."""
    probs = np.array(
        [
            [0.025, 0.025, 0.025, 0.900, 0.025],  # B-PER, PER 0.925
            [0.025, 0.025, 0.500, 0.050, 0.400],  # O; I-PER once O is biased; PER 0.45
        ],
        dtype=np.float32,
    )
    plain, below = predict_entities(IOB, probs, mask(True, True), NAMES, 0.8)
    assert plain.spans == [(0, 1, "PER", pytest.approx(0.925))] and below == 0
    biased, below = predict_entities(IOB, probs, mask(True, True), NAMES, 0.8, o_bias=1.0)
    assert biased.spans == [] and below == 1  # (0.925 + 0.45) / 2 = 0.6875 < 0.8


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from([(IOB, "conlleval"), (IOB, "strict"), (BIOES, "conlleval")]),
    st.data(),
    st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0, 4.0]), min_size=2, max_size=2),
)
def test_viterbi_labels_fewer_tokens_o_as_o_bias_grows(reading, data, biases):
    """Viterbi's invariant is a count: a path with k O tokens gains k * o_bias in
    log score, so the best path at a larger bias has no more O tokens than the
    best at a smaller one (not always a superset of its entity tokens: the
    best sequence can move)."""
    scheme, iob = reading
    inputs = data.draw(token_rows(len(scheme.labels)))
    probs, has_piece = inputs["token_probs"], inputs["has_piece"]
    starts = inputs["segment_starts"]
    outside = scheme.outside_id
    low, high = sorted(biases)
    n_outside = [
        int(
            (
                viterbi_label_ids(
                    scheme, bias_outside(probs, outside, b), has_piece, starts, iob=iob
                )[has_piece]
                == outside
            ).sum()
        )
        for b in (low, high)
    ]
    assert n_outside[1] <= n_outside[0]


def test_viterbi_entity_can_move_as_o_bias_grows():
    """A BIOES case (found by search) where the best sequence gives up an entity
    token for two others: the count of O tokens falls, the set is no superset."""
    x_only = scheme_of(["O", "B-X", "I-X", "E-X", "S-X"])
    probs = np.array(
        [
            # O     B-X    I-X    E-X    S-X
            [0.441, 0.168, 0.203, 0.025, 0.163],
            [0.324, 0.041, 0.609, 0.013, 0.013],
            [0.116, 0.319, 0.013, 0.264, 0.288],
            [0.358, 0.211, 0.048, 0.375, 0.008],
        ],
        dtype=np.float32,
    )
    has_piece = mask(True, True, True, True)

    def labels(o_bias):
        ids = viterbi_label_ids(x_only, bias_outside(probs, 0, o_bias), has_piece)
        return [x_only.labels[i] for i in ids.tolist()]

    assert labels(0.5) == ["O", "O", "B-X", "E-X"]
    assert labels(1.0) == ["B-X", "I-X", "E-X", "O"]


# --- per-type thresholds ----------------------------------------------------------------------

TWO_TYPES = np.array(
    [
        # B-LOC I-LOC  O     B-PER I-PER
        [0.05, 0.05, 0.10, 0.60, 0.20],  # PER 0.8
        [0.02, 0.02, 0.90, 0.02, 0.04],  # O
        [0.60, 0.10, 0.10, 0.10, 0.10],  # LOC 0.7
    ],
    dtype=np.float32,
)


def test_a_threshold_per_type_drops_only_that_type():
    has_piece = mask(True, True, True)
    both, below = predict_entities(IOB, TWO_TYPES, has_piece, NAMES, {})
    assert [s[:3] for s in both.spans] == [(0, 1, "PER"), (2, 3, "LOC")] and below == 0
    pred, below = predict_entities(IOB, TWO_TYPES, has_piece, NAMES, {"PER": 0.85, "LOC": 0.7})
    assert pred.spans == [(2, 3, "LOC", pytest.approx(0.7))] and below == 1
    assert pred.token_labels == ["O", "O", "B-LOC"]
    # A type the (resolved) table lacks is kept whatever its score.
    pred, below = predict_entities(IOB, TWO_TYPES, has_piece, NAMES, {"LOC": 0.75})
    assert [s[:3] for s in pred.spans] == [(0, 1, "PER")] and below == 1
    # The table is keyed by the model's type, whatever label_map renames it to.
    renamed = {"PER": "PERSON", "LOC": "GPE"}
    pred, below = predict_entities(IOB, TWO_TYPES, has_piece, renamed, {"PER": 0.9, "LOC": 0.0})
    assert [s[:3] for s in pred.spans] == [(2, 3, "GPE")] and below == 1


def test_resolve_threshold_by_model_or_mapped_name_and_the_rest():
    types = ("LOC", "MISC", "ORG", "PER")
    assert resolve_threshold(0.5, types, {}) == 0.5
    assert resolve_threshold({"PER": 0.5}, types, {}) == {
        "LOC": 0.0,
        "MISC": 0.0,
        "ORG": 0.0,
        "PER": 0.5,
    }
    assert resolve_threshold({"PERSON": 0.5, "*": 0.25, "ORG": 0.0}, types, {"PER": "PERSON"}) == {
        "LOC": 0.25,
        "MISC": 0.25,
        "ORG": 0.0,
        "PER": 0.5,
    }
    # Two model types mapped to one name share its entry.
    assert resolve_threshold({"PLACE": 0.5}, types, {"LOC": "PLACE", "ORG": "PLACE"}) == {
        "LOC": 0.5,
        "MISC": 0.0,
        "ORG": 0.5,
        "PER": 0.0,
    }
    assert resolve_threshold({}, types, {}) == dict.fromkeys(types, 0.0)


def test_resolve_threshold_names_unknown_labels_and_the_models():
    types = ("LOC", "PER")
    with pytest.raises(ConfigError) as info:
        resolve_threshold({"PERSON": 0.5, "GPE": 0.1, "*": 0.2}, types, {"LOC": "PLACE"})
    assert str(info.value) == (
        "threshold names labels the model does not have: ['GPE', 'PERSON']. The "
        "model's entity types are ['LOC', 'PER'] (after label_map: ['PLACE']). Name "
        'those, or use "*" for every type the table does not name.'
    )
    with pytest.raises(ConfigError, match=r"none: it is a tagging model"):
        resolve_threshold({"NOUN": 0.5}, (), {})
    assert resolve_threshold({"*": 0.5}, (), {}) == {}
    with pytest.raises(ConfigError) as info:
        resolve_threshold({"PER": 0.5, "PERSON": 0.6}, types, {"PER": "PERSON"})
    assert "names a type twice" in str(info.value)
    assert "{'PER': ['PER', 'PERSON']}" in str(info.value)


def test_o_bias_needs_an_outside_label():
    check_o_bias_fits(0.0, scheme_of(["NOUN", "VERB"]))
    check_o_bias_fits(2.0, IOB)
    with pytest.raises(ConfigError) as info:
        check_o_bias_fits(1.0, scheme_of(["NOUN", "VERB"]))
    assert str(info.value) == (
        "o_bias=1.0 lowers the probability of the O label, but this is a tagging "
        "model: its labels are tags (['NOUN', 'VERB']), with no O. Leave o_bias at 0 "
        "for a tagging model."
    )
    with pytest.raises(ConfigError, match=r"labels have no O \(\['B-PER', 'I-PER'\]\)"):
        check_o_bias_fits(-0.5, scheme_of(["B-PER", "I-PER"]))
