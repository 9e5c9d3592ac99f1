"""Precision: what `dtype` resolves to (with the CPU's features faked both ways),
reduced-precision inference giving the fp32 entities, weights kept in fp32 for
training and saving, and `pipe` filling its own batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, FrozenSet, List, Tuple

import numpy as np
import pytest
import spacy
import torch
from tiny_models import FAMILIES, training_sentences

from spacy_hf_tagger import component
from spacy_hf_tagger.component import PIPE_FILL, ConfigError
from spacy_hf_tagger.model import precision
from spacy_hf_tagger.model.precision import Precision, choose_precision, cpu_flags

# What dtype="auto" runs in changes these: CI runs them again with each precision.
pytestmark = pytest.mark.precision

TinyModelFactory = Callable[..., Path]
CPU = torch.device("cpu")
TEXTS = [text for text, _ in training_sentences()]


def _nlp(model: Path, **cfg: Any) -> spacy.language.Language:
    nlp = spacy.blank("en")
    nlp.add_pipe("hf_token_tagger", config={"model": str(model), **cfg})
    return nlp


def _entities(nlp: spacy.language.Language, texts: List[str]) -> List[List[Tuple[int, int, str]]]:
    return [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in nlp.pipe(texts)]


def _fake_flags(monkeypatch: pytest.MonkeyPatch, flags: FrozenSet[str]) -> None:
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)


# ------------------------------------------------------------------ the decision


@pytest.mark.parametrize(
    ("flags", "runs_in"),
    [
        (frozenset({"avx2", "avx512f", "avx512_bf16"}), "bfloat16"),
        (frozenset({"avx2", "amx_tile", "amx_bf16"}), "bfloat16"),
        (frozenset({"avx2", "avx512f", "avx512_vnni"}), "float32"),
        (frozenset(), "float32"),
    ],
)
def test_auto_on_cpu_follows_native_bf16(flags: FrozenSet[str], runs_in: str) -> None:
    chosen = choose_precision("auto", CPU, flags)
    assert chosen.runs_in == runs_in
    # The weights stay float32 on CPU whatever inference runs in.
    assert chosen.weights == torch.float32
    assert chosen.needs_copy == (runs_in != "float32")
    flag_named = sorted(flags & precision.BF16_FLAGS)
    if flag_named:
        assert flag_named[0] in chosen.reason
    else:
        assert "no native bf16" in chosen.reason


@pytest.mark.parametrize(
    ("setting", "weights", "runs_in"),
    [
        ("float32", torch.float32, "float32"),
        ("fp32", torch.float32, "float32"),
        ("bfloat16", torch.bfloat16, "bfloat16"),
        ("float16", torch.float16, "float16"),
        ("int8", torch.float32, "int8"),
        (" INT8 ", torch.float32, "int8"),
    ],
)
def test_explicit_dtype_wins_over_the_cpu(setting: str, weights: torch.dtype, runs_in: str) -> None:
    for flags in (frozenset({"avx512_bf16"}), frozenset()):
        chosen = choose_precision(setting, CPU, flags)
        assert (chosen.weights, chosen.runs_in) == (weights, runs_in)
        assert "asked for" in chosen.reason


def test_int8_is_refused_on_a_gpu_with_the_fix() -> None:
    with pytest.raises(ConfigError, match='device="cpu"') as info:
        choose_precision("int8", torch.device("cuda"), frozenset())
    assert "'cuda'" in str(info.value)


def test_cpu_flags_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 avx512_bf16\n\n"
        "processor\t: 1\nflags\t\t: fpu\n"
    )
    assert cpu_flags(info) == frozenset({"fpu", "sse2", "avx2", "avx512_bf16"})
    # Without /proc/cpuinfo, torch's probes stand in: a subset of the bf16 flags.
    assert cpu_flags(tmp_path / "missing") <= precision.BF16_FLAGS


# ------------------------------------------------------------- reduced precision


def test_auto_with_native_bf16_runs_a_bf16_copy_and_keeps_fp32_weights(
    tiny_models: TinyModelFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model = tiny_models("wordpiece-cased", train_steps=100)
    reference = _entities(_nlp(model, dtype="float32"), TEXTS)
    _fake_flags(monkeypatch, frozenset({"avx512_bf16"}))
    nlp = _nlp(model)  # dtype="auto"
    tagger = nlp.get_pipe("hf_token_tagger")
    assert tagger.precision.runs_in == "bfloat16"
    assert _entities(nlp, TEXTS) == reference
    loaded = tagger._ensure_loaded()
    assert tagger.hf_model.dtype == torch.float32
    assert next(loaded.inference_model().parameters()).dtype == torch.bfloat16
    # Saving writes the float32 weights, exactly.
    original = {k: v.clone() for k, v in tagger.hf_model.state_dict().items()}
    nlp.to_disk(tmp_path / "saved")
    _fake_flags(monkeypatch, frozenset())  # loaded again on a CPU without bf16
    again = spacy.load(tmp_path / "saved")
    again_tagger = again.get_pipe("hf_token_tagger")
    assert again_tagger.precision.runs_in == "float32"
    for key, value in again_tagger.hf_model.state_dict().items():
        assert value.dtype == torch.float32
        assert torch.equal(value, original[key]), key
    assert _entities(again, TEXTS) == reference


@pytest.mark.parametrize("family", FAMILIES)
def test_int8_gives_the_fp32_entities(family: str, tiny_models: TinyModelFactory) -> None:
    model = tiny_models(family, train_steps=100)
    fp32 = _nlp(model, dtype="float32")
    int8 = _nlp(model, dtype="int8")
    assert _entities(int8, TEXTS) == _entities(fp32, TEXTS)
    for a, b in zip(fp32.pipe(TEXTS), int8.pipe(TEXTS)):
        np.testing.assert_allclose(
            [t._.hf_score or 0.0 for t in a], [t._.hf_score or 0.0 for t in b], atol=0.05
        )


def test_int8_quantizes_every_linear_layer_but_the_classifier(
    tiny_models: TinyModelFactory,
) -> None:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    tagger = _nlp(tiny_models("wordpiece-cased"), dtype="int8").get_pipe("hf_token_tagger")
    runner = tagger._ensure_loaded().inference_model()
    assert runner is not tagger.hf_model
    kinds = {name: type(m) for name, m in runner.named_modules()}
    assert kinds["classifier"] is torch.nn.Linear
    quantized = [n for n, kind in kinds.items() if kind is DynamicLinear]
    linear_in_model = [
        n for n, m in tagger.hf_model.named_modules() if isinstance(m, torch.nn.Linear)
    ]
    assert sorted(quantized) == sorted(n for n in linear_in_model if n != "classifier")
    # The model itself is untouched: training and saving see float32 weights.
    assert all(
        isinstance(m, torch.nn.Linear) and m.weight.dtype == torch.float32
        for n, m in tagger.hf_model.named_modules()
        if n in linear_in_model
    )


def test_int8_setting_survives_save_and_load(tiny_models: TinyModelFactory, tmp_path: Path) -> None:
    model = tiny_models("bpe-roberta", train_steps=100)
    nlp = _nlp(model, dtype="int8")
    before = _entities(nlp, TEXTS)
    nlp.to_disk(tmp_path / "saved")
    again = spacy.load(tmp_path / "saved")
    assert again.get_pipe("hf_token_tagger").precision.runs_in == "int8"
    assert _entities(again, TEXTS) == before


def test_training_updates_the_weights_the_reduced_copy_is_made_from(
    tiny_models: TinyModelFactory,
) -> None:
    from spacy.training import Example

    nlp = _nlp(tiny_models("wordpiece-cased"), dtype="int8")
    tagger = nlp.get_pipe("hf_token_tagger")
    loaded = tagger._ensure_loaded()
    first = loaded.inference_model()
    assert loaded.inference_model() is first  # made once, kept
    text, spans = training_sentences()[0]
    example = Example.from_dict(nlp.make_doc(text), {"entities": spans})
    optimizer = nlp.resume_training()
    nlp.update([example], sgd=optimizer)
    assert tagger.hf_model.classifier.weight.dtype == torch.float32
    second = loaded.inference_model()
    assert second is not first  # rebuilt from the updated weights
    assert torch.equal(second.classifier.weight, tagger.hf_model.classifier.weight)


# ----------------------------------------------------------------------- pipe


def test_pipe_fills_its_own_batches_whatever_spacy_passes(
    tiny_models: TinyModelFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    nlp = _nlp(tiny_models("wordpiece-cased", train_steps=100))
    tagger = nlp.get_pipe("hf_token_tagger")
    reference = _entities(nlp, TEXTS)
    sizes: List[int] = []
    annotate = tagger._annotate_docs

    def counting(docs: Any) -> None:
        sizes.append(len(docs))
        annotate(docs)

    monkeypatch.setattr(tagger, "_annotate_docs", counting)
    texts = TEXTS * (PIPE_FILL // len(TEXTS) + 2)
    # Short texts: the chunk grows past spaCy's batch size (1) and past
    # PIPE_FILL, to the end of the stream, while its text fills fewer than
    # PIPE_CHUNK_CALLS forward calls.
    docs = list(nlp.pipe(texts, batch_size=1))
    assert sizes == [len(texts)]
    got = [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in docs]
    assert got == reference * (len(texts) // len(TEXTS))
    # Any text is enough for a full chunk: PIPE_FILL docs, whatever spaCy passes.
    monkeypatch.setattr(component, "PIPE_CHUNK_CALLS", 0)
    sizes.clear()
    list(nlp.pipe(texts, batch_size=1))
    assert sizes == [PIPE_FILL, len(texts) - PIPE_FILL]
    # A batch size above the fill is kept.
    sizes.clear()
    list(nlp.pipe(texts, batch_size=1000))
    assert sizes == [len(texts)]
    # However short the texts, a chunk holds at most PIPE_MAX_DOCS docs (or
    # spaCy's batch size, if larger).
    monkeypatch.setattr(component, "PIPE_CHUNK_CALLS", 10**6)
    monkeypatch.setattr(component, "PIPE_MAX_DOCS", PIPE_FILL + 3)
    sizes.clear()
    list(nlp.pipe(texts, batch_size=1))
    assert sizes == [PIPE_FILL + 3, len(texts) - PIPE_FILL - 3]


def test_pipe_errors_go_to_the_error_handler(tiny_models: TinyModelFactory) -> None:
    nlp = _nlp(tiny_models("wordpiece-cased"))
    tagger = nlp.get_pipe("hf_token_tagger")

    def broken(docs: Any) -> None:
        raise RuntimeError("boom")

    tagger._annotate_docs = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="boom"):
        list(nlp.pipe(TEXTS[:3]))
    seen: List[int] = []
    tagger.set_error_handler(lambda name, proc, docs, error: seen.append(len(docs)))
    assert list(nlp.pipe(TEXTS[:3], batch_size=1)) == []
    assert seen == [3]


def test_precision_is_decided_when_the_pipe_is_added(tiny_models: TinyModelFactory) -> None:
    tagger = _nlp(tiny_models("wordpiece-cased"), dtype="float32").get_pipe("hf_token_tagger")
    assert isinstance(tagger.precision, Precision)
    assert not tagger.is_loaded
    assert tagger.precision.runs_in == "float32"


def test_precision_check_prints_agreement_with_float32(
    tiny_models: TinyModelFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from spacy_hf_tagger.cli import main
    from spacy_hf_tagger.jobs import precision_check

    model = tiny_models("wordpiece-cased", train_steps=100)
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n\n", encoding="utf8")
    with pytest.raises(SystemExit) as exit_info:
        main(["precision-check", str(model), str(texts), "--dtype", "int8"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert f"{len(TEXTS)} texts" in out
    assert rows["float32"][1] == "float32"
    # int8 runs in int8 and finds the float32 entities (checked above per family).
    assert rows["int8"][1] == "int8"
    assert rows["int8"][4:7] == ["100.00", "100.00", "100.00"]
    n_entities = sum(len(spans) for _, spans in training_sentences())
    assert f"float32 found {n_entities} entities" in out

    # A saved pipeline is run with its component's dtype overridden.
    nlp = _nlp(model)
    nlp.to_disk(tmp_path / "pipeline")
    _, results = precision_check.compare(str(tmp_path / "pipeline"), TEXTS, ["int8"])
    assert [a.runs_in for a in results] == ["int8"]
    assert results[0].entity_f == 100.0


def test_int8_copy_shares_the_float32_tensors_with_the_model(
    tiny_models: TinyModelFactory,
) -> None:
    tagger = _nlp(tiny_models("wordpiece-cased"), dtype="int8").get_pipe("hf_token_tagger")
    runner = tagger._ensure_loaded().inference_model()
    model = tagger.hf_model
    assert (
        runner.bert.embeddings.word_embeddings.weight
        is model.bert.embeddings.word_embeddings.weight
    )
    assert runner.classifier.weight is model.classifier.weight
    assert runner.bert.embeddings.LayerNorm.weight is model.bert.embeddings.LayerNorm.weight
    # The quantized layers are the copy's own; the model keeps its float32 ones.
    assert model.bert.encoder.layer[0].attention.self.query.weight.dtype == torch.float32


# ------------------------------------------------- the copy follows the weights


def _outputs(nlp: spacy.language.Language) -> List[Any]:
    """Entities and every token's score: what a changed weight would move."""
    return [
        ([(e.start_char, e.end_char, e.label_) for e in doc.ents], [t._.hf_score for t in doc])
        for doc in nlp.pipe(TEXTS)
    ]


