"""`decoding="auto"`: whether an IOB model was trained on IOB1 or IOB2 labels,
asked of the model itself (`model.iob_probe`), and what auto then decodes with.

The tiny models are trained on the same sentences with IOB2 labels (B- on every
entity's first piece) or IOB1 labels (I- there: no B- at all, since no two
entities of one type touch in those sentences), so the probe must tell them
apart exactly, and never from the texts being annotated.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, List, Tuple

import numpy as np
import pytest
import spacy
import torch
from tiny_models import training_sentences

from spacy_hf_tagger.labels.decoding import predict_entities
from spacy_hf_tagger.labels.schemes import read_label_scheme
from spacy_hf_tagger.labels.viterbi import DECODINGS, resolve_decoding
from spacy_hf_tagger.model.iob_probe import (
    IOB1_UP_TO,
    IOB2_FROM,
    PROBE_TEXTS,
    PROBE_WORDS,
    IobProbe,
    whole_word_ids,
)

TRAIN_STEPS = 100
BIOES = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]
IO = ["O", "I-PER", "I-LOC"]
UPOS = ["NOUN", "VERB", "PROPN", "PUNCT", "ADP", "DET", "PRON", "X"]
# Families of every tokenizer kind and a decoder (the probe's words come from
# each one's own vocabulary and decoder).
PROBED = ["wordpiece-uncased", "bpe-roberta", "sentencepiece-xlmr", "gpt2"]
OTHER_TEXT = "Call Sarah at 555-0199 before 5 p.m. in Paris."


def _tagger(model: Path, **cfg: Any):
    nlp = spacy.blank("en")
    tagger = nlp.add_pipe("hf_token_tagger", config={"model": str(model), **cfg})
    return nlp, tagger


def _ents(doc) -> List[Tuple[int, int, str]]:
    return [(e.start_char, e.end_char, e.label_) for e in doc.ents]


# ------------------------------------------------------------------ the decision


def test_auto_resolves_by_scheme_and_flavour() -> None:
    assert DECODINGS[0] == "auto"
    assert resolve_decoding("auto", "iob", "iob2") == "viterbi-iob2"
    assert resolve_decoding("auto", "iob", "iob1") == "greedy"
    assert resolve_decoding("auto", "iob", "unclear") == "greedy"
    assert resolve_decoding("auto", "bioes") == "viterbi"
    assert resolve_decoding("auto", "io") == "greedy"
    assert resolve_decoding("auto", "tags") == "greedy"
    for setting in ("greedy", "viterbi", "viterbi-iob2"):
        assert resolve_decoding(setting, "iob", "iob2") == setting
        assert resolve_decoding(setting, "iob", "iob1") == setting


def test_predict_entities_refuses_an_unresolved_auto() -> None:
    scheme = read_label_scheme({0: "O", 1: "B-PER", 2: "I-PER"})
    probs = np.full((2, 3), 1 / 3, dtype=np.float32)
    with pytest.raises(ValueError, match="resolve_decoding"):
        predict_entities(scheme, probs, np.ones(2, bool), {"PER": "PER"}, 0.0, decoding="auto")


def test_probe_words_are_whole_words_of_the_vocabulary(tiny_models) -> None:
    """Fixed seed: the same ids every time; each decodes to letters only and is
    set apart from the next by a space (a word, not a continuation piece)."""
    _, tagger = _tagger(tiny_models("wordpiece-cased"))
    backend = tagger.tokenizer.backend_tokenizer
    ids = whole_word_ids(backend, PROBE_TEXTS * PROBE_WORDS)
    assert len(ids) == PROBE_TEXTS * PROBE_WORDS
    assert ids == whole_word_ids(backend, PROBE_TEXTS * PROBE_WORDS)
    assert ids != whole_word_ids(backend, PROBE_TEXTS * PROBE_WORDS, seed=1)
    for piece in set(ids):
        word = backend.decode([piece]).strip()
        assert word.isalpha()
        assert not backend.id_to_token(piece).startswith("##")
        assert backend.decode([piece, piece]) == f"{word} {word}"


# ------------------------------------------------------- IOB1 and IOB2 tiny models


@pytest.mark.parametrize("family", PROBED)
@pytest.mark.parametrize(
    ("tagging", "flavour", "decoding"),
    [("iob2", "iob2", "viterbi-iob2"), ("iob1", "iob1", "greedy")],
)
def test_the_probe_tells_iob1_from_iob2(
    tiny_models, family: str, tagging: str, flavour: str, decoding: str
) -> None:
    """Measured on these models: IOB2 0.81 to 0.89 of the first words' entity
    probability on B-, IOB1 0.003 at most (evidence 19 to 45 of 64)."""
    _, tagger = _tagger(tiny_models(family, train_steps=TRAIN_STEPS, tagging=tagging))
    probe = tagger.iob_probe
    assert isinstance(probe, IobProbe)
    assert probe.flavour == flavour
    assert probe.texts == PROBE_TEXTS
    assert probe.evidence > 10.0
    if flavour == "iob2":
        assert probe.b_share > IOB2_FROM + 0.2
    else:
        assert probe.b_share < IOB1_UP_TO / 10
    assert tagger.decoding_resolved == decoding
    # The default is auto; the setting stays "auto" (what was chosen is read
    # from decoding_resolved).
    assert tagger.cfg["decoding"] == "auto"


def test_auto_gives_an_iob1_model_its_entities(tiny_models) -> None:
    """An IOB1 model begins its entities with I-: auto (greedy here) keeps all of
    them; the strict IOB2 reading would drop most, which is why auto asks."""
    model = tiny_models("wordpiece-uncased", train_steps=TRAIN_STEPS, tagging="iob1")
    data = training_sentences()
    texts = [text for text, _ in data]
    gold = [spans for _, spans in data]
    auto = list(_tagger(model)[0].pipe(texts))
    greedy = list(_tagger(model, decoding="greedy")[0].pipe(texts))
    strict = list(_tagger(model, decoding="viterbi-iob2")[0].pipe(texts))
    assert [_ents(d) for d in auto] == [_ents(d) for d in greedy] == gold
    n_gold = sum(len(spans) for spans in gold)
    found = sum(len(set(_ents(d)) & set(spans)) for d, spans in zip(strict, gold))
    assert found < n_gold / 2  # measured: 16 of 56


def test_auto_on_an_iob2_model_is_strict_iob2(tiny_models) -> None:
    model = tiny_models("sentencepiece-xlmr", train_steps=TRAIN_STEPS)
    texts = [text for text, _ in training_sentences()] + [OTHER_TEXT]
    auto = list(_tagger(model)[0].pipe(texts))
    strict = list(_tagger(model, decoding="viterbi-iob2")[0].pipe(texts))
    for a, b in zip(auto, strict):
        assert _ents(a) == _ents(b)
        assert [t._.hf_bio for t in a] == [t._.hf_bio for t in b]
        assert [t._.hf_score for t in a] == [t._.hf_score for t in b]


# ------------------------------------------------------------ taken from the model


def test_the_probe_is_deterministic_and_ignores_the_texts(tiny_models) -> None:
    """Same model, same answer to the last bit, whatever was annotated before or
    alongside; a text's entities do not depend on its batch."""
    model = tiny_models("bpe-roberta", train_steps=TRAIN_STEPS)
    nlp_a, a = _tagger(model)
    first = a.iob_probe
    texts = [text for text, _ in training_sentences()]
    list(nlp_a.pipe(texts[::-1]))
    assert a.iob_probe is first  # probed once, at load
    nlp_b, b = _tagger(model)
    alone = nlp_b(OTHER_TEXT)
    assert b.iob_probe == first
    assert not math.isnan(first.b_share)
    in_batch = list(nlp_b.pipe([*texts, OTHER_TEXT], batch_size=5))[-1]
    assert _ents(in_batch) == _ents(alone)
    assert [t._.hf_bio for t in in_batch] == [t._.hf_bio for t in alone]


