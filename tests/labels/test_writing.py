"""Writing predictions onto a Doc: who wins when a prediction meets a rule's entity.

Why: spaCy refuses overlapping entities (E1010). A prediction that overlaps an
entity set by an earlier component only in part must be seen as a conflict, from
either side, whichever policy (`overwrite_ents`) is in force.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import pytest
import spacy
from spacy.tokens import Doc, Span, Token

from spacy_hf_tagger.labels import writing
from spacy_hf_tagger.labels.writing import (
    BIO_ATTR,
    SCORE_ATTR,
    EntityPrediction,
    _keys_match,
    register_extensions,
    write_entities,
    write_tags,
    write_token_outputs,
)

register_extensions()
NLP = spacy.blank("en")
TEXT = "Sarah met John Smith in New York City today"  # 9 tokens


def doc_with_rule(start: int, end: int, label: str = "RULE"):
    doc = NLP.make_doc(TEXT)
    doc.ents = [Span(doc, start, end, label=label)]
    return doc


def prediction(*spans: Tuple[int, int, str]) -> EntityPrediction:
    n = 9
    return EntityPrediction(
        spans=[(s, e, label, 0.9) for s, e, label in spans],
        token_labels=["O"] * n,
        token_scores=[0.5] * n,
    )


def ents(doc) -> List[Tuple[int, int, str]]:
    return [(e.start, e.end, e.label_) for e in doc.ents]


# The rule holds "New York" (5, 7); predictions overlap it on the left, on the
# right, inside, around, or not at all.
@pytest.mark.parametrize(
    ("predicted", "overlaps"),
    [
        ((4, 6, "LOC"), True),  # "in New": starts before the rule, ends inside it
        ((6, 8, "LOC"), True),  # "York City": starts inside, ends after
        ((5, 6, "LOC"), True),  # "New": inside
        ((4, 8, "LOC"), True),  # "in New York City": around
        ((2, 4, "PER"), False),  # "John Smith"
    ],
)
def test_rule_entity_wins_every_overlap(predicted, overlaps):
    doc = doc_with_rule(5, 7)
    report = write_entities(
        doc, prediction(predicted), set_ents=True, spans_key="hf", overwrite_ents=False
    )
    if overlaps:
        assert ents(doc) == [(5, 7, "RULE")]
        assert report.conflicts == [predicted]
    else:
        assert ents(doc) == [predicted, (5, 7, "RULE")]
        assert report.conflicts == []
    # The spans group keeps every prediction, the losing one too.
    assert [(s.start, s.end, s.label_) for s in doc.spans["hf"]] == [predicted]


@pytest.mark.parametrize("predicted", [(4, 6, "LOC"), (6, 8, "LOC"), (5, 6, "LOC"), (4, 8, "LOC")])
def test_overwrite_ents_removes_every_overlapped_rule_entity(predicted):
    doc = doc_with_rule(5, 7)
    report = write_entities(
        doc, prediction(predicted), set_ents=True, spans_key=None, overwrite_ents=True
    )
    assert ents(doc) == [predicted]
    assert report.replaced == 1 and report.conflicts == []


def test_overwrite_ents_keeps_rule_entities_it_does_not_touch():
    doc = NLP.make_doc(TEXT)
    doc.ents = [Span(doc, 0, 1, label="RULE"), Span(doc, 5, 7, label="RULE")]
    report = write_entities(
        doc, prediction((6, 8, "LOC")), set_ents=True, spans_key=None, overwrite_ents=True
    )
    assert ents(doc) == [(0, 1, "RULE"), (6, 8, "LOC")]
    assert report.replaced == 1


def test_same_entity_from_the_rule_is_no_conflict():
    doc = doc_with_rule(5, 7, "LOC")
    report = write_entities(
        doc, prediction((5, 7, "LOC")), set_ents=True, spans_key=None, overwrite_ents=False
    )
    assert ents(doc) == [(5, 7, "LOC")] and report.conflicts == []


# --- what our extensions say about entities another component set ----------------------


def labelled(n: int = 9) -> EntityPrediction:
    """The model's per-token view: "New York" (5, 7) as LOC, everything else O."""
    labels = ["O"] * n
    labels[5:7] = ["B-LOC", "I-LOC"]
    return EntityPrediction(spans=[(5, 7, "LOC", 0.8)], token_labels=labels, token_scores=[0.5] * n)


