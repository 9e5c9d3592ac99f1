"""Word grouping of spaCy tokens (spacy_hf_tagger.words) and its use in decoding."""

from __future__ import annotations

import numpy as np
import spacy

from spacy_hf_tagger.decoding import predict_entities
from spacy_hf_tagger.labels import read_label_scheme
from spacy_hf_tagger.words import glued_punctuation, word_starts

NLP = spacy.blank("en")
SCHEME = read_label_scheme({0: "O", 1: "B-PER", 2: "I-PER", 3: "B-MISC", 4: "I-MISC"})
NAMES = {"PER": "PER", "MISC": "MISC"}


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
