"""Saving and loading pipelines with hf_token_tagger, for every tokenizer family.

Why: a saved pipeline must carry everything the component needs (weights as
safetensors, config, fast tokenizer, settings) and `spacy.load` must read only
that copy, offline, giving the very same annotations. A broken or mismatched
weights file must fail loudly, never load half a model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
import spacy
from tiny_models import FAMILIES, NER_LABELS, training_sentences

from spacy_hf_tagger.errors import ModelLoadError
from spacy_hf_tagger.model import hub

TRAIN_STEPS = 100
BOGUS_MODEL = "bogus-org/this-model-must-never-be-loaded"

TEXTS: List[str] = [
    *(text for text, _ in training_sentences()[:6]),
    "Olga and  Peter moved to\nLondon yesterday.",  # extra whitespace tokens
    " ".join(text for text, _ in training_sentences()[8:12]),  # needs several windows
    "",
    "   ",
]

# Runs inside a fresh interpreter: load each saved pipeline offline, annotate, print JSON.
_CHILD = r"""
import json, sys
import spacy

def annotations(doc):
    return {
        "ents": [[e.start_char, e.end_char, e.label_] for e in doc.ents],
        "bio": [t._.hf_bio for t in doc],
        "scores": [t._.hf_score for t in doc],
        "spans": {k: [[s.start_char, s.end_char, s.label_] for s in g]
                  for k, g in doc.spans.items()},
    }

jobs = json.loads(sys.argv[1])
out = {}
for name, path in jobs.items():
    try:
        nlp = spacy.load(path)
        out[name] = [annotations(nlp(text)) for text in json.loads(sys.argv[2])]
    except Exception as err:  # reported per family by the parent
        out[name] = f"{type(err).__name__}: {err}"
