"""Bad configuration and odd input: clear errors that name the value, or no error.

Why (docs/design.md section 6, "bad configuration gets a clear error naming the value
and the fix", and section 3 pitfall 6, "silent failure"): a wrong path, a base encoder
without a head, a slow tokenizer, a label set that is neither entities nor tags, a
device that does not exist or a misspelt setting must fail loudly, early and with a
message that says what was wrong, never turn into empty annotations. Odd but valid
texts (empty, whitespace, emoji, control characters, mixed scripts) must simply work.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Dict

import pytest
import spacy
import torch
from tiny_models import FAMILIES

from spacy_hf_tagger import LabelSchemeError, ModelLoadError
from spacy_hf_tagger.component import ConfigError

TinyModelFactory = Callable[..., Path]


def _add(model: Any, **cfg: Any):
    nlp = spacy.blank("en")
    nlp.add_pipe("hf_token_tagger", config={"model": str(model), **cfg})
    return nlp


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------- the model


def test_missing_folder_raises_on_first_use_naming_the_path() -> None:
    nlp = _add("/no/such/dir")  # loading is lazy: adding the pipe works
    for _ in range(2):  # and it keeps failing: no silent empty annotation afterwards
        with pytest.raises(ModelLoadError, match="/no/such/dir") as info:
            nlp("My name is Sarah.")
        assert "save_pretrained" in str(info.value)


def test_empty_model_setting() -> None:
    nlp = _add("")
    with pytest.raises(ModelLoadError, match="No model given"):
        nlp("text")


def _save_base_encoder(folder: Path, tiny_models: TinyModelFactory, pooler: bool) -> Path:
    """A BERT base encoder (no head, default labels) with the tiny WordPiece tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(tiny_models("wordpiece-cased"))
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config, add_pooling_layer=pooler).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_base_encoder_without_head_or_pooler(tmp_path: Path, tiny_models: TinyModelFactory) -> None:
    folder = _save_base_encoder(tmp_path / "base-encoder", tiny_models, pooler=False)
    nlp = _add(folder)
    with pytest.raises(ModelLoadError, match="no token-classification head") as info:
        nlp("My name is Sarah.")
    assert str(folder) in str(info.value)
    assert "classifier" in str(info.value)


def test_base_encoder_saved_with_pooler(tmp_path: Path, tiny_models: TinyModelFactory) -> None:
    """A base encoder saved as usual carries its pooler (real checkpoints also carry
    pretraining heads): still "no token-classification head", not a generic mismatch."""
    folder = _save_base_encoder(tmp_path / "base-encoder", tiny_models, pooler=True)
    nlp = _add(folder)
    with pytest.raises(ModelLoadError, match="no token-classification head"):
        nlp("My name is Sarah.")


def test_slow_tokenizer_only(tmp_path: Path, tiny_models: TinyModelFactory) -> None:
    """A tokenizer class with no fast version (CTRL's BPE) is refused, naming "fast".

    (A BERT folder with only vocab.txt is not a test of this: transformers converts
    BertTokenizer to BertTokenizerFast on load; see the next test.)
    """
    from transformers import AutoTokenizer, CTRLTokenizer

    folder = tmp_path / "slow"
    folder.mkdir()
    src = tiny_models("wordpiece-cased")
    for name in ("config.json", "model.safetensors"):
        shutil.copy(src / name, folder / name)
    (tmp_path / "vocab.json").write_text(json.dumps({"UNK": 0, "a": 1, "b": 2, "ab": 3}))
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b\n")
    CTRLTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt")).save_pretrained(
        folder
    )
    assert not (folder / "tokenizer.json").exists()
    assert not AutoTokenizer.from_pretrained(folder).is_fast  # really slow
    nlp = _add(folder)
    with pytest.raises(ModelLoadError, match="fast") as info:
        nlp("My name is Sarah.")
    assert "CTRLTokenizer" in str(info.value) and "slow" in str(info.value)
    assert str(folder) in str(info.value)