def test_a_rule_entity_over_the_same_characters_shows_no_model_score():
    doc = doc_with_rule(5, 7, "GPE")
    write_entities(doc, labelled(), set_ents=True, spans_key="hf", overwrite_ents=False)
    (rule,) = doc.ents
    assert (rule.label_, rule._.hf_score) == ("GPE", None)
    # Tokens under the rule's entity: not ours to label.
    assert [t._.hf_bio for t in doc] == ["O"] * 5 + [None, None] + ["O"] * 2
    assert [t._.hf_score for t in doc] == [0.5] * 5 + [None, None] + [0.5] * 2
    # The model's view stays in the spans group, score in its attrs.
    group = doc.spans["hf"]
    assert [(s.start, s.end, s.label_) for s in group] == [(5, 7, "LOC")]
    assert group.attrs["scores"] == [0.8]


def test_a_rule_entity_we_agree_with_keeps_our_labels_and_score():
    doc = doc_with_rule(5, 7, "LOC")
    write_entities(doc, labelled(), set_ents=True, spans_key=None, overwrite_ents=False)
    (ent,) = doc.ents
    assert ent._.hf_score == pytest.approx(0.8)
    assert [t._.hf_bio for t in doc][5:7] == ["B-LOC", "I-LOC"]


def test_tokens_under_other_rule_entities_are_not_ours():
    doc = NLP.make_doc(TEXT)
    doc.ents = [Span(doc, 0, 1, label="PERSON")]  # "Sarah", where the model says O
    write_entities(doc, labelled(), set_ents=True, spans_key=None, overwrite_ents=True)
    assert [(e.start, e.end, e.label_) for e in doc.ents] == [(0, 1, "PERSON"), (5, 7, "LOC")]
    assert doc[0]._.hf_bio is None and doc[0]._.hf_score is None
    assert [t._.hf_bio for t in doc][5:7] == ["B-LOC", "I-LOC"]


def test_without_writing_ents_the_tokens_carry_the_models_view():
    doc = doc_with_rule(5, 7, "GPE")
    write_entities(doc, labelled(), set_ents=False, spans_key="hf", overwrite_ents=False)
    assert [t._.hf_bio for t in doc][5:7] == ["B-LOC", "I-LOC"]
    assert doc.spans["hf"][0]._.hf_score == pytest.approx(0.8)


def test_the_spans_group_is_named_by_its_key() -> None:
    doc = doc_with_rule(5, 7, "GPE")
    write_entities(doc, labelled(), set_ents=True, spans_key="hf", overwrite_ents=False)
    assert doc.spans["hf"].name == "hf"


# --- extensions ---------------------------------------------------------------------------

_EXTENSIONS = [(Token, BIO_ATTR), (Token, SCORE_ATTR), (Span, SCORE_ATTR)]


def test_register_extensions_declares_none_defaults_once() -> None:
    try:
        for cls, name in _EXTENSIONS:
            cls.remove_extension(name)
        register_extensions()
        register_extensions()  # a second component instance: no error, nothing changes
        for cls, name in _EXTENSIONS:
            assert cls.get_extension(name) == (None, None, None, None)
        doc = NLP.make_doc(TEXT)
        assert (doc[0]._.hf_bio, doc[0]._.hf_score, doc[0:2]._.hf_score) == (None, None, None)
    finally:
        for cls, name in _EXTENSIONS:
            cls.set_extension(name, default=None, force=True)


# --- token outputs: the fast user_data path and the public API agree ------------------------


def test_token_and_span_extensions_use_the_user_data_layout_we_write_directly() -> None:
    assert _keys_match() is True


