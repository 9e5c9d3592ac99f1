"""A record longer than spaCy's max_length never ends a corpus job.

Why: spaCy refuses texts over `nlp.max_length` (E088, 1,000,000 characters by
default) for the sake of its parser and NER. Our component windows long texts
itself, so a pipeline of ours (plus rule components) takes any length; where a
component that needs the limit is in the pipeline, the record goes to the
errors file with its id and the reason, and the job goes on. Before, one
such record stopped the job with nothing written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import pytest
import spacy
from spacy.language import Language
from spacy.tokens import Doc
from tiny_models import training_sentences

from spacy_hf_tagger.jobs.corpus import job_paths, run_job
from spacy_hf_tagger.jobs.pipelines import LengthLimit, lift_length_limit, load_pipeline

TEXTS = [text for text, _ in training_sentences()]
LIMIT = 300


@Language.component("test_needs_the_length_limit")
def _needs_the_length_limit(doc: Doc) -> Doc:
    """Stands for a parser or NER: a component spaCy's max_length is there for."""
    return doc


def _rows(path: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf8").splitlines()]


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    long_text = " ".join(TEXTS * 20)
    assert len(long_text) > 10 * LIMIT
    lines = [
        {"id": "a", "text": TEXTS[0]},
        {"id": "long", "text": long_text},
        {"id": "b", "text": TEXTS[1]},
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), "utf8")
    return path


def test_a_pipeline_of_ours_takes_any_length(model: Path, corpus: Path, tmp_path: Path) -> None:
    nlp = load_pipeline(str(model))
    nlp.add_pipe("sentencizer", first=True)
    nlp.max_length = LIMIT  # spaCy's limit, made small
    out = tmp_path / "out.jsonl"
    summary = run_job(nlp, corpus, out)
    assert (summary.records, summary.errors) == (3, 0)
    got = _rows(out)
    assert [r["id"] for r in got] == ["a", "long", "b"]
    long_text = json.loads(corpus.read_text("utf8").splitlines()[1])["text"]
    expected = [(e.start_char, e.end_char, e.label_) for e in nlp(long_text).ents]
    assert [(e["start"], e["end"], e["label"]) for e in got[1]["ents"]] == expected
    assert len(expected) >= 20  # the entities of every copy, far past the old limit
    assert not job_paths(out)[0].exists()


def test_a_record_over_a_limit_that_stays_goes_to_the_errors_file(
    model: Path, corpus: Path, tmp_path: Path
) -> None:
    nlp = load_pipeline(str(model))
    nlp.add_pipe("test_needs_the_length_limit")
    nlp.max_length = LIMIT
    out = tmp_path / "out.jsonl"
    summary = run_job(nlp, corpus, out)
    assert (summary.records, summary.errors) == (3, 1)
    assert [r["id"] for r in _rows(out)] == ["a", "b"]
    (bad,) = _rows(job_paths(out)[0])
    assert (bad["id"], bad["line"]) == ("long", 2)
    n_chars = len(json.loads(corpus.read_text("utf8").splitlines()[1])["text"])
    assert bad["error"].startswith(
        f"text of {n_chars:,} characters is over the pipeline's max_length of {LIMIT:,}, "
        "which its components test_needs_the_length_limit need"
    )
    assert TEXTS[0] not in bad["error"]  # ids, counts and names only
    assert nlp.max_length == LIMIT  # kept for the component that needs it


def test_lift_length_limit() -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("entity_ruler")
    assert lift_length_limit(nlp) is None
    assert nlp.max_length > 10**15
    nlp.add_pipe("test_needs_the_length_limit")
    nlp.max_length = 1000
    assert lift_length_limit(nlp) == LengthLimit(1000, ("test_needs_the_length_limit",))
    assert LengthLimit(1000, ("x",)).too_long(1000) is None
