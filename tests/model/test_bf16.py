"""bf16 inference, as `dtype="auto"` runs on a CPU with native bf16: the
invariants the float32 tests check exactly, with scores compared within bf16's
precision.

Why: bf16 keeps 8 significant bits (machine epsilon 2**-7). Which windows share
a batch, or a packed row, changes the shapes of the matrix products and so the
order in which they round; two runs of one text then agree to about bf16's
epsilon, not float32's (0.86171 vs 0.86363 was seen on one token). A label of
a trained model is far from a tie and agrees exactly. The CPU's flags are faked,
so this runs on every CPU: bf16 is emulated, slowly but correctly, where the CPU
lacks it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, List, Tuple

import pytest
import spacy
import torch
from tiny_models import FAMILIES, training_sentences

from spacy_hf_tagger.model import precision

TinyModelFactory = Callable[..., Path]
TRAIN_STEPS = 100
TEXTS = [text for text, _ in training_sentences()]
# A score is a probability in [0, 1]: two roundings' worth of bf16 epsilon.
SCORE_TOLERANCE = 2 * torch.finfo(torch.bfloat16).eps

pytestmark = pytest.mark.precision

Annotations = List[Tuple[Any, ...]]


@pytest.fixture(autouse=True)
def _native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda *a, **k: frozenset({"avx512_bf16"}))


def _pipeline(model: Path, **cfg: Any) -> spacy.language.Language:
    nlp = spacy.blank("en")
    nlp.add_pipe("hf_token_tagger", config={"model": str(model), **cfg})
    return nlp


def _nlp(model: Path, **cfg: Any) -> spacy.language.Language:
    nlp = _pipeline(model, **cfg)
    assert nlp.get_pipe("hf_token_tagger").precision.runs_in == "bfloat16"
    return nlp


def _annotations(docs: Iterable[Any]) -> List[Annotations]:
    return [
        [(t.ent_iob_, t.ent_type_, t._.hf_bio, t._.hf_score) for t in doc]
        + [(e.start_char, e.end_char, e.label_, e._.hf_score) for e in doc.ents]
        for doc in docs
    ]


def _assert_agree(got: List[Annotations], want: List[Annotations]) -> None:
    """Labels exactly; scores within bf16's precision."""
    assert len(got) == len(want)
    for doc_got, doc_want in zip(got, want):
        assert [a[:-1] for a in doc_got] == [b[:-1] for b in doc_want]
        for a, b in zip(doc_got, doc_want):
            assert (a[-1] is None) == (b[-1] is None)
            if a[-1] is not None:
                assert a[-1] == pytest.approx(b[-1], abs=SCORE_TOLERANCE)


def _texts() -> List[str]:
    # Short sentences, and one longer than a tiny model's window (overlapping windows).
    return [*TEXTS, " ".join(TEXTS[:4]), "Hi", "A b c."]


@pytest.mark.parametrize("family", FAMILIES)
def test_batch_shapes_do_not_change_the_labels(family: str, tiny_models: TinyModelFactory):
    model = tiny_models(family, train_steps=TRAIN_STEPS)
    texts = _texts()
    reference = _annotations(_nlp(model).pipe(texts))
    assert any(len(doc) > 0 for doc in reference)
    _assert_agree(_annotations(_nlp(model).pipe(texts, batch_size=1)), reference)
    _assert_agree(_annotations(_nlp(model, batch_size=1)(t) for t in texts), reference)
    small = _nlp(model, batch_size=2, max_batch_subwords=40)
    _assert_agree(_annotations(small.pipe(texts, batch_size=50)), reference)


@pytest.mark.parametrize("family", ["wordpiece-cased", "bpe-roberta", "sentencepiece-xlmr"])
def test_packed_rows_agree_with_padded_ones(family: str, tiny_models: TinyModelFactory):
    nlp = _nlp(tiny_models(family, train_steps=TRAIN_STEPS))
    loaded = nlp.get_pipe("hf_token_tagger")._ensure_loaded()
    if loaded.packing is None:
        import transformers

        pytest.skip(f"{family} packs no rows under transformers {transformers.__version__}")
    texts = _texts() * 2
    packed = _annotations(nlp.pipe(texts))
    layout, loaded.packing = loaded.packing, None
    padded = _annotations(nlp.pipe(texts))
    loaded.packing = layout
    _assert_agree(packed, padded)


@pytest.mark.parametrize("family", ["wordpiece-uncased", "sentencepiece-xlmr"])
def test_saved_and_loaded_agree(family: str, tiny_models: TinyModelFactory, tmp_path: Path):
    nlp = _nlp(tiny_models(family, train_steps=TRAIN_STEPS))
    before = _annotations(nlp.pipe(_texts()))
    nlp.to_disk(tmp_path / "pipe")
    again = spacy.load(tmp_path / "pipe")
    assert again.get_pipe("hf_token_tagger").precision.runs_in == "bfloat16"
    _assert_agree(_annotations(again(t) for t in _texts()), before)


@pytest.mark.parametrize("family", ["wordpiece-cased", "bpe-roberta"])
def test_a_document_agrees_with_its_lines_alone(family: str, tiny_models: TinyModelFactory):
    nlp = _nlp(tiny_models(family, train_steps=TRAIN_STEPS))
    lines = TEXTS[:5]
    doc = nlp("\n".join(lines))
    alone = [nlp(line) for line in lines]
    want, base = [], 0
    for line, one in zip(lines, alone):
        want += [(e.start_char + base, e.end_char + base, e.label_, e._.hf_score) for e in one.ents]
        base += len(line) + 1
    got = [(e.start_char, e.end_char, e.label_, e._.hf_score) for e in doc.ents]
    assert want and [g[:3] for g in got] == [w[:3] for w in want]
    assert [g[3] for g in got] == pytest.approx([w[3] for w in want], abs=SCORE_TOLERANCE)


def test_bf16_finds_the_float32_entities_with_close_scores(tiny_models: TinyModelFactory):
    """Against float32 the error accumulates through every layer, so the scores
    get a wider bound than run-to-run agreement; the entities are the same."""
    model = tiny_models("wordpiece-cased", train_steps=TRAIN_STEPS)
    fp32 = _annotations(_pipeline(model, dtype="float32").pipe(_texts()))
    bf16 = _annotations(_nlp(model).pipe(_texts()))
    assert [[a[:-1] for a in doc] for doc in bf16] == [[a[:-1] for a in doc] for doc in fp32]
    for doc_bf16, doc_fp32 in zip(bf16, fp32):
        for a, b in zip(doc_bf16, doc_fp32):
            if b[-1] is not None:
                assert a[-1] == pytest.approx(b[-1], abs=8 * SCORE_TOLERANCE)
