"""End-to-end tests of the `hf_token_tagger` component with exact expected values.

Why: the unit tests check each pure step (alignment, windows, decoding) in isolation;
these run the whole component through spaCy, the way a user does, on tiny models of
every tokenizer family that were trained to memorise ``training_sentences()``, so the
expected entities are known exactly. They pin the invariants and pitfalls of
docs/design.md sections 2 and 3: gold entities through every family, hf_bio agreeing with
doc.ents, long texts never truncated, the same output however docs are batched,
chaining with rule components (nothing lost silently), label schemes (BIOES, IO,
hyphenated types, POS/tag sets), DocBin round trips, and a real checkpoint on natural
punctuation.
"""

from __future__ import annotations

import random
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pytest
import spacy
import torch
from spacy.tokens import Doc, DocBin
from tiny_models import FAMILIES, training_sentences

# What dtype="auto" runs in changes these: CI runs them again with each precision.
pytestmark = pytest.mark.precision

TinyModelFactory = Callable[..., Path]

TRAIN_STEPS = 100
SARAH = "My name is Sarah and I live in Paris."
SARAH_GOLD = [(11, 16, "PER"), (31, 36, "LOC")]
UPOS = ["NOUN", "VERB", "PROPN", "PUNCT", "ADP", "DET", "PRON", "X"]
PTB = ["NN", "VB", "NNP", ".", "IN", "DT", "PRP", "-LRB-"]


# ---------------------------------------------------------------------------- helpers


def _nlp(model: Path | str, **cfg: Any):
    """A blank English pipeline with hf_token_tagger and settings `cfg`."""
    nlp = spacy.blank("en")
    nlp.add_pipe("hf_token_tagger", config={"model": str(model), **cfg})
    return nlp


def _ents(doc: Doc) -> List[Tuple[int, int, str]]:
    return [(e.start_char, e.end_char, e.label_) for e in doc.ents]


def _iob2(doc: Doc, spans: Sequence[Any]) -> List[str]:
    tags = ["O"] * len(doc)
    for span in spans:
        tags[span.start] = f"B-{span.label_}"
        for i in range(span.start + 1, span.end):
            tags[i] = f"I-{span.label_}"
    return tags


def _annotations(doc: Doc, key: str = "hf_ents") -> Dict[str, Any]:
    """Everything the component writes, in plain values, for comparisons."""
    group = doc.spans[key] if key in doc.spans else []
    return {
        "ents": _ents(doc),
        "ent_scores": [e._.hf_score for e in doc.ents],
        "spans": [(s.start_char, s.end_char, s.label_) for s in group],
        "span_scores": list(group.attrs.get("scores", [])) if key in doc.spans else [],
        "bio": [t._.hf_bio for t in doc],
        "scores": [t._.hf_score for t in doc],
    }


def _assert_same(a: Dict[str, Any], b: Dict[str, Any], tol: float = 1e-5) -> None:
    """Labels exactly equal; probabilities equal up to float noise of padding."""
    for key in ("ents", "spans", "bio"):
        assert a[key] == b[key], key
    for key in ("ent_scores", "span_scores", "scores"):
        assert len(a[key]) == len(b[key]), key
        for x, y in zip(a[key], b[key]):
            assert (x is None) == (y is None), key
            if x is not None:
                assert x == pytest.approx(y, abs=tol), key


def _check_consistent(doc: Doc, key: Optional[str] = "hf_ents") -> None:
    """hf_bio is IOB2 of doc.ents; span scores are token-score means; spans match ents."""
    assert [t._.hf_bio for t in doc] == _iob2(doc, doc.ents)
    for ent in doc.ents:
        assert isinstance(ent[0]._.hf_score, float) and isinstance(ent[-1]._.hf_score, float)
        token_scores = [t._.hf_score for t in ent]
        if None in token_scores:
            # Whitespace inside an entity has no score (see test_span_score_with_inner_space).
            assert all(t.is_space for t in ent if t._.hf_score is None)
            continue
        assert ent._.hf_score == pytest.approx(sum(token_scores) / len(token_scores), abs=1e-6)
    if key is not None:
        group = doc.spans[key]
        assert [(s.start, s.end, s.label_) for s in group] == [
            (e.start, e.end, e.label_) for e in doc.ents
        ]
        assert group.attrs["scores"] == pytest.approx([e._.hf_score for e in doc.ents], abs=1e-6)
        for span, score in zip(group, group.attrs["scores"]):
            assert span._.hf_score == pytest.approx(score, abs=1e-6)


@pytest.fixture(scope="module")
def trained(tiny_models: TinyModelFactory) -> Callable[[str], Path]:
    """The trained (memorising) tiny model of a family, window of 32 subwords."""
    return lambda family: tiny_models(family, train_steps=TRAIN_STEPS)


@pytest.fixture(scope="module")
def wordpiece_nlp(trained: Callable[[str], Path]):
    """One shared default pipeline over the trained cased WordPiece model."""
    return _nlp(trained("wordpiece-cased"))


# ------------------------------------------------------------ gold entities, all families


@pytest.mark.parametrize("family", FAMILIES)
def test_training_sentences_give_exact_gold_entities(
    family: str, trained: Callable[[str], Path]
) -> None:
    nlp = _nlp(trained(family))
    data = training_sentences()
    docs = list(nlp.pipe([text for text, _ in data]))
    for doc, (text, gold) in zip(docs, data):
        assert doc.text == text
        assert _ents(doc) == gold, text
        _check_consistent(doc)
        for token in doc:
            assert isinstance(token._.hf_bio, str)
            assert isinstance(token._.hf_score, float) and 0.0 <= token._.hf_score <= 1.0
    counters = nlp.get_pipe("hf_token_tagger").counters
    assert counters["docs"] == len(data)
    assert counters["ents_conflicts"] == counters["ents_lost"] == 0


