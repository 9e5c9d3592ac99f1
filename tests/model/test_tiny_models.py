"""Checks that the locally built tiny models behave like the real families they stand for.

Why: every other test that uses ``tiny_models`` trusts that the folders load through the
ordinary ``Auto*`` classes, honour ``model_max_length`` (or its absence), and, when
trained, really predict the memorised entities. A silent regression here would make
those tests pass or fail for the wrong reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import spacy
import torch
from tiny_models import (
    FAMILIES,
    NER_LABELS,
    build_tiny_model,
    training_sentences,
    word_piece_spans,
)
from transformers import AutoModelForTokenClassification

from spacy_hf_tagger.model.hub import load_tokenizer

# Enough for every family to memorise training_sentences(), with margin (60 suffice).
TRAIN_STEPS = 100

TinyModelFactory = Callable[..., Path]


_NLP = spacy.blank("en")


def _saved_tokenizer(folder: Path) -> Any:
    """The tokenizer exactly as saved: transformers 5's AutoTokenizer rebuilds some
    classes from their definition instead of tokenizer.json (see hub.load_tokenizer)."""
    return load_tokenizer(str(folder), None, local_only=True)


class _Tagger:
    """Label spaCy tokens with the argmax of the first piece standing for each token
    (`word_piece_spans`: a bare "▁" stands for the word after it).

    Loads the folder once, because reloading per sentence dominated the test time.
    """

    def __init__(self, folder: Path) -> None:
        self.tokenizer = _saved_tokenizer(folder)
        self.model = AutoModelForTokenClassification.from_pretrained(folder).eval()

    def __call__(self, text: str) -> list[tuple[str, str]]:
        encoded = self.tokenizer(
            text,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            return_tensors="pt",
        )
        offsets = [tuple(o) for o in encoded.pop("offset_mapping")[0].tolist()]
        special = encoded.pop("special_tokens_mask")[0].tolist()
        spans = word_piece_spans(text, offsets, special)
        with torch.no_grad():
            predicted = self.model(**encoded).logits[0].argmax(-1).tolist()
        result: list[tuple[str, str]] = []
        for token in _NLP(text):
            start, end = token.idx, token.idx + len(token)
            piece = next(
                i
                for i, span in enumerate(spans)
                if span is not None and span[0] < end and span[1] > start
            )
            result.append((token.text, self.model.config.id2label[predicted[piece]]))
        return result


def _gold_labels(text: str, spans: list[tuple[int, int, str]]) -> list[tuple[str, str]]:
    """IOB2 label of each spaCy token according to the character spans."""
    result: list[tuple[str, str]] = []
    for token in _NLP(text):
        label = "O"
        for start, end, kind in spans:
            if start <= token.idx and token.idx + len(token) <= end:
                label = f"{'B' if token.idx == start else 'I'}-{kind}"
        result.append((token.text, label))
    return result


@pytest.mark.parametrize("family", FAMILIES)
def test_loads_through_auto_classes(tiny_models: TinyModelFactory, family: str) -> None:
    folder = tiny_models(family)
    tokenizer = _saved_tokenizer(folder)
    assert tokenizer.is_fast
    assert tokenizer.model_max_length == 32
    encoded = tokenizer("Sarah lives in Zürich.", return_offsets_mapping=True)
    assert len(encoded["offset_mapping"]) == len(encoded["input_ids"])

    model, info = AutoModelForTokenClassification.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert not info["mismatched_keys"] and not info["error_msgs"]
    assert (folder / "model.safetensors").is_file()
    assert model.config.id2label == dict(enumerate(NER_LABELS))

    # A full-length window must fit the position table (RoBERTa-style +2 offset).
    long_text = " ".join(text for text, _ in training_sentences())
    window = tokenizer(long_text, truncation=True, max_length=32, return_tensors="pt")
    assert window["input_ids"].shape[1] == 32
    with torch.no_grad():
        logits = model(**window).logits
    assert logits.shape == (1, 32, len(NER_LABELS))


@pytest.mark.parametrize("family", FAMILIES)
def test_sentinel_max_length_falls_back_to_positions(
    tiny_models: TinyModelFactory, family: str
) -> None:
    folder = tiny_models(family, model_max_length=None)
    assert _saved_tokenizer(folder).model_max_length > 1e20
    config = AutoModelForTokenClassification.from_pretrained(folder).config
    offset = 2 if family in ("bpe-roberta", "sentencepiece-xlmr") else 0
    assert config.max_position_embeddings == 32 + offset


@pytest.mark.parametrize("family", FAMILIES)
def test_trained_model_memorises(tiny_models: TinyModelFactory, family: str) -> None:
    tagger = _Tagger(tiny_models(family, train_steps=TRAIN_STEPS))
    labels = dict(tagger("My name is Sarah and I live in Paris."))
    assert labels["Sarah"] == "B-PER"
    assert labels["Paris"] == "B-LOC"
    assert labels["name"] == "O"
    for text, spans in training_sentences():
        assert tagger(text) == _gold_labels(text, spans), text


def test_custom_labels_become_config(tiny_models: TinyModelFactory) -> None:
    labels = ["O", "B-MISC", "I-MISC"]
    config = AutoModelForTokenClassification.from_pretrained(
        tiny_models("wordpiece-cased", labels=labels)
    ).config
    assert config.id2label == {0: "O", 1: "B-MISC", 2: "I-MISC"}
    assert config.label2id == {"O": 0, "B-MISC": 1, "I-MISC": 2}


def test_unknown_characters_give_unknown_pieces(tiny_models: TinyModelFactory) -> None:
    for family in FAMILIES:
        tokenizer = _saved_tokenizer(tiny_models(family))
        ids = tokenizer("Ω", add_special_tokens=False)["input_ids"]
        # Byte-level BPE has no unknowns: the character becomes byte pieces instead.
        assert (tokenizer.unk_token_id in ids) == (family != "bpe-roberta"), family


def test_builds_are_reproducible(tmp_path: Path) -> None:
    first = build_tiny_model("sentencepiece-xlmr", tmp_path / "a", seed=3)
    second = build_tiny_model("sentencepiece-xlmr", tmp_path / "b", seed=3)
    for name in ("model.safetensors", "tokenizer.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_training_entities_align_with_spacy_tokens() -> None:
    for text, spans in training_sentences():
        doc = _NLP(text)
        for start, end, kind in spans:
            assert doc.char_span(start, end, label=kind) is not None, (text, start, end)


def test_rejects_unknown_family(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown family"):
        build_tiny_model("gpt5", tmp_path)