print("RESULT" + json.dumps(out))
"""


def annotations(doc: Any) -> Dict[str, Any]:
    """Everything the component writes on a doc, as plain JSON-able values."""
    return {
        "ents": [[e.start_char, e.end_char, e.label_] for e in doc.ents],
        "bio": [t._.hf_bio for t in doc],
        "scores": [t._.hf_score for t in doc],
        "spans": {
            k: [[s.start_char, s.end_char, s.label_] for s in g] for k, g in doc.spans.items()
        },
    }


def assert_same_annotations(got: List[Dict[str, Any]], want: List[Dict[str, Any]]) -> None:
    assert len(got) == len(want)
    for text, g, w in zip(TEXTS, got, want):
        assert g["ents"] == w["ents"], text
        assert g["bio"] == w["bio"], text
        assert g["spans"] == w["spans"], text
        assert len(g["scores"]) == len(w["scores"]), text
        for gs, ws in zip(g["scores"], w["scores"]):
            if ws is None:
                assert gs is None, text
            else:
                assert gs == pytest.approx(ws, abs=1e-6), text


def annotate_all(nlp: Any) -> List[Dict[str, Any]]:
    return [annotations(nlp(text)) for text in TEXTS]


def make_nlp(model: Path, **config: Any) -> Any:
    nlp = spacy.blank("en")
    nlp.add_pipe("hf_token_tagger", config={"model": str(model), **config})
    return nlp


@pytest.fixture(scope="module")
def saved_pipelines(tiny_models, tmp_path_factory) -> Dict[str, Path]:
    """One saved pipeline per family (trained tiny model), shared read-only."""
    root = tmp_path_factory.mktemp("saved")
    out = {}
    for family in FAMILIES:
        nlp = make_nlp(tiny_models(family, train_steps=TRAIN_STEPS))
        nlp.to_disk(root / family)
        out[family] = root / family
    return out


# --- to_disk / spacy.load ------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_to_disk_spacy_load_round_trip(family, tiny_models, tmp_path):
    model = tiny_models(family, train_steps=TRAIN_STEPS)
    nlp = make_nlp(model, dtype="float32")  # exact across batch shapes; bf16: test_bf16.py
    before = annotate_all(nlp)
    # The trained model finds the memorised entities, so the comparison means something.
    assert before[0]["ents"] == [[11, 16, "PER"], [31, 36, "LOC"]]
    nlp.to_disk(tmp_path / "pipe")

    comp_dir = tmp_path / "pipe" / "hf_token_tagger"
    model_dir = comp_dir / "model"
    assert (comp_dir / "cfg.json").is_file()
    assert (model_dir / "model.safetensors").is_file()
    assert (model_dir / "config.json").is_file()
    assert (model_dir / "tokenizer.json").is_file()
    assert (model_dir / "tokenizer_config.json").is_file()
    assert not (model_dir / "pytorch_model.bin").exists()

    cfg = json.loads((comp_dir / "cfg.json").read_text("utf8"))
    assert cfg["labels"] == NER_LABELS
    assert cfg["label_scheme"] == "iob"
    assert cfg["resolved_label_map"] == {"PER": "PER", "LOC": "LOC", "ORG": "ORG"}
    assert "revision" in cfg and cfg["revision"] is None
    assert "resolved_commit" in cfg and cfg["resolved_commit"] is None  # a local folder

    loaded = spacy.load(tmp_path / "pipe")
    assert loaded.pipe_names == ["hf_token_tagger"]
    assert_same_annotations(annotate_all(loaded), before)
    # nlp.pipe on the loaded pipeline agrees too (batching must not change results).
    assert_same_annotations([annotations(d) for d in loaded.pipe(TEXTS, batch_size=3)], before)


@pytest.mark.parametrize("family", FAMILIES)
def test_load_reads_only_the_saved_copy(family, saved_pipelines, monkeypatch):
    """spacy.load must load from <pipeline>/hf_token_tagger/model, never cfg['model']."""
    sources: List[str] = []
    real_tok, real_model = hub.load_tokenizer, hub.load_model

    def load_tokenizer(source, *args, **kwargs):
        sources.append(str(source))
        return real_tok(source, *args, **kwargs)

    def load_model(source, *args, **kwargs):
        sources.append(str(source))
        return real_model(source, *args, **kwargs)

    monkeypatch.setattr(hub, "load_tokenizer", load_tokenizer)
    monkeypatch.setattr(hub, "load_model", load_model)
    path = saved_pipelines[family]
    nlp = spacy.load(path)
    nlp("Sarah lives in Paris.")
    want = str(path / "hf_token_tagger" / "model")
    assert sources and all(Path(s) == Path(want) for s in sources), sources


# --- to_bytes / from_bytes -----------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_to_bytes_from_bytes_into_bogus_component(family, tiny_models, monkeypatch):
    nlp = make_nlp(tiny_models(family, train_steps=TRAIN_STEPS))
    before = annotate_all(nlp)
    data = nlp.get_pipe("hf_token_tagger").to_bytes()
    pipeline_data = nlp.to_bytes()

    sources: List[str] = []
    real_tok, real_model = hub.load_tokenizer, hub.load_model

    def load_tokenizer(source, *args, **kwargs):
        sources.append(str(source))
        assert source != BOGUS_MODEL, "the bogus model id was loaded"
        return real_tok(source, *args, **kwargs)

    def load_model(source, *args, **kwargs):
        sources.append(str(source))
        assert source != BOGUS_MODEL, "the bogus model id was loaded"
        return real_model(source, *args, **kwargs)

    monkeypatch.setattr(hub, "load_tokenizer", load_tokenizer)
    monkeypatch.setattr(hub, "load_model", load_model)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    # The component alone.
    other = spacy.blank("en")
    comp = other.add_pipe("hf_token_tagger", config={"model": BOGUS_MODEL})
    assert not comp.is_loaded
    comp.from_bytes(data)
    assert comp.is_loaded
    assert_same_annotations(annotate_all(other), before)

    # The whole pipeline.
    third = spacy.blank("en")
    third.add_pipe("hf_token_tagger", config={"model": BOGUS_MODEL})
    third.from_bytes(pipeline_data)
    assert_same_annotations(annotate_all(third), before)
    assert BOGUS_MODEL not in sources


# --- offline, in a fresh process, with the original model folder gone -----------------


@pytest.fixture(scope="module")
def offline_child(tiny_models, tmp_path_factory):
    """Save one pipeline per family from a model copy, delete the copies, load in a child."""
    root = tmp_path_factory.mktemp("offline")
    parent: Dict[str, List[Dict[str, Any]]] = {}
    jobs: Dict[str, str] = {}
    for family in FAMILIES:
        copy = root / f"{family}-model"
        shutil.copytree(tiny_models(family, train_steps=TRAIN_STEPS), copy)
        nlp = make_nlp(copy, dtype="float32")  # the child agrees exactly
        parent[family] = annotate_all(nlp)
        nlp.to_disk(root / f"{family}-pipeline")
        del nlp
        shutil.rmtree(copy)
        assert not copy.exists()
        jobs[family] = str(root / f"{family}-pipeline")
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HOME=str(root / "empty_hf_home"),  # no cache to fall back on either
        OMP_NUM_THREADS="1",
    )
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(jobs), json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    return parent, json.loads(line[len("RESULT") :])


@pytest.mark.parametrize("family", FAMILIES)
def test_load_offline_in_subprocess_without_original_model(family, offline_child):
    parent, child = offline_child
    result = child[family]
    assert not isinstance(result, str), f"spacy.load failed in the child: {result}"
    assert_same_annotations(result, parent[family])


# --- broken saved models fail loudly --------------------------------------------------


def _broken_copy(saved: Path, tmp_path: Path, mutate: Callable[[Path], None]) -> Path:
    target = tmp_path / "broken"
    shutil.copytree(saved, target)
    mutate(target / "hf_token_tagger" / "model")
    return target


def _truncate_weights(model_dir: Path) -> None:
    weights = model_dir / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])


def _garbage_weights(model_dir: Path) -> None:
    weights = model_dir / "model.safetensors"
    size = weights.stat().st_size
    weights.write_bytes((b"not a safetensors file " * (size // 23 + 1))[:size])


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("corrupt", [_truncate_weights, _garbage_weights], ids=["half", "garbage"])
def test_corrupt_weights_file_raises_naming_it(family, corrupt, saved_pipelines, tmp_path):
    broken = _broken_copy(saved_pipelines[family], tmp_path, corrupt)
    with pytest.raises(ModelLoadError) as excinfo:
        spacy.load(broken)
    message = str(excinfo.value)
    assert "model.safetensors" in message or "weights" in message.lower(), message
    assert str(broken / "hf_token_tagger" / "model") in message, message


def _relabel(labels: List[str]) -> Callable[[Path], None]:
    def mutate(model_dir: Path) -> None:
        path = model_dir / "config.json"
        config = json.loads(path.read_text("utf8"))
        config["id2label"] = {str(i): label for i, label in enumerate(labels)}
        config["label2id"] = {label: i for i, label in enumerate(labels)}
        config.pop("num_labels", None)
        path.write_text(json.dumps(config), "utf8")

    return mutate


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "labels",
    [NER_LABELS[:5], [*NER_LABELS, "B-MISC", "I-MISC"]],
    ids=["fewer-labels", "more-labels"],
)
def test_config_labels_disagree_with_weights(family, labels, saved_pipelines, tmp_path):
    broken = _broken_copy(saved_pipelines[family], tmp_path, _relabel(labels))
    with pytest.raises(ModelLoadError) as excinfo:
        spacy.load(broken)
    message = str(excinfo.value)
    assert "weights" in message.lower(), message
    assert "size mismatch" in message or "shape" in message, message
    assert str(broken / "hf_token_tagger" / "model") in message, message


@pytest.mark.parametrize("family", FAMILIES)
def test_weights_without_head_raise(family, saved_pipelines, tmp_path):
    """A weights file missing the classifier must not load with a random head."""
    from safetensors.torch import load_file, save_file

    def drop_head(model_dir: Path) -> None:
        weights = model_dir / "model.safetensors"
        tensors = load_file(str(weights))
        kept = {k: v for k, v in tensors.items() if not k.startswith("classifier.")}
        assert len(kept) < len(tensors)
        save_file(kept, str(weights), metadata={"format": "pt"})

    broken = _broken_copy(saved_pipelines[family], tmp_path, drop_head)
    with pytest.raises(ModelLoadError) as excinfo:
        spacy.load(broken)
    assert "classifier" in str(excinfo.value), str(excinfo.value)


@pytest.mark.parametrize("family", FAMILIES)
def test_missing_model_folder_names_the_path(family, saved_pipelines, tmp_path):
    broken = _broken_copy(saved_pipelines[family], tmp_path, shutil.rmtree)
    with pytest.raises(ModelLoadError) as excinfo:
        spacy.load(broken)
    message = str(excinfo.value)
    assert str(broken / "hf_token_tagger") in message, message
    assert "model/" in message, message


@pytest.mark.parametrize("family", FAMILIES)
def test_missing_weights_file_names_it(family, saved_pipelines, tmp_path):
    broken = _broken_copy(
        saved_pipelines[family], tmp_path, lambda d: (d / "model.safetensors").unlink()
    )
    with pytest.raises(ModelLoadError) as excinfo:
        spacy.load(broken)
    message = str(excinfo.value)
    assert "model.safetensors" in message, message
    assert str(broken / "hf_token_tagger" / "model") in message, message


# --- settings survive ---------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_settings_survive_save_and_load(family, tiny_models, tmp_path):
    model = tiny_models(family, train_steps=TRAIN_STEPS)
    # Scores under the same aggregation as the settings below, so the threshold
    # falls between two of them.
    plain = make_nlp(model, aggregation="average")
    baseline = [plain(text) for text in TEXTS]
    per_scores = sorted(
        {round(e._.hf_score, 6) for doc in baseline for e in doc.ents if e.label_ == "PER"}
    )
    assert len(per_scores) >= 2
    # Halfway between two observed scores: some PER entities are kept, some dropped.
    threshold = (per_scores[len(per_scores) // 2 - 1] + per_scores[len(per_scores) // 2]) / 2

    settings = {
        "label_map": {"PER": "PERSON"},
        "ignore_labels": ["ORG"],
        "threshold": threshold,
        "spans_key": "model_ents",
        "annotate": ["ents", "spans"],
        "errors": "ignore",
        "aggregation": "average",
    }
    nlp = make_nlp(model, **settings)
    before = annotate_all(nlp)
    nlp.to_disk(tmp_path / "pipe")
    cfg = json.loads((tmp_path / "pipe" / "hf_token_tagger" / "cfg.json").read_text("utf8"))
    for key, value in settings.items():
        assert cfg[key] == value, key
    assert cfg["resolved_label_map"] == {"PER": "PERSON", "LOC": "LOC", "ORG": None}

    loaded = spacy.load(tmp_path / "pipe")
    comp = loaded.get_pipe("hf_token_tagger")
    for key, value in settings.items():
        assert comp.cfg[key] == value, key
    after = annotate_all(loaded)
    assert_same_annotations(after, before)

    labels = {e[2] for a in after for e in a["ents"]}
    assert "PERSON" in labels and "LOC" in labels
    assert not labels & {"PER", "ORG"}
    assert all(set(a["spans"]) == {"model_ents"} for a in after)
    for doc in (loaded(text) for text in TEXTS):
        assert all(e._.hf_score >= threshold for e in doc.ents)
    # The threshold really removed something that the plain pipeline found.
    n_plain = sum(1 for doc in baseline for e in doc.ents if e.label_ == "PER")
    n_after = sum(1 for a in after for e in a["ents"] if e[2] == "PERSON")
    assert 0 < n_after < n_plain


@pytest.mark.parametrize("family", FAMILIES)
def test_spans_only_setting_survives(family, tiny_models, tmp_path):
    model = tiny_models(family, train_steps=TRAIN_STEPS)
    nlp = make_nlp(model, annotate=["spans"], spans_key="only_here")
    nlp.to_disk(tmp_path / "pipe")
    loaded = spacy.load(tmp_path / "pipe")
    doc = loaded(TEXTS[0])
    assert list(doc.ents) == []
    assert [(s.text, s.label_) for s in doc.spans["only_here"]] == [
        ("Sarah", "PER"),
        ("Paris", "LOC"),
    ]
    assert "hf_ents" not in doc.spans


def test_load_time_config_overrides_take_effect(saved_pipelines):
    overrides = {"threshold": 0.999, "label_map": {"PER": "PERSON"}}
    nlp = spacy.load(
        saved_pipelines["wordpiece-cased"], config={"components": {"hf_token_tagger": overrides}}
    )
    assert nlp.config["components"]["hf_token_tagger"]["threshold"] == 0.999
    comp = nlp.get_pipe("hf_token_tagger")
    assert comp.cfg["threshold"] == 0.999
    assert comp.cfg["label_map"] == {"PER": "PERSON"}
    doc = nlp("My name is Sarah and I live in Paris.")
    assert all(e._.hf_score >= 0.999 for e in doc.ents)
    assert "PER" not in {e.label_ for e in doc.ents}
