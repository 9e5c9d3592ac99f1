"""`exclude` on the component's to_disk / from_disk / to_bytes / from_bytes:
"cfg" is cfg.json (labels, resolved commit, revision), "model" the weights and
tokenizer. spaCy itself always passes "vocab", which the component has none of."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import spacy

TEXT = "Sarah Jones moved to Paris last year."


def _tagger(model: Path, **config: Any) -> Any:
    nlp = spacy.blank("en")
    return nlp, nlp.add_pipe("hf_token_tagger", config={"model": str(model), **config})


def test_to_disk_leaves_out_the_excluded_parts(tiny_models, tmp_path: Path) -> None:
    model = tiny_models("wordpiece-cased", train_steps=50)
    _, tagger = _tagger(model, dtype="float32")
    tagger.to_disk(tmp_path / "all", exclude=["vocab"])
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == ["cfg.json", "model"]
    tagger.to_disk(tmp_path / "no_model", exclude=["model"])
    assert sorted(p.name for p in (tmp_path / "no_model").iterdir()) == ["cfg.json"]
    tagger.to_disk(tmp_path / "no_cfg", exclude=["cfg"])
    assert sorted(p.name for p in (tmp_path / "no_cfg").iterdir()) == ["model"]


def test_from_disk_without_cfg_keeps_the_settings_revision(tiny_models, tmp_path: Path) -> None:
    model = tiny_models("wordpiece-cased", train_steps=50)
    _, tagger = _tagger(model, dtype="float32")
    tagger.to_disk(tmp_path / "pipe")
    cfg_path = tmp_path / "pipe" / "cfg.json"
    cfg = json.loads(cfg_path.read_text("utf8"))
    cfg["revision"] = "abc123"
    cfg_path.write_text(json.dumps(cfg), "utf8")

    _, read_all = _tagger(tmp_path / "elsewhere", dtype="float32")
    read_all.from_disk(tmp_path / "pipe")
    assert read_all.settings.revision == "abc123"

    _, no_cfg = _tagger(tmp_path / "elsewhere", dtype="float32")
    no_cfg.from_disk(tmp_path / "pipe", exclude=["cfg"])
    assert no_cfg.settings.revision is None
    assert no_cfg.is_loaded  # the weights were still read
    assert [t._.hf_bio for t in no_cfg(spacy.blank("en")(TEXT))] == [
        t._.hf_bio for t in read_all(spacy.blank("en")(TEXT))
    ]


def test_from_disk_without_model_loads_from_the_setting(tiny_models, tmp_path: Path) -> None:
    model = tiny_models("wordpiece-cased", train_steps=50)
    _, tagger = _tagger(model, dtype="float32")
    tagger.to_disk(tmp_path / "pipe")
    want = [t._.hf_bio for t in tagger(spacy.blank("en")(TEXT))]

    _, lazy = _tagger(model, dtype="float32")
    lazy.from_disk(tmp_path / "pipe", exclude=["model"])
    assert not lazy.is_loaded
    assert [t._.hf_bio for t in lazy(spacy.blank("en")(TEXT))] == want  # from `model`

    _, nowhere = _tagger(tmp_path / "missing", dtype="float32")
    nowhere.from_disk(tmp_path / "pipe", exclude=["model"])
    with pytest.raises(Exception, match="missing"):
        nowhere(spacy.blank("en")(TEXT))


def test_bytes_honour_exclude_too(tiny_models) -> None:
    model = tiny_models("wordpiece-cased", train_steps=50)
    _, tagger = _tagger(model, dtype="float32")
    want = [t._.hf_bio for t in tagger(spacy.blank("en")(TEXT))]
    small = tagger.to_bytes(exclude=["model"])
    full = tagger.to_bytes()
    assert len(small) < len(full) / 10

    _, other = _tagger(model, dtype="float32")
    other.from_bytes(full, exclude=["model"])
    assert not other.is_loaded
    other.from_bytes(full)
    assert other.is_loaded
    assert [t._.hf_bio for t in other(spacy.blank("en")(TEXT))] == want
