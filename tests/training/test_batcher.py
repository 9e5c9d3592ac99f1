"""Training batches of sentences sized in words, and the step schedule.

Why: the shipped training configs must work for any corpus shape (one sentence per
Doc, `spacy convert -n 10`, whole documents). Batches of Docs made the number of
steps and the model's windows depend on that shape, and a schedule sized for one
shape shipped an untrained model-best for another.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest
import spacy
from spacy.tokens import Doc, Span
from spacy.training import Example
from spacy.util import load_config, registry
from tiny_models import training_sentences

from spacy_hf_tagger.training.batcher import make_sentence_batcher, sentence_batches, split_example
from spacy_hf_tagger.training.schedules import make_warmup_linear, warmup_steps

REPO = Path(__file__).resolve().parents[2]
NLP = spacy.blank("en")


def gold_doc(sentences: List[Tuple[str, List[Tuple[int, int, str]]]], sep: str = " ") -> Doc:
    """One reference Doc holding the sentences, with sentence starts and entities."""
    words: List[str] = []
    spaces: List[bool] = []
    starts: List[bool] = []
    ents: List[Tuple[int, int, str]] = []
    for text, spans in sentences:
        doc = NLP.make_doc(text)
        base = len(words)
        for token in doc:
            words.append(token.text)
            spaces.append(bool(token.whitespace_))
            starts.append(token.i == 0)
        if spaces:
            spaces[-1] = True
        for start, end, label in spans:
            span = doc.char_span(start, end)
            ents.append((base + span.start, base + span.end, label))
    ref = Doc(NLP.vocab, words=words, spaces=spaces, sent_starts=starts)
    ref.ents = [Span(ref, s, e, label=lab) for s, e, lab in ents]
    return ref


def example_of(ref: Doc) -> Example:
    return Example(NLP.make_doc(ref.text), ref)


def ents_of(eg: Example) -> List[Tuple[str, str]]:
    return [(e.text, e.label_) for e in eg.reference.ents]


# --- split_example ------------------------------------------------------------------


def test_split_example_gives_each_sentence_with_its_entities():
    sentences = training_sentences()[:3]
    parts = split_example(example_of(gold_doc(sentences)))
    assert [eg.reference.text.strip() for eg in parts] == [text for text, _ in sentences]
    assert [eg.predicted.text for eg in parts] == [eg.reference.text for eg in parts]
    assert [ents_of(eg) for eg in parts] == [
        [(text[s:e], label) for s, e, label in spans] for text, spans in sentences
    ]
    # The parts align token for token, so the gold labels reach the model.
    assert parts[0].get_aligned_ner()[3] == "U-PER"


def test_split_example_never_cuts_an_entity():
    ref = gold_doc([("Visit New", []), ("York today.", [])])
    ref.ents = [Span(ref, 1, 3, label="LOC")]  # "New York" across the sentence start
    parts = split_example(example_of(ref))
    assert len(parts) == 1 and ents_of(parts[0]) == [("New York", "LOC")]


def test_split_example_uses_line_breaks_without_sentence_starts():
    ref = NLP.make_doc("Sarah lives in Paris.\nJohn works in Berlin.")
    # The newline is token 5.
    ref.ents = [Span(ref, 0, 1, label="PER"), Span(ref, 6, 7, label="PER")]
    parts = split_example(example_of(ref))
    assert [ents_of(eg) for eg in parts] == [[("Sarah", "PER")], [("John", "PER")]]


def test_split_example_keeps_a_single_sentence_as_is():
    eg = example_of(gold_doc(training_sentences()[:1]))
    assert split_example(eg) == [eg]


# --- sentence_batches ------------------------------------------------------------------


def corpus(per_doc: int) -> List[Example]:
    sentences = training_sentences()
    return [
        example_of(gold_doc(sentences[i : i + per_doc])) for i in range(0, len(sentences), per_doc)
    ]


@pytest.mark.parametrize("per_doc", [1, 5, 25])
def test_batches_hold_every_sentence_once_and_at_most_size_words(per_doc):
    random.seed(0)
    batches = list(sentence_batches(corpus(per_doc), size=40, shuffle_buffer=100))
    texts = Counter(eg.reference.text.strip() for batch in batches for eg in batch)
    assert texts == Counter(text for text, _ in training_sentences())
    for batch in batches:
        assert len(batch) == 1 or sum(len(eg) for eg in batch) <= 40


def test_batch_count_does_not_depend_on_how_sentences_are_grouped():
    counts = set()
    for per_doc in (1, 5, 25):
        random.seed(0)
        counts.add(len(list(sentence_batches(corpus(per_doc), 40, shuffle_buffer=1000))))
    assert max(counts) - min(counts) <= 1, counts


def test_batches_are_reproducible_under_spacys_seed():
    def run() -> List[List[str]]:
        random.seed(3)
        return [[eg.reference.text for eg in b] for b in sentence_batches(corpus(5), 40, 1000)]

    assert run() == run()


def test_batcher_is_registered_and_checks_its_settings():
    batcher = registry.batchers.get("spacy_hf_tagger.sentence_batches.v1")
    assert batcher is make_sentence_batcher
    with pytest.raises(ValueError, match="size"):
        make_sentence_batcher(size=0)


# --- the schedule follows max_steps -------------------------------------------------------


def test_warmup_linear_peaks_after_the_warmup_fraction_and_ends_at_zero():
    rates = make_warmup_linear(initial_rate=1.0, total_steps=100, warmup_fraction=0.1)
    values = [next(rates) for _ in range(101)]
    assert warmup_steps(100, 0.1) == 10
    assert values[0] == 0.0
    assert max(values) == pytest.approx(1.0)
    assert int(np.argmax(values)) == 10
    assert values[100] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("config", ["train_ner.cfg", "train_tagger.cfg"])
def test_overriding_max_steps_moves_warmup_and_decay(config):
    cfg = load_config(
        REPO / "configs" / config, overrides={"training.max_steps": 200}, interpolate=True
    )
    training = cfg["training"]
    assert training["max_epochs"] == 0  # steps, not epochs, end training
    assert training["optimizer"]["learn_rate"]["total_steps"] == 200
    rates = registry.resolve({"lr": training["optimizer"]["learn_rate"]})["lr"]
    values = [next(rates) for _ in range(201)]
    assert int(np.argmax(values)) == 20
    assert values[200] == pytest.approx(0.0, abs=1e-12)
    assert training["batcher"]["@batchers"] == "spacy_hf_tagger.sentence_batches.v1"
    assert training["logger"]["@loggers"] == "spacy_hf_tagger.ConsoleLogger.v1"
