"""Gold labels → subword training targets (pure, no model)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from spacy_hf_tagger.align.pieces import align_pieces
from spacy_hf_tagger.labels.schemes import read_label_scheme
from spacy_hf_tagger.labels.targets import (
    IGNORE_INDEX,
    biluo_to_scheme_ids,
    piece_targets,
    tags_to_ids,
)

X = IGNORE_INDEX


def scheme_of(labels):
    return read_label_scheme(dict(enumerate(labels)))


IOB = scheme_of(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
BIOES = scheme_of(["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"])


# --- biluo_to_scheme_ids -------------------------------------------------------------


def test_ignore_index_value():
    assert IGNORE_INDEX == -100


def test_biluo_to_iob():
    tags = ["U-PER", "O", "B-LOC", "I-LOC", "L-LOC", "B-PER", "L-PER"]
    ids, unknown = biluo_to_scheme_ids(IOB, tags)
    assert ids.dtype == np.int64
    assert ids.tolist() == [1, 0, 3, 4, 4, 1, 2]
    assert unknown == []


def test_biluo_to_bioes():
    tags = ["U-PER", "O", "B-LOC", "I-LOC", "L-LOC", "B-PER", "L-PER", "U-LOC"]
    ids, unknown = biluo_to_scheme_ids(BIOES, tags)
    assert ids.tolist() == [4, 0, 5, 6, 7, 1, 3, 8]
    assert unknown == []


def test_biluo_to_bilou_model():
    scheme = scheme_of(["O", "U-PER", "B-PER", "I-PER", "L-PER"])
    ids, unknown = biluo_to_scheme_ids(scheme, ["U-PER", "B-PER", "I-PER", "L-PER", "O"])
    assert ids.tolist() == [1, 2, 3, 4, 0]
    assert unknown == []


def test_biluo_to_bioes_without_single_and_end_labels_falls_back():
    scheme = scheme_of(["O", "B-PER", "I-PER", "S-LOC", "B-LOC", "I-LOC", "E-LOC"])
    ids, unknown = biluo_to_scheme_ids(scheme, ["U-PER", "B-PER", "L-PER", "U-LOC", "L-LOC"])
    # PER has no S-/E- label: U -> B, L -> I
    assert ids.tolist() == [1, 1, 2, 3, 6]
    assert unknown == []


def test_biluo_to_io():
    scheme = scheme_of(["O", "I-PER", "I-LOC"])
    ids, unknown = biluo_to_scheme_ids(scheme, ["U-PER", "B-LOC", "I-LOC", "L-LOC", "O"])
    assert ids.tolist() == [1, 2, 2, 2, 0]
    assert unknown == []


def test_biluo_missing_tags_are_ignored():
    ids, unknown = biluo_to_scheme_ids(IOB, ["-", None, "", "O", "U-PER"])
    assert ids.tolist() == [X, X, X, 0, 1]
    assert unknown == []


def test_biluo_unknown_types_reported_and_ignored():
    ids, unknown = biluo_to_scheme_ids(IOB, ["U-MISC", "O", "B-ORG", "L-ORG", "U-PER"])
    assert ids.tolist() == [X, 0, X, X, 1]
    assert unknown == ["MISC", "ORG", "ORG"]


def test_biluo_hyphenated_type():
    scheme = scheme_of(["O", "B-person-actor", "I-person-actor"])
    ids, unknown = biluo_to_scheme_ids(
        scheme, ["B-person-actor", "L-person-actor", "U-person-actor"]
    )
    assert ids.tolist() == [1, 2, 1]
    assert unknown == []


def test_biluo_scheme_without_outside_label():
    scheme = scheme_of(["B-PER", "I-PER"])
    ids, unknown = biluo_to_scheme_ids(scheme, ["O", "U-PER"])
    assert ids.tolist() == [X, 0]
    assert unknown == []


def test_biluo_empty():
    ids, unknown = biluo_to_scheme_ids(IOB, [])
    assert ids.shape == (0,)
    assert unknown == []


def test_biluo_to_iob1_without_begin_label():
    # IOB1 checkpoint: B- exists only for types seen directly after the same type
    scheme = scheme_of(["O", "I-PER", "I-LOC", "B-LOC"])
    ids, unknown = biluo_to_scheme_ids(scheme, ["U-PER", "B-PER", "L-PER", "O"])
    assert ids.tolist() == [1, 1, 1, 0]
    assert unknown == []


# --- tags_to_ids ---------------------------------------------------------------------


def test_tags_to_ids():
    scheme = scheme_of(["NOUN", "VERB", "PUNCT", "-LRB-"])
    ids, unknown = tags_to_ids(scheme, ["VERB", "NOUN", None, "", "FOO", "-LRB-", "PUNCT"])
    assert ids.dtype == np.int64  # class indices for the loss
    assert ids.tolist() == [1, 0, X, X, X, 3, 2]
    assert unknown == ["FOO"]


# --- piece_targets -------------------------------------------------------------------

# tokens: 0 "Washington" (B-LOC, three pieces), 1 " " (O, whitespace: no piece),
# 2 "ca" (B-PER), 3 "n't" (I-PER; one piece covers tokens 2 and 3), 4 "." (O);
# pieces: 0 [CLS], 1-3 Wash/ing/ton, 4 "can't", 5 ".", 6 [SEP]
RANGES = np.array([[-1, -2], [0, 0], [0, 0], [0, 0], [2, 3], [4, 4], [-1, -2]])
TOKEN_IDS = np.array([3, 0, 1, 2, 0])
CONTINUATION = IOB.begin_to_inside()


def test_piece_targets_first_piece_only():
    alignment = align_pieces(RANGES, 5)
    targets = piece_targets(TOKEN_IDS, alignment, len(RANGES))
    assert targets.dtype == np.int64
    assert targets.tolist() == [X, 3, X, X, 1, 0, X]


def test_piece_targets_label_all_pieces_with_continuation():
    alignment = align_pieces(RANGES, 5)
    targets = piece_targets(
        TOKEN_IDS, alignment, len(RANGES), label_all_pieces=True, continuation=CONTINUATION
    )
    # the B-LOC token's later pieces get I-LOC; "can't" keeps B-PER of its first token
    assert targets.tolist() == [X, 3, 4, 4, 1, 0, X]


def test_piece_targets_label_all_pieces_without_continuation():
    alignment = align_pieces(RANGES, 5)
    targets = piece_targets(TOKEN_IDS, alignment, len(RANGES), label_all_pieces=True)
    assert targets.tolist() == [X, 3, 3, 3, 1, 0, X]


def test_piece_targets_missing_token_labels_stay_ignored():
    alignment = align_pieces(RANGES, 5)
    token_ids = np.array([X, 0, X, 2, 0])
    for all_pieces in (False, True):
        targets = piece_targets(
            token_ids,
            alignment,
            len(RANGES),
            label_all_pieces=all_pieces,
            continuation=CONTINUATION,
        )
        assert targets.tolist() == [X, X, X, X, X, 0, X]


def test_piece_targets_token_read_through_the_piece_running_in():
    # piece 0 covers token 0 and the start of token 1; piece 1 starts in token 1:
    # inference reads token 1 through piece 0, so piece 1 is not its head
    alignment = align_pieces(np.array([[0, 1], [1, 1]]), 2)
    targets = piece_targets(np.array([1, 2]), alignment, 2)
    assert targets.tolist() == [1, X]
    targets = piece_targets(
        np.array([1, 2]), alignment, 2, label_all_pieces=True, continuation=CONTINUATION
    )
    assert targets.tolist() == [1, 2]


# "(China)" in three tokens "(", "China", ")" and three pieces "▁(Ch", "ina)", ...:
# piece 0 heads "(" and "China", piece 1 heads ")" and is China's later piece.
BRACKETED = np.array([[0, 1], [1, 2], [3, 3]])


def test_piece_heading_a_bracket_and_a_word_takes_the_word_label():
    alignment = align_pieces(BRACKETED, 4)
    outside = IOB.outside_id
    b_loc = IOB.label_index[("B", "LOC")]
    labels = np.array([outside, b_loc, outside, outside])
    targets = piece_targets(labels, alignment, 3, outside=outside)
    assert targets.tolist() == [b_loc, outside, outside]
    # without knowing which label is O, the first token's label (a tagger's way)
    assert piece_targets(labels, alignment, 3).tolist() == [outside, outside, outside]
    # a missing label among the tokens a piece heads leaves the piece without loss
    missing = np.array([X, b_loc, outside, outside])
    assert piece_targets(missing, alignment, 3, outside=outside).tolist() == [X, outside, outside]
    # with label_all_pieces, a head's label wins over a continuation label
    targets = piece_targets(
        labels, alignment, 3, outside=outside, label_all_pieces=True, continuation=CONTINUATION
    )
    assert targets.tolist() == [b_loc, outside, outside]


def test_bare_marker_and_the_piece_after_it_share_the_label():
    # pieces: "▁" (a bare marker attached to token 0), "東京" (token 0), "▁x" (token 1)
    ranges = np.array([[0, 0], [0, 0], [1, 1]])
    markers = np.array([True, False, False])
    alignment = align_pieces(ranges, 2, markers)
    b_loc = IOB.label_index[("B", "LOC")]
    targets = piece_targets(np.array([b_loc, 0]), alignment, 3, outside=IOB.outside_id)
    assert targets.tolist() == [b_loc, b_loc, 0]


def test_piece_targets_no_pieces():
    alignment = align_pieces(np.array([[-1, -2], [-1, -2]]), 3)
    assert piece_targets(np.array([0, 1, 2]), alignment, 2).tolist() == [X, X]
    assert piece_targets(
        np.zeros(0, dtype=np.int64), align_pieces(np.zeros((0, 2)), 0), 0
    ).shape == (0,)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_piece_targets_properties(data):
    n_tokens = data.draw(st.integers(1, 6))
    ranges = []
    for _ in range(data.draw(st.integers(0, 10))):
        if data.draw(st.integers(0, 4)) == 0:
            ranges.append([-1, -2])
        else:
            first = data.draw(st.integers(0, n_tokens - 1))
            last = data.draw(st.integers(first, min(first + 1, n_tokens - 1)))
            ranges.append([first, last])
    # pieces come in text order, as from a tokenizer
    ranges.sort(key=lambda r: (r[0] < 0, r[0], r[1]))
    ranges_arr = np.array(ranges, dtype=np.int64).reshape(-1, 2)
    alignment = align_pieces(ranges_arr, n_tokens)
    token_ids = np.array(
        data.draw(
            st.lists(st.sampled_from([X, 0, 1, 2, 3, 4]), min_size=n_tokens, max_size=n_tokens)
        )
    )
    outside = data.draw(st.sampled_from([None, 0]))
    plain = piece_targets(token_ids, alignment, len(ranges), outside=outside)
    every = piece_targets(
        token_ids,
        alignment,
        len(ranges),
        label_all_pieces=True,
        continuation=CONTINUATION,
        outside=outside,
    )

    def head(t: int):
        """The piece holding token t's first character: one running in from an
        earlier token, else the first piece that starts in t."""
        running_in = [p for p, (f, last) in enumerate(ranges) if f < t <= last]
        starting = [p for p, (f, _) in enumerate(ranges) if f == t]
        return (running_in or starting or [None])[0]

    for k, (first, last) in enumerate(ranges):
        headed = [t for t in range(n_tokens) if head(t) == k]
        if last < first:
            assert plain[k] == X
            assert every[k] == X
            continue
        if headed:
            labels = [token_ids[t] for t in headed]
            if X in labels:
                expected = X
            else:
                expected = next((x for x in labels if x != outside), labels[0])
            assert plain[k] == expected
            assert every[k] == expected
        else:
            own = token_ids[first]
            assert plain[k] == X
            assert every[k] == (X if own == X else CONTINUATION[own])
