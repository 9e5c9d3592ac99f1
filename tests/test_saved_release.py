"""A pipeline saved by release 0.1.0 still loads, with the same settings and output.

``tests/data/saved_0_1_0`` was written by ``nlp.to_disk`` with the 0.1.0 code
(commit ac326ae): ``blank("en")`` + ``entity_ruler`` + ``hf_token_tagger`` over a
tiny trained WordPiece BIO model. ``saved_0_1_0_expected.json`` holds the texts and
what that code produced from the saved folder, loaded with ``spacy.load`` in a fresh
process (how: ``tests/data/README.txt`` and ``tests/data/make_saved_0_1_0.py``).

The weights are not kept in the repository: the test rebuilds them with the same
recipe (``tiny_models.build_tiny_model``, seed 0, 100 steps) into a copy of the
folder. Where the rebuilt tensors are those the release saved (their sha256 is
recorded; so on this project's machines), the output must be the recorded one;
where a CPU trains the tiny model to other numbers, the recorded output says
nothing, and the saved folder must instead predict as a pipeline built now from
the same weights and the recorded settings.

Only public API is used and no ``spacy_hf_tagger`` module is imported: spaCy finds
the factory (and the scorer named in config.cfg) through the package's entry points,
so this test holds however the package's modules are arranged.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path
from typing import Any, Dict, List

import pytest
import spacy
from safetensors.numpy import load_file
from tiny_models import NER_LABELS, build_tiny_model

DATA = Path(__file__).resolve().parent / "data"
PIPELINE = DATA / "saved_0_1_0"
EXPECTED = json.loads((DATA / "saved_0_1_0_expected.json").read_text(encoding="utf8"))
SCORE_TOLERANCE = 1e-5  # expected scores are rounded to 5 decimals


WEIGHTS = "hf_token_tagger/model/model.safetensors"


def _tensor_digest(path: Path) -> str:
    tensors = load_file(str(path))
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].tobytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def saved_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The saved folder, with the weights rebuilt by the release's recipe."""
    root = tmp_path_factory.mktemp("saved_0_1_0")
    model = build_tiny_model("wordpiece-cased", root / "model", NER_LABELS, train_steps=100, seed=0)
    folder = root / "pipeline"
    shutil.copytree(PIPELINE, folder)
    shutil.copy(model / "model.safetensors", folder / WEIGHTS)
    return folder


@pytest.fixture(scope="module")
def nlp(saved_folder: Path):
    return spacy.load(saved_folder)


@pytest.fixture(scope="module")
def expected_docs(saved_folder: Path) -> List[Dict[str, Any]]:
    """The recorded output, or, where the rebuilt weights differ from the
    release's, what a pipeline built now with the recorded settings writes."""
    if _tensor_digest(saved_folder / WEIGHTS) == EXPECTED["weights"]["sha256_of_tensors"]:
        return EXPECTED["docs"]
    fresh = spacy.blank("en")
    fresh.add_pipe("entity_ruler").add_patterns([{"label": "GPE", "pattern": "Paris"}])
    config = {**EXPECTED["tagger_config"], "model": str(saved_folder / "hf_token_tagger/model")}
    fresh.add_pipe("hf_token_tagger", config=config)
    return [_record(fresh(case["text"]), case["text"]) for case in EXPECTED["docs"]]


def _record(doc: Any, text: str) -> Dict[str, Any]:
    group = doc.spans[EXPECTED["spans_key"]] if EXPECTED["spans_key"] in doc.spans else []
    scores = list(group.attrs.get("scores", [])) if len(group) else []
    return {
        "text": text,
        "ents": [[e.start_char, e.end_char, e.label_, e._.hf_score] for e in doc.ents],
        "bio": [t._.hf_bio for t in doc],
        "token_scores": [t._.hf_score for t in doc],
        "spans": [[s.start_char, s.end_char, s.label_, v] for s, v in zip(group, scores)],
    }


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


@pytest.mark.parametrize("index", range(len(EXPECTED["docs"])), ids=lambda i: f"text{i}")
def test_output_matches_release(nlp, expected_docs: List[Dict[str, Any]], index: int) -> None:
    case = expected_docs[index]
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