def test_factory_found_through_entry_point() -> None:
    """spaCy finds the factory through the `spacy_factories` entry point, so
    `nlp.add_pipe("hf_token_tagger")` needs no import of the package.

    (Checked through the installed metadata rather than a fresh interpreter: a
    subprocess that imports torch costs ~20 s on a loaded 2-core machine.)
    """
    from importlib.metadata import entry_points

    from spacy_hf_tagger.component import make_hf_token_tagger

    found = [ep for ep in entry_points(group="spacy_factories") if ep.name == "hf_token_tagger"]
    assert len(found) == 1
    assert found[0].load() is make_hf_token_tagger
    assert spacy.blank("en").has_factory("hf_token_tagger")


@pytest.mark.parametrize(
    "family",
    ["wordpiece-cased", "wordpiece-uncased", "sentencepiece-xlmr", "sentencepiece-deberta"],
)
def test_whitespace_inside_an_entity_joins_it(family: str, trained: Callable[[str], Path]) -> None:
    """Extra whitespace tokens have no piece: O, except inside an entity, which they
    join (score None). (The tiny byte-level BPE model sees extra spaces as pieces of
    their own and, being tiny, splits "Los  Angeles"; a model question, so it is left
    out.)"""
    nlp = _nlp(trained(family))
    doc = nlp("  Sarah  Connor met John in Los  Angeles.\n")
    assert [(e.text, e.label_) for e in doc.ents] == [
        ("Sarah  Connor", "PER"),
        ("John", "PER"),
        ("Los  Angeles", "LOC"),
    ]
    spaces = [(t.i, t._.hf_bio, t._.hf_score) for t in doc if t.is_space]
    assert spaces == [(0, "O", None), (2, "I-PER", None), (8, "I-LOC", None), (11, "O", None)]
    _check_consistent(doc)


# ------------------------------------------------------------------------- long texts


# Each filler sentence is 8 words. The tiny models memorised sentences that start a
# window; after this filler (and after 3 or more copies of it), every family still
# finds the memorised entities of SARAH wherever the window cuts the filler.
FILLER = "The meeting ended early because nobody was ready. "


def _tail_annotations(doc: Doc, n_chars: int) -> List[Tuple[str, str, Optional[float]]]:
    """(token text, hf_bio, hf_score) of the tokens in the last `n_chars` characters."""
    start = len(doc.text) - n_chars
    return [(t.text, t._.hf_bio, t._.hf_score) for t in doc if t.idx >= start]


@pytest.mark.parametrize("family", FAMILIES)
def test_long_text_entity_at_the_very_end(family: str, trained: Callable[[str], Path]) -> None:
    """Many tiny windows: the memorised sentence at the very end is still found,
    and with exactly the predictions of the last window (same as after a short filler,
    whose last window holds the same pieces)."""
    nlp = _nlp(trained(family))
    tagger = nlp.get_pipe("hf_token_tagger")
    filler = FILLER * 40
    doc = nlp(filler + SARAH)
    n_pieces = len(tagger.tokenizer(doc.text, add_special_tokens=False)["input_ids"])
    assert n_pieces > 10 * 32  # really many windows
    found = set(_ents(doc))
    for start, end, label in SARAH_GOLD:
        assert (start + len(filler), end + len(filler), label) in found
    assert [t._.hf_bio for t in doc] == _iob2(doc, doc.ents)
    assert all(isinstance(t._.hf_bio, str) for t in doc)
    short = nlp(FILLER * 3 + SARAH)
    got, want = _tail_annotations(doc, len(SARAH)), _tail_annotations(short, len(SARAH))
    assert [g[:2] for g in got] == [w[:2] for w in want]
    assert [g[2] for g in got] == pytest.approx([w[2] for w in want], abs=1e-5)


def test_twenty_thousand_words_entity_at_the_end(wordpiece_nlp) -> None:
    filler = FILLER * 2500
    text = filler + SARAH
    assert len(text.split()) >= 20_000
    started = time.perf_counter()
    doc = wordpiece_nlp(text)
    elapsed = time.perf_counter() - started
    found = set(_ents(doc))
    for start, end, label in SARAH_GOLD:
        assert (start + len(filler), end + len(filler), label) in found
    assert doc[-1]._.hf_bio == "O" and doc[-2]._.hf_bio == "B-LOC"
    assert [t._.hf_bio for t in doc] == _iob2(doc, doc.ents)
    # About 1-2 s on one loaded core; a generous bound against quadratic regressions.
    assert elapsed < 60, elapsed


@pytest.mark.parametrize("family", FAMILIES)
def test_sentinel_model_max_length(family: str, tiny_models: TinyModelFactory) -> None:
    """model_max_length = 1e30 sentinel: the window comes from max_position_embeddings
    (minus the position offset for RoBERTa/XLM-R), so long texts still run. The
    RoBERTa model, whose offset is the trap, is trained and must find the entities."""
    trained = family == "bpe-roberta"
    path = tiny_models(family, model_max_length=None, train_steps=TRAIN_STEPS if trained else 0)
    nlp = _nlp(path)
    tagger = nlp.get_pipe("hf_token_tagger")
    assert tagger.tokenizer.model_max_length > 1e20
    filler = FILLER * 30
    doc = nlp(filler + SARAH)  # position ids would overflow without the right window
    assert [t.text for t in doc] == [t.text for t in nlp.make_doc(filler + SARAH)]
    assert [t._.hf_bio for t in doc] == _iob2(doc, doc.ents)
    assert all(isinstance(t._.hf_score, float) for t in doc if not t.is_space)
    if trained:
        found = set(_ents(doc))
        for start, end, label in SARAH_GOLD:
            assert (start + len(filler), end + len(filler), label) in found
        data = training_sentences()
        for doc, (text, gold) in zip(nlp.pipe(text for text, _ in data), data):
            assert _ents(doc) == gold, text


# ------------------------------------------------------------------ same input, same output


def _texts() -> List[str]:
    """Memorised sentences, a long multi-window text, and edge cases."""
    sentences = [text for text, _ in training_sentences()]
    long_text = " ".join(sentences[:8])
    return [*sentences[:10], long_text, "", "   ", "Paris", "\n\nSarah  lives\tin  Rome .\n"]