def test_vocab_only_bert_folder_is_converted_to_fast(
    tmp_path: Path, tiny_models: TinyModelFactory
) -> None:
    """No tokenizer.json, only the slow BertTokenizer's vocab.txt: transformers builds
    the fast tokenizer, and predictions are those of the original folder."""
    src = tiny_models("wordpiece-cased", train_steps=100)
    folder = tmp_path / "vocab-only"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(src / name, folder / name)
    # The layout of an old BERT folder, written by hand: transformers 5 always
    # saves a tokenizer.json (and no vocab.txt).
    vocab = json.loads((src / "tokenizer.json").read_text("utf8"))["model"]["vocab"]
    (folder / "vocab.txt").write_text(
        "".join(f"{token}\n" for token, _ in sorted(vocab.items(), key=lambda kv: kv[1])),
        "utf8",
    )
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": False}), "utf8"
    )
    text = "My name is Sarah and I live in Paris."
    doc = _add(folder)(text)
    assert [(e.text, e.label_) for e in doc.ents] == [("Sarah", "PER"), ("Paris", "LOC")]


def test_mixed_labels(tiny_models: TinyModelFactory) -> None:
    nlp = _add(tiny_models("wordpiece-cased", labels=["O", "B-PER", "NOUN"]))
    with pytest.raises(LabelSchemeError) as info:
        nlp("My name is Sarah.")
    assert "B-PER" in str(info.value) and "NOUN" in str(info.value)
    assert "id2label" in str(info.value)


def test_label_ids_with_gaps(tmp_path: Path, tiny_models: TinyModelFactory) -> None:
    folder = _copy(tiny_models("wordpiece-cased", labels=["O", "B-PER", "I-PER"]), tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {"0": "O", "1": "B-PER", "5": "I-PER"}
    config["label2id"] = {"O": 0, "B-PER": 1, "I-PER": 5}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises((LabelSchemeError, ModelLoadError)) as info:
        _add(folder)("My name is Sarah.")
    assert "5" in str(info.value)


def test_head_does_not_match_config(tmp_path: Path, tiny_models: TinyModelFactory) -> None:
    """config.json names 3 labels, the weights hold a 7-label head: refuse loudly."""
    folder = _copy(tiny_models("wordpiece-cased"), tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {"0": "O", "1": "B-PER", "2": "I-PER"}
    config["label2id"] = {"O": 0, "B-PER": 1, "I-PER": 2}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError) as info:
        _add(folder)("My name is Sarah.")
    assert str(folder) in str(info.value)
    assert "size mismatch" in str(info.value)


def test_truncated_weights(tmp_path: Path, tiny_models: TinyModelFactory) -> None:
    """A truncated safetensors file: a ModelLoadError naming the folder, not
    safetensors' bare "incomplete metadata" error."""
    folder = _copy(tiny_models("wordpiece-cased"), tmp_path / "m")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelLoadError) as info:
        _add(folder)("My name is Sarah.")
    assert str(folder) in str(info.value)


# -------------------------------------------------------------------- device and dtype


@pytest.mark.parametrize("device", ["tpu", "cuda:7", "gpu0", "cuda", "mps"])
def test_unavailable_device_fails_at_add_pipe(device: str, tiny_models: TinyModelFactory) -> None:
    if device.startswith("cuda") and torch.cuda.device_count() > (7 if ":" in device else 0):
        pytest.skip(f"{device} exists on this machine")
    mps = getattr(torch.backends, "mps", None)
    if device == "mps" and mps is not None and mps.is_available():
        pytest.skip("mps exists on this machine")
    with pytest.raises(ModelLoadError) as info:
        _add(tiny_models("wordpiece-cased"), device=device)
    assert repr(device) in str(info.value)
    assert "cpu" in str(info.value)  # names a fix


@pytest.mark.parametrize("device", ["cpu", "auto", "CPU", " cpu "])
def test_cpu_devices_work(device: str, tiny_models: TinyModelFactory) -> None:
    nlp = _add(tiny_models("wordpiece-cased", train_steps=100), device=device)
    doc = nlp("My name is Sarah and I live in Paris.")
    assert [(e.text, e.label_) for e in doc.ents] == [("Sarah", "PER"), ("Paris", "LOC")]
    assert nlp.get_pipe("hf_token_tagger").hf_model.device.type == "cpu"


