"""Word grouping of spaCy tokens (spacy_hf_tagger.align.words) and its use in decoding."""

from __future__ import annotations

import numpy as np
import pytest
import spacy
from hypothesis import given, settings
from hypothesis import strategies as st

from spacy_hf_tagger.align.char_classes import ALNUM
from spacy_hf_tagger.align.words import INFIX_CONNECTORS, alnum_mask, word_groups
from spacy_hf_tagger.labels.decoding import predict_entities
from spacy_hf_tagger.labels.schemes import read_label_scheme

NLP = spacy.blank("en")
SCHEME = read_label_scheme({0: "O", 1: "B-PER", 2: "I-PER", 3: "B-MISC", 4: "I-MISC"})
NAMES = {"PER": "PER", "MISC": "MISC"}


def _one_doc(texts, spaces):
    """word_groups for the tokens of one doc, given as texts and trailing-space flags."""
    lengths = np.array([len(t) for t in texts], dtype=np.int64)
    ends = np.cumsum(lengths)
    doc_starts = np.zeros(len(texts), dtype=bool)
    doc_starts[:1] = True
    return word_groups(
        "".join(texts), ends - lengths, ends, np.asarray(spaces, dtype=bool), doc_starts
    )


def word_starts(texts, spaces):
    return _one_doc(texts, spaces)[0]


def glued_punctuation(texts, spaces):
    return _one_doc(texts, spaces)[1]


def _tokens(text: str):
    doc = NLP(text)
    return [t.text for t in doc], doc.to_array("SPACY").astype(bool)


def test_hyphenated_words_group_to_their_first_token() -> None:
    texts, spaces = _tokens("Nihad al-Boushi , UK-US talks 3-1 win - no")
    assert texts[1:4] == ["al", "-", "Boushi"]
    starts = word_starts(texts, spaces)
    assert starts.tolist() == [0, 1, 1, 1, 4, 5, 5, 5, 8, 9, 9, 9, 12, 13, 14]


def test_glued_punctuation() -> None:
    texts, spaces = _tokens("1. Paris, (Reuters) it's")
    assert texts == ["1", ".", "Paris", ",", "(", "Reuters", ")", "it", "'s"]
    assert glued_punctuation(texts, spaces).tolist() == [
        False,
        True,
        False,
        True,
        False,
        False,
        True,
        False,
        False,
    ]


def _decode(text: str, labels: list) -> list:
    texts, spaces = _tokens(text)
    probs = np.zeros((len(texts), 5), dtype=np.float32)
    probs[np.arange(len(texts)), labels] = 0.9
    pred, _ = predict_entities(
        SCHEME,
        probs,
        np.ones(len(texts), dtype=bool),
        NAMES,
        0.0,
        word_starts=word_starts(texts, spaces),
        glued_punct=glued_punctuation(texts, spaces),
    )
    return [(" ".join(texts[s:e]), label) for s, e, label, _ in pred.spans]


def test_noise_on_later_parts_of_a_word_is_overruled() -> None:
    # "Nihad al-Boushi": the model says O on "-" and B-PER on "Boushi".
    assert _decode("Nihad al-Boushi", [1, 2, 0, 1]) == [("Nihad al - Boushi", "PER")]
    # "SKIING-WORLD CUP": the word starts O, so only CUP is an entity.
    assert _decode("SKIING-WORLD CUP", [0, 0, 3, 4]) == [("CUP", "MISC")]


def test_glued_punctuation_cannot_begin_an_entity() -> None:
    # "1. Jesper": the "." of "1." carries B-PER noise.
    assert _decode("1. Jesper Ronnback", [0, 1, 2, 2]) == [("Jesper Ronnback", "PER")]
    # but it may continue one ("Corp." style abbreviations split by spaCy)
    assert _decode("Smith .", [1, 2]) == [("Smith .", "PER")]


# --- the vectorised grouping agrees with the rule written as a loop ----------


def _reference_word_starts(texts, spaces):
    n = len(texts)
    start = list(range(n))
    i = 1
    while i + 1 < n:
        left, connector, right = texts[i - 1], texts[i], texts[i + 1]
        if (
            connector in INFIX_CONNECTORS
            and not spaces[i - 1]
            and not spaces[i]
            and left[-1:].isalnum()
            and right[:1].isalnum()
        ):
            start[i] = start[i - 1]
            start[i + 1] = start[i - 1]
            i += 2
        else:
            i += 1
    return start


def _reference_glued(texts, spaces):
    return [
        i > 0
        and not spaces[i - 1]
        and bool(text)
        and not any(c.isalnum() or c.isspace() for c in text)
        for i, text in enumerate(texts)
    ]