def test_call_vs_pipe_and_batch_sizes(trained: Callable[[str], Path]) -> None:
    nlp = _nlp(trained("wordpiece-cased"))
    texts = _texts()
    reference = [_annotations(nlp(text)) for text in texts]
    for batch_size in (1, 3, 100):
        docs = list(nlp.pipe(texts, batch_size=batch_size))
        for doc, ref in zip(docs, reference):
            _assert_same(_annotations(doc), ref)
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    for doc, i in zip(nlp.pipe([texts[i] for i in order], batch_size=4), order):
        _assert_same(_annotations(doc), reference[i])


@pytest.mark.parametrize("family", ["wordpiece-uncased", "bpe-roberta", "sentencepiece-deberta"])
def test_component_batch_size_and_subword_budget(
    family: str, trained: Callable[[str], Path]
) -> None:
    # Agreement across batch shapes is exact in float32 only; bf16: test_bf16.py.
    texts = _texts()
    fp32 = {"dtype": "float32"}
    reference = [_annotations(d) for d in _nlp(trained(family), batch_size=64, **fp32).pipe(texts)]
    for cfg in ({"batch_size": 1}, {"batch_size": 2, "max_batch_subwords": 40}):
        docs = list(_nlp(trained(family), **cfg, **fp32).pipe(texts, batch_size=50))
        for doc, ref in zip(docs, reference):
            _assert_same(_annotations(doc), ref)


@pytest.mark.parametrize("family", ["wordpiece-cased", "bpe-roberta"])
def test_overlapped_pipe_writes_what_the_plain_pipe_writes(
    family: str, trained: Callable[[str], Path]
) -> None:
    """overlap=true (a device thread; small chunks for long docs) changes when
    work happens, never what is written: every annotation and score as the
    plain pipe, in order, in float32."""
    texts = _texts() * 7
    plain = _nlp(trained(family), dtype="float32", overlap=False)
    reference = [_annotations(d) for d in plain.pipe(texts)]
    overlapped = _nlp(trained(family), dtype="float32", overlap=True, max_length=24)
    tagger = overlapped.get_pipe("hf_token_tagger")
    assert tagger.cfg["overlap"] is True
    windowed = _nlp(trained(family), dtype="float32", overlap=False, max_length=24)
    expected = [_annotations(d) for d in windowed.pipe(texts)]
    for batch_size in (1, 5, 1000):
        docs = list(overlapped.pipe(texts, batch_size=batch_size))
        assert [d.text for d in docs] == texts
        for doc, ref in zip(docs, expected):
            _assert_same(_annotations(doc), ref)
    # max_length only cuts windows (and chunks) smaller: the default agrees too.
    default = _nlp(trained(family), dtype="float32", overlap=True)
    for doc, ref in zip(default.pipe(texts), reference):
        _assert_same(_annotations(doc), ref)