@pytest.mark.parametrize("dtype", ["float8", "int4", "double"])
def test_unknown_dtype(dtype: str, tiny_models: TinyModelFactory) -> None:
    with pytest.raises(ConfigError) as info:
        _add(tiny_models("wordpiece-cased"), dtype=dtype)
    assert repr(dtype) in str(info.value)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_explicit_half_dtypes_load_the_weights_in_them(
    dtype: str, tiny_models: TinyModelFactory
) -> None:
    nlp = _add(tiny_models("wordpiece-cased", train_steps=100), dtype=dtype)
    doc = nlp("My name is Sarah and I live in Paris.")
    assert nlp.get_pipe("hf_token_tagger").hf_model.dtype == getattr(torch, dtype)
    assert [(e.text, e.label_) for e in doc.ents] == [("Sarah", "PER"), ("Paris", "LOC")]
    assert all(isinstance(t._.hf_score, float) for t in doc)


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("cfg", "shown"),
    [
        ({"aggregation": "median"}, "'median'"),
        ({"errors": "loud"}, "'loud'"),
        ({"annotate": ["entities"]}, "'entities'"),
        ({"annotate": []}, "annotate"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"max_length": 1}, "max_length=1"),
        ({"stride": -1}, "stride=-1"),
        ({"threshold": 1.5}, "threshold=1.5"),
        ({"threshold": -0.1}, "threshold=-0.1"),
        ({"mixed_precision": "fp8"}, "'fp8'"),
        ({"spans_key": ""}, "spans_key"),
    ],
)
def test_bad_settings_fail_at_add_pipe(
    cfg: Dict[str, Any], shown: str, tiny_models: TinyModelFactory
) -> None:
    with pytest.raises(ConfigError) as info:
        _add(tiny_models("wordpiece-cased"), **cfg)
    assert shown in str(info.value)


@pytest.mark.parametrize("family", ["wordpiece-cased", "bpe-roberta"])
def test_stride_not_below_window(family: str, tiny_models: TinyModelFactory) -> None:
    """Window of 32 with 2 special tokens leaves 30 pieces: stride 30 cannot work."""
    nlp = _add(tiny_models(family), stride=30)
    with pytest.raises(ConfigError, match="stride=30") as info:
        nlp("My name is Sarah.")
    assert "30" in str(info.value) and "max_length" in str(info.value)
    nlp = _add(tiny_models(family), stride=40, max_length=16)
    with pytest.raises(ConfigError, match="stride=40"):
        nlp("My name is Sarah.")
    assert len(_add(tiny_models(family), stride=29)("My name is Sarah.")) == 5


def test_max_length_without_room_for_text(tiny_models: TinyModelFactory) -> None:
    nlp = _add(tiny_models("wordpiece-cased"), max_length=2)
    with pytest.raises(ConfigError, match="max_length=2"):
        nlp("My name is Sarah.")


def test_add_label_points_to_initialize(tiny_models: TinyModelFactory) -> None:
    tagger = _add(tiny_models("wordpiece-cased")).get_pipe("hf_token_tagger")
    with pytest.raises(NotImplementedError, match="labels"):
        tagger.add_label("MISC")


# ------------------------------------------------------------------------- odd texts

ODD_TEXTS = [
    "",
    " ",
    "   ",
    "\n\n",
    "\t \n \u3000\u00a0",
    "🙂",
    "👨‍👩‍👧👍🏽🇫🇷",
    "\x00\x01\x7f",
    "\x00Sarah\x00",
    "\ufeffParis\u200b",
    "Zürich 東京 مرحبا Привет",
    "e\u0301\u0301\u0301",
    "\u0301",
    "A" * 500,
    "Sarah" + "\u0301" * 50,
]


@pytest.mark.parametrize("family", FAMILIES)
def test_odd_texts_annotate_without_error(family: str, tiny_models: TinyModelFactory) -> None:
    nlp = _add(tiny_models(family))
    for doc, text in zip(nlp.pipe(ODD_TEXTS), ODD_TEXTS):
        assert doc.text == text
        assert [t.text for t in doc] == [t.text for t in nlp.make_doc(text)]
        assert all(isinstance(t._.hf_bio, str) for t in doc)
        if not text.strip():
            assert doc.ents == () and all(t._.hf_score is None for t in doc)
    for text in ODD_TEXTS:  # one by one too
        assert nlp(text).text == text


# --- the first hour: messages a person can act on ---------------------------------------


def test_a_spacy_pipeline_folder_as_model_says_to_load_it(
    tmp_path: Path, tiny_models: TinyModelFactory
) -> None:
    pipeline = tmp_path / "pipeline"
    _add(tiny_models("wordpiece-cased")).to_disk(pipeline)
    with pytest.raises(ModelLoadError) as info:
        _add(pipeline)("Sarah.")
    message = str(info.value)
    assert "spaCy pipeline folder" in message and f"spacy.load('{pipeline}')" in message
    assert str(pipeline / "hf_token_tagger" / "model") in message
    assert len(message) < 600


