"""Several docs processed as one batch give exactly what each doc gives alone.

Alignment (`batch.encode_batch`) and decoding (`predict_entities` with
`doc_starts`, then `split_by_doc`) run over all tokens of a batch at once;
nothing may leak from one doc into the next.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np
import pytest
import spacy
from hypothesis import given, settings
from hypothesis import strategies as st

from spacy_hf_tagger.align.batch import BatchPrediction, encode_batch
from spacy_hf_tagger.labels.decoding import predict_entities, split_by_doc
from spacy_hf_tagger.labels.schemes import read_label_scheme

NLP = spacy.blank("en")
IOB = read_label_scheme(dict(enumerate(["O", "B-LOC", "I-LOC", "B-PER", "I-PER"])))
BIOES = read_label_scheme(
    dict(enumerate(["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]))
)
NO_OUTSIDE = read_label_scheme(dict(enumerate(["I-PER", "I-LOC"])))


def pair_tokenize(texts: List[str]) -> List[Tuple[np.ndarray, np.ndarray]]:
    """A stand-in subword tokenizer: every two characters are a piece, and a
    piece keeps the space before it (as byte-level BPE does)."""
    out = []
    for text in texts:
        offsets = [(max(i - 1, 0), min(i + 2, len(text))) for i in range(0, len(text), 2)]
        ids = np.arange(len(offsets), dtype=np.int64)
        out.append((ids, np.array(offsets, dtype=np.int64).reshape(-1, 2)))
    return out


words = st.sampled_from(["Paris", "a", "can't", "U.S.-led", "  ", "東京", "👍🏽", "\n", "x-y", "."])
texts = st.lists(words, max_size=6).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(st.lists(texts, max_size=5))
def test_batch_alignment_equals_per_doc_alignment(batch_texts):
    docs = [NLP.make_doc(t) for t in batch_texts]
    batch = encode_batch(docs, pair_tokenize)
    assert batch.text == "".join(batch_texts)
    a = batch.alignment
    for i, doc in enumerate(docs):
        alone = encode_batch([doc], pair_tokenize).alignment
        p_lo, t_lo = batch.piece_bounds[i], batch.token_bounds[i]
        t_hi = batch.token_bounds[i + 1]
        in_doc = (a.token >= t_lo) & (a.token < t_hi)
        assert np.array_equal(a.token[in_doc] - t_lo, alone.token)
        assert np.array_equal(a.piece[in_doc] - p_lo, alone.piece)
        assert np.array_equal(a.continues[in_doc], alone.continues)
        # Pieces of doc i meet only tokens of doc i.
        p_hi = batch.piece_bounds[i + 1]
        assert ((a.piece[in_doc] >= p_lo) & (a.piece[in_doc] < p_hi)).all()
    assert batch.doc_starts.sum() == sum(1 for d in docs if len(d))


@st.composite
def doc_predictions(draw, n_labels: int):
    n = draw(st.integers(0, 7))
    probs = np.array(
        draw(
            st.lists(
                st.lists(st.floats(0.01, 1.0), min_size=n_labels, max_size=n_labels),
                min_size=n,
                max_size=n,
            )
        ),
        dtype=np.float32,
    ).reshape(n, n_labels)
    probs /= np.maximum(probs.sum(axis=1, keepdims=True), 1e-9)
    has_piece = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    probs[~has_piece] = 0.0
    tied = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    tied &= has_piece
    tied[:1] = False
    # Words: each token either starts a word or joins the previous one.
    joins = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    starts = np.zeros(n, dtype=np.int64)
    for k in range(n):
        starts[k] = starts[k - 1] if (k and joins[k]) else k
    glued = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    glued[:1] = False
    return probs, has_piece, tied, starts, glued


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_batch_decoding_equals_per_doc_decoding(data):
    scheme = data.draw(st.sampled_from([IOB, BIOES, NO_OUTSIDE]))
    names = {t: t for t in scheme.entity_types}
    docs = data.draw(st.lists(doc_predictions(len(scheme.labels)), max_size=5))
    threshold = data.draw(st.sampled_from([0.0, 0.5]))
    expected, expected_below = [], 0
    for probs, has_piece, tied, starts, glued in docs:
        prediction, below = predict_entities(
            scheme,
            probs,
            has_piece,
            names,
            threshold,
            tied=tied,
            word_starts=starts,
            glued_punct=glued,
        )
        expected.append(prediction)
        expected_below += below
    sizes = [len(d[0]) for d in docs]
    bounds = np.r_[0, np.cumsum(sizes)].astype(np.int64)
    doc_starts = np.zeros(int(bounds[-1]), dtype=bool)
    doc_starts[bounds[:-1][np.array(sizes, dtype=np.int64) > 0]] = True

    def joined(k, empty_shape=(0,), dtype=bool):
        parts = [d[k] for d in docs]
        return np.concatenate(parts) if parts else np.zeros(empty_shape, dtype=dtype)

    probs = joined(0, (0, len(scheme.labels)), np.float32)
    word_starts = (
        np.concatenate([d[3] + b for d, b in zip(docs, bounds[:-1])])
        if docs
        else np.zeros(0, dtype=np.int64)
    )
    together, below = predict_entities(
        scheme,
        probs,
        joined(1),
        names,
        threshold,
        tied=joined(2),
        word_starts=word_starts,
        glued_punct=joined(4),
        segment_starts=doc_starts,
    )
    assert below == expected_below
    got = list(split_by_doc(together, bounds))
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.token_labels == e.token_labels
        assert [s[:3] for s in g.spans] == [s[:3] for s in e.spans]
        np.testing.assert_allclose([s[3] for s in g.spans], [s[3] for s in e.spans], rtol=1e-12)
        assert [x is None for x in g.token_scores] == [x is None for x in e.token_scores]
        np.testing.assert_allclose(
            [x for x in g.token_scores if x is not None],
            [x for x in e.token_scores if x is not None],
            rtol=1e-12,
        )


def test_gap_at_the_end_of_a_doc_is_not_filled_from_the_next_doc():
    """Doc A ends "B-LOC, <no piece>"; doc B starts with I-LOC. Alone, A has one
    LOC token and B one LOC token; batched, the gap must not join them."""
    probs = np.zeros((3, 5), dtype=np.float32)
    probs[0, 1] = 1.0  # B-LOC
    probs[2, 2] = 1.0  # I-LOC
    has_piece = np.array([True, False, True])
    doc_starts = np.array([True, False, True])
    names = {"LOC": "LOC", "PER": "PER"}
    together, _ = predict_entities(
        IOB, probs, has_piece, names, 0.0, tied=np.zeros(3, dtype=bool), segment_starts=doc_starts
    )
    a, b = split_by_doc(together, np.array([0, 2, 3]))
    assert a.spans == [(0, 1, "LOC", 1.0)] and a.token_labels == ["B-LOC", "O"]
    assert b.spans == [(0, 1, "LOC", 1.0)] and b.token_labels == ["B-LOC"]
    assert a.token_scores == [1.0, None]


def test_batch_prediction_indexes_like_a_list_of_docs():
    docs = [NLP.make_doc(t) for t in ["Paris is big", "", "a b"]]
    encoded = encode_batch(docs, pair_tokenize)
    n = encoded.n_tokens
    probs = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    prediction = BatchPrediction(probs, np.ones(n, bool), np.zeros(n, bool), encoded)
    assert len(prediction) == 3
    assert prediction[0][0].tolist() == probs[:3].tolist()
    assert prediction[1][0].shape == (0, 2)
    assert prediction[-1][0].tolist() == probs[3:].tolist()
    assert [p[0].shape[0] for p in prediction[1:]] == [0, 2]
    assert [p[0].shape[0] for p in prediction] == [3, 0, 2]


def word_tokenize(texts: List[str]) -> List[Tuple[np.ndarray, np.ndarray]]:
    """A stand-in tokenizer: each run of non-space characters is one piece,
    its id 100 + its length."""
    import re

    out = []
    for text in texts:
        spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        ids = np.array([100 + e - s for s, e in spans], dtype=np.int64)
        out.append((ids, np.array(spans, dtype=np.int64).reshape(-1, 2)))
    return out


def recording(calls: List[List[str]]):
    def tokenize(texts: List[str]) -> List[Tuple[np.ndarray, np.ndarray]]:
        calls.append(list(texts))
        return word_tokenize(texts)

    return tokenize


MIXED = ["Hi there.\nBob ran", "", "  ", "Sue"]


def test_encode_batch_exact_arrays_for_lines_empty_and_blank_docs():
    calls: List[List[str]] = []
    batch = encode_batch([NLP.make_doc(t) for t in MIXED], recording(calls))
    # Each line is tokenized on its own, from its first to its last word; a
    # doc of whitespace has nothing to tokenize.
    assert calls == [["Hi there.", "Bob ran", "Sue"]]
    assert batch.text == "Hi there.\nBob ran  Sue"
    # Tokens: Hi there . \n Bob ran | (none) | "  " | Sue
    assert batch.token_bounds.tolist() == [0, 6, 6, 7, 8]
    assert batch.token_starts.tolist() == [0, 3, 8, 9, 10, 14, 17, 19]
    assert batch.token_ends.tolist() == [2, 8, 9, 10, 13, 17, 19, 22]
    assert batch.token_idx.tolist() == [0, 3, 8, 9, 10, 14, 0, 0]
    assert batch.spaces.tolist() == [True, False, False, False, True, False, False, False]
    assert batch.doc_starts.tolist() == [True, False, False, False, False, False, True, True]
    # "Bob" starts a line.
    assert batch.segment_starts.tolist() == [True, False, False, False, True, False, True, True]
    assert batch.is_space.tolist() == [c.isspace() for c in batch.text]
    assert [p.tolist() for p in batch.piece_ids] == [[102, 106, 103, 103], [], [], [103]]
    assert batch.piece_bounds.tolist() == [0, 4, 4, 4, 5]
    assert batch.n_pieces == 5 and batch.n_tokens == 8
    # (doc, first piece, end piece) within the doc: one per line with pieces.
    assert batch.segments == [(0, 0, 2), (0, 2, 4), (3, 0, 1)]
    a = batch.alignment
    # "there." is one piece over two tokens: it continues into ".".
    assert a.token.tolist() == [0, 1, 2, 4, 5, 7]
    assert a.piece.tolist() == [0, 1, 1, 2, 3, 4]
    assert a.continues.tolist() == [False, False, True, False, False, False]


def test_encode_batch_whole_docs_when_not_following_sentences():
    calls: List[List[str]] = []
    batch = encode_batch([NLP.make_doc(t) for t in MIXED], recording(calls), "document")
    assert calls == [["Hi there.\nBob ran", "  ", "Sue"]]
    assert batch.segments == [(0, 0, 4), (3, 0, 1)]
    assert batch.piece_bounds.tolist() == [0, 4, 4, 4, 5]
    # Line starts still bound entities, whatever the model saw.
    assert batch.segment_starts.tolist() == [True, False, False, False, True, False, True, True]
    assert batch.alignment.piece.tolist() == [0, 1, 1, 2, 3, 4]


def test_encode_batch_follows_sentences_an_earlier_component_set():
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    docs = [nlp("Ann sat. Bo ran."), nlp("No split here")]
    calls: List[List[str]] = []
    batch = encode_batch(docs, recording(calls))
    assert calls == [["Ann sat.", "Bo ran.", "No split here"]]
    # Tokens: Ann sat . Bo ran . | No split here
    assert batch.segment_starts.tolist() == [i in (0, 3, 6) for i in range(9)]
    assert batch.segments == [(0, 0, 2), (0, 2, 4), (1, 0, 3)]
    assert [p.tolist() for p in batch.piece_ids] == [[103, 104, 102, 104], [102, 105, 104]]


def test_pieces_reaching_past_their_segment_are_clipped_to_it():
    """A tokenizer whose offsets run past the end of the text it was given
    (as some report a trailing space) must not reach the next segment's tokens."""

    def overreaching(texts: List[str]) -> List[Tuple[np.ndarray, np.ndarray]]:
        out = word_tokenize(texts)
        for _, offsets in out:
            offsets[-1, 1] += 3  # the last piece claims 3 characters past the text
        return out

    batch = encode_batch([NLP.make_doc("Al ran\nBo sat")], overreaching)
    # Tokens: Al ran \n Bo sat; "ran" (piece 1) would reach "\nBo" unclipped.
    assert batch.alignment.token.tolist() == [0, 1, 3, 4]
    assert batch.alignment.piece.tolist() == [0, 1, 2, 3]