def test_changed_weights_are_probed_again(tiny_models) -> None:
    """A training step (`weights_changed`) asks the model again: an IOB2 head made
    to say I- where B- was (IOB1's habit) reads as IOB1."""
    _, tagger = _tagger(tiny_models("wordpiece-uncased", train_steps=TRAIN_STEPS))
    before = tagger.iob_probe
    assert before.flavour == "iob2"
    assert tagger.iob_probe is before
    model = tagger.hf_model
    ids = {label: int(i) for i, label in model.config.id2label.items()}
    with torch.no_grad():
        for type_ in ("PER", "LOC", "ORG"):
            b, i = ids[f"B-{type_}"], ids[f"I-{type_}"]
            model.classifier.weight[i] = model.classifier.weight[b]
            model.classifier.bias[i] = model.classifier.bias[b]
            model.classifier.bias[b] -= 20.0
    assert tagger.iob_probe is before  # changed by hand: not seen until told
    tagger.weights_changed()
    after = tagger.iob_probe
    assert after is not before
    assert after.flavour == "iob1"
    assert tagger.decoding_resolved == "greedy"


def test_the_choice_is_logged_with_labels_and_numbers_only(tiny_models, caplog) -> None:
    model = tiny_models("gpt2", train_steps=TRAIN_STEPS)
    with caplog.at_level(logging.INFO, logger="spacy_hf_tagger"):
        nlp, tagger = _tagger(model)
        assert tagger.hf_model is not None  # loads the model
        nlp(OTHER_TEXT)
    probe = tagger.iob_probe
    messages = [r.getMessage() for r in caplog.records if "decoding" in r.getMessage()]
    assert messages == [
        f"hf_token_tagger: decoding \"auto\" is 'viterbi-iob2': the model reads as "
        f"iob2 (B- share {probe.b_share:.3f} of the entity probability at 64 probe "
        f"texts' first words, evidence {probe.evidence:.2f})"
    ]
    assert "Sarah" not in " ".join(r.getMessage() for r in caplog.records)


