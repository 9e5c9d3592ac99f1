"""Ours beside spacy-transformers (the `trf` extra), in one pipeline.

Why: users of spaCy's transformer pipelines (en_core_web_trf: a `transformer`
component whose output listeners such as the tagger read) add our component for a
Hugging Face token classifier. Both load torch models; both must run, save and load
together without changing each other's output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import spacy
from spacy.training import Example
from tiny_models import training_sentences

pytest.importorskip(
    "spacy_transformers",
    reason="spacy-transformers is not installed: the `trf` extra "
    '(pip install -e ".[trf]") holds transformers on 4.x; CI tests it in its own environment',
)

TEXTS = [text for text, _ in training_sentences()[:8]] + ["", "Kenji moved to 東京."]


def _trf_pipeline(model: Path):
    """A trained transformer + listening tagger, as in a user's trf pipeline."""
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "transformer",
        config={
            "model": {
                "@architectures": "spacy-transformers.TransformerModel.v3",
                "name": str(model),
                "tokenizer_config": {"use_fast": True},
                # The tiny model has 32 positions.
                "get_spans": {
                    "@span_getters": "spacy-transformers.strided_spans.v1",
                    "window": 24,
                    "stride": 18,
                },
            }
        },
    )
    nlp.add_pipe(
        "tagger",
        config={
            "model": {
                "@architectures": "spacy.Tagger.v2",
                "tok2vec": {
                    "@architectures": "spacy-transformers.TransformerListener.v1",
                    "grad_factor": 1.0,
                    "pooling": {"@layers": "reduce_mean.v1"},
                },
            }
        },
    )
    examples = []
    for text, _ in training_sentences()[:8]:
        doc = nlp.make_doc(text)
        tags = ["CAP" if t.text[:1].isupper() else "LOW" for t in doc]
        examples.append(Example.from_dict(doc, {"tags": tags}))
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(5):
        nlp.update(examples, sgd=optimizer)
    return nlp


def _outputs(nlp) -> list:
    out = []
    for doc in nlp.pipe(TEXTS):
        hidden = doc._.trf_data.model_output.last_hidden_state if len(doc) else np.zeros(0)
        out.append(
            {
                "tags": [t.tag_ for t in doc],
                "ents": [(e.start_char, e.end_char, e.label_) for e in doc.ents],
                "bio": [t._.hf_bio for t in doc],
                "scores": [t._.hf_score for t in doc],
                "hidden": np.asarray(hidden, dtype=np.float32).copy(),
            }
        )
    return out


@pytest.mark.slow
def test_trf_pipeline_with_ours_runs_saves_and_loads(tiny_models, tmp_path: Path) -> None:
    nlp = _trf_pipeline(tiny_models("wordpiece-cased"))
    ours = tiny_models("wordpiece-cased", train_steps=100)
    nlp.add_pipe("hf_token_tagger", config={"model": str(ours)})
    assert nlp.pipe_names == ["transformer", "tagger", "hf_token_tagger"]
    before = _outputs(nlp)
    assert before[0]["ents"] == [(11, 16, "PER"), (31, 36, "LOC")]
    assert before[0]["hidden"].shape[-1] == 64
    assert {tag for out in before for tag in out["tags"]} <= {"CAP", "LOW"}

    nlp.to_disk(tmp_path / "pipe")
    loaded = spacy.load(tmp_path / "pipe")
    after = _outputs(loaded)
    for text, b, a in zip(TEXTS, before, after):
        assert a["tags"] == b["tags"], text
        assert a["ents"] == b["ents"], text
        assert a["bio"] == b["bio"], text
        assert a["scores"] == pytest.approx(b["scores"], abs=1e-6), text
        np.testing.assert_allclose(a["hidden"], b["hidden"], atol=1e-5, err_msg=text)