def test_overlapped_pipe_hands_a_failing_chunk_to_the_error_handler(
    trained: Callable[[str], Path],
) -> None:
    nlp = _nlp(trained("wordpiece-cased"), dtype="float32", overlap=True)
    tagger = nlp.get_pipe("hf_token_tagger")
    texts = [text for text, _ in training_sentences()][:6]
    real_forward = tagger._forward
    calls = {"n": 0}

    def flaky(prepared: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("device fell over")
        return real_forward(prepared)

    tagger._forward = flaky  # type: ignore[method-assign]
    failed: List[int] = []
    tagger.set_error_handler(lambda name, pipe, docs, error: failed.append(len(docs)))
    docs = list(nlp.pipe(texts * 60, batch_size=1))
    # The second chunk alone failed; every other doc came through, annotated.
    assert len(failed) == 1 and 0 < failed[0] < 360
    assert len(docs) == 360 - failed[0]
    plain = _nlp(trained("wordpiece-cased"), dtype="float32")
    reference = {d.text: _annotations(d) for d in plain.pipe(texts)}
    for doc in docs:
        _assert_same(_annotations(doc), reference[doc.text])
    # spaCy's default handler raises: the error reaches the caller.
    tagger.set_error_handler(spacy.util.raise_error)
    calls["n"] = 1
    with pytest.raises(RuntimeError, match="device fell over"):
        list(nlp.pipe(texts * 60))


def test_overlapped_pipe_hands_a_model_that_fails_to_load_to_the_error_handler(
    tmp_path: Path,
) -> None:
    nlp = _nlp(tmp_path / "no-model-here", overlap=True)
    failed: List[int] = []
    tagger = nlp.get_pipe("hf_token_tagger")
    tagger.set_error_handler(lambda name, pipe, docs, error: failed.append(len(docs)))
    assert list(nlp.pipe(["one text", "another"])) == []
    assert failed == [2]


def test_stride_values(trained: Callable[[str], Path]) -> None:
    """Text inside one window: stride cannot matter. Long text: always consistent,
    the memorised final sentence is found at every stride."""
    path = trained("sentencepiece-xlmr")
    short = [text for text, _ in training_sentences()]
    filler = FILLER * 6
    reference = None
    for stride in (0, 7, 29):
        nlp = _nlp(path, stride=stride)
        got = [_annotations(d) for d in nlp.pipe(short)]
        if reference is None:
            reference = got
        for a, b in zip(got, reference):
            _assert_same(a, b)
        doc = nlp(filler + SARAH)
        found = set(_ents(doc))
        for start, end, label in SARAH_GOLD:
            assert (start + len(filler), end + len(filler), label) in found, stride
        assert [t._.hf_bio for t in doc] == _iob2(doc, doc.ents)


def test_n_process_2(trained: Callable[[str], Path]) -> None:
    nlp = _nlp(trained("wordpiece-cased"))
    texts = [text for text, _ in training_sentences()[:6]]
    reference = [_annotations(nlp(text)) for text in texts]
    docs = list(nlp.pipe(texts, n_process=2, batch_size=2))
    assert [d.text for d in docs] == texts
    for doc, ref in zip(docs, reference):
        _assert_same(_annotations(doc), ref)


# ------------------------------------------------------------- aggregation and post-process


@pytest.mark.parametrize("aggregation", ["first", "average", "max"])
@pytest.mark.parametrize("family", ["wordpiece-cased", "sentencepiece-deberta"])
def test_aggregations_valid(family: str, aggregation: str, trained: Callable[[str], Path]) -> None:
    nlp = _nlp(trained(family), aggregation=aggregation)
    texts = [text for text, _ in training_sentences()]
    texts.append("Peter can't stay; it's Olga's  café-bar in Zürich, isn't it?")
    for doc in nlp.pipe(texts):
        _check_consistent(doc)
        for token in doc:
            if token.is_space:
                assert token._.hf_score is None
            else:
                assert 0.0 <= token._.hf_score <= 1.0
    # Single-piece names are the same under every aggregation.
    assert set(SARAH_GOLD) <= set(_ents(nlp(SARAH)))


def test_label_map_renames_ents_and_bio(trained: Callable[[str], Path]) -> None:
    nlp = _nlp(trained("wordpiece-cased"), label_map={"PER": "PERSON"})
    doc = nlp(SARAH)
    assert _ents(doc) == [(11, 16, "PERSON"), (31, 36, "LOC")]
    assert [t._.hf_bio for t in doc][3] == "B-PERSON"
    assert [s.label_ for s in doc.spans["hf_ents"]] == ["PERSON", "LOC"]
    _check_consistent(doc)
    doc = nlp("Sarah Connor met John in Los Angeles.")
    assert [t._.hf_bio for t in doc][:2] == ["B-PERSON", "I-PERSON"]


@pytest.mark.parametrize("ignored", [["LOC"], ["PLACE"]])
def test_ignore_labels(ignored: List[str], trained: Callable[[str], Path]) -> None:
    """Ignore by the model's name or by the mapped name."""
    nlp = _nlp(trained("wordpiece-cased"), ignore_labels=ignored, label_map={"LOC": "PLACE"})
    doc = nlp(SARAH)
    assert _ents(doc) == [(11, 16, "PER")]
    assert [(s.text, s.label_) for s in doc.spans["hf_ents"]] == [("Sarah", "PER")]
    assert doc[8].text == "Paris" and doc[8]._.hf_bio == "O"
    _check_consistent(doc)


def test_threshold_drops_and_counts(trained: Callable[[str], Path]) -> None:
    path = trained("wordpiece-cased")
    texts = [text for text, _ in training_sentences()]
    n_all = sum(len(d.ents) for d in _nlp(path).pipe(texts))
    nlp = _nlp(path, threshold=0.999999)
    docs = list(nlp.pipe(texts))
    kept = sum(len(d.ents) for d in docs)
    counters = nlp.get_pipe("hf_token_tagger").counters
    assert kept < n_all
    assert counters["ents_below_threshold"] == n_all - kept
    for doc in docs:
        _check_consistent(doc)
        assert all(e._.hf_score >= 0.999999 for e in doc.ents)
    # A threshold every span passes keeps them all.
    nlp = _nlp(path, threshold=0.5)
    assert sum(len(d.ents) for d in nlp.pipe(texts)) == n_all


# ---------------------------------------------------------------------------- chaining


def _ruler_nlp(path: Path, **cfg: Any):
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([{"label": "GPE", "pattern": "Paris"}])
    nlp.add_pipe("hf_token_tagger", config={"model": str(path), **cfg})
    return nlp


def test_entity_ruler_before_is_kept_and_conflict_in_spans(
    trained: Callable[[str], Path],
) -> None:
    nlp = _ruler_nlp(trained("wordpiece-cased"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # spans keep the loser: nothing to warn about
        doc = nlp(SARAH)
    assert _ents(doc) == [(11, 16, "PER"), (31, 36, "GPE")]
    assert [(s.text, s.label_) for s in doc.spans["hf_ents"]] == [
        ("Sarah", "PER"),
        ("Paris", "LOC"),
    ]
    # hf_bio is the model's view, agreeing with the entities the component wrote
    # (spans), except under the rule's entity: its tokens were not labelled by
    # the model, so they carry no model label or score (the model's rejected
    # "Paris" LOC stays visible in the spans group, with its score).
    rule_tokens = {t.i for e in doc.ents if e.label_ == "GPE" for t in e}
    expected = [
        None if i in rule_tokens else bio for i, bio in enumerate(_iob2(doc, doc.spans["hf_ents"]))
    ]
    assert rule_tokens == {8}
    assert [t._.hf_bio for t in doc] == expected
    assert doc[8]._.hf_score is None and doc.ents[1]._.hf_score is None
    # Span extensions are keyed by characters: the loser's score lives in the
    # group's attrs only, so it cannot show on the rule's entity.
    assert doc.spans["hf_ents"].attrs["scores"][1] > 0.9
    counters = nlp.get_pipe("hf_token_tagger").counters
    assert counters["ents_conflicts"] == 1
    assert counters["ents_lost"] == 0


def test_conflict_without_spans_warns_and_counts(trained: Callable[[str], Path]) -> None:
    nlp = _ruler_nlp(trained("wordpiece-cased"), annotate=["ents"], errors="warn")
    with pytest.warns(UserWarning, match=r"doc 0 chars 31-36 \(LOC\)") as caught:
        doc = nlp(SARAH)
    assert "Paris" not in str(caught[0].message)  # offsets and labels, never text
    assert _ents(doc) == [(11, 16, "PER"), (31, 36, "GPE")]
    assert "hf_ents" not in doc.spans
    counters = nlp.get_pipe("hf_token_tagger").counters
    assert counters["ents_lost"] == 1 and counters["ents_conflicts"] == 1
    with pytest.warns(UserWarning):
        list(nlp.pipe([SARAH, "Is Paris bigger than Madrid?"]))
    assert counters["ents_lost"] == 3


@pytest.mark.parametrize("errors", ["warn", "raise"])
def test_rule_agreeing_with_model_is_no_conflict(
    errors: str, trained: Callable[[str], Path]
) -> None:
    """A rule that says exactly what the model says (same tokens, same label) is no
    conflict: nothing is lost, so no warning, no error, no count."""
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([{"label": "LOC", "pattern": "Paris"}])
    nlp.add_pipe(
        "hf_token_tagger",
        config={"model": str(trained("wordpiece-cased")), "annotate": ["ents"], "errors": errors},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        doc = nlp(SARAH)
    assert _ents(doc) == SARAH_GOLD
    counters = nlp.get_pipe("hf_token_tagger").counters
    assert counters["ents_lost"] == 0 and counters["ents_conflicts"] == 0


def test_conflict_errors_ignore_is_silent_but_counted(trained: Callable[[str], Path]) -> None:
    nlp = _ruler_nlp(trained("wordpiece-cased"), annotate=["ents"], errors="ignore")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nlp(SARAH)
    assert nlp.get_pipe("hf_token_tagger").counters["ents_lost"] == 1


def test_conflict_errors_raise(trained: Callable[[str], Path]) -> None:
    from spacy_hf_tagger.component import AnnotationConflictError

    nlp = _ruler_nlp(trained("wordpiece-cased"), annotate=["ents"], errors="raise")
    with pytest.raises(AnnotationConflictError, match=r"chars 31-36 \(LOC\)") as info:
        nlp(SARAH)
    assert "Paris" not in str(info.value)
    # No conflict, no error.
    assert _ents(nlp("John Smith visited Berlin last May.")) == [
        (0, 10, "PER"),
        (19, 25, "LOC"),
    ]


def test_overwrite_ents_model_wins(trained: Callable[[str], Path]) -> None:
    nlp = _ruler_nlp(trained("wordpiece-cased"), overwrite_ents=True)
    doc = nlp(SARAH)
    assert _ents(doc) == SARAH_GOLD
    _check_consistent(doc)
    counters = nlp.get_pipe("hf_token_tagger").counters
    assert counters["ents_replaced"] == 1 and counters["ents_conflicts"] == 0


def test_overwrite_ents_keeps_non_overlapping_rule_entities(
    trained: Callable[[str], Path],
) -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([{"label": "ROLE", "pattern": "name"}])
    nlp.add_pipe(
        "hf_token_tagger",
        config={"model": str(trained("wordpiece-cased")), "overwrite_ents": True},
    )
    doc = nlp(SARAH)
    assert _ents(doc) == [(3, 7, "ROLE"), *SARAH_GOLD]


def test_entity_ruler_after_with_overwrite_wins(trained: Callable[[str], Path]) -> None:
    nlp = _nlp(trained("wordpiece-cased"))
    ruler = nlp.add_pipe("entity_ruler", config={"overwrite_ents": True})
    ruler.add_patterns([{"label": "GPE", "pattern": "Paris"}])
    doc = nlp(SARAH)
    assert _ents(doc) == [(11, 16, "PER"), (31, 36, "GPE")]
    assert [(s.text, s.label_) for s in doc.spans["hf_ents"]] == [
        ("Sarah", "PER"),
        ("Paris", "LOC"),
    ]


def test_span_ruler_after_wins(trained: Callable[[str], Path]) -> None:
    nlp = _nlp(trained("wordpiece-cased"))
    ruler = nlp.add_pipe(
        "span_ruler",
        config={
            "annotate_ents": True,
            "overwrite": False,
            "ents_filter": {"@misc": "spacy.prioritize_new_ents_filter.v1"},
        },
    )
    ruler.add_patterns([{"label": "GPE", "pattern": "Paris"}])
    doc = nlp(SARAH)
    assert _ents(doc) == [(11, 16, "PER"), (31, 36, "GPE")]

    nlp = _nlp(trained("wordpiece-cased"))
    ruler = nlp.add_pipe("span_ruler", config={"annotate_ents": True, "overwrite": True})
    ruler.add_patterns([{"label": "GPE", "pattern": "Paris"}])
    doc = nlp(SARAH)
    assert _ents(doc) == [(31, 36, "GPE")]
    assert len(doc.spans["hf_ents"]) == 2  # the model's entities are still there


def test_span_ruler_before_is_kept(trained: Callable[[str], Path]) -> None:
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("span_ruler", config={"annotate_ents": True})
    ruler.add_patterns([{"label": "GPE", "pattern": "Paris"}])
    nlp.add_pipe("hf_token_tagger", config={"model": str(trained("wordpiece-cased"))})
    doc = nlp(SARAH)
    assert _ents(doc) == [(11, 16, "PER"), (31, 36, "GPE")]
    assert nlp.get_pipe("hf_token_tagger").counters["ents_conflicts"] == 1


def test_custom_spans_key(trained: Callable[[str], Path]) -> None:
    nlp = _nlp(trained("wordpiece-cased"), spans_key="model")
    doc = nlp(SARAH)
    assert "hf_ents" not in doc.spans
    _check_consistent(doc, key="model")


def test_annotate_spans_only_leaves_ents_alone(trained: Callable[[str], Path]) -> None:
    nlp = _nlp(trained("wordpiece-cased"), annotate=["spans"])
    doc = nlp(SARAH)
    assert doc.ents == ()
    assert [(s.start_char, s.end_char, s.label_) for s in doc.spans["hf_ents"]] == SARAH_GOLD
    assert [t._.hf_bio for t in doc] == _iob2(doc, doc.spans["hf_ents"])


# ------------------------------------------------------------------------ tagging models


def test_upos_model_sets_pos(tiny_models: TinyModelFactory) -> None:
    nlp = _nlp(tiny_models("wordpiece-cased", labels=UPOS))
    tagger = nlp.get_pipe("hf_token_tagger")
    doc = nlp("My name is Sarah and I live in Paris.  Zürich 🙂")
    assert tagger.annotate == ["pos"]
    assert tagger.labels == tuple(UPOS)
    assert doc.ents == ()
    assert "hf_ents" not in doc.spans
    for token in doc:
        if token.is_space:
            assert token._.hf_bio is None and token._.hf_score is None
            assert token.pos_ == ""
            continue
        assert token.pos_ in UPOS
        assert token._.hf_bio == token.pos_
        assert 0.0 < token._.hf_score <= 1.0
        assert token.tag_ == ""


def test_ptb_model_sets_tag(tiny_models: TinyModelFactory) -> None:
    nlp = _nlp(tiny_models("bpe-roberta", labels=PTB))
    tagger = nlp.get_pipe("hf_token_tagger")
    doc = nlp("My name is Sarah and I live in Paris (France).")
    assert tagger.annotate == ["tag"]
    for token in doc:
        assert token.tag_ in PTB
        assert token._.hf_bio == token.tag_
        assert token.pos_ == ""
    # label_map renames tags too; tags it does not name keep theirs.
    nlp = _nlp(tiny_models("bpe-roberta", labels=PTB), label_map={"NN": "NOUN_TAG"})
    _force_labels(nlp, {"NN": 10.0})
    doc = nlp("Paris is big")
    assert [t.tag_ for t in doc] == ["NOUN_TAG"] * 3
    assert [t._.hf_bio for t in doc] == ["NOUN_TAG"] * 3
    _force_labels(nlp, {"VB": 10.0})
    assert [t.tag_ for t in nlp("Paris is big")] == ["VB"] * 3


def test_ptb_model_tag_and_pos_mapped(tiny_models: TinyModelFactory) -> None:
    """annotate=["pos"] on a PTB model needs label_map onto UPOS; it then writes pos_."""
    mapping = dict(zip(PTB, ["NOUN", "VERB", "PROPN", "PUNCT", "ADP", "DET", "PRON", "PUNCT"]))
    nlp = _nlp(tiny_models("bpe-roberta", labels=PTB), annotate=["pos"], label_map=mapping)
    for tag, pos in (("NNP", "PROPN"), ("-LRB-", "PUNCT"), ("DT", "DET")):
        _force_labels(nlp, {tag: 10.0})
        doc = nlp("My name is Sarah")
        assert [t.pos_ for t in doc] == [pos] * 4
        assert [t.tag_ for t in doc] == [""] * 4  # annotate=["pos"] only


def test_ents_on_tag_model_is_config_error(tiny_models: TinyModelFactory) -> None:
    from spacy_hf_tagger.component import ConfigError

    nlp = _nlp(tiny_models("wordpiece-cased", labels=UPOS), annotate=["ents"])
    with pytest.raises(ConfigError, match="NOUN") as info:
        nlp("My name is Sarah.")
    assert "annotate" in str(info.value) and "pos" in str(info.value)


def test_pos_on_non_upos_model_is_config_error(tiny_models: TinyModelFactory) -> None:
    from spacy_hf_tagger.component import ConfigError

    nlp = _nlp(tiny_models("bpe-roberta", labels=PTB), annotate=["pos"])
    with pytest.raises(ConfigError, match="NN"):
        nlp("My name is Sarah.")


def test_tag_on_entity_model_is_config_error(tiny_models: TinyModelFactory) -> None:
    from spacy_hf_tagger.component import ConfigError

    nlp = _nlp(tiny_models("wordpiece-cased"), annotate=["tag"])
    with pytest.raises(ConfigError, match="B-PER"):
        nlp("My name is Sarah.")


# ------------------------------------------------------------------------- label schemes

BIOES = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]


def _force_labels(nlp, bias: Dict[str, float]) -> None:
    """Make the (BERT) model predict by bias only: every piece gets the same label."""
    tagger = nlp.get_pipe("hf_token_tagger")
    model = tagger.hf_model
    id_of = {label: int(i) for i, label in model.config.id2label.items()}
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        for label, value in bias.items():
            model.classifier.bias[id_of[label]] = value


def test_bioes_single_and_end(tiny_models: TinyModelFactory) -> None:
    """Greedy's reading of BIOES (auto, the default, is the strict search: below)."""
    nlp = _nlp(tiny_models("wordpiece-cased", labels=BIOES), decoding="greedy")
    assert nlp.get_pipe("hf_token_tagger").label_scheme.kind == "bioes"
    for doc in nlp.pipe([text for text, _ in training_sentences()]):
        _check_consistent(doc)  # untrained: near-random B/I/E/S labels, valid IOB2 out
    _force_labels(nlp, {"S-PER": 10.0})
    doc = nlp("Sarah met  John.")
    # Every token with a piece is its own PER entity; the double space is not, and
    # the "." glued to "John" cannot begin one (group_words).
    assert [(e.text, e.label_) for e in doc.ents] == [
        ("Sarah", "PER"),
        ("met", "PER"),
        ("John", "PER"),
    ]
    _check_consistent(doc)
    _force_labels(nlp, {"E-LOC": 10.0})
    doc = nlp("New York City")
    # E- closes the entity it belongs to: each E-LOC without an open LOC is one entity.
    assert [e.text for e in doc.ents] == ["New", "York", "City"]
    _check_consistent(doc)


def test_io_model(tiny_models: TinyModelFactory) -> None:
    nlp = _nlp(tiny_models("wordpiece-cased", labels=["O", "I-PER", "I-LOC"]))
    assert nlp.get_pipe("hf_token_tagger").label_scheme.kind == "io"
    for doc in nlp.pipe([text for text, _ in training_sentences()]):
        _check_consistent(doc)
    _force_labels(nlp, {"I-PER": 10.0})
    doc = nlp("Sarah Jones  Smith")
    assert [(e.text, e.label_) for e in doc.ents] == [("Sarah Jones  Smith", "PER")]
    assert [t._.hf_bio for t in doc] == ["B-PER", "I-PER", "I-PER", "I-PER"]
    assert doc[2].is_space and doc[2]._.hf_score is None
    _check_consistent(doc)


def test_span_score_with_inner_space(tiny_models: TinyModelFactory) -> None:
    """span._.hf_score is the mean of the scores of its tokens that have one: an inner
    whitespace token (no piece, score None) does not count, nor double the next one."""
    nlp = _nlp(tiny_models("wordpiece-cased", labels=["O", "I-PER", "I-LOC"]))
    _force_labels(nlp, {"I-PER": 10.0})
    with torch.no_grad():  # make the token scores differ
        weight = nlp.get_pipe("hf_token_tagger").hf_model.classifier.weight
        weight.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(0))
    doc = nlp("Sarah Jones  Smith")
    (ent,) = doc.ents
    scores = [t._.hf_score for t in ent if t._.hf_score is not None]
    assert len(scores) == 3 and len(set(scores)) == 3
    assert ent._.hf_score == pytest.approx(sum(scores) / len(scores), abs=1e-6)


def test_hyphenated_types(tiny_models: TinyModelFactory) -> None:
    nlp = _nlp(tiny_models("wordpiece-cased", labels=["O", "B-person-actor", "I-person-actor"]))
    tagger = nlp.get_pipe("hf_token_tagger")
    for doc in nlp.pipe([text for text, _ in training_sentences()]):
        _check_consistent(doc)
        assert {e.label_ for e in doc.ents} <= {"person-actor"}
    assert tagger.labels == ("person-actor",)
    _force_labels(nlp, {"B-person-actor": 10.0})
    doc = nlp("Sarah Jones")
    assert [(e.text, e.label_) for e in doc.ents] == [
        ("Sarah", "person-actor"),
        ("Jones", "person-actor"),
    ]
    assert [t._.hf_bio for t in doc] == ["B-person-actor", "B-person-actor"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10€", [("10€", "LOC")]),
        ("Paris\x1fFrance", [("Paris\x1fFrance", "LOC")]),
        # A line break (form feed) is a boundary: each line is tokenized on its own.
        ("Paris\x0cFrance", [("Paris", "LOC"), ("France", "LOC")]),
    ],
)
def test_no_entity_boundary_inside_a_piece(
    text: str, expected: List[Tuple[str, str]], tiny_models: TinyModelFactory
) -> None:
    """A token covered only by a piece that began in the previous token cannot start
    an entity of its own (docs/design.md section 3, pitfall 2: "in the later ones it can
    only continue an entity"): no entity boundary inside one piece, no entity starting
    on whitespace. Greedy, whose token labels are set by hand here: a search
    would rightly prefer B-PER I-PER (0.9 + 0.9 on the second token)."""
    nlp = _nlp(tiny_models("wordpiece-cased"), decoding="greedy")
    tagger = nlp.get_pipe("hf_token_tagger")
    encoding = tagger.tokenizer.backend_tokenizer.encode(text, add_special_tokens=False)
    assert encoding.tokens == ["[UNK]"]  # one piece over every spaCy token of the text
    assert len(nlp.make_doc(text)) > 1
    # Every piece: B-LOC 1.0 > B-PER = I-PER 0.9; a continuation moves B-PER to I-PER.
    _force_labels(
        nlp,
        {
            "B-LOC": 1.0,
            "B-PER": 0.9,
            "I-PER": 0.9,
            "O": -5.0,
            "I-LOC": -5.0,
            "B-ORG": -5.0,
            "I-ORG": -5.0,
        },
    )
    doc = nlp(text)
    assert [(e.text, e.label_) for e in doc.ents] == expected


def test_whitespace_never_starts_an_entity_after_a_tied_token(
    tiny_models: TinyModelFactory,
) -> None:
    """Found by test_properties (untrained DeBERTa-like model, aggregation="max").

    "+z\u202fb": "+" and "z" share the piece [UNK] (so "z" is tied to "+", B-LOC,
    and becomes I-LOC), U+202F has no piece (the next piece "▁b" starts on it but is
    trimmed), and "b" is I-ORG. Raw labels B-LOC, I-ORG, -, I-ORG fill the gap with
    I-ORG before the tie turns "z" into I-LOC: the entity "\u202fb" starts on
    whitespace. Depends on the deterministic weights of the untrained tiny model.
    """
    nlp = _nlp(tiny_models("sentencepiece-deberta"), aggregation="max")
    tagger = nlp.get_pipe("hf_token_tagger")
    text = "+z\u202fb"
    encoding = tagger.tokenizer.backend_tokenizer.encode(text, add_special_tokens=False)
    assert encoding.offsets == [(0, 1), (0, 2), (2, 4)]
    doc = nlp(text)
    assert [t.text for t in doc] == ["+", "z", "\u202f", "b"]
    assert doc[2]._.hf_score is None  # no piece
    for ent in doc.ents:
        assert not doc[ent.start].is_space, [(e.text, e.label_) for e in doc.ents]
    assert [t._.hf_bio for t in doc] == _iob2(doc, doc.ents)


def test_iob1_style_i_start(tiny_models: TinyModelFactory) -> None:
    """I-X without a B-X starts an entity (conlleval); hf_bio is IOB2 nonetheless."""
    nlp = _nlp(tiny_models("wordpiece-cased"))
    _force_labels(nlp, {"I-LOC": 10.0})
    doc = nlp("New York")
    assert [(e.text, e.label_) for e in doc.ents] == [("New York", "LOC")]
    assert [t._.hf_bio for t in doc] == ["B-LOC", "I-LOC"]


# ---------------------------------------------------------------------- serialization


def test_docbin_round_trip(trained: Callable[[str], Path]) -> None:
    nlp = _ruler_nlp(trained("wordpiece-cased"))
    texts = [SARAH, "Sarah Connor met John in Los Angeles.", "", "Nobody  went."]
    docs = list(nlp.pipe(texts))
    before = [_annotations(d) for d in docs]
    docbin = DocBin(store_user_data=True)
    for doc in docs:
        docbin.add(doc)
    restored = list(DocBin().from_bytes(docbin.to_bytes()).get_docs(nlp.vocab))
    for doc, ref in zip(restored, before):
        got = _annotations(doc)
        assert got == ref  # exact: the values are stored, not recomputed
    assert [(s.text, s.label_, s._.hf_score) for s in restored[0].spans["hf_ents"]] == [
        (s.text, s.label_, s._.hf_score) for s in docs[0].spans["hf_ents"]
    ]
    assert restored[0].spans["hf_ents"].attrs["scores"] == docs[0].spans["hf_ents"].attrs["scores"]
    # spaCy keys span extensions by character offsets only, so the rule's GPE entity
    # shows the score of the model's LOC span over the same characters.
    assert restored[0].ents[1].label_ == "GPE"
    assert restored[0].ents[1]._.hf_score == restored[0].spans["hf_ents"][1]._.hf_score


def test_analyze_pipes_lists_assigns(trained: Callable[[str], Path]) -> None:
    nlp = _nlp(trained("wordpiece-cased"))
    analysis = nlp.analyze_pipes(pretty=False)
    assigns = analysis["summary"]["hf_token_tagger"]["assigns"]
    for attr in (
        "doc.ents",
        "doc.spans",
        "token.tag",
        "token.pos",
        "token._.hf_bio",
        "token._.hf_score",
        "span._.hf_score",
    ):
        assert attr in assigns
    assert not analysis["problems"]["hf_token_tagger"]


# ------------------------------------------------------------------------- real model


@pytest.mark.shared
def test_real_model_exact_entities(shared_dir: Path) -> None:
    model = shared_dir / "models" / "minilm-conll03"
    if not model.is_dir():
        pytest.skip(f"{model} is absent")
    nlp = _nlp(model)
    doc = nlp("My name is Sarah Jones and I live in Paris.")
    assert [(e.text, e.label_) for e in doc.ents] == [("Sarah Jones", "PER"), ("Paris", "LOC")]
    assert [t._.hf_bio for t in doc] == [
        "O",
        "O",
        "O",
        "B-PER",
        "I-PER",
        "O",
        "O",
        "O",
        "O",
        "B-LOC",
        "O",
    ]
    _check_consistent(doc)
    texts = [
        "The U.S.-led coalition, it's said, met in Paris, France.",
        "It's Sarah's view that Angela Merkel visited Paris, France.",
        "Don't go to the U.S. (New York) before Jan. 5th -- it's cold.",
    ]
    for doc in nlp.pipe(texts):
        _check_consistent(doc)
        starts = {t.idx for t in doc}
        ends = {t.idx + len(t) for t in doc}
        for ent in doc.ents:
            assert ent.start_char in starts and ent.end_char in ends
            assert not ent.text[0].isspace() and not ent.text[-1].isspace()
    doc = nlp(texts[0])
    assert ("Paris", "LOC") in {(e.text, e.label_) for e in doc.ents}
    assert ("France", "LOC") in {(e.text, e.label_) for e in doc.ents}
    doc = nlp(texts[1])
    assert [(e.text, e.label_) for e in doc.ents][:2] == [
        ("Sarah", "PER"),
        ("Angela Merkel", "PER"),
    ]


@pytest.mark.shared
def test_real_model_windows_keep_entity_boundaries(shared_dir: Path) -> None:
    """A real model over a text of many windows: every window size and overlap finds
    the same entity spans. (Labels of an ambiguous span such as "U.S.-led", LOC or
    MISC, may change with its window's context, so only boundaries are compared.)"""
    model = shared_dir / "models" / "minilm-conll03"
    if not model.is_dir():
        pytest.skip(f"{model} is absent")
    sentences = [
        "Angela Merkel visited Paris, France, on Monday.",
        "The U.S.-led talks in Geneva ended early.",
        "Sarah Jones works for Google in London.",
        "It's Olga's view that the United Nations failed in New York.",
    ]
    text = " ".join(sentences * 5)
    spans = {}
    for max_length, stride in [(None, None), (64, 0), (32, 8)]:
        doc = _nlp(model, max_length=max_length, stride=stride)(text)
        _check_consistent(doc)
        spans[(max_length, stride)] = [(e.start_char, e.end_char) for e in doc.ents]
    reference = spans[(None, None)]
    assert len(reference) == 55
    for key, got in spans.items():
        assert got == reference, key


# ---------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("decoding", ["viterbi", "viterbi-iob2"])
@pytest.mark.parametrize("family", ["wordpiece-cased", "sentencepiece-xlmr"])
def test_viterbi_decoding_gives_gold_entities(
    family: str, decoding: str, trained: Callable[[str], Path]
) -> None:
    """decoding="viterbi" (and strict IOB2, the tiny models being IOB2) through
    nlp.pipe: the memorising model's gold entities, hf_bio agreeing with them;
    the default ("auto") is strict IOB2 on these IOB2 models."""
    data = training_sentences()
    texts = [text for text, _ in data]
    viterbi = _nlp(trained(family), decoding=decoding)
    assert viterbi.get_pipe("hf_token_tagger").settings.decoding == decoding
    for doc, (text, gold) in zip(viterbi.pipe(texts, batch_size=7), data):
        assert _ents(doc) == gold, text
        _check_consistent(doc)
    default = list(_nlp(trained(family)).pipe(texts))
    strict = list(_nlp(trained(family), decoding="viterbi-iob2").pipe(texts))
    for a, b in zip(default, strict):
        _assert_same(_annotations(a), _annotations(b), tol=0.0)


def test_viterbi_decoding_bioes_is_valid_and_closes_entities(tiny_models: TinyModelFactory) -> None:
    nlp = _nlp(tiny_models("wordpiece-cased", labels=BIOES), decoding="viterbi")
    for doc in nlp.pipe([text for text, _ in training_sentences()]):
        _check_consistent(doc)  # untrained: near-random B/I/E/S probabilities
    # Every piece says E-LOC: greedy makes each token an entity of its own; no
    # valid BIOES sequence has two E- in a row, so Viterbi pairs them up.
    _force_labels(nlp, {"E-LOC": 10.0})
    doc = nlp("New York City Hall")
    assert len(doc.ents) == 2 and all(len(e) == 2 for e in doc.ents)
    _check_consistent(doc)
