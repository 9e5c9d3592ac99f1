"""Pieces that hold a word and the punctuation glued to it, and the marker a
tokenizer prepends to a text.

Why: a tokenizer that does not split punctuation (SentencePiece Unigram, a
whitespace word-level vocabulary) makes pieces such as "(Ch" of "(China)" or
"s," of "Blades,". Measured on CoNLL-2003 with small Unigram models of both
training recipes (benchmarks/README.md), reading "China" through the piece
after its first character and letting the bracket or comma join the entity
cost 1.1-1.5 F1 on natural text. The piece holding a token's first character
is the one a model trained on words learned its label on; separating
punctuation at an entity's edge is left out of it. A marker that Metaspace
prepends to a text reports the text's first character as its own; it is a
bare marker all the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Sequence, Tuple

import numpy as np
import pytest
import spacy
import torch
from tiny_models import _make_config

from spacy_hf_tagger.align.batch import encode_batch
from spacy_hf_tagger.align.pieces import aggregate_token_probs, align_pieces
from spacy_hf_tagger.align.words import word_groups
from spacy_hf_tagger.labels.decoding import _trim_edges
from spacy_hf_tagger.labels.schemes import DecodedSpan, read_label_scheme
from spacy_hf_tagger.labels.targets import piece_targets
from spacy_hf_tagger.model.inputs import encode_texts, release_prepended_markers

IOB = read_label_scheme(dict(enumerate(["O", "B-LOC", "I-LOC", "B-PER", "I-PER"])))
BIOES = read_label_scheme(dict(enumerate(["O", "B-LOC", "I-LOC", "E-LOC", "S-LOC"])))
NLP = spacy.blank("en")


def _word_level_model(tmp_path: Path, texts: List[str], labels: Sequence[str] = IOB.labels) -> Path:
    """A tiny BERT behind a whitespace word-level tokenizer: every
    whitespace-separated chunk ("(China)", "Blades,") is one piece."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertForTokenClassification, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    words = sorted({w for text in texts for w in text.split()})
    vocab = {w: i for i, w in enumerate(specials + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=64,
    )
    model = BertForTokenClassification(_make_config("wordpiece-cased", fast, list(labels), 64))
    out = tmp_path / f"word-level-{len(labels)}"
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out


def _every_piece_says(nlp: spacy.language.Language, label: str) -> None:
    model = nlp.get_pipe("hf_token_tagger").hf_model
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.fill_(-5.0)
        model.classifier.bias[model.config.label2id[label]] = 5.0


TEXTS = [
    "Chen (China) beat Lee",
    "Andrew Blades, Marco",
    '"Oslo" and [Bergen].',
    "paid $57,600 and 10€ (50%)",
]


def _tagger(model: Path, **config: Any) -> spacy.language.Language:
    nlp = spacy.blank("en")
    nlp.add_pipe("hf_token_tagger", config={"model": str(model), "dtype": "float32", **config})
    return nlp


EXPECTED = [
    ["Chen", "China", "beat", "Lee"],
    ["Andrew", "Blades", "Marco"],
    ["Oslo", "and", "Bergen"],
    ["paid", "$57,600", "and", "10€", "50%"],
]


def test_a_bracket_or_comma_in_the_word_piece_stays_out_of_the_entity(tmp_path: Path) -> None:
    nlp = _tagger(_word_level_model(tmp_path, TEXTS))
    _every_piece_says(nlp, "B-LOC")
    docs = list(nlp.pipe(TEXTS))
    # Every piece says LOC: each whitespace chunk is one entity, without the
    # brackets, quotes and commas that share its piece; "$", "€" and "%" can
    # belong to an entity and stay.
    assert [[e.text for e in doc.ents] for doc in docs] == EXPECTED
    for doc in docs:
        # per-token labels agree with the entities
        for ent in doc.ents:
            assert [t._.hf_bio for t in ent] == ["B-LOC"] + ["I-LOC"] * (len(ent) - 1)
        assert all(t._.hf_bio == "O" for t in doc if t.ent_iob_ == "O")
    china = docs[0].ents[1]
    assert (china.start_char, china.end_char) == (6, 11)
    # the trimmed entity's score is over its own tokens
    assert china._.hf_score == pytest.approx(docs[0][2]._.hf_score)
    assert docs[0][1]._.hf_bio == docs[0][3]._.hf_bio == "O"
    # Every piece saying I-LOC makes one entity of each text; only its outer
    # quote and bracket are left out.
    _every_piece_says(nlp, "I-LOC")
    doc = nlp(TEXTS[2])
    assert [e.text for e in doc.ents] == ['Oslo" and [Bergen']


def test_trimming_never_empties_an_entity() -> None:
    spans = [DecodedSpan(0, 1, "LOC", 1.0), DecodedSpan(1, 4, "PER", 0.5)]
    scores = np.array([1.0, 0.25, 0.75, np.nan])
    trimmed = _trim_edges(spans, np.array([True, True, False, True]), scores)
    assert trimmed == [DecodedSpan(0, 1, "LOC", 1.0), DecodedSpan(2, 3, "PER", 0.75)]


def test_separating_punctuation() -> None:
    texts = ["(", "«", "“", "”", ",", ".", "。", "、", "!?", "$", "%", "#", "&", "-", "a", "'"]
    ends = np.cumsum([len(t) for t in texts]).astype(np.int64)
    starts = ends - np.array([len(t) for t in texts], dtype=np.int64)
    groups = word_groups(
        "".join(texts),
        starts,
        ends,
        np.zeros(len(texts), dtype=bool),
        np.r_[True, np.zeros(len(texts) - 1, dtype=bool)],
    )
    assert dict(zip(texts, groups.separating.tolist())) == {
        "(": True,
        "«": True,
        "“": True,
        "”": True,
        ",": True,
        ".": True,
        "。": True,
        "、": True,
        "!?": True,
        "$": False,
        "%": False,
        "#": False,
        "&": False,
        "-": False,
        "a": False,
        "'": True,
    }


def test_tokens_sharing_a_piece_with_a_neighbour() -> None:
    # piece 0: tokens 0-1; piece 1: token 1; piece 2: token 2; piece 3: tokens 3-4
    alignment = align_pieces(np.array([[0, 1], [1, 1], [2, 2], [3, 4]]), 6)
    assert alignment.shares_piece_with_neighbour().tolist() == [
        True,
        True,
        False,
        True,
        True,
        False,
    ]


def _metaspace_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab: List[Tuple[str, float]] = [("<unk>", 0.0), ("▁", -2.0), ("東京", -2.0), ("▁to", -2.0)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=0))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")


