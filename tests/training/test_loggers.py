"""The training logger evaluates final weights that spaCy's schedule skipped.

Why: spaCy evaluates only every `eval_frequency` steps, so the final weights could
ship in model-last unscored while model-best held an early or untrained checkpoint.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training.initialize import init_nlp
from spacy.util import load_config
from tiny_models import training_sentences

from spacy_hf_tagger.training.loggers import _FinalEvaluation, make_console_logger

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained_nlp(tiny_models, tmp_path_factory):
    """The NER training config's pipeline around a memorised tiny model, with the
    training sentences as dev corpus."""
    root = tmp_path_factory.mktemp("logger")
    nlp = spacy.blank("en")
    db = DocBin()
    for text, ents in training_sentences():
        doc = nlp.make_doc(text)
        doc.ents = [doc.char_span(s, e, label=t) for s, e, t in ents]
        db.add(doc)
    db.to_disk(root / "dev.spacy")
    config = load_config(
        REPO / "configs" / "train_ner.cfg",
        overrides={
            "paths.train": str(root / "dev.spacy"),
            "paths.dev": str(root / "dev.spacy"),
            "components.hf_token_tagger.model": str(
                tiny_models("wordpiece-cased", train_steps=100)
            ),
        },
    )
    return init_nlp(config), root


def _run(nlp, steps, output_path):
    out = io.StringIO()
    final = _FinalEvaluation(nlp, out)
    for info in steps:
        if info is not None and output_path is not None:
            info = {**info, "output_path": str(output_path / "model-last")}
        final.step(info)
    final.finish()
    return out.getvalue()


def test_better_final_weights_become_model_best(trained_nlp, tmp_path):
    nlp, _ = trained_nlp
    (tmp_path / "model-best").mkdir()
    (tmp_path / "model-best" / "stale").write_text("step 0")
    steps = [{"step": 0, "checkpoints": [(0.10, 0)]}, None, None]
    text = _run(nlp, steps, tmp_path)
    assert "Final weights (step 2, off the evaluation schedule): score 1.0000" in text, text
    assert "saved to" in text and str(tmp_path / "model-best") in text, text
    assert not (tmp_path / "model-best" / "stale").exists()
    meta = json.loads((tmp_path / "model-best" / "meta.json").read_text("utf8"))
    assert meta["performance"]["ents_f"] == pytest.approx(1.0)
    loaded = spacy.load(tmp_path / "model-best")
    doc = loaded("My name is Sarah and I live in Paris.")
    assert [(e.text, e.label_) for e in doc.ents] == [("Sarah", "PER"), ("Paris", "LOC")]


def test_worse_final_weights_leave_model_best(trained_nlp, tmp_path):
    nlp, _ = trained_nlp
    steps = [{"step": 0, "checkpoints": [(1.0, 0)]}, None]
    text = _run(nlp, steps, tmp_path)
    assert "model-best stays step 0 (1.0000)" in text, text
    assert not (tmp_path / "model-best").exists()


def test_evaluated_final_step_needs_nothing(trained_nlp, tmp_path):
    nlp, _ = trained_nlp
    steps = [{"step": 0, "checkpoints": [(0.5, 0)]}, None, {"step": 2, "checkpoints": []}]
    assert _run(nlp, steps, tmp_path) == ""


def test_nothing_happens_after_a_failure(trained_nlp, tmp_path):
    nlp, _ = trained_nlp
    out = io.StringIO()
    final = _FinalEvaluation(nlp, out)
    final.step({"step": 0, "checkpoints": [(0.1, 0)], "output_path": str(tmp_path / "m")})
    final.step(None)
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        final.finish()  # inside the handler, as during the loop's `finally`
    assert out.getvalue() == ""
    assert not (tmp_path / "model-best").exists()


def test_logger_wraps_spacys_console_logger(trained_nlp):
    nlp, _ = trained_nlp
    out = io.StringIO()
    log_step, finalize = make_console_logger()(nlp, out, io.StringIO())
    log_step(None)
    finalize()
    # One step, never evaluated: the final weights get scored, no output folder known.
    assert "Final weights (step 0" in out.getvalue()
    assert "no output folder" in out.getvalue()
