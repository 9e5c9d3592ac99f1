"""A pipeline saved by release 0.1.0 still loads, with the same settings and output.

``tests/data/saved_0_1_0`` was written by ``nlp.to_disk`` with the 0.1.0 code
(commit ac326ae): ``blank("en")`` + ``entity_ruler`` + ``hf_token_tagger`` over a
tiny trained WordPiece BIO model. ``saved_0_1_0_expected.json`` holds the texts and
what that code produced from the saved folder, loaded with ``spacy.load`` in a fresh
process (how: ``tests/data/README.txt`` and ``tests/data/make_saved_0_1_0.py``).

Only public API is used and no ``spacy_hf_tagger`` module is imported: spaCy finds
the factory (and the scorer named in config.cfg) through the package's entry points,
so this test holds however the package's modules are arranged.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import spacy

DATA = Path(__file__).resolve().parent / "data"
PIPELINE = DATA / "saved_0_1_0"
EXPECTED = json.loads((DATA / "saved_0_1_0_expected.json").read_text(encoding="utf8"))
SCORE_TOLERANCE = 1e-5  # expected scores are rounded to 5 decimals


@pytest.fixture(scope="module")
def nlp():
    return spacy.load(PIPELINE)


def _assert_scores(actual: list, expected: list, what: str) -> None:
    """Same length, None where None was recorded, numbers within the tolerance."""
    assert len(actual) == len(expected), what
    for index, (got, want) in enumerate(zip(actual, expected)):
        if want is None:
            assert got is None, f"{what}[{index}]: {got!r}, expected None"
        else:
            assert got is not None, f"{what}[{index}]: None, expected {want}"
            assert math.isclose(got, want, rel_tol=0.0, abs_tol=SCORE_TOLERANCE), (
                f"{what}[{index}]: {got!r}, expected {want}"
            )


def test_saved_settings_survive(nlp) -> None:
    assert nlp.pipe_names == EXPECTED["pipe_names"]
    settings = nlp.config["components"]["hf_token_tagger"]
    assert settings["factory"] == "hf_token_tagger"
    for key, value in EXPECTED["tagger_config"].items():
        assert settings[key] == value, key
    assert settings["spans_key"] == EXPECTED["spans_key"]
    ruler = nlp.get_pipe("entity_ruler")
    assert [(p["label"], p["pattern"]) for p in ruler.patterns] == [("GPE", "Paris")]


@pytest.mark.parametrize(
    "case", EXPECTED["docs"], ids=[f"text{i}" for i in range(len(EXPECTED["docs"]))]
)
def test_output_matches_release(nlp, case: dict) -> None:
    doc = nlp(case["text"])

    ents = [(e.start_char, e.end_char, e.label_) for e in doc.ents]
    assert ents == [tuple(e[:3]) for e in case["ents"]]
    _assert_scores([e._.hf_score for e in doc.ents], [e[3] for e in case["ents"]], "ent score")

    assert [t._.hf_bio for t in doc] == case["bio"]
    _assert_scores([t._.hf_score for t in doc], case["token_scores"], "token score")

    group = doc.spans[EXPECTED["spans_key"]] if EXPECTED["spans_key"] in doc.spans else []
    spans = [(s.start_char, s.end_char, s.label_) for s in group]
    assert spans == [tuple(s[:3]) for s in case["spans"]]
    scores = group.attrs.get("scores", []) if len(group) else []
    _assert_scores(list(scores), [s[3] for s in case["spans"]], "span group score")
