"""The float32 weights mapped from the model's file leave resident memory while
a reduced-precision copy runs, and come back intact when read.

Why: transformers maps safetensors weights into memory; once the bf16 copy has
read them they count in the process's RSS for good, though inference never
reads them again (86 MiB for MiniLM-L6; benchmarks/stream_memory.py).
"""

from __future__ import annotations

import platform
import shutil
import sys
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest
import spacy
import torch
from safetensors.torch import load_file
from spacy.training import Example
from tiny_models import training_sentences

from spacy_hf_tagger import component
from spacy_hf_tagger.model import loading, precision, residency
from spacy_hf_tagger.model.precision import Precision, inference_copy
from spacy_hf_tagger.model.residency import (
    file_mappings,
    mappings_holding,
    page_out_weights,
    smaps_kib,
    weight_mappings,
)

TinyModelFactory = Callable[..., Path]
TEXT = training_sentences()[0][0]
BF16 = Precision(torch.float32, "bfloat16", "test")


def test_file_mappings_keep_files_only(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text(
        "7f0000000000-7f0000004000 r--p 00000000 fd:01 1234   /models/x/model.safetensors\n"
        "7f0000004000-7f0000008000 rw-p 00000000 00:00 0 \n"
        "55d000000000-55d000021000 rw-p 00000000 00:00 0      [heap]\n"
        "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0      [stack]\n"
        "7f0000010000-7f0000012000 r-xp 00002000 fd:01 99     /usr/lib/libc.so.6\n"
        "7f0000020000-7f0000021000 rw-s 00000000 00:01 77     /dev/zero (deleted)\n"
    )
    assert file_mappings(maps) == [
        (0x7F0000000000, 0x7F0000004000),
        (0x7F0000010000, 0x7F0000012000),
        (0x7F0000020000, 0x7F0000021000),
    ]
    assert file_mappings(tmp_path / "absent") == []  # not Linux: nothing to advise


def test_smaps_fields_per_mapping(tmp_path: Path) -> None:
    smaps = tmp_path / "smaps"
    smaps.write_text(
        "7f0000000000-7f0000004000 r--p 00000000 fd:01 1234   /models/x/model.safetensors\n"
        "Size:                 16 kB\n"
        "Rss:                  12 kB\n"
        "Anonymous:             4 kB\n"
        "VmFlags: rd mr mw me\n"
        "7f0000004000-7f0000008000 rw-p 00000000 00:00 0 \n"
        "Rss:                   8 kB\n"
        "Anonymous:             8 kB\n"
    )
    assert smaps_kib("Rss", smaps) == {
        (0x7F0000000000, 0x7F0000004000): 12,
        (0x7F0000004000, 0x7F0000008000): 8,
    }
    assert smaps_kib("Anonymous", smaps)[(0x7F0000000000, 0x7F0000004000)] == 4
    assert smaps_kib("Rss", tmp_path / "absent") == {}


def test_only_mappings_of_the_weights_and_none_of_the_copy_are_chosen() -> None:
    mappings = [(0, 100), (100, 200), (200, 300), (300, 400)]
    weights = [(10, 20), (150, 250), (310, 320)]
    copy = [(320, 330)]  # shares the last mapping (int8 keeps float32 embeddings)
    assert mappings_holding(mappings, weights, copy) == [(0, 100), (100, 200), (200, 300)]
    assert mappings_holding(mappings, [], []) == []


def _resident_kib(ranges: List[Tuple[int, int]]) -> int:
    """Resident KiB of this process's mappings at exactly these ranges."""
    rss = smaps_kib("Rss")
    return sum(rss.get(mapping, 0) for mapping in ranges)


def _state(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _ents(doc: spacy.tokens.Doc) -> List[tuple]:
    return [(e.start_char, e.end_char, e.label_, e._.hf_score) for e in doc.ents]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise paging is Linux's")
def test_a_bf16_run_pages_out_the_mapped_float32_weights_and_they_read_back_intact(
    tiny_models: TinyModelFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A file of its own: a page another mapping also holds (another test's
    # pipeline on the shared tiny model) is not paged out.
    folder = tmp_path / "model"
    shutil.copytree(tiny_models("wordpiece-cased", train_steps=100), folder)
    # "auto" on a CPU with native bf16 keeps the float32 weights (what training
    # and to_disk see) and runs a bf16 copy; an explicit "bfloat16" loads bf16.
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    advised: List[int] = []

    def spy(model: torch.nn.Module, runner: torch.nn.Module) -> int:
        advised.append(page_out_weights(model, runner))
        return advised[-1]

    monkeypatch.setattr(loading, "page_out_weights", spy)
    nlp = spacy.blank("en")
    nlp.add_pipe("hf_token_tagger", config={"model": str(folder), "device": "cpu"})
    tagger = nlp.get_pipe("hf_token_tagger")
    assert tagger.precision.needs_copy
    loaded = tagger._ensure_loaded()
    mapped = weight_mappings(tagger.hf_model)
    if not mapped:
        pytest.skip("this transformers version copies the weights instead of mapping the file")
    before = _resident_kib(mapped)
    assert before > 0
    loaded.inference_model()  # the copy is made, and the weights paged out
    assert len(advised) == 1
    if advised[0] == 0:
        pytest.skip("this kernel refuses MADV_PAGEOUT (Linux 5.4+)")
    after = _resident_kib(mapped)
    if after == before:
        pytest.skip("this file system's pages are not reclaimable here (tmpfs without swap)")
    # Pages faulted in a moment ago may still sit in the kernel's per-CPU
    # batches, out of reclaim's reach (16 of 88 pages seen here, 2 cores).
    assert after <= before // 2
    # Read back from the file, bit for bit (read only now: a page another
    # mapping holds too is not paged out).
    on_file = load_file(str(folder / "model.safetensors"))
    state = tagger.hf_model.state_dict()
    assert set(state) == set(on_file)
    for name, tensor in state.items():
        assert torch.equal(tensor, on_file[name]), name
    # A new copy (same weights) after the page-out predicts what the first did.
    first = _ents(nlp(TEXT))
    assert first
    tagger.weights_changed()
    assert _ents(nlp(TEXT)) == first
    # Training writes into the mapping: those private pages are not advised
    # again (they would go to swap and come back at the next step).
    text, spans = training_sentences()[0]
    example = Example.from_dict(nlp.make_doc(text), {"entities": spans})
    nlp.update([example], sgd=nlp.resume_training())
    trained = _state(tagger.hf_model)
    assert not torch.equal(trained["classifier.weight"], on_file["classifier.weight"])
    nlp(TEXT)  # a copy of the trained weights
    private = smaps_kib("Anonymous")
    assert len(advised) == 3 and any(private.get(m) for m in mapped)
    assert advised[-1] == 0
    for name, tensor in tagger.hf_model.state_dict().items():
        assert torch.equal(tensor, trained[name]), name


def test_nothing_is_advised_when_no_copy_runs(tiny_models: TinyModelFactory) -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "hf_token_tagger",
        config={"model": str(tiny_models("wordpiece-cased")), "dtype": "float32"},
    )
    model = nlp.get_pipe("hf_token_tagger").hf_model
    assert page_out_weights(model, model) == 0


def test_without_linux_nothing_happens(
    tiny_models: TinyModelFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(residency.sys, "platform", "darwin")
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "hf_token_tagger",
        config={"model": str(tiny_models("wordpiece-cased")), "dtype": "float32"},
    )
    model = nlp.get_pipe("hf_token_tagger").hf_model
    assert page_out_weights(model, inference_copy(model, BF16)) == 0


def test_the_bf16_copy_converts_each_tensor_once_and_shares_none(
    tiny_models: TinyModelFactory,
) -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "hf_token_tagger",
        config={"model": str(tiny_models("wordpiece-cased")), "dtype": "float32"},
    )
    model = nlp.get_pipe("hf_token_tagger").hf_model
    before = _state(model)
    # Gradients from training are not copied.
    model.classifier.weight.grad = torch.ones_like(model.classifier.weight)
    runner = inference_copy(model, BF16)
    originals: List[torch.Tensor] = [*model.parameters(), *model.buffers()]
    copies: List[torch.Tensor] = [*runner.parameters(), *runner.buffers()]
    assert len(copies) == len(originals)
    model_ptrs = {t.untyped_storage().data_ptr() for t in originals}
    for original, copied in zip(originals, copies):
        assert copied.untyped_storage().data_ptr() not in model_ptrs
        if original.is_floating_point():
            assert copied.dtype == torch.bfloat16
            assert torch.equal(copied, original.detach().to(torch.bfloat16))
        else:
            assert torch.equal(copied, original)
    assert runner.classifier.weight.grad is None
    assert not any(p.requires_grad for p in runner.parameters())
    assert not runner.training
    for name, tensor in _state(model).items():
        assert torch.equal(tensor, before[name]), name


def test_a_huge_batch_hands_freed_memory_back_between_stages_and_annotates_the_same(
    tiny_models: TinyModelFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [text for text, _ in training_sentences()]
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "hf_token_tagger",
        config={
            "model": str(tiny_models("wordpiece-cased", train_steps=100)),
            "dtype": "float32",
            "device": "cpu",  # `pipe` overlaps on a GPU, by another path
        },
    )

    def read(docs: List[spacy.tokens.Doc]) -> List[tuple]:
        return [
            (
                [(e.start_char, e.end_char, e.label_, e._.hf_score) for e in doc.ents],
                [(t._.hf_bio, t._.hf_score) for t in doc],
                doc._.hf_char_ents,
            )
            for doc in docs
        ]

    usual = read(list(nlp.pipe(texts)))
    calls: List[int] = []
    monkeypatch.setattr(component, "RELEASE_AFTER_CHARS", 1)
    monkeypatch.setattr(component, "release_free_memory", lambda: calls.append(1) or True)
    assert read(list(nlp.pipe(texts))) == usual
    assert read([nlp(text) for text in texts[:3]]) == usual[:3]
    assert len(calls) == 3 * 4  # after tokenizing, the forward, writing; one pipe chunk + 3 calls


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_free_memory_goes_back_where_the_libc_can(monkeypatch: pytest.MonkeyPatch) -> None:
    # glibc has malloc_trim; another libc (musl) may not.
    assert residency.release_free_memory() is (platform.libc_ver()[0] == "glibc")
    monkeypatch.setattr(residency.sys, "platform", "win32")
    assert residency.release_free_memory() is False