def _reference(model: torch.nn.Module, tokenizer_dir: Path, folder: Path, **cfg: Any) -> List[Any]:
    """What a fresh pipeline on a saved copy of `model` predicts."""
    model.save_pretrained(folder)
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(folder)
    return _outputs(_nlp(folder, **cfg))


def _in_place(model: torch.nn.Module, trained: Path) -> None:
    with torch.no_grad():
        model.bert.encoder.layer[0].attention.self.query.weight.mul_(-1.0)
        model.classifier.bias[1] += 3.0


def _load_state_dict(model: torch.nn.Module, trained: Path) -> None:
    from transformers import AutoModelForTokenClassification

    model.load_state_dict(AutoModelForTokenClassification.from_pretrained(trained).state_dict())


def _new_head(model: torch.nn.Module, trained: Path) -> None:
    torch.manual_seed(7)
    old = model.classifier
    model.classifier = torch.nn.Linear(old.in_features, old.out_features)


@pytest.mark.parametrize("runs_in", ["bfloat16", "int8"])
@pytest.mark.parametrize("edit", [_in_place, _load_state_dict, _new_head])
def test_a_weight_change_outside_training_is_seen_by_the_next_prediction(
    runs_in: str,
    edit: Callable[[torch.nn.Module, Path], None],
    tiny_models: TinyModelFactory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The reduced-precision copy is remade after any change to the weights, so
    the component predicts exactly what a fresh pipeline on the changed model
    predicts (bf16 emulated where the CPU lacks it)."""
    untrained = tiny_models("wordpiece-cased")
    trained = tiny_models("wordpiece-cased", train_steps=100)
    cfg = {"dtype": "int8"} if runs_in == "int8" else {}
    _fake_flags(monkeypatch, frozenset({"avx512_bf16"}))
    nlp = _nlp(untrained, **cfg)
    tagger = nlp.get_pipe("hf_token_tagger")
    assert tagger.precision.runs_in == runs_in
    before = _outputs(nlp)
    loaded = tagger._ensure_loaded()
    copy_before = loaded.inference_model()
    assert loaded.inference_model() is copy_before  # unchanged weights: no new copy
    edit(tagger.hf_model, trained)
    after = _outputs(nlp)
    assert loaded.inference_model() is not copy_before
    assert after != before
    assert after == _reference(tagger.hf_model, untrained, tmp_path / "edited", **cfg)


def test_weights_changed_covers_writes_torch_does_not_track(
    tiny_models: TinyModelFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`tensor.data` writes bypass torch's version counters (peft merges LoRA
    weights that way): `weights_changed()` is the documented way to say so."""
    model = tiny_models("wordpiece-cased")
    _fake_flags(monkeypatch, frozenset({"avx512_bf16"}))
    nlp = _nlp(model)
    tagger = nlp.get_pipe("hf_token_tagger")
    before = _outputs(nlp)
    tagger.hf_model.classifier.bias.data[1] += 3.0  # not counted by torch
    tagger.weights_changed()
    after = _outputs(nlp)
    assert after != before
    assert after == _reference(tagger.hf_model, model, tmp_path / "edited")


def test_a_replaced_tensor_never_passes_for_the_one_before() -> None:
    """The state holds the tensors it saw: a freed tensor's id and storage could
    otherwise be reused by its replacement, which would then look unchanged."""
    from spacy_hf_tagger.model.loading import same_weights, weights_state

    layer = torch.nn.Linear(2, 2)
    before = weights_state(layer)
    assert same_weights(weights_state(layer), before)
    old = layer.weight
    layer.weight = torch.nn.Parameter(torch.zeros(2, 2))
    del old
    assert not same_weights(weights_state(layer), before)
    assert any(t.shape == (2, 2) and t is not layer.weight for t, _, _ in before)
    unchanged = weights_state(layer)
    with torch.no_grad():
        layer.bias.add_(1.0)
    assert not same_weights(weights_state(layer), unchanged)


def test_the_weights_watch_sees_every_change_and_walks_the_tree_only_after_an_assignment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`WeightsWatch.unchanged` runs before every forward pass: while no module
    anywhere was assigned a parameter, buffer or submodule, it reads the
    tensors it saw (no walk of the tree); after one, it walks the tree once."""
    from spacy_hf_tagger.model import loading

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LayerNorm(2))
    watch = loading.WeightsWatch(model)
    walks = []
    real_state = loading.weights_state
    monkeypatch.setattr(
        loading, "weights_state", lambda m: walks.append(1) or real_state(m)
    )
    assert watch.unchanged(model) and watch.unchanged(model)
    assert walks == []  # the fast path
    with torch.no_grad():
        model[0].bias.add_(1.0)  # in place: its version counter moves
    assert not watch.unchanged(model)
    watch = loading.WeightsWatch(model)
    torch.nn.Linear(3, 3)  # an assignment elsewhere in the process
    walks.clear()
    assert watch.unchanged(model) and watch.unchanged(model)
    assert walks == [1]  # one walk, then the fast path again
    model[1].weight = torch.nn.Parameter(torch.ones(2))  # a replaced tensor
    assert not watch.unchanged(model)
    watch = loading.WeightsWatch(model)
    model[0] = torch.nn.Linear(2, 2)  # a new submodule
    assert not watch.unchanged(model)
    watch = loading.WeightsWatch(model)
    model[0].weight.data = torch.zeros(2, 2)  # new storage behind the same tensor
    assert not watch.unchanged(model)
