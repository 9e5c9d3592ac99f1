"""`labels.splitting.split_at` on hand-built docs: what a split token hands to
its parts, and what the doc keeps around them (no model needed)."""

from __future__ import annotations

from typing import List

from spacy.tokens import Doc, Span
from spacy.vocab import Vocab

from spacy_hf_tagger.labels.splitting import split_at

WORDS = ["Ich", "traf", "김태웅이고", "gestern", "."]
SPACES = [True, True, True, False, False]


def _doc(**annotations: List) -> Doc:
    return Doc(Vocab(), words=WORDS, spaces=SPACES, **annotations)


def _cut(doc: Doc) -> int:
    return doc[2].idx + 3  # after the name 김태웅, before the particle 이고


def test_tag_pos_morph_go_to_every_part_and_each_part_is_its_own_lemma() -> None:
    doc = _doc(
        tags=["PPER", "VVFIN", "NE", "ADV", "$."],
        pos=["PRON", "VERB", "PROPN", "ADV", "PUNCT"],
        morphs=["Case=Nom", "Tense=Past", "Case=Acc|Number=Sing", "", ""],
        lemmas=["ich", "treffen", "김태웅이고", "gestern", "."],
        sent_starts=[True, False, False, False, False],
    )
    report = split_at(doc, [_cut(doc)], overwrite_ents=False)
    assert (report.tokens_split, report.skipped) == (1, 0)
    assert [t.text for t in doc] == ["Ich", "traf", "김태웅", "이고", "gestern", "."]
    assert [t.tag_ for t in doc] == ["PPER", "VVFIN", "NE", "NE", "ADV", "$."]
    assert [t.pos_ for t in doc] == ["PRON", "VERB", "PROPN", "PROPN", "ADV", "PUNCT"]
    assert [str(t.morph) for t in doc][2:4] == ["Case=Acc|Number=Sing"] * 2
    assert [t.lemma_ for t in doc] == ["ich", "treffen", "김태웅", "이고", "gestern", "."]
    assert [t.is_sent_start for t in doc] == [True, False, False, False, False, False]
    assert [t.whitespace_ for t in doc] == [" ", " ", "", " ", "", ""]


def test_in_a_parsed_doc_the_later_parts_hang_off_the_first() -> None:
    doc = _doc(heads=[1, 1, 1, 1, 1], deps=["nsubj", "ROOT", "obj", "advmod", "punct"])
    split_at(doc, [_cut(doc)], overwrite_ents=False)
    assert [(t.text, t.dep_, t.head.text) for t in doc] == [
        ("Ich", "nsubj", "traf"),
        ("traf", "ROOT", "traf"),
        ("김태웅", "obj", "traf"),
        ("이고", "subtok", "김태웅"),
        ("gestern", "advmod", "traf"),
        (".", "punct", "traf"),
    ]
    assert [t.is_sent_start for t in doc] == [True, False, False, False, False, False]


def test_entities_and_span_groups_stay_at_their_characters() -> None:
    doc = _doc(ents=["O", "O", "O", "B-DATE", "O"])
    doc.spans["rules"] = [Span(doc, 0, 1, label="PRON"), Span(doc, 3, 5, label="TIME")]
    doc.spans["rules"].attrs["scores"] = [0.5, 0.25]
    split_at(doc, [_cut(doc)], overwrite_ents=False)
    assert [(e.text, e.label_) for e in doc.ents] == [("gestern", "DATE")]
    assert [t.ent_iob_ for t in doc] == ["O", "O", "O", "O", "B", "O"]
    assert [(s.text, s.label_) for s in doc.spans["rules"]] == [
        ("Ich", "PRON"),
        ("gestern.", "TIME"),
    ]
    assert doc.spans["rules"].attrs["scores"] == [0.5, 0.25]


def test_a_doc_without_entity_annotation_stays_without() -> None:
    doc = _doc()
    assert not doc.has_annotation("ENT_IOB")
    split_at(doc, [_cut(doc)], overwrite_ents=False)
    assert len(doc) == 6
    assert not doc.has_annotation("ENT_IOB")
    assert [t.ent_iob_ for t in doc] == [""] * 6


def test_a_token_in_an_earlier_entity_is_not_split_unless_it_may_be_overwritten() -> None:
    doc = _doc(ents=["O", "O", "B-PERSON", "O", "O"])
    report = split_at(doc, [_cut(doc)], overwrite_ents=False)
    assert (report.tokens_split, report.skipped, len(doc)) == (0, 1, 5)
    assert [(e.text, e.label_) for e in doc.ents] == [("김태웅이고", "PERSON")]
    report = split_at(doc, [_cut(doc)], overwrite_ents=True)
    assert (report.tokens_split, report.skipped, len(doc)) == (1, 0, 6)


def test_offsets_on_token_edges_or_outside_any_token_split_nothing() -> None:
    doc = _doc()
    edges = [0, doc[2].idx, doc[2].idx + len(doc[2]), len(doc.text), len(doc.text) + 5]
    report = split_at(doc, edges, overwrite_ents=False)
    assert (report.tokens_split, report.skipped, len(doc)) == (0, 0, 5)
