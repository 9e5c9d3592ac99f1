"""Entities that begin or end inside a spaCy token (issue 27): `doc._.hf_char_ents`
at exact character offsets, `split_tokens`, and the rule without it.

Why: in Korean (`김태웅이고`), Turkish (`Ankara'dan`), glued identifiers and text
that lost its spaces, the model's entity ends inside a spaCy token. Tiny models of
two tokenizer families (WordPiece; SentencePiece Metaspace) memorise per-character
entities (`tiny_models`, data "subtoken"), so the tests assert exact offsets.
Korean uses spaCy's rule-based tokenizer (`spacy.Tokenizer.v1`: the default needs
mecab); Japanese and Chinese run in a blank "xx" pipeline, whose tokenizer keeps a
sentence without spaces as one token (spaCy's own "ja" needs SudachiPy, and "zh"
cuts every character, so no boundary falls inside a token there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest
import spacy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spacy.language import Language
from spacy.tokens import DocBin
from tiny_models import training_sentences

from spacy_hf_tagger.labels.char_spans import snap_to_tokens

TinyModelFactory = Callable[..., Path]
FAMILIES = ("wordpiece-cased", "sentencepiece-xlmr")
KOREAN = {"nlp": {"tokenizer": {"@tokenizers": "spacy.Tokenizer.v1"}}}
# The language each training sentence is read in (default "en").
LANGS: Dict[int, Tuple[str, Dict[str, Any]]] = {
    0: ("ko", KOREAN),
    1: ("ko", KOREAN),
    2: ("tr", {}),
    6: ("xx", {}),
    7: ("xx", {}),
}
SENTENCES = training_sentences("subtoken")


@pytest.fixture(scope="module")
def model_dirs(tiny_models: TinyModelFactory) -> Dict[str, Path]:
    return {f: tiny_models(f, train_steps=150, data="subtoken") for f in FAMILIES}


def _nlp(path: Path, k: int, **config: Any) -> Language:
    lang, cfg = LANGS.get(k, ("en", {}))
    nlp = spacy.blank(lang, config=cfg)
    nlp.add_pipe(
        "hf_token_tagger",
        config={"model": str(path), "device": "cpu", "dtype": "float32", **config},
    )
    return nlp


def _char_ents(doc: Any) -> List[Tuple[int, int, str]]:
    return [(s, e, label) for s, e, label, _ in doc._.hf_char_ents]


def _ents(doc: Any) -> List[Tuple[int, int, str]]:
    return [(e.start_char, e.end_char, e.label_) for e in doc.ents]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("k", range(len(SENTENCES)))
def test_char_ents_are_exact_without_splitting(
    model_dirs: Dict[str, Path], family: str, k: int
) -> None:
    text, gold = SENTENCES[k]
    nlp = _nlp(model_dirs[family], k)
    words = [t.text for t in nlp.make_doc(text)]
    doc = nlp(text)
    assert [t.text for t in doc] == words  # tokens untouched
    assert _char_ents(doc) == gold
    for _, _, _, score in doc._.hf_char_ents:
        assert 0.5 < score <= 1.0


# doc.ents without split_tokens: the decoded entities, as always (a token read
# through its first piece), and (widened, dropped): the exact entities with an
# edge inside a token that a decoded entity of their label holds, or none does.
SNAPPED = {
    0: ([(0, 5, "PER"), (6, 9, "LOC")], (2, 0)),
    3: ([(1, 13, "PER"), (22, 27, "LOC")], (0, 0)),
    4: ([(0, 18, "PER")], (1, 1)),
    5: ([(9, 28, "PER")], (1, 1)),
    6: ([(0, 11, "PER")], (1, 1)),
    8: ([(0, 5, "PER"), (15, 21, "LOC")], (0, 0)),
}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("k", sorted(SNAPPED))
def test_without_splitting_doc_ents_stay_decoded_and_edges_are_counted(
    model_dirs: Dict[str, Path], family: str, k: int
) -> None:
    text = SENTENCES[k][0]
    nlp = _nlp(model_dirs[family], k)
    tagger = nlp.get_pipe("hf_token_tagger")
    doc = nlp(text)
    ents, (widened, dropped) = SNAPPED[k]
    assert _ents(doc) == ents
    assert [t._.hf_bio for t in doc] == _iob(doc)
    assert tagger.counters["ents_widened"] == widened
    assert tagger.counters["ents_dropped_in_token"] == dropped
    if k == 8:  # every boundary on a token edge: the decoded entities, same scores
        assert list(doc._.hf_char_ents) == [
            (e.start_char, e.end_char, e.label_, e._.hf_score) for e in doc.ents
        ]


def _iob(doc: Any) -> List[str]:
    return [f"{t.ent_iob_}-{t.ent_type_}" if t.ent_iob_ in "BI" else "O" for t in doc]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("k", range(len(SENTENCES)))
def test_split_tokens_makes_doc_ents_exact(
    model_dirs: Dict[str, Path], family: str, k: int
) -> None:
    text, gold = SENTENCES[k]
    nlp = _nlp(model_dirs[family], k, split_tokens=True)
    doc = nlp(text)
    assert doc.text == text
    assert _ents(doc) == gold
    assert _char_ents(doc) == gold
    assert [t._.hf_bio for t in doc] == _iob(doc)
    for token in doc:
        if token.ent_iob_ in ("B", "I"):
            assert 0.5 < token._.hf_score <= 1.0
    if k == 0:
        assert [t.text for t in doc] == ["김태웅", "이고", "서울", "에", "산다", "."]
        assert nlp.get_pipe("hf_token_tagger").counters["tokens_split"] == 2


def test_korean_particle_example(model_dirs: Dict[str, Path]) -> None:
    """The README's example, as it reads there."""
    nlp = _nlp(model_dirs["sentencepiece-xlmr"], 0, split_tokens=True)
    doc = nlp("김태웅이고 서울에 산다.")
    assert [(e.text, e.label_) for e in doc.ents] == [("김태웅", "PER"), ("서울", "LOC")]