def test_a_saved_pipeline_keeps_auto(tiny_models, tmp_path: Path) -> None:
    nlp, tagger = _tagger(tiny_models("wordpiece-uncased", train_steps=TRAIN_STEPS))
    expected = [_ents(d) for d in nlp.pipe([text for text, _ in training_sentences()])]
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    again = loaded.get_pipe("hf_token_tagger")
    assert again.cfg["decoding"] == "auto"
    assert loaded.config["components"]["hf_token_tagger"]["decoding"] == "auto"
    assert again.iob_probe == tagger.iob_probe
    assert again.decoding_resolved == "viterbi-iob2"
    got = [_ents(d) for d in loaded.pipe([text for text, _ in training_sentences()])]
    assert got == expected


def test_a_chosen_decoding_is_kept_and_probes_nothing(tiny_models) -> None:
    model = tiny_models("wordpiece-uncased", train_steps=TRAIN_STEPS, tagging="iob1")
    for setting in ("greedy", "viterbi", "viterbi-iob2"):
        _, tagger = _tagger(model, decoding=setting)
        assert tagger.decoding_resolved == setting
        assert tagger.iob_probe is None
        assert tagger._ensure_loaded()._iob_probe is None


# --------------------------------------------------------- schemes without the question


def test_auto_on_bioes_is_the_strict_search(tiny_models) -> None:
    model = tiny_models("wordpiece-cased", labels=BIOES)
    nlp, tagger = _tagger(model)
    assert tagger.decoding_resolved == "viterbi"
    assert tagger.iob_probe is None
    texts = [text for text, _ in training_sentences()]
    viterbi = _tagger(model, decoding="viterbi")[0]
    for a, b in zip(nlp.pipe(texts), viterbi.pipe(texts)):
        assert _ents(a) == _ents(b)
        assert [t._.hf_bio for t in a] == [t._.hf_bio for t in b]


@pytest.mark.parametrize(("labels", "attr"), [(IO, "ents"), (UPOS, "pos")])
def test_auto_on_io_and_tags_is_each_tokens_best(tiny_models, labels, attr) -> None:
    model = tiny_models("wordpiece-cased", labels=labels)
    nlp, tagger = _tagger(model)
    assert tagger.decoding_resolved == "greedy"
    assert tagger.iob_probe is None
    texts = [text for text, _ in training_sentences()]
    greedy = _tagger(model, decoding="greedy")[0]
    viterbi = _tagger(model, decoding="viterbi")[0]
    for a, b, c in zip(nlp.pipe(texts), greedy.pipe(texts), viterbi.pipe(texts)):
        if attr == "ents":
            assert _ents(a) == _ents(b) == _ents(c)
        else:
            assert [t.pos_ for t in a] == [t.pos_ for t in b] == [t.pos_ for t in c]
            assert [t._.hf_score for t in a] == [t._.hf_score for t in b]
