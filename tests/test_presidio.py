"""Presidio through our NLP engine: entities scored by the model, not a flat 0.85.

Why: Presidio's spaCy engine gives every entity of any pipeline the same
`default_score`; with `HFTaggerNlpEngine` an analyzer result's score is the
component's `span._.hf_score`, so Presidio's score threshold filters on what
the model said. Rule entities (no model score) keep the default.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import spacy

pytest.importorskip(
    "presidio_analyzer", reason="presidio-analyzer not installed (pip install '.[presidio]')"
)

from presidio_analyzer import AnalyzerEngine
from presidio_analyzer.nlp_engine import NlpEngineProvider

from spacy_hf_tagger.presidio import HFTaggerNlpEngine

TEXT = "Sarah flew from London to New York on Monday."
ENTITIES = ["PERSON", "LOCATION", "ORGANIZATION", "DATE_TIME"]


def analyzer_for(model_name: str, ner_model_configuration=None) -> AnalyzerEngine:
    configuration = {
        "nlp_engine_name": "hf_tagger",
        "models": [{"lang_code": "en", "model_name": model_name}],
    }
    if ner_model_configuration is not None:
        configuration["ner_model_configuration"] = ner_model_configuration
    provider = NlpEngineProvider(nlp_engines=(HFTaggerNlpEngine,), nlp_configuration=configuration)
    return AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])


@pytest.fixture(scope="module")
def pipeline_dir(tiny_models, tmp_path_factory) -> Path:
    """A saved pipeline: a rule for "Monday" (DATE), then our component."""
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([{"label": "DATE", "pattern": "Monday"}])
    nlp.add_pipe(
        "hf_token_tagger", config={"model": str(tiny_models("wordpiece-cased", train_steps=100))}
    )
    path = tmp_path_factory.mktemp("presidio") / "pipeline"
    nlp.to_disk(path)
    return path


def test_results_carry_the_component_s_scores(pipeline_dir):
    doc = spacy.load(pipeline_dir)(TEXT)
    expected = {(e.start_char, e.end_char): e._.hf_score for e in doc.ents}
    labels = {(e.start_char, e.end_char): e.label_ for e in doc.ents}
    assert labels == {
        (0, 5): "PER",
        (16, 22): "LOC",
        (26, 34): "LOC",
        (38, 44): "DATE",
    }
    assert expected[(38, 44)] is None  # the rule's entity
    results = analyzer_for(str(pipeline_dir)).analyze(TEXT, language="en", entities=ENTITIES)
    found = {(r.start, r.end): (r.entity_type, r.score) for r in results}
    assert set(found) == set(expected)
    presidio_type = {"PER": "PERSON", "LOC": "LOCATION", "DATE": "DATE_TIME"}
    for span, (entity_type, score) in found.items():
        assert entity_type == presidio_type[labels[span]]
        if expected[span] is None:
            assert score == pytest.approx(0.85)  # Presidio's default_score
        else:
            assert score == pytest.approx(expected[span], abs=1e-6)
    model_scores = [s for span, (_, s) in found.items() if expected[span] is not None]
    assert len(set(round(s, 6) for s in model_scores)) > 1, "scores are not flat"


def test_a_model_folder_makes_a_blank_pipeline_and_labels_map(tiny_models):
    model = tiny_models("wordpiece-cased", train_steps=100)
    analyzer = analyzer_for(
        str(model),
        {
            "model_to_presidio_entity_mapping": {"PER": "PATIENT", "LOC": "LOCATION"},
            "labels_to_ignore": ["ORG"],
            "default_score": 0.5,
        },
    )
    text = "David works at Google in London."
    results = analyzer.analyze(text, language="en", entities=["PATIENT", "LOCATION"])
    found = sorted((text[r.start : r.end], r.entity_type) for r in results)
    assert found == [("David", "PATIENT"), ("London", "LOCATION")]
    nlp = analyzer.nlp_engine.get_nlp("en")
    assert nlp.pipe_names == ["hf_token_tagger"]
    scores = {e.text: e._.hf_score for e in nlp(text).ents}
    for r in results:
        assert r.score == pytest.approx(scores[text[r.start : r.end]], abs=1e-6)


def test_models_are_required():
    with pytest.raises(ValueError, match="lang_code"):
        HFTaggerNlpEngine(models=None)


def test_entities_inside_a_token_reach_presidio_at_exact_offsets(tiny_models, tmp_path):
    """`MerkelvisitedParis` is one spaCy token; doc.ents hold it whole as the
    person (read through its first piece), Presidio gets both names at their
    characters."""
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "hf_token_tagger",
        config={"model": str(tiny_models("wordpiece-cased", train_steps=150, data="subtoken"))},
    )
    nlp.to_disk(tmp_path / "pipeline")
    text = "MerkelvisitedParis yesterday."
    doc = spacy.load(tmp_path / "pipeline")(text)
    assert [(e.start_char, e.end_char, e.label_) for e in doc.ents] == [(0, 18, "PER")]
    results = analyzer_for(str(tmp_path / "pipeline")).analyze(
        text, language="en", entities=ENTITIES
    )
    assert sorted((r.start, r.end, r.entity_type) for r in results) == [
        (0, 6, "PERSON"),
        (13, 18, "LOCATION"),
    ]
    for result in results:
        assert 0.5 < result.score <= 1.0 and result.score != pytest.approx(0.85)
