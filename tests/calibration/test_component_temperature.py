"""`temperature` in the component: scores come from calibrated probabilities,
entities and tags never move, the threshold reads calibrated scores, and a
saved pipeline keeps the setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, List, Tuple

import numpy as np
import pytest
import spacy
from spacy.tokens import Doc
from tiny_models import training_sentences

from spacy_hf_tagger import component
from spacy_hf_tagger.calibration.temperature import calibrated_probs, label_temperatures
from spacy_hf_tagger.errors import ConfigError

TEXTS = [text for text, _ in training_sentences()] + [
    "Yesterday Maria Lopez flew from Lisbon to Oslo for Acme Shipping.",
    "nothing here at all",
]
UPOS = ["NOUN", "VERB", "PROPN", "PUNCT", "ADP", "DET", "PRON", "X"]


@pytest.fixture(scope="module")
def model(tiny_models: Callable[..., Path]) -> Path:
    return tiny_models("wordpiece-cased", train_steps=100)


def _nlp(model: Path, **cfg: Any):
    nlp = spacy.blank("en")
    nlp.add_pipe("hf_token_tagger", config={"model": str(model), **cfg})
    return nlp


def _found(doc: Doc) -> Tuple[List[Tuple[int, int, str]], ...]:
    """Everything the component decided, scores aside."""
    return (
        [(e.start, e.end, e.label_) for e in doc.ents],
        [(s.start, s.end, s.label_) for s in doc.spans["hf_ents"]],
        [t._.hf_bio for t in doc],
    )


def _scores(doc: Doc) -> List[float]:
    return list(doc.spans["hf_ents"].attrs["scores"])


def _outputs(doc: Doc) -> Tuple[Any, ...]:
    """What the component decided and every score it wrote."""
    return (*_found(doc), _scores(doc), [t._.hf_score for t in doc])


@pytest.mark.parametrize("temperature", [2.5, 0.4, {"PER": 3.0, "O": 0.5, "LOC": 1.7}])
def test_temperature_moves_scores_by_hand_and_never_entities(model: Path, temperature) -> None:
    plain, calibrated = _nlp(model), _nlp(model, temperature=temperature)
    tagger = calibrated.get_pipe("hf_token_tagger")
    moved = 0
    for text in TEXTS:
        before, after = plain(text), calibrated(text)
        assert _found(after) == _found(before)
        probs, has_piece, _ = tagger.predict([calibrated.make_doc(text)])[0]
        scheme = tagger.label_scheme
        q = calibrated_probs(probs, label_temperatures(scheme, temperature))
        columns = {t: np.array(scheme.types) == t for t in scheme.entity_types}
        for span, score in zip(after.spans["hf_ents"], after.spans["hf_ents"].attrs["scores"]):
            rows = q[span.start : span.end][has_piece[span.start : span.end]]
            assert score == pytest.approx(rows[:, columns[span.label_]].sum(axis=1).mean())
        for i, token in enumerate(after):
            if token._.hf_bio == "O" and has_piece[i]:
                assert token._.hf_score == pytest.approx(q[i, scheme.outside_id])
        moved += sum(
            abs(a - b) > 1e-3
            for a, b in zip(
                after.spans["hf_ents"].attrs["scores"], before.spans["hf_ents"].attrs["scores"]
            )
        )
    assert moved > 10


def test_the_model_own_probabilities_cost_no_extra_work(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """T = 1 (a number, or a table of ones) reads scores from the model's
    probabilities themselves: nothing is computed, so nothing can differ."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("calibrated_probs ran for T = 1")

    expected = [_outputs(d) for d in _nlp(model).pipe(TEXTS)]
    monkeypatch.setattr(component, "calibrated_probs", refuse)
    for temperature in (1.0, 1, {"PER": 1.0}, {}):
        docs = _nlp(model, temperature=temperature).pipe(TEXTS)
        assert [_outputs(d) for d in docs] == expected


def test_the_threshold_reads_calibrated_scores(model: Path) -> None:
    texts = TEXTS[:10]
    plain = [_scores(d) for d in _nlp(model).pipe(texts)]
    softer = [_scores(d) for d in _nlp(model, temperature=3.0).pipe(texts)]
    # A threshold every raw score passes and some calibrated ones do not.
    threshold = float(min(min(s) for s in plain if s)) - 1e-6
    below = sum(score < threshold for scores in softer for score in scores)
    assert below > 0
    nlp = _nlp(model, temperature=3.0, threshold=threshold)
    docs = list(nlp.pipe(texts))
    assert nlp.get_pipe("hf_token_tagger").counters["ents_below_threshold"] == below
    assert sum(len(d.ents) for d in docs) == sum(len(s) for s in softer) - below
    assert sum(len(d.ents) for d in _nlp(model, threshold=threshold).pipe(texts)) == sum(
        len(s) for s in plain
    )


@pytest.mark.parametrize("temperature", [1.75, {"PER": 2.0, "O": 0.8}])
def test_a_saved_pipeline_keeps_the_temperature(model: Path, tmp_path: Path, temperature) -> None:
    nlp = _nlp(model, temperature=temperature)
    docs = list(nlp.pipe(TEXTS))
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    tagger = loaded.get_pipe("hf_token_tagger")
    assert tagger.cfg["temperature"] == temperature
    assert loaded.config["components"]["hf_token_tagger"]["temperature"] == temperature
    again = list(loaded.pipe(TEXTS))
    for a, b in zip(docs, again):
        assert _found(a) == _found(b)
        assert a.spans["hf_ents"].attrs["scores"] == b.spans["hf_ents"].attrs["scores"]


def test_a_table_naming_other_labels_fails_on_load(model: Path) -> None:
    nlp = _nlp(model, temperature={"PERSON": 1.2, "PER": 1.1})
    with pytest.raises(ConfigError) as info:
        nlp("Sarah lives in Paris.")
    assert "['PERSON']" in str(info.value)
    assert "['LOC', 'ORG', 'PER', 'O']" in str(info.value)


def test_tag_scores_are_calibrated_and_tags_stay(tiny_models: Callable[..., Path]) -> None:
    path = tiny_models("wordpiece-cased", labels=UPOS)
    plain, calibrated = _nlp(path), _nlp(path, temperature={"NOUN": 0.5, "VERB": 2.0})
    tagger = calibrated.get_pipe("hf_token_tagger")
    for text in TEXTS[:6]:
        before, after = plain(text), calibrated(text)
        assert [t.pos_ for t in after] == [t.pos_ for t in before]
        probs, has_piece, _ = tagger.predict([calibrated.make_doc(text)])[0]
        q = calibrated_probs(probs, np.array([0.5, 2.0, 1, 1, 1, 1, 1, 1]))
        for i, token in enumerate(after):
            if has_piece[i]:
                assert token._.hf_score == pytest.approx(q[i, UPOS.index(token.pos_)])