def test_an_earlier_entity_keeps_its_token_and_the_skip_is_counted(
    model_dirs: Dict[str, Path],
) -> None:
    text = SENTENCES[0][0]
    nlp = spacy.blank("ko", config=KOREAN)
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "NAME", "pattern": "김태웅이고"}])
    nlp.add_pipe("span_ruler", config={"spans_key": "rules", "annotate_ents": False}).add_patterns(
        [{"label": "PLACE", "pattern": "산다"}]
    )
    nlp.add_pipe(
        "hf_token_tagger",
        config={
            "model": str(model_dirs["sentencepiece-xlmr"]),
            "device": "cpu",
            "dtype": "float32",
            "split_tokens": True,
            "errors": "ignore",
        },
    )
    doc = nlp(text)
    tagger = nlp.get_pipe("hf_token_tagger")
    assert [t.text for t in doc] == ["김태웅이고", "서울", "에", "산다", "."]
    assert _ents(doc) == [(0, 5, "NAME"), (6, 8, "LOC")]
    assert [(s.text, s.label_) for s in doc.spans["rules"]] == [("산다", "PLACE")]
    assert tagger.counters["token_splits_skipped"] == 1
    assert tagger.counters["ents_conflicts"] == 1
    assert _char_ents(doc) == SENTENCES[0][1]  # the model's view stays available


@pytest.mark.parametrize("split", [False, True])
def test_round_trips_keep_char_ents(
    model_dirs: Dict[str, Path], tmp_path: Path, split: bool
) -> None:
    nlp = _nlp(model_dirs["wordpiece-cased"], 4, split_tokens=split)
    docs = [nlp(text) for text, _ in SENTENCES[3:6]]
    data = DocBin(docs=docs, store_user_data=True).to_bytes()
    back = list(DocBin(store_user_data=True).from_bytes(data).get_docs(nlp.vocab))
    for doc, copy in zip(docs, back):
        assert copy._.hf_char_ents == doc._.hf_char_ents
        assert _ents(copy) == _ents(doc)
        assert [t.text for t in copy] == [t.text for t in doc]
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    for (text, _), doc in zip(SENTENCES[3:6], docs):
        again = loaded(text)
        assert _ents(again) == _ents(doc)
        assert [c[:3] for c in again._.hf_char_ents] == [c[:3] for c in doc._.hf_char_ents]
        for a, b in zip(again._.hf_char_ents, doc._.hf_char_ents):
            assert a[3] == pytest.approx(b[3], abs=1e-6)


GLUE = st.sampled_from(["", " ", "  ", "\n", ", "])


@settings(
    max_examples=20,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    parts=st.lists(st.sampled_from([t for t, _ in SENTENCES]), min_size=1, max_size=4),
    glue=st.lists(GLUE, min_size=4, max_size=4),
    family=st.sampled_from(FAMILIES),
)
def test_with_split_tokens_every_char_entity_is_a_doc_ent(
    model_dirs: Dict[str, Path], parts: List[str], glue: List[str], family: str
) -> None:
    text = "".join(p + g for p, g in zip(parts, glue))
    nlp = _nlp(model_dirs[family], -1, split_tokens=True)
    doc = nlp(text)
    assert doc.text == text
    assert nlp.get_pipe("hf_token_tagger").counters["token_splits_skipped"] == 0
    assert _ents(doc) == _char_ents(doc)
    assert [t._.hf_bio for t in doc] == _iob(doc)
    for start, end, _, _ in doc._.hf_char_ents:
        assert text[start] == text[start].strip() and text[end - 1] == text[end - 1].strip()


def test_snap_rule_on_arrays() -> None:
    """Tokens `abcd` `ef` `ghijk`: edges inside take a token when they hold half of it."""
    starts, ends = [0, 5, 8], [4, 7, 13]
    spans, counts = snap_to_tokens(
        [(0, 2, "A", 0.9), (6, 7, "B", 0.8), (9, 10, "C", 0.7)], starts, ends
    )
    assert spans == [(0, 1, "A", 0.9), (1, 2, "B", 0.8)]
    assert (counts.widened, counts.narrowed, counts.dropped) == (2, 0, 1)
    spans, counts = snap_to_tokens([(1, 10, "A", 0.5)], starts, ends)
    assert spans == [(0, 2, "A", 0.5)]  # 3 of 4 in, 2 of 5 out
    assert (counts.widened, counts.narrowed, counts.dropped) == (1, 1, 0)


@pytest.mark.parametrize("family", FAMILIES)
def test_char_entities_under_the_threshold_are_dropped_and_counted(
    model_dirs: Dict[str, Path], family: str
) -> None:
    """Sentence 4 has two exact entities with an edge inside a token (one held
    by a decoded entity, one not: `SNAPPED`); under a threshold no score
    reaches, both are left out of `hf_char_ents` and counted, and the decoded
    entity is dropped as any entity under the threshold is."""
    text, gold = SENTENCES[4]
    nlp = _nlp(model_dirs[family], 4, threshold=1.0)
    tagger = nlp.get_pipe("hf_token_tagger")
    doc = nlp(text)
    assert doc._.hf_char_ents == ()
    assert list(doc.ents) == []
    assert tagger.counters["char_ents_below_threshold"] == len(gold) == 2
    assert tagger.counters["ents_below_threshold"] == 1