def scripted(pieces: dict):
    """A stand-in tokenizer that gives each text the (start, end) pieces listed
    for it, ids 1, 2, ... as uint32 (as a tokenizer's own arrays may be)."""

    def tokenize(texts: List[str]) -> List[Tuple[np.ndarray, np.ndarray]]:
        out = []
        for text in texts:
            offsets = np.array(pieces[text], dtype=np.uint32).reshape(-1, 2)
            out.append((np.arange(1, len(offsets) + 1, dtype=np.uint32), offsets))
        return out

    return tokenize


def assert_types_callers_rely_on(batch) -> None:
    # Piece ids become the model's input ids (torch wants int64); offsets and
    # bounds index arrays and slices; masks select.
    for ids in batch.piece_ids:
        assert ids.dtype == np.int64
    for name in ("piece_bounds", "token_bounds", "token_starts", "token_ends", "token_idx"):
        assert getattr(batch, name).dtype == np.int64, name
    for name in ("is_space", "spaces", "doc_starts", "segment_starts"):
        assert getattr(batch, name).dtype == bool, name
    for segment in batch.segments:
        assert all(type(v) is int for v in segment), segment


def test_encode_batch_types_whatever_the_tokenizer_returns():
    tokenize = scripted(
        {"Hi there.": [(0, 2), (3, 9)], "Bob ran": [(0, 3), (4, 7)], "Sue": [(0, 3)]}
    )
    batch = encode_batch([NLP.make_doc(t) for t in MIXED], tokenize)
    assert [p.tolist() for p in batch.piece_ids] == [[1, 2, 1, 2], [], [], [1]]
    assert batch.segments == [(0, 0, 2), (0, 2, 4), (3, 0, 1)]
    assert_types_callers_rely_on(batch)