_token_text = st.one_of(
    st.sampled_from(
        ["-", "/", "–", ".", ",", "a", "1", "AB", "x-y", "é", "𝔘", "😀", " ", "..", "'s"]
    ),
    st.text(max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_token_text, st.booleans()), max_size=12))
def test_grouping_matches_reference(tokens):
    texts = [t for t, _ in tokens]
    spaces = [s for _, s in tokens]
    assert word_starts(texts, spaces).tolist() == _reference_word_starts(texts, spaces)
    assert glued_punctuation(texts, spaces).tolist() == _reference_glued(texts, spaces)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.tuples(_token_text, st.booleans()), max_size=6), max_size=4))
def test_grouping_never_crosses_docs(docs):
    """Grouping several docs at once equals grouping each doc on its own."""
    texts = [t for doc in docs for t, _ in doc]
    spaces = np.array([s for doc in docs for _, s in doc], dtype=bool)
    lengths = np.array([len(t) for t in texts], dtype=np.int64)
    ends = np.cumsum(lengths)
    doc_starts = np.zeros(len(texts), dtype=bool)
    expected_starts, expected_glued, offset = [], [], 0
    for doc in docs:
        if doc:
            doc_starts[offset] = True
        doc_texts = [t for t, _ in doc]
        doc_spaces = [s for _, s in doc]
        expected_starts += [offset + k for k in _reference_word_starts(doc_texts, doc_spaces)]
        expected_glued += _reference_glued(doc_texts, doc_spaces)
        offset += len(doc)
    starts, glued, _ = word_groups("".join(texts), ends - lengths, ends, spaces, doc_starts)
    assert starts.tolist() == expected_starts
    assert glued.tolist() == expected_glued


def test_alnum_mask_matches_isalnum_beyond_the_basic_plane():
    text = "a1 𝔘😀٣\u0301中-"
    assert alnum_mask(text).tolist() == [c.isalnum() for c in text]


# --- edges the property tests reach only by chance -----------------------------------


def test_a_whole_doc_of_one_hyphenated_word() -> None:
    # three tokens, the last one a single character at the very end of the text
    assert word_starts(["3", "-", "1"], [False, False, False]).tolist() == [0, 0, 0]
    assert word_starts(["x", "/", "y", "z"], [False, False, True, False]).tolist() == [0, 0, 0, 3]


def test_alnum_mask_at_the_edge_of_the_basic_plane() -> None:
    # U+FFFF is no character; U+10000 (LINEAR B SYLLABLE B008 A) is a letter
    assert alnum_mask("\uffff\U00010000a").tolist() == [False, True, True]


def test_alnum_mask_on_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ALNUM, "_table", None)  # as in a fresh process
    text = "a1 𝔘😀٣\u0301中-\uffff\U00010000"
    assert alnum_mask(text).tolist() == [c.isalnum() for c in text]


def test_result_dtypes() -> None:
    # word starts index tokens; glued punctuation is a mask
    for texts in ([], ["1", "."], ["a", "-", "b"]):
        starts, glued, _ = _one_doc(texts, [False] * len(texts))
        assert starts.dtype == np.int64
        assert glued.dtype == bool


def test_flags_given_as_integers() -> None:
    # 0/1 integer flags, as spaCy's doc.to_array("SPACY") gives them, read as booleans.
    # Three docs: "al-Boushi UK-", "US", ". x"; neither a word nor glue crosses a doc start.
    texts = ["al", "-", "Boushi", "UK", "-", "US", ".", "x"]
    spaces = np.array([0, 0, 1, 0, 0, 0, 1, 0], dtype=np.uint64)
    doc_starts = np.array([1, 0, 0, 0, 0, 1, 1, 0], dtype=np.uint64)
    lengths = np.array([len(t) for t in texts], dtype=np.int64)
    ends = np.cumsum(lengths)
    starts, glued, _ = word_groups("".join(texts), ends - lengths, ends, spaces, doc_starts)
    assert starts.tolist() == [0, 0, 0, 3, 4, 5, 6, 7]
    assert glued.tolist() == [False, True, False, False, True, False, False, False]


def test_a_word_is_judged_by_the_last_character_before_the_connector() -> None:
    # "x.5" ends with a digit (its second-to-last character is not): "x.5-6" is
    # one word; "5.x" ends with a letter, "5.(" does not.
    assert word_starts(["x.5", "-", "6"], [False, False, False]).tolist() == [0, 0, 0]
    assert word_starts(["5.x", "-", "6"], [False, False, False]).tolist() == [0, 0, 0]
    assert word_starts(["5.(", "-", "6"], [False, False, False]).tolist() == [0, 1, 2]