def test_a_marker_prepended_to_the_text_covers_nothing() -> None:
    tokenizer = _metaspace_tokenizer()
    text = "東京 to 東京"
    raw = tokenizer.backend_tokenizer.encode(text, add_special_tokens=False)
    assert raw.tokens == ["▁", "東京", "▁to", "▁", "東京"]
    # the backend gives the prepended marker the text's first character
    assert raw.offsets[0] == (0, 1)
    (encoded,) = encode_texts(tokenizer, [text])
    # ... which is not its own; a marker before a space keeps its space
    assert encoded.offsets.tolist() == [[0, 0], [0, 2], [2, 5], [5, 6], [6, 8]]
    assert encoded.ids.tolist() == raw.ids

    def tokenize(texts):
        return [(e.ids, e.offsets) for e in encode_texts(tokenizer, texts)]

    batch = encode_batch([NLP.make_doc(text)], tokenize)
    alignment = batch.alignment
    # both markers are attached to the word they begin, as markers
    assert alignment.piece.tolist() == [0, 1, 2, 3, 4]
    assert alignment.token.tolist() == [0, 0, 1, 2, 2]
    assert alignment.marker is not None
    assert alignment.marker.tolist() == [True, False, False, True, False]


@pytest.mark.parametrize(("labels", "says"), [(IOB.labels, "B-LOC"), (BIOES.labels, "S-LOC")])
def test_the_bracket_rule_holds_for_bioes_and_without_group_words(
    tmp_path: Path, labels: Sequence[str], says: str
) -> None:
    """BIOES: "(" reads S-LOC from "(Ch" and "China" its continuation E-LOC; the
    bracket must not become an entity of its own. And the rule does not hang on
    `group_words`: the model was read (and is trained) through such pieces."""
    model = _word_level_model(tmp_path, TEXTS, labels)
    for group_words in (True, False):
        nlp = _tagger(model, group_words=group_words)
        _every_piece_says(nlp, says)
        assert [[e.text for e in doc.ents] for doc in nlp.pipe(TEXTS)] == EXPECTED


def test_tag_models_read_the_piece_that_starts_in_the_token() -> None:
    """A tag model has a tag for every token; "China" keeps reading the piece
    that starts in it, not the one it shares with "("."""
    # tokens "(" "China" ")"; pieces "(Ch" (tokens 0-1), "ina)" (tokens 1-2)
    ranges = np.array([[0, 1], [1, 2]])
    probs = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    tags = align_pieces(ranges, 3, running_in_first=False)
    assert aggregate_token_probs(probs, tags, "first")[1].tolist() == [0.0, 1.0]
    entities = align_pieces(ranges, 3)
    assert aggregate_token_probs(probs, entities, "first")[1].tolist() == [1.0, 0.0]
    # training: each tag on the piece it is read through, one head per token
    assert piece_targets(np.array([5, 7, 5]), tags, 2).tolist() == [5, 7]


def test_a_marker_never_takes_the_label_of_a_piece_heading_another_token() -> None:
    # pieces "▁" (marker, token 0 "("), "(Ch" (tokens 0-1), "ina)" (tokens 1-2)
    alignment = align_pieces(np.array([[0, 0], [0, 1], [1, 2]]), 3, np.array([1, 0, 0], bool))
    b_loc = IOB.label_index[("B", "LOC")]
    targets = piece_targets(np.array([0, b_loc, 0]), alignment, 3, outside=0)
    assert targets.tolist() == [0, b_loc, 0]


def test_a_marker_character_of_the_text_is_not_released() -> None:
    # "Ġ" is a letter of the text here (a WordPiece vocabulary may hold it)
    offsets = np.array([[0, 1], [1, 8]])
    release_prepended_markers("Ġermanja", np.array([7, 8]), offsets, np.array([7]))
    assert offsets.tolist() == [[0, 1], [1, 8]]
    release_prepended_markers("Lermanja", np.array([7, 8]), offsets, np.array([7]))
    assert offsets.tolist() == [[0, 0], [1, 8]]
