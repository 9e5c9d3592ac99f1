"""The component on either transformers major: 4.x (beside spacy-transformers) and 5.x.

Why: transformers 5 rebuilds tokenizers from their class definitions, loads
half-precision checkpoints in half precision and draws progress bars on every load;
users move saved pipelines between majors in both directions. What a user sees must
not change with the major they happen to have installed.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import spacy
import torch
import transformers
from cross_stack import TEXTS, annotations
from tiny_models import FAMILIES

from spacy_hf_tagger.model import hub

OTHER_PYTHON = os.environ.get("SPACY_HF_TAGGER_OTHER_PYTHON")
MAJOR = int(transformers.__version__.split(".")[0])


def _nlp(model: Path, **config: Any) -> Any:
    nlp = spacy.blank("en")
    nlp.add_pipe("hf_token_tagger", config={"model": str(model), **config})
    return nlp


def _same(got: list, want: list, where: str) -> None:
    for text, g, w in zip(TEXTS, got, want):
        assert g["ents"] == w["ents"], (where, text)
        assert g["bio"] == w["bio"], (where, text)
        for gs, ws in zip(g["scores"], w["scores"]):
            assert (gs is None) == (ws is None), (where, text)
            if ws is not None:
                assert gs == pytest.approx(ws, abs=1e-5), (where, text)


@pytest.mark.slow
@pytest.mark.skipif(
    not OTHER_PYTHON,
    reason="set SPACY_HF_TAGGER_OTHER_PYTHON to the python of an environment with the "
    "other transformers major (CI does: .ci/run)",
)
def test_pipelines_saved_under_the_other_major_load_identically(tmp_path: Path) -> None:
    """Folders trained and saved under the other major give the same entities here."""
    script = Path(__file__).resolve().parents[1] / "cross_stack.py"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [str(OTHER_PYTHON), str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected = json.loads((tmp_path / "expected.json").read_text("utf8"))
    assert int(expected["transformers"].split(".")[0]) != MAJOR, (
        f"SPACY_HF_TAGGER_OTHER_PYTHON runs transformers {expected['transformers']}, the "
        f"same major as here ({transformers.__version__})"
    )
    for family in FAMILIES:
        nlp = spacy.load(tmp_path / family)
        got = [annotations(doc) for doc in nlp.pipe(TEXTS)]
        _same(got, expected["pipelines"][family], f"{family} from {expected['transformers']}")
        # The memorised entities really are there, so agreement means something.
        assert got[0]["ents"] == [[11, 16, "PER"], [31, 36, "LOC"]], family


@pytest.mark.parametrize("family", FAMILIES)
def test_tokenizer_splits_as_its_saved_tokenizer_json(tiny_models, family: str) -> None:
    """The backend we run is the one tokenizer.json describes, on either major."""
    from tokenizers import Tokenizer

    folder = tiny_models(family)
    saved = json.loads(Tokenizer.from_file(str(folder / "tokenizer.json")).to_str())
    ours = json.loads(hub.load_tokenizer(str(folder), None, True).backend_tokenizer.to_str())
    for part in ("normalizer", "pre_tokenizer", "model", "post_processor"):
        assert ours[part] == saved[part], part


def test_transformers_5_rebuilds_the_xlmr_tokenizer_differently(tiny_models) -> None:
    """Why `load_tokenizer` swaps the backend: under 5.x AutoTokenizer drops the saved
    normaliser and gives the bare "▁" before "東" the offsets of "東"."""
    if MAJOR < 5:
        pytest.skip("transformers 4 loads tokenizer.json as saved")
    folder = tiny_models("sentencepiece-xlmr")
    rebuilt = transformers.AutoTokenizer.from_pretrained(folder).backend_tokenizer
    ours = hub.load_tokenizer(str(folder), None, True).backend_tokenizer
    text = "to 東京"
    assert rebuilt.encode(text, add_special_tokens=False).offsets[1] == (3, 4)
    assert ours.encode(text, add_special_tokens=False).offsets[1] == (2, 3)


def test_a_tokenizer_its_class_cannot_rebuild_loads_and_keeps_its_class(
    tiny_models, tmp_path: Path
) -> None:
    """The tiny DeBERTa-v2 tokenizer is BPE; transformers 5's DebertaV2Tokenizer only
    builds Unigram. It loads as a plain fast tokenizer and is saved back under its own
    class name, so transformers 4 still reads the saved copy."""
    folder = tiny_models("sentencepiece-deberta", train_steps=100)
    nlp = _nlp(folder)
    doc = nlp("My name is Sarah and I live in Paris.")
    assert [(e.text, e.label_) for e in doc.ents] == [("Sarah", "PER"), ("Paris", "LOC")]
    nlp.to_disk(tmp_path / "pipe")
    config = json.loads(
        (tmp_path / "pipe" / "hf_token_tagger" / "model" / "tokenizer_config.json").read_text()
    )
    assert config["tokenizer_class"] in ("DebertaV2Tokenizer", "DebertaV2TokenizerFast")


def test_half_precision_checkpoint_runs_in_float32_on_cpu(tiny_models, tmp_path: Path) -> None:
    """transformers 5 would keep an fp16 checkpoint in fp16; our `dtype` decides."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    source = tiny_models("wordpiece-cased", train_steps=100)
    half = tmp_path / "half"
    model = AutoModelForTokenClassification.from_pretrained(source).to(torch.float16)
    model.save_pretrained(half)
    AutoTokenizer.from_pretrained(source).save_pretrained(half)
    nlp = _nlp(half, device="cpu")
    doc = nlp("My name is Sarah and I live in Paris.")
    comp = nlp.get_pipe("hf_token_tagger")
    assert {p.dtype for p in comp.hf_model.parameters()} == {torch.float32}
    assert [(e.text, e.label_) for e in doc.ents] == [("Sarah", "PER"), ("Paris", "LOC")]
    bf16 = _nlp(half, device="cpu", dtype="bfloat16").get_pipe("hf_token_tagger")
    assert {p.dtype for p in bf16.hf_model.parameters()} == {torch.bfloat16}


def test_loading_and_saving_draw_no_progress_bar(tiny_models, tmp_path: Path, capfd) -> None:
    folder = tiny_models("wordpiece-cased")
    capfd.readouterr()
    nlp = _nlp(folder)
    nlp("Sarah lives in Paris.")
    nlp.to_disk(tmp_path / "pipe")
    spacy.load(tmp_path / "pipe")("Sarah lives in Paris.")
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "Writing model shards" not in err, err
    assert "it/s]" not in err, err


def test_progress_bars_follow_transformers_verbosity(tiny_models, capfd) -> None:
    """A user who turned transformers' logging up to INFO gets its bars back."""
    if MAJOR < 5:
        pytest.skip("transformers 4 draws no progress bar for a one-file checkpoint")
    from transformers.utils import logging as hf_logging

    folder = tiny_models("wordpiece-cased")
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_info()
    try:
        capfd.readouterr()
        _nlp(folder)("Sarah lives in Paris.")
        err = capfd.readouterr().err
    finally:
        hf_logging.set_verbosity(previous)
    assert "Loading weights" in err
    assert hf_logging.is_progress_bar_enabled()