def test_encode_batch_of_docs_without_tokens():
    batch = encode_batch([NLP.make_doc(""), NLP.make_doc("")], scripted({}))
    assert batch.n_tokens == 0 and batch.n_pieces == 0
    assert batch.token_bounds.tolist() == [0, 0, 0]
    for name in ("token_starts", "token_ends", "token_idx", "spaces", "doc_starts"):
        assert getattr(batch, name).shape == (0,), name
    assert [p.shape for p in batch.piece_ids] == [(0,), (0,)]
    assert batch.segments == [] and len(batch.alignment.token) == 0
    assert_types_callers_rely_on(batch)


def test_encode_batch_when_the_tokenizer_drops_every_character():
    """Tokens but no pieces at all (a text of characters the tokenizer has no
    piece for): every token is reported piece-less, nothing is invented."""
    batch = encode_batch([NLP.make_doc("\u0001 \u0002")], scripted({"\u0001 \u0002": []}))
    assert batch.n_tokens == 2 and batch.n_pieces == 0
    assert batch.segments == []
    assert batch.alignment.token.tolist() == [] and batch.alignment.piece.tolist() == []
    assert batch.alignment.tokens_with_pieces().tolist() == [False, False]
    assert_types_callers_rely_on(batch)


def test_a_bare_word_marker_joins_the_word_that_follows_it_directly():
    # Byte-level BPE: "Ġ" alone before a character it cannot merge with.
    tokenize = scripted({"a 中": [(0, 1), (1, 2), (2, 3)]})
    batch = encode_batch([NLP.make_doc("a 中")], tokenize)
    # Tokens: a 中; the marker (piece 1) belongs to 中 with the piece after it.
    assert batch.alignment.token.tolist() == [0, 1, 1]
    assert batch.alignment.piece.tolist() == [0, 1, 2]
    assert batch.alignment.continues.tolist() == [False, False, False]