def test_a_folder_that_is_not_a_model_is_named_briefly(tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("hello")
    (folder / "config.json").write_text(json.dumps({"hello": "world"}))  # no model_type
    with pytest.raises(ModelLoadError) as info:
        _add(folder)("Sarah.")
    assert str(folder) in str(info.value)
    assert len(str(info.value)) < 600, len(str(info.value))
    (folder / "config.json").unlink()
    with pytest.raises(ModelLoadError, match=r"has no config\.json") as info:
        _add(folder)("Sarah.")
    assert "readme.txt" in str(info.value) and len(str(info.value)) < 600


@pytest.mark.parametrize("name", ["models/my-ner", "a/b/c", "my-ner/"])
def test_a_mistyped_path_fails_fast_without_trying_the_hub(
    name: str, tmp_path: Path, monkeypatch
) -> None:
    import time

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()  # "models/my-ner": its parent exists, so a path
    start = time.monotonic()
    with pytest.raises(ModelLoadError, match="does not exist") as info:
        _add(name)("Sarah.")
    assert time.monotonic() - start < 5
    assert len(str(info.value)) < 600


@pytest.mark.parametrize("hub", ["refuses", "never answers", "offline mode"])
def test_a_hub_id_without_a_hub_fails_fast_in_one_short_message(
    hub: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline, huggingface_hub retries for over a minute; the probe answers in
    seconds: the hub refusing, a connection that never opens, HF_HUB_OFFLINE."""
    import socket
    import time

    from huggingface_hub import constants

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    if hub == "refuses":
        monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens
    elif hub == "never answers":

        def never_opens(*args: object, **kwargs: object) -> socket.socket:
            time.sleep(60)  # the probe gives up long before; then it times out
            raise TimeoutError("timed out")

        monkeypatch.setattr(socket, "create_connection", never_opens)
    else:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(ModelLoadError) as info:
        _add("models/my-ner")("Sarah.")
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert len(message) < 600, message
    assert message.startswith(
        f"Model 'models/my-ner' is not a folder here (no {tmp_path / 'models' / 'my-ner'}) nor "
        "in the Hugging Face cache, and cannot be fetched from the hub: "
    )
    assert {
        "refuses": "connecting to 127.0.0.1 failed (Connection refused)",
        "never answers": "huggingface.co did not answer within 3 s",
        "offline mode": "HF_HUB_OFFLINE is set",
    }[hub] in message
    assert "Give the path of the model's folder" in message


@pytest.mark.slow
def test_a_hub_id_in_the_cache_loads_when_the_hub_cannot_be_reached(
    tmp_path: Path, tiny_models: TinyModelFactory
) -> None:
    """No retries, no network: the cached snapshot, as HF_HUB_OFFLINE=1 would."""
    import subprocess
    import sys

    snapshot = tmp_path / "cache" / "models--acme--tiny-ner" / "snapshots" / "0123abc"
    shutil.copytree(tiny_models("wordpiece-cased", train_steps=100), snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0123abc")
    script = (
        "import json, time, spacy\n"
        "nlp = spacy.blank('en')\n"
        "nlp.add_pipe('hf_token_tagger', config={'model': 'acme/tiny-ner'})\n"
        "start = time.monotonic()\n"
        "doc = nlp('My name is Sarah and I live in Paris.')\n"
        "print(json.dumps([[e.text, e.label_] for e in doc.ents]), time.monotonic() - start)\n"
    )
    env = {
        **os.environ,
        "HF_HUB_CACHE": str(tmp_path / "cache"),
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "CUDA_VISIBLE_DEVICES": "",
    }
    env.pop("HF_HUB_OFFLINE", None)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    ents, seconds = done.stdout.rsplit(" ", 1)
    assert json.loads(ents) == [["Sarah", "PER"], ["Paris", "LOC"]]
    assert float(seconds) < 10
    assert "Retry" not in done.stderr


def test_weight_errors_stay_short(tmp_path: Path, tiny_models: TinyModelFactory) -> None:
    folder = _copy(tiny_models("wordpiece-cased"), tmp_path / "m")
    (folder / "model.safetensors").write_bytes(b"not a safetensors file" * 100)
    with pytest.raises(ModelLoadError) as info:
        _add(folder)("Sarah.")
    assert "model.safetensors" in str(info.value)
    assert len(str(info.value)) < 600, str(info.value)
