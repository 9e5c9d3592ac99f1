"""Whole documents: the model sees each sentence (or line) on its own.

Why: most hub NER models were trained on single sentences; fed 512-piece windows
across sentences and line breaks, one lost 6.5 F1 on CoNLL. A document must get the
entities its sentences get one by one, and no entity may cross a sentence boundary
or a line break.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import pytest
import spacy
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from tiny_models import FAMILIES, training_sentences

from spacy_hf_tagger.align.windows import segment_windows
from spacy_hf_tagger.settings import ConfigError

# What dtype="auto" runs in changes these: CI runs them again with each precision.
pytestmark = pytest.mark.precision

TEXTS = [text for text, _ in training_sentences()]
TRAIN_STEPS = 100


def nlp_for(model: Path, sentencizer: bool = False, **cfg):
    nlp = spacy.blank("en")
    if sentencizer:
        nlp.add_pipe("sentencizer")
    nlp.add_pipe("hf_token_tagger", config={"model": str(model), **cfg})
    return nlp


def ents(doc) -> List[Tuple[int, int, str]]:
    return [(e.start_char, e.end_char, e.label_) for e in doc.ents]


def segment_texts(nlp, text: str) -> List[str]:
    """The text of each segment the model sees on its own."""
    comp = nlp.get_pipe("hf_token_tagger")
    doc = nlp.make_doc(text)
    for name, proc in nlp.pipeline:
        if name != "hf_token_tagger":
            doc = proc(doc)
    encoded = comp._encode([doc])
    (ids,) = encoded.piece_ids
    tokens = comp.tokenizer.convert_ids_to_tokens(ids.tolist())
    return [" ".join(tokens[s:e]) for _, s, e in encoded.segments]


@pytest.fixture(scope="module")
def trained(tiny_models):
    return lambda family: tiny_models(family, train_steps=TRAIN_STEPS)


# --- where the model's inputs are cut ------------------------------------------------


def test_line_breaks_cut_segments(tiny_models):
    nlp = nlp_for(tiny_models("wordpiece-cased"))
    text = "Sarah lives here.\r\nJohn too\n\n\nand  Peter.\n"
    assert segment_texts(nlp, text) == [
        "Sarah lives h ##er ##e .",
        "John to ##o",
        "and P ##et ##er .",
    ]


def test_sentences_from_a_sentencizer_cut_segments(tiny_models):
    nlp = nlp_for(tiny_models("wordpiece-cased"), sentencizer=True)
    assert segment_texts(nlp, "Sarah lives here. John too! And Peter?") == [
        "Sarah lives h ##er ##e .",
        "John to ##o [UNK]",  # "!" is not in the tiny vocabulary
        "An ##d P ##et ##er ?",
    ]


@spacy.Language.component("test_sentences_at_semicolons")
def _sentences_at_semicolons(doc):
    """Sets sentence starts as a parser or senter does (token.is_sent_start),
    after each ";", so the test needs no trained parser."""
    for token in doc[1:]:
        token.is_sent_start = doc[token.i - 1].text == ";"
    return doc


def test_sentences_from_a_parser_like_component_cut_segments(tiny_models):
    nlp = spacy.blank("en")
    nlp.add_pipe("test_sentences_at_semicolons")
    nlp.add_pipe("hf_token_tagger", config={"model": str(tiny_models("wordpiece-cased"))})
    assert segment_texts(nlp, "Sarah lives here ; John too ; and Peter.") == [
        "Sarah lives h ##er ##e [UNK]",
        "John to ##o [UNK]",
        "and P ##et ##er .",
    ]


def test_running_text_is_cut_into_sentences_without_setting_them(tiny_models):
    """No component before ours: the rule cuts where the sentencizer would, for
    the model's input only; `doc.sents` stays unset."""
    model = tiny_models("wordpiece-cased")
    nlp = nlp_for(model)
    text = "Sarah lives here. John too! And Peter?"
    assert segment_texts(nlp, text) == segment_texts(nlp_for(model, sentencizer=True), text)
    assert len(segment_texts(nlp, text)) == 3
    assert not nlp(text).has_annotation("SENT_START")
    assert len(segment_texts(nlp, "Dr. Smith met U.S. forces, e.g. in Oslo.")) == 1


def test_line_context_keeps_running_text_whole(tiny_models):
    nlp = nlp_for(tiny_models("wordpiece-cased"), context="line")
    assert len(segment_texts(nlp, "Sarah lives here. John too! And Peter?")) == 1
    assert len(segment_texts(nlp, "Sarah lives here.\nJohn too!")) == 2


def test_an_earlier_components_sentences_win_over_the_rule(tiny_models):
    nlp = spacy.blank("en")
    nlp.add_pipe("test_sentences_at_semicolons")
    nlp.add_pipe("hf_token_tagger", config={"model": str(tiny_models("wordpiece-cased"))})
    assert len(segment_texts(nlp, "Sarah lives here. John too ; and Peter.")) == 2


def test_document_context_keeps_one_segment_per_doc(tiny_models):
    nlp = nlp_for(tiny_models("wordpiece-cased"), sentencizer=True, context="document")
    assert len(segment_texts(nlp, "Sarah lives here. John too!\nAnd Peter?")) == 1


