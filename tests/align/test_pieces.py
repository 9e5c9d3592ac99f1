"""Offset trimming, piece→token alignment and probability aggregation (pure, no model)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacy_hf_tagger.align.pieces import (
    TokenAlignment,
    aggregate_token_probs,
    align_pieces,
    attach_word_markers,
    codepoints,
    piece_token_ranges,
    trim_offsets,
    whitespace_mask,
)


def spans_of(words_with_idx):
    """(starts, ends) arrays from [(text, idx), ...]."""
    starts = np.array([idx for _, idx in words_with_idx], dtype=np.int64)
    ends = np.array([idx + len(text) for text, idx in words_with_idx], dtype=np.int64)
    return starts, ends


def align_text(text, offsets, tokens):
    """offsets → trimmed → ranges, with tokens given as [(text, idx)]."""
    trimmed = trim_offsets(np.array(offsets, dtype=np.int64), whitespace_mask(text))
    starts, ends = spans_of(tokens)
    return trimmed, piece_token_ranges(trimmed, starts, ends)


# --- whitespace_mask -----------------------------------------------------------------


def test_whitespace_mask_unicode_spaces():
    text = "a\u00a0b\u3000c\td\ne f\u2028g\x85h\u202fi\u1680j\u200bk"
    expected = [c.isspace() for c in text]
    assert whitespace_mask(text).tolist() == expected
    assert whitespace_mask(text).tolist() == [
        False, True, False, True, False, True, False, True, False, True, False,
        True, False, True, False, True, False, True, False, False, False,
    ]  # fmt: skip
    # zero-width space is not whitespace for str.isspace
    assert whitespace_mask("\u200b").tolist() == [False]


def test_whitespace_mask_astral_characters_count_as_one():
    # one entry per Python character, also outside the BMP
    assert whitespace_mask("😀 𝔘\u3000").tolist() == [False, True, False, True]


def test_whitespace_mask_empty():
    mask = whitespace_mask("")
    assert mask.dtype == bool
    assert mask.shape == (0,)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=40))
def test_whitespace_mask_matches_isspace(text):
    assert whitespace_mask(text).tolist() == [c.isspace() for c in text]


# --- trim_offsets --------------------------------------------------------------------


def test_trim_roberta_leading_space():
    text = "I am Paris"
    assert text[4:10] == " Paris"
    trimmed = trim_offsets(np.array([[0, 1], [1, 4], [4, 10]]), whitespace_mask(text))
    assert trimmed.tolist() == [[0, 1], [2, 4], [5, 10]]


def test_trim_sentencepiece_space_only_piece_is_empty():
    # "▁" alone at (1, 2) over " ", then "Paris" at (2, 7)
    text = "a Paris"
    trimmed = trim_offsets(np.array([[0, 1], [1, 2], [2, 7]]), whitespace_mask(text))
    assert trimmed.tolist() == [[0, 1], [1, 1], [2, 7]]


def test_trim_special_tokens_stay_empty():
    text = "Hi there"
    offsets = np.array([[0, 0], [0, 2], [2, 8], [0, 0]])
    assert trim_offsets(offsets, whitespace_mask(text)).tolist() == [
        [0, 0],
        [0, 2],
        [3, 8],
        [0, 0],
    ]


def test_trim_trailing_and_multiple_spaces():
    text = "ab \u00a0\u3000cd\t\n"
    offsets = np.array([[0, 3], [2, 7], [1, 9], [7, 9], [2, 5], [4, 4]])
    assert trim_offsets(offsets, whitespace_mask(text)).tolist() == [
        [0, 2],  # trailing space removed
        [5, 7],  # leading unicode spaces removed
        [1, 7],  # both ends
        [7, 7],  # only whitespace -> empty at its start
        [2, 2],  # only whitespace
        [4, 4],  # empty stays empty
    ]


def test_trim_clips_offsets_beyond_text():
    text = "ab"
    assert trim_offsets(np.array([[1, 5], [3, 4]]), whitespace_mask(text)).tolist() == [
        [1, 2],
        [2, 2],
    ]


def test_trim_empty_inputs():
    assert trim_offsets(np.zeros((0, 2), dtype=np.int64), whitespace_mask("abc")).shape == (0, 2)
    assert trim_offsets(np.array([[0, 0]]), whitespace_mask("")).tolist() == [[0, 0]]
    # a whitespace-only text
    assert trim_offsets(np.array([[0, 3]]), whitespace_mask("   ")).tolist() == [[0, 0]]


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_trim_properties(data):
    text = data.draw(st.text(alphabet=st.sampled_from("ab \u00a0\u3000\t\n"), max_size=15))
    n = len(text)
    pairs = data.draw(st.lists(st.tuples(st.integers(0, n + 1), st.integers(0, n + 1)), max_size=8))
    offsets = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    trimmed = trim_offsets(offsets, whitespace_mask(text))
    assert trimmed.shape == offsets.shape
    for (start, end), (new_start, new_end) in zip(pairs, trimmed.tolist()):
        inner = text[start:end]
        if inner.strip() == "" or end <= start:
            assert new_start == new_end == min(start, n)
        else:
            # exactly the stripped substring
            assert text[new_start:new_end] == inner.strip()
            assert start <= new_start < new_end <= end


# --- piece_token_ranges --------------------------------------------------------------


def test_ranges_one_piece_over_two_tokens():
    # spaCy: "I", "ca", "n't", "go"; byte-BPE: "I", "Ġcan't", "Ġgo"
    text = "I can't go"
    tokens = [("I", 0), ("ca", 2), ("n't", 4), ("go", 8)]
    _, ranges = align_text(text, [[0, 0], [0, 1], [1, 7], [7, 10], [0, 0]], tokens)
    assert ranges.tolist() == [[-1, -2], [0, 0], [1, 2], [3, 3], [-1, -2]]


def test_ranges_token_with_three_pieces():
    text = "in Washington ."
    tokens = [("in", 0), ("Washington", 3), (".", 14)]
    offsets = [[0, 2], [2, 7], [7, 10], [10, 13], [13, 15]]  # "in", "ĠWash", "ing", "ton", "Ġ."
    trimmed, ranges = align_text(text, offsets, tokens)
    assert trimmed.tolist() == [[0, 2], [3, 7], [7, 10], [10, 13], [14, 15]]
    assert ranges.tolist() == [[0, 0], [1, 1], [1, 1], [1, 1], [2, 2]]


def test_ranges_whitespace_tokens_get_no_piece():
    # spaCy makes whitespace tokens of extra spaces: "New", " ", "York", "\u00a0", "now"
    text = "New  York\u00a0\u00a0now"
    tokens = [("New", 0), (" ", 4), ("York", 5), ("\u00a0\u00a0", 9), ("now", 11)]
    offsets = [[0, 3], [3, 4], [4, 5], [4, 9], [9, 11], [11, 14]]
    trimmed, ranges = align_text(text, offsets, tokens)
    assert trimmed.tolist() == [[0, 3], [3, 3], [4, 4], [5, 9], [9, 9], [11, 14]]
    assert ranges.tolist() == [[0, 0], [-1, -2], [-1, -2], [2, 2], [-1, -2], [4, 4]]
    alignment = align_pieces(ranges, len(tokens))
    assert alignment.tokens_with_pieces().tolist() == [True, False, True, False, True]


def test_ranges_piece_partially_overlapping_tokens():
    # a piece "c-d" glued across the boundary of tokens "abc" and "-de"
    starts, ends = np.array([0, 3]), np.array([3, 6])
    ranges = piece_token_ranges(np.array([[0, 2], [2, 4], [4, 6], [6, 6]]), starts, ends)
    assert ranges.tolist() == [[0, 0], [0, 1], [1, 1], [-1, -2]]


def test_ranges_with_spacy_style_tokens():
    # spacy.blank("en")("I can't  go") -> "I", "ca", "n't", " ", "go" (spaCy 3.8); building
    # a blank pipeline costs seconds, so the token spans are written out here.
    text = "I can't  go"
    spans = np.array([[0, 1], [2, 4], [4, 7], [8, 9], [9, 11]])
    offsets = np.array([[0, 1], [1, 7], [7, 8], [8, 11]])  # "I", "Ġcan't", "Ġ", "Ġgo"
    trimmed = trim_offsets(offsets, whitespace_mask(text))
    ranges = piece_token_ranges(trimmed, spans[:, 0], spans[:, 1])
    assert ranges.tolist() == [[0, 0], [1, 2], [-1, -2], [4, 4]]


# --- attach_word_markers -------------------------------------------------------------


def _markers(text, offsets, tokens, limits=None):
    trimmed, ranges = align_text(text, offsets, tokens)
    offsets = np.array(offsets, dtype=np.int64)
    if limits is None:
        limits = np.full(len(offsets), len(offsets))
    return attach_word_markers(ranges, offsets[:, 1], trimmed[:, 0], np.array(limits))[0]


def test_bare_sentencepiece_marker_begins_the_next_word():
    # XLM-R, tokenizer.json as saved: "▁to", "▁" (the space), "東", "京", "▁in"
    text = "to 東京 in"
    tokens = [("to", 0), ("東京", 3), ("in", 6)]
    offsets = [[0, 2], [2, 3], [3, 4], [4, 5], [5, 8]]
    assert _markers(text, offsets, tokens).tolist() == [[0, 0], [1, 1], [1, 1], [1, 1], [2, 2]]
    alignment = align_pieces(_markers(text, offsets, tokens), len(tokens))
    probs = np.eye(5, dtype=np.float32)
    # "first": the marker is the word's first piece, as in word-id training.
    assert aggregate_token_probs(probs, alignment, "first").argmax(1).tolist() == [0, 1, 4]


def test_zero_width_byte_bpe_marker_begins_the_next_word():
    # RoBERTa (offsets trimmed by its post-processor): "Ġto", "Ġ" (9, 9), bytes of 東
    text = "moved to 東京"
    tokens = [("moved", 0), ("to", 6), ("東京", 9)]
    offsets = [[0, 5], [6, 8], [9, 9], [9, 10], [9, 10], [10, 11]]
    assert _markers(text, offsets, tokens).tolist() == [
        [0, 0], [1, 1], [2, 2], [2, 2], [2, 2], [2, 2]
    ]  # fmt: skip


def test_marker_of_an_extra_space_covers_nothing():
    # "Oslo  in": "Ġ" (5, 5) stands for the extra space; "Ġin" starts at 6
    text = "Oslo  in"
    tokens = [("Oslo", 0), (" ", 5), ("in", 6)]
    offsets = [[0, 4], [5, 5], [6, 8]]
    assert _markers(text, offsets, tokens).tolist() == [[0, 0], [-1, -2], [2, 2]]


def test_marker_stays_in_its_own_text():
    # Two texts joined in one batch, "ab" and "c": the first ends with a zero-width
    # marker that the second text's piece follows directly.
    text = "abc"
    tokens = [("ab", 0), ("c", 2)]
    offsets = [[0, 2], [2, 2], [2, 3]]
    assert _markers(text, offsets, tokens, limits=[2, 2, 3]).tolist() == [
        [0, 0], [-1, -2], [1, 1]
    ]  # fmt: skip
    # Were they one text, the marker would begin "c".
    assert _markers(text, offsets, tokens).tolist() == [[0, 0], [1, 1], [1, 1]]


def test_trailing_marker_and_no_markers():
    text = "ab "
    tokens = [("ab", 0)]
    assert _markers(text, [[0, 2], [2, 3]], tokens).tolist() == [[0, 0], [-1, -2]]
    assert _markers(text, [[0, 1], [1, 2]], tokens).tolist() == [[0, 0], [0, 0]]
    empty = np.zeros((0, 2), dtype=np.int64)
    assert attach_word_markers(empty, empty[:, 1], empty[:, 0], empty[:, 0])[0].shape == (0, 2)


# --- align_pieces --------------------------------------------------------------------


def test_align_pieces_pairs_and_continues():
    # piece 0: token 0; piece 1: tokens 1-2; piece 2: token 2; piece 3: none; piece 4: token 4
    ranges = np.array([[0, 0], [1, 2], [2, 2], [-1, -2], [4, 4]])
    alignment = align_pieces(ranges, 5)
    assert isinstance(alignment, TokenAlignment)
    assert alignment.n_tokens == 5
    # sorted by token, then the piece running in (it holds the token's first
    # character) before the pieces starting in it, then piece
    assert alignment.token.tolist() == [0, 1, 2, 2, 4]
    assert alignment.piece.tolist() == [0, 1, 1, 2, 4]
    assert alignment.continues.tolist() == [False, False, True, False, False]
    assert alignment.tokens_with_pieces().tolist() == [True, True, True, False, True]


def test_align_pieces_piece_over_three_tokens():
    alignment = align_pieces(np.array([[0, 2], [2, 2]]), 3)
    assert alignment.token.tolist() == [0, 1, 2, 2]
    assert alignment.piece.tolist() == [0, 0, 0, 1]
    assert alignment.continues.tolist() == [False, True, True, False]


def test_align_pieces_empty():
    alignment = align_pieces(np.array([[-1, -2], [-1, -2]]), 3)
    assert alignment.piece.tolist() == []
    assert alignment.token.tolist() == []
    assert alignment.continues.tolist() == []
    assert alignment.tokens_with_pieces().tolist() == [False, False, False]
    assert align_pieces(np.zeros((0, 2), dtype=np.int64), 0).tokens_with_pieces().tolist() == []


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_alignment_recovers_words(data):
    """Words separated by (unicode) whitespace, split into pieces whose offsets may
    include the preceding whitespace: every piece lands on its own word."""
    words = data.draw(
        st.lists(st.text(alphabet=st.sampled_from("abcé😀-'"), min_size=1, max_size=6), max_size=8)
    )
    seps = data.draw(
        st.lists(
            st.text(alphabet=st.sampled_from(" \u00a0\u3000\t\n"), min_size=1, max_size=3),
            min_size=len(words),
            max_size=len(words),
        )
    )
    text = ""
    token_bounds = []
    offsets = [[0, 0]]  # a special token
    owner = [-1]
    for w, (word, sep) in enumerate(zip(words, seps)):
        sep_start = len(text)
        text += sep
        start = len(text)
        text += word
        token_bounds.append((start, len(text)))
        cuts = sorted(set(data.draw(st.lists(st.integers(1, len(word)), max_size=3))))
        cuts = [c for c in cuts if c < len(word)]
        bounds = [0, *cuts, len(word)]
        with_space = data.draw(st.booleans())
        for k in range(len(bounds) - 1):
            piece_start = start + bounds[k]
            if k == 0 and with_space:
                piece_start = sep_start
            offsets.append([piece_start, start + bounds[k + 1]])
            owner.append(w)
    offsets.append([0, 0])
    owner.append(-1)
    starts = np.array([s for s, _ in token_bounds], dtype=np.int64)
    ends = np.array([e for _, e in token_bounds], dtype=np.int64)
    trimmed = trim_offsets(np.array(offsets, dtype=np.int64), whitespace_mask(text))
    ranges = piece_token_ranges(trimmed, starts, ends)
    expected = [[w, w] if w >= 0 else [-1, -2] for w in owner]
    assert ranges.tolist() == expected
    alignment = align_pieces(ranges, len(words))
    assert alignment.tokens_with_pieces().all()
    assert not alignment.continues.any()


# --- aggregate_token_probs -----------------------------------------------------------

# labels: O, B-X, I-X
CONTINUATION = np.array([0, 2, 2])


def _two_token_case():
    """tokens "ab"(0) "cd"(1), "zz"(2); piece 0 covers "abc" (tokens 0-1), piece 1 "d";
    token 2 has no piece."""
    ranges = np.array([[0, 1], [1, 1]])
    probs = np.array([[0.125, 0.625, 0.25], [0.25, 0.25, 0.5]], dtype=np.float32)
    return probs, align_pieces(ranges, 3)


def test_aggregate_first():
    probs, alignment = _two_token_case()
    out = aggregate_token_probs(probs, alignment, "first", CONTINUATION)
    assert out.dtype == np.float32
    # token 1: the piece running in holds its first character and wins over the
    # one starting later in it, its begin-mass moved to the continuation
    assert out.tolist() == [[0.125, 0.625, 0.25], [0.125, 0.0, 0.875], [0.0, 0.0, 0.0]]


def test_aggregate_average_moves_begin_to_inside():
    probs, alignment = _two_token_case()
    out = aggregate_token_probs(probs, alignment, "average", CONTINUATION)
    # piece 0 as seen by token 1: [0.125, 0, 0.875]; mean with [0.25, 0.25, 0.5]
    np.testing.assert_allclose(
        out, [[0.125, 0.625, 0.25], [0.1875, 0.125, 0.6875], [0, 0, 0]], rtol=1e-6
    )


def test_aggregate_average_without_continuation():
    probs, alignment = _two_token_case()
    out = aggregate_token_probs(probs, alignment, "average")
    np.testing.assert_allclose(
        out, [[0.125, 0.625, 0.25], [0.1875, 0.4375, 0.375], [0, 0, 0]], rtol=1e-6
    )


def test_aggregate_max():
    probs, alignment = _two_token_case()
    out = aggregate_token_probs(probs, alignment, "max", CONTINUATION)
    # moved piece 0 (max 0.875) beats piece 1 (max 0.5) for token 1
    assert out.tolist() == [[0.125, 0.625, 0.25], [0.125, 0.0, 0.875], [0.0, 0.0, 0.0]]
    out = aggregate_token_probs(probs, alignment, "max")
    # without the move piece 0 (max 0.625) still beats piece 1 (max 0.5)
    assert out.tolist() == [[0.125, 0.625, 0.25], [0.125, 0.625, 0.25], [0.0, 0.0, 0.0]]


def test_aggregate_first_uses_continuing_piece_when_no_piece_starts_in_token():
    # "can't" as one piece over "ca" and "n't"
    alignment = align_pieces(np.array([[0, 0], [1, 2], [3, 3]]), 4)
    probs = np.array([[1.0, 0.0, 0.0], [0.125, 0.75, 0.125], [0.5, 0.25, 0.25]], dtype=np.float32)
    for method in ("first", "average", "max"):
        out = aggregate_token_probs(probs, alignment, method, CONTINUATION)
        assert out.tolist() == [
            [1.0, 0.0, 0.0],
            [0.125, 0.75, 0.125],
            [0.125, 0.0, 0.875],  # B-X mass moved to I-X
            [0.5, 0.25, 0.25],
        ], method
    out = aggregate_token_probs(probs, alignment, "first")
    assert out[2].tolist() == [0.125, 0.75, 0.125]


def test_aggregate_three_pieces_one_token():
    alignment = align_pieces(np.array([[-1, -2], [0, 0], [0, 0], [0, 0], [1, 1]]), 2)
    probs = np.array(
        [
            [0.0, 0.0, 1.0],  # special token, aligned to nothing
            [0.25, 0.5, 0.25],
            [0.125, 0.125, 0.75],
            [0.5, 0.5, 0.0],
            [1.0, 0.0, 0.0],
        ],
        dtype=np.float32,
    )
    first = aggregate_token_probs(probs, alignment, "first", CONTINUATION)
    assert first.tolist() == [[0.25, 0.5, 0.25], [1.0, 0.0, 0.0]]
    average = aggregate_token_probs(probs, alignment, "average", CONTINUATION)
    np.testing.assert_allclose(average, [[0.875 / 3, 1.125 / 3, 1.0 / 3], [1, 0, 0]], rtol=1e-6)
    best = aggregate_token_probs(probs, alignment, "max", CONTINUATION)
    assert best.tolist() == [[0.125, 0.125, 0.75], [1.0, 0.0, 0.0]]


def test_aggregate_max_tie_keeps_first_piece():
    alignment = align_pieces(np.array([[0, 0], [0, 0]]), 1)
    probs = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5]], dtype=np.float32)
    assert aggregate_token_probs(probs, alignment, "max").tolist() == [[0.5, 0.5, 0.0]]


def test_aggregate_does_not_modify_input():
    probs, alignment = _two_token_case()
    before = probs.copy()
    for method in ("first", "average", "max"):
        aggregate_token_probs(probs, alignment, method, CONTINUATION)
    assert np.array_equal(probs, before)


def test_aggregate_no_pieces_gives_zero_rows():
    alignment = align_pieces(np.array([[-1, -2]]), 3)
    out = aggregate_token_probs(np.ones((1, 4), dtype=np.float32), alignment, "average")
    assert out.shape == (3, 4)
    assert not out.any()


def test_aggregate_unknown_method_raises():
    probs, alignment = _two_token_case()
    with pytest.raises(ValueError, match="aggregation must be one of"):
        aggregate_token_probs(probs, alignment, "mean")


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_aggregate_properties(data):
    n_tokens = data.draw(st.integers(0, 6))
    n_pieces = data.draw(st.integers(0, 8))
    ranges = []
    for _ in range(n_pieces):
        if n_tokens == 0 or (data.draw(st.booleans()) and data.draw(st.booleans())):
            ranges.append([-1, -2])
        else:
            first = data.draw(st.integers(0, n_tokens - 1))
            last = data.draw(st.integers(first, min(first + 2, n_tokens - 1)))
            ranges.append([first, last])
    alignment = align_pieces(np.array(ranges, dtype=np.int64).reshape(-1, 2), n_tokens)
    raw = np.array(
        data.draw(
            st.lists(
                st.lists(st.integers(1, 8), min_size=3, max_size=3),
                min_size=n_pieces,
                max_size=n_pieces,
            )
        ),
        dtype=np.float32,
    ).reshape(n_pieces, 3)
    probs = raw / raw.sum(axis=1, keepdims=True) if n_pieces else raw
    has_piece = alignment.tokens_with_pieces()
    for method in ("first", "average", "max"):
        for continuation in (None, CONTINUATION):
            out = aggregate_token_probs(probs, alignment, method, continuation)
            assert out.shape == (n_tokens, 3)
            sums = out.sum(axis=1)
            np.testing.assert_allclose(sums[has_piece], 1.0, rtol=1e-5)
            assert not out[~has_piece].any()
            if continuation is not None:
                # a token that only has running-in pieces can never begin an entity
                for t in range(n_tokens):
                    starting = alignment.token[~alignment.continues]
                    if has_piece[t] and t not in starting:
                        assert out[t, 1] == 0.0


@pytest.mark.parametrize(
    ("text", "offsets", "expected"),
    [
        # Only trailing whitespace, no piece with a leading space: the trimming
        # must not take the shortcut for pieces that start and end on text.
        ("Paris \nis", [(0, 7), (7, 9)], [(0, 5), (7, 9)]),
        ("a\u3000", [(0, 2)], [(0, 1)]),
        # Only leading whitespace.
        ("  ab", [(0, 4)], [(2, 4)]),
        # Whitespace only: covers nothing, at its start.
        ("a \t b", [(0, 1), (1, 4), (4, 5)], [(0, 1), (1, 1), (4, 5)]),
    ],
)
def test_trim_offsets_fixed_examples(text, offsets, expected):
    trimmed = trim_offsets(np.array(offsets, dtype=np.int64), whitespace_mask(text))
    assert [tuple(x) for x in trimmed.tolist()] == expected


# --- mutation-testing gaps: exact cases the examples above did not reach -------------


def test_lone_surrogates_are_one_character_each():
    # Python strings may hold them (decoded with surrogateescape, say); spaCy
    # counts them as characters, so the mask must too.
    text = "a\ud800 \udfffb"
    assert codepoints(text).tolist() == [0x61, 0xD800, 0x20, 0xDFFF, 0x62]
    assert whitespace_mask(text).tolist() == [False, False, True, False, False]


def test_trim_offsets_of_unsigned_arrays():
    # A tokenizer's own arrays may be unsigned; a special token's (0, 0) must
    # not wrap around when the end is stepped back.
    text = "Hi there"
    offsets = np.array([[0, 0], [0, 2], [2, 8], [0, 0]], dtype=np.uint32)
    trimmed = trim_offsets(offsets, whitespace_mask(text))
    assert trimmed.tolist() == [[0, 0], [0, 2], [3, 8], [0, 0]]
    assert trimmed.dtype == np.int64


def test_ranges_empty_piece_inside_a_token_covers_nothing():
    starts, ends = spans_of([("Paris", 0), ("is", 6)])
    ranges = piece_token_ranges(np.array([[2, 2], [0, 5], [6, 6]]), starts, ends)
    assert ranges.tolist() == [[-1, -2], [0, 0], [-1, -2]]


def test_marker_takes_the_first_token_of_a_piece_over_several():
    # "Ġ" then one piece over two spaCy tokens ("中" and "b").
    text = "a 中b"
    tokens = [("a", 0), ("中", 2), ("b", 3)]
    offsets = [[0, 1], [1, 2], [2, 4]]
    assert _markers(text, offsets, tokens).tolist() == [[0, 0], [1, 1], [1, 2]]


def test_aggregate_flat_empty_output_gives_label_less_rows():
    # A model output for no pieces at all may come flat: zero labels per row.
    alignment = align_pieces(np.zeros((0, 2), dtype=np.int64), 3)
    out = aggregate_token_probs(np.zeros(0, dtype=np.float32), alignment, "first")
    assert out.shape == (3, 0)
