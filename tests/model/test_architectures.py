"""Token classifiers of other architectures: DistilBERT, ModernBERT, ELECTRA, ALBERT, GPT-2.

Why: hub token classifiers run on many encoders (the card this project started from
is a DistilBERT) and on decoders with a token-classification head. What the model is
fed must follow its own forward signature, not the tokenizer's declarations
(DistilBERT and ModernBERT refuse token_type_ids), and a decoder has no [CLS]/[SEP],
no pad token and sees only the left context.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import List, Tuple

import pytest
import spacy
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import (
    ARCHITECTURES,
    FAMILIES,
    NER_LABELS,
    _piece_labels,
    training_sentences,
)

from spacy_hf_tagger.align.windows import plan_windows
from spacy_hf_tagger.settings import ConfigError

TRAIN_STEPS = 100
SARAH = "My name is Sarah and I live in Paris."
FILLER = "The meeting ended early because nobody was ready. "


def nlp_for(model: Path, lang: str = "en", **cfg):
    nlp = spacy.blank(lang)
    nlp.add_pipe("hf_token_tagger", config={"model": str(model), **cfg})
    return nlp


def ents(doc) -> List[Tuple[str, str]]:
    return [(e.text, e.label_) for e in doc.ents]


@pytest.fixture(scope="module")
def trained(tiny_models):
    return lambda arch: tiny_models(arch, train_steps=TRAIN_STEPS)


def left_context_ambiguous(tokenizer, label2id) -> set:
    """Training sentences in which some piece has the same pieces before it (and
    itself) as a piece of another sentence, but another label: a decoder, which
    sees only the left context, cannot tell them apart ("D" begins "David", PER,
    and "Dr.", O; "M" begins "Mohammed" and "Microsoft")."""
    rows = []
    for text, spans in training_sentences():
        enc = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
        labels = _piece_labels(
            text, enc["offset_mapping"], enc["special_tokens_mask"], spans, label2id
        )
        rows.append((text, enc["input_ids"], labels))
    ambiguous = set()
    for text, ids, labels in rows:
        for other, ids2, labels2 in rows:
            k = 0
            while k < min(len(ids), len(ids2)) and ids[k] == ids2[k]:
                if labels[k] != labels2[k]:
                    ambiguous.update({text, other})
                k += 1
    return ambiguous


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_memorised_entities_exactly(arch, trained):
    """Every entity of every memorised sentence; for the decoder, of every sentence
    whose labels its left context decides."""
    nlp = nlp_for(trained(arch))
    comp = nlp.get_pipe("hf_token_tagger")
    skip = set()
    if comp._ensure_loaded().causal:
        skip = left_context_ambiguous(comp.tokenizer, comp.hf_model.config.label2id)
        assert "David works at Google in London." in skip
        assert len(skip) < len(training_sentences()) / 3
    for doc, (text, spans) in zip(
        nlp.pipe([t for t, _ in training_sentences()]), training_sentences()
    ):
        if text not in skip:
            assert [(e.start_char, e.end_char, e.label_) for e in doc.ents] == spans, text


@pytest.mark.parametrize("arch", ["distilbert", "modernbert"])
def test_token_type_ids_only_where_the_forward_takes_them(arch, trained):
    """The tokenizer (BERT's; a generic one for ModernBERT) declares token_type_ids;
    DistilBERT's and ModernBERT's forward refuse them."""
    comp = nlp_for(trained(arch)).get_pipe("hf_token_tagger")
    assert "token_type_ids" in comp.tokenizer.model_input_names
    assert comp._ensure_loaded().special.uses_token_types is False


def test_bert_gets_its_token_type_ids(tiny_models):
    comp = nlp_for(tiny_models("wordpiece-cased")).get_pipe("hf_token_tagger")
    assert comp._ensure_loaded().special.uses_token_types is True


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_long_text_is_windowed(arch, trained):
    """40 filler sentences on one line, read as one segment (`context="line"`;
    the default cuts it at each sentence): many 32-position windows, every token
    labelled; the memorised sentence on the next line is found whole."""
    nlp = nlp_for(trained(arch), context="line")
    doc = nlp(FILLER * 40 + "\n" + SARAH)
    comp = nlp.get_pipe("hf_token_tagger")
    encoded = comp._encode([doc])
    assert len(encoded.segments) == 2
    assert encoded.segments[0][2] > 4 * comp._ensure_loaded().content_length
    assert all(t._.hf_bio is not None for t in doc)
    tail = [(e.text, e.label_) for e in doc.ents if e.start_char > len(FILLER) * 40]
    assert tail == [("Sarah", "PER"), ("Paris", "LOC")]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_saved_pipeline_loads_offline_without_its_source(arch, tiny_models, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(tiny_models(arch, train_steps=TRAIN_STEPS), source)
    nlp = nlp_for(source)
    before = ents(nlp(SARAH))
    nlp.to_disk(tmp_path / "pipe")
    shutil.rmtree(source)
    loaded = spacy.load(tmp_path / "pipe")
    assert ents(loaded(SARAH)) == before == [("Sarah", "PER"), ("Paris", "LOC")]


def test_gpt2_is_a_decoder_without_special_or_pad_tokens(trained):
    comp = nlp_for(trained("gpt2")).get_pipe("hf_token_tagger")
    loaded = comp._ensure_loaded()
    assert loaded.causal is True
    assert loaded.special.prefix == () and loaded.special.suffix == ()
    assert comp.tokenizer.pad_token is None
    # Windows of 32 positions, all text: no [CLS]/[SEP] to make room for.
    assert loaded.content_length == 32


@pytest.mark.parametrize("arch", ["distilbert", "modernbert", "electra", "albert"])
def test_encoders_are_not_decoders(arch, tiny_models):
    assert nlp_for(tiny_models(arch)).get_pipe("hf_token_tagger")._ensure_loaded().causal is False


def test_a_decoder_keeps_each_piece_from_the_window_with_most_left_context():
    bidirectional = plan_windows(20, content_length=10, stride=4)
    causal = plan_windows(20, content_length=10, stride=4, causal=True)
    assert bidirectional.tolist() == [[0, 10, 0, 8], [6, 16, 8, 13], [10, 20, 13, 20]]
    assert causal.tolist() == [[0, 10, 0, 10], [6, 16, 10, 16], [10, 20, 16, 20]]


@pytest.mark.parametrize("arch", ["gpt2", "distilbert"])
def test_model_max_length_missing_uses_the_positions(arch, tiny_models):
    comp = nlp_for(tiny_models(arch, model_max_length=None)).get_pipe("hf_token_tagger")
    loaded = comp._ensure_loaded()
    assert comp.tokenizer.model_max_length > 1e20
    assert loaded.content_length + loaded.special.count == 32
    doc = nlp_for(tiny_models(arch, model_max_length=None))(FILLER * 10)
    assert len(doc) == len(spacy.blank("en").make_doc(FILLER * 10))


def test_positions_below_what_the_tokenizer_claims(tiny_models, tmp_path):
    """The tokenizer says 512, the model embeds 32 positions: windows of 32."""
    folder = tmp_path / "m"
    shutil.copytree(tiny_models("distilbert", train_steps=TRAIN_STEPS), folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["model_max_length"] = 512
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    nlp = nlp_for(folder)
    loaded = nlp.get_pipe("hf_token_tagger")._ensure_loaded()
    assert loaded.content_length + loaded.special.count == 32
    doc = nlp(FILLER * 20 + SARAH)
    assert ents(doc)[-2:] == [("Sarah", "PER"), ("Paris", "LOC")]


def test_max_length_beyond_the_positions_is_a_clear_error(tiny_models):
    nlp = nlp_for(tiny_models("gpt2"), max_length=64)
    with pytest.raises(ConfigError, match=r"max_length=64 is more than the 32 positions"):
        nlp("Sarah lives in Paris.")


# --- CJK text without spaces, spacy.blank("zh"), every family --------------------------

cjk = st.text(
    alphabet=st.sampled_from(list("東京大阪北京上海的是在人有我他這中和了不為个年会我們 。，、")),
    min_size=0,
    max_size=30,
)


@pytest.mark.parametrize("family", FAMILIES + ARCHITECTURES)
def test_cjk_text_aligns(family, tiny_models):
    """Chinese tokens (one per character with spaCy's default segmenter) and pieces
    that cover several of them, or none ([UNK], bytes): every entity on token
    boundaries, the BIO labels agree with doc.ents, and every token is labelled."""
    nlp = nlp_for(tiny_models(family), lang="zh")

    @settings(max_examples=30, deadline=None)
    @given(text=cjk)
    def check(text: str) -> None:
        doc = nlp(text)
        assert doc.text == text
        assert [t.text for t in doc] == [t.text for t in nlp.make_doc(text)]
        bio = ["O"] * len(doc)
        for ent in doc.ents:
            bio[ent.start] = f"B-{ent.label_}"
            for i in range(ent.start + 1, ent.end):
                bio[i] = f"I-{ent.label_}"
        assert [t._.hf_bio for t in doc] == bio
        assert all(t._.hf_bio is not None for t in doc)

    check()


# --- spacy train ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_short_spacy_train(arch, tiny_models, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
    from test_training import spacy_train, write_ner_corpus

    corpus = tmp_path / "train.spacy"
    write_ner_corpus(corpus)
    spacy_train("configs/train_ner.cfg", tiny_models(arch), corpus, tmp_path / "out")
    nlp = spacy.load(tmp_path / "out" / "model-best")
    doc = nlp(SARAH)
    assert all(t._.hf_bio is not None for t in doc)
    cfg = json.loads((tmp_path / "out" / "model-best" / "hf_token_tagger" / "cfg.json").read_text())
    assert cfg["labels"] == NER_LABELS