def test_context_setting_is_checked(tiny_models):
    with pytest.raises(ConfigError, match="context='paragraph'"):
        nlp_for(tiny_models("wordpiece-cased"), context="paragraph")


def test_a_sentence_longer_than_a_window_is_windowed_inside_it():
    # Windows of 10 pieces overlapping by 3, over a 4-piece and a 25-piece segment.
    windows = segment_windows([(0, 0, 4), (0, 4, 29)], content_length=10, stride=3)
    assert [(w.start, w.end) for w in windows] == [(0, 4), (4, 14), (11, 21), (18, 28), (19, 29)]
    # The kept parts tile each segment; no window reaches into another segment.
    assert [(w.keep_start, w.keep_end) for w in windows] == [
        (0, 4), (4, 13), (13, 20), (20, 24), (24, 29)
    ]  # fmt: skip
    assert all(w.start >= 4 for w in windows[1:])


def test_long_sentence_between_short_ones(trained):
    """A sentence of several windows (max_length 32) between two short ones: the
    short ones keep their entities, the long one is still found whole."""
    nlp = nlp_for(trained("wordpiece-cased"))
    long = " ".join(TEXTS[8:12])  # one line, several windows
    doc = nlp(f"{TEXTS[0]}\n{long}\n{TEXTS[1]}")
    found = ents(doc)
    head = ents(nlp(TEXTS[0]))
    tail_base = len(TEXTS[0]) + 1 + len(long) + 1
    tail = [(s + tail_base, e + tail_base, lab) for s, e, lab in ents(nlp(TEXTS[1]))]
    assert found[: len(head)] == head
    assert found[-len(tail) :] == tail
    assert ("David", "PER") in [(doc.char_span(s, e).text, lab) for s, e, lab in found]


# --- entities ------------------------------------------------------------------------


@pytest.mark.parametrize("sep", ["\n", " "], ids=["line break", "sentence rule"])
@pytest.mark.parametrize("family", FAMILIES)
def test_entities_at_the_end_of_one_segment_and_the_start_of_the_next(family, sep, trained):
    nlp = nlp_for(trained(family), dtype="float32")
    first, second = TEXTS[0], "Paris is where Sarah lives."
    doc = nlp(f"{first}{sep}{second}")
    got = [(doc.char_span(s, e).text, lab) for s, e, lab in ents(doc)]
    assert got[:2] == [("Sarah", "PER"), ("Paris", "LOC")]
    assert ents(doc)[:2] == ents(nlp(first))
    base = len(first) + 1
    assert ents(doc)[2:] == [(s + base, e + base, lab) for s, e, lab in ents(nlp(second))]


def test_no_entity_crosses_a_line_break(tiny_models):
    nlp = nlp_for(tiny_models("wordpiece-cased"))
    model = nlp.get_pipe("hf_token_tagger").hf_model
    with torch.no_grad():  # every piece: I-PER
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        model.classifier.bias[model.config.label2id["I-PER"]] = 10.0
    doc = nlp("Sarah Jones\nPeter Smith")
    assert [(e.text, e.label_) for e in doc.ents] == [
        ("Sarah Jones", "PER"),
        ("Peter Smith", "PER"),
    ]
    assert [t._.hf_bio for t in doc] == ["B-PER", "I-PER", "O", "B-PER", "I-PER"]


sentence_lists = st.lists(st.sampled_from(TEXTS), min_size=1, max_size=6)


@pytest.mark.parametrize("family", ["wordpiece-cased", "bpe-roberta", "sentencepiece-xlmr"])
def test_a_document_gets_the_entities_of_its_sentences(family, trained):
    """Sentences joined by newlines, or by spaces (running text: the component's
    rule, or a sentencizer before it): the same entities and scores as each
    sentence alone, entities just before and just after a cut included."""
    # Scores agree exactly in float32 only (test_bf16.py: bf16 within its precision).
    by_line = nlp_for(trained(family), dtype="float32")
    by_sentencizer = nlp_for(trained(family), sentencizer=True, dtype="float32")
    alone = {text: by_line(text) for text in TEXTS}

    @settings(max_examples=25, deadline=None)
    @given(
        sentences=sentence_lists,
        sep=st.sampled_from(["\n", "\r\n", "\n\n", " ", " by rule"]),
    )
    def check(sentences: List[str], sep: str) -> None:
        nlp = by_sentencizer if sep == " " else by_line
        sep = sep.replace(" by rule", " ")
        doc = nlp(sep.join(sentences))
        if sep == " ":
            # Both keep "5 p.m. My name" together: not a case for this test.
            cut = [s.text for s in by_sentencizer(sep.join(sentences)).sents]
            assume(cut == sentences)
        want, scores, base = [], [], 0
        for text in sentences:
            want += [(s + base, e + base, lab) for s, e, lab in ents(alone[text])]
            scores += [e._.hf_score for e in alone[text].ents]
            base += len(text) + len(sep)
        assert ents(doc) == want
        assert [e._.hf_score for e in doc.ents] == pytest.approx(scores, abs=1e-4)

    check()