def test_a_marker_for_an_extra_space_stays_on_no_token():
    # "Oslo␣␣in": "Ġ" stands for the second space; "Ġin" starts a char later.
    tokenize = scripted({"Oslo  in": [(0, 4), (4, 5), (5, 8)]})
    batch = encode_batch([NLP.make_doc("Oslo  in")], tokenize)
    # Tokens: Oslo, " ", in.
    assert [t.text for t in NLP.make_doc("Oslo  in")] == ["Oslo", " ", "in"]
    assert batch.alignment.token.tolist() == [0, 2]
    assert batch.alignment.piece.tolist() == [0, 2]


def test_a_one_token_doc_is_tokenized():
    calls: List[List[str]] = []
    batch = encode_batch([NLP.make_doc("Paris")], recording(calls))
    assert calls == [["Paris"]]
    assert batch.segments == [(0, 0, 1)]
    assert batch.alignment.token.tolist() == [0]


def test_a_doc_starting_with_a_line_break_has_one_start():
    # The whitespace token "\n" starts the second doc; "Paris" after it is not
    # a new line of that doc (no text before it in the doc).
    batch = encode_batch([NLP.make_doc(t) for t in ["Oslo", "\nParis"]], word_tokenize)
    assert batch.segment_starts.tolist() == [True, True, False]
    assert batch.segments == [(0, 0, 1), (1, 0, 1)]


def test_line_breaks_inside_a_sentence_still_bound_entities():
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    doc = nlp("Ann sat\nBo ran.")
    assert len(list(doc.sents)) == 1
    batch = encode_batch([doc], word_tokenize)
    # Tokens: Ann sat \n Bo ran .; "Bo" starts a line inside the sentence.
    assert batch.segment_starts.tolist() == [True, False, False, True, False, False]


def test_batch_prediction_index_bounds():
    docs = [NLP.make_doc(t) for t in ["Paris is big", "a b"]]
    encoded = encode_batch(docs, pair_tokenize)
    n = encoded.n_tokens
    probs = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    prediction = BatchPrediction(probs, np.ones(n, bool), np.zeros(n, bool), encoded)
    assert prediction[-2][0].tolist() == probs[:3].tolist()
    for bad in (2, -3):
        with pytest.raises(IndexError) as excinfo:
            prediction[bad]
        assert str(excinfo.value) == f"doc {bad} out of range for a batch of 2"