LABELS: List[Optional[str]] = ["B-PER", None, "O", "B-LOC", "I-LOC", "O", None, "O", "O"]
SCORES: List[Optional[float]] = [0.9, None, 0.8, 0.7, 0.6, 0.5, None, 0.4, 0.3]


@pytest.mark.parametrize("direct", [True, False, None])
def test_token_outputs_read_back_through_the_public_api(
    monkeypatch: pytest.MonkeyPatch, direct: Optional[bool]
) -> None:
    # True: writes user_data directly; False: token._.set; None: probes spaCy first.
    monkeypatch.setattr(writing, "_DIRECT_KEYS", direct)
    doc = NLP.make_doc(TEXT)
    write_token_outputs(doc, LABELS, SCORES)
    assert [t._.hf_bio for t in doc] == LABELS
    assert [t._.hf_score for t in doc] == SCORES


@pytest.mark.parametrize("direct", [True, False])
def test_write_entities_token_outputs_on_either_path(
    monkeypatch: pytest.MonkeyPatch, direct: bool
) -> None:
    monkeypatch.setattr(writing, "_DIRECT_KEYS", direct)
    doc = doc_with_rule(0, 1, "PERSON")
    write_entities(
        doc,
        labelled(),
        set_ents=True,
        spans_key=None,
        overwrite_ents=False,
        token_idx=doc.to_array("IDX"),
    )
    assert [t._.hf_bio for t in doc] == [None, "O", "O", "O", "O", "B-LOC", "I-LOC", "O", "O"]
    assert [t._.hf_score for t in doc] == [None] + [0.5] * 8
    assert [(e.start, e.end, e.label_, e._.hf_score) for e in doc.ents] == [
        (0, 1, "PERSON", None),
        (5, 7, "LOC", 0.8),
    ]


# --- tags ---------------------------------------------------------------------------------


def tagged_doc() -> Doc:
    doc = NLP.make_doc("Cats chase small mice .")
    doc[2].tag_ = "JJ"  # set by an earlier component
    doc[2].pos_ = "ADJ"
    return doc


TAGS: List[Optional[str]] = ["NOUN", "VERB", None, "NOUN", "PUNCT"]
TAG_SCORES: List[Optional[float]] = [0.9, 0.8, None, 0.7, 0.6]


@pytest.mark.parametrize("direct", [True, False])
def test_write_tags_to_tag_and_pos(monkeypatch: pytest.MonkeyPatch, direct: bool) -> None:
    monkeypatch.setattr(writing, "_DIRECT_KEYS", direct)
    doc = tagged_doc()
    write_tags(doc, TAGS, TAG_SCORES, attrs=["tag", "pos"], token_idx=doc.to_array("IDX"))
    # None leaves the earlier component's tag in place, and the tokens after it are written
    assert [t.tag_ for t in doc] == ["NOUN", "VERB", "JJ", "NOUN", "PUNCT"]
    assert [t.pos_ for t in doc] == ["NOUN", "VERB", "ADJ", "NOUN", "PUNCT"]
    assert [t._.hf_bio for t in doc] == TAGS
    assert [t._.hf_score for t in doc] == TAG_SCORES


def test_write_tags_only_to_the_attributes_asked_for() -> None:
    doc = tagged_doc()
    write_tags(doc, TAGS, TAG_SCORES, attrs=["tag"])
    assert [t.tag_ for t in doc] == ["NOUN", "VERB", "JJ", "NOUN", "PUNCT"]
    assert [t.pos_ for t in doc] == ["", "", "ADJ", "", ""]
    assert [t._.hf_bio for t in doc] == TAGS


def test_write_tags_to_no_attribute_still_sets_the_extensions() -> None:
    doc = tagged_doc()
    write_tags(doc, TAGS, TAG_SCORES, attrs=[])
    assert [t.tag_ for t in doc] == ["", "", "JJ", "", ""]
    assert [t._.hf_score for t in doc] == TAG_SCORES
