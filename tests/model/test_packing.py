"""Packed rows: several windows end to end in one row of model input.

Why: a batch of short windows of different lengths (the sentences of
concurrent server requests) is mostly padding when padded; packed, each window
must still get exactly the outputs it gets alone, on every architecture where
packing is used, and the probe must refuse a layout the model reads otherwise.
"""

from __future__ import annotations

from typing import List

import numpy as np
import pytest
import spacy
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import ARCHITECTURES, FAMILIES

from spacy_hf_tagger.model import forward
from spacy_hf_tagger.model.hub import transformers_major
from spacy_hf_tagger.model.inputs import SpecialTokens
from spacy_hf_tagger.model.packing import (
    PackedLayout,
    find_layout,
    pack_rows,
    packed_inputs,
    packing_pays,
)

# What dtype="auto" runs in changes these: CI runs them again with each precision.
pytestmark = pytest.mark.precision

BERT_LIKE = SpecialTokens(prefix=(101,), suffix=(102,), pad_id=0, uses_token_types=True)

TEXTS = [
    "Angela Merkel visited Paris on Monday.",
    "Hi",
    "The quick brown fox jumps over the lazy dog again and again in Berlin, Germany.",
    "Sarah lives in London.",
    "A b c.",
    "Microsoft and Google met in New York with David.",
] * 3
# Longer than a tiny model's window (30 pieces): overlapping windows whose kept
# columns do not start at the window's first piece, packed beside others.
LONG = [
    "Sarah flew from London to New York on Monday, and then John Smith visited "
    "Berlin last May while Anna Müller joined Initech in Munich with David.",
    "Hi",
    "Emma met Liam.",
    "Sarah lives in London.",
    "A b c.",
    "Peter can't find the Globex office.",
]


def test_pack_rows_first_fit_longest_first():
    # Longest first: 9 opens row 0, 7 opens row 1 (16 > 12), 5 joins row 1
    # (12), 3 joins row 0 (12), 2 opens row 2, 1 joins row 2.
    assert pack_rows([3, 9, 1, 7, 2, 5], capacity=12) == [[1, 0], [3, 5], [4, 2]]


def test_a_window_longer_than_a_row_gets_a_row_of_its_own():
    assert pack_rows([20, 4, 4], capacity=8) == [[0], [1, 2]]


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=30),
    capacity=st.integers(1, 64),
)
def test_pack_rows_places_each_window_once_within_capacity(lengths, capacity):
    rows = pack_rows(lengths, capacity)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    for row in rows:
        assert len(row) == 1 or sum(lengths[i] for i in row) <= capacity


def test_no_row_wider_than_the_probe_checked():
    # Rows of up to 64 would hold both windows (22 + 22); the probe checked 30.
    windows = [np.arange(20), np.arange(20)]
    layout = PackedLayout(4, 0, max_row=30)
    inputs, placements = packed_inputs(
        windows, BERT_LIKE, layout, causal=False, device=torch.device("cpu"), capacity=64
    )
    assert placements == [(0, 0), (1, 0)]
    assert inputs["input_ids"].shape == (2, 22)


def test_packing_only_where_it_saves_a_fifth_of_the_positions():
    # Padded 2 x 30 = 60; packed one row of 50, more than 0.8 x 60.
    assert not packing_pays([30, 20], capacity=64)
    # Padded 4 x 30 = 120; packed rows [30, 20, 10] and [10]: 2 x 60 = 120.
    assert not packing_pays([30, 20, 10, 10], capacity=64)
    # Padded 4 x 40 = 160; packed [40, 20] and [10, 8]: 2 x 60 = 120 <= 128.
    assert packing_pays([40, 10, 20, 8], capacity=64)
    # A batch of full windows and two short tails: one row saved of 32.
    assert not packing_pays([512] * 30 + [200, 150], capacity=64)
    # One row saved of five is a fifth.
    assert packing_pays([512, 512, 512, 200, 150], capacity=64)
    assert not packing_pays([7], capacity=64)


def test_packed_inputs_exact_layout():
    windows = [np.array([7, 8]), np.array([5, 6, 9, 4]), np.array([3])]
    layout = PackedLayout(mask_dims=4, position_offset=2)
    inputs, placements = packed_inputs(
        windows, BERT_LIKE, layout, causal=False, device=torch.device("cpu"), capacity=10
    )
    # Sizes with [CLS]/[SEP]: 4, 6, 3. Longest first: 6 opens row 0, 4 joins it
    # (10), 3 opens row 1.
    assert placements == [(0, 6), (0, 0), (1, 0)]
    assert inputs["input_ids"].tolist() == [
        [101, 5, 6, 9, 4, 102, 101, 7, 8, 102],
        [101, 3, 102, 0, 0, 0, 0, 0, 0, 0],
    ]
    assert inputs["position_ids"].tolist() == [
        [2, 3, 4, 5, 6, 7, 2, 3, 4, 5],
        [2, 3, 4, 2, 2, 2, 2, 2, 2, 2],
    ]
    assert inputs["token_type_ids"].tolist() == [[0] * 10, [0] * 10]
    mask = inputs["attention_mask"]
    assert mask.shape == (2, 1, 10, 10) and mask.dtype == torch.bool
    row0 = mask[0, 0].numpy()
    assert row0[:6, :6].all() and row0[6:, 6:].all()
    assert not row0[:6, 6:].any() and not row0[6:, :6].any()
    row1 = mask[1, 0].numpy()
    assert row1[:3, :3].all() and not row1[:3, 3:].any()
    # A padding position attends to itself only: no query sees no key at all.
    assert (row1[3:, 3:] == np.eye(7, dtype=bool)).all()
    assert not row1[3:, :3].any()


def test_packed_inputs_causal_and_three_dimensional():
    windows = [np.array([7, 8]), np.array([5])]
    decoder = SpecialTokens(prefix=(), suffix=(), pad_id=0, uses_token_types=False)
    inputs, placements = packed_inputs(
        windows, decoder, PackedLayout(3, None), causal=True, device=torch.device("cpu")
    )
    assert placements == [(0, 0), (0, 2)]
    assert "position_ids" not in inputs and "token_type_ids" not in inputs
    assert inputs["attention_mask"].tolist() == [[[1, 0, 0], [1, 1, 0], [0, 0, 1]]]


def _annotations(docs) -> List[tuple]:
    return [[(t.ent_iob_, t.ent_type_, t._.hf_bio, t._.hf_score) for t in doc] for doc in docs]


@pytest.mark.parametrize("family", FAMILIES + ARCHITECTURES)
def test_packed_batches_give_what_each_window_gets_alone(family, tiny_models, monkeypatch):
    # Exact in float32; bf16 agrees within its precision (test_bf16.py).
    nlp = spacy.blank("en")
    comp = nlp.add_pipe(
        "hf_token_tagger",
        config={"model": str(tiny_models(family, train_steps=30)), "dtype": "float32"},
    )
    loaded = comp._ensure_loaded()
    rows_seen: List[int] = []
    real_packed_inputs = forward.packed_inputs

    def spy(windows, *args, **kwargs):
        inputs, placements = real_packed_inputs(windows, *args, **kwargs)
        rows_seen.append(int(inputs["input_ids"].shape[0]))
        return inputs, placements

    monkeypatch.setattr(forward, "packed_inputs", spy)
    packed = _annotations(nlp.pipe(TEXTS))
    short_rows = list(rows_seen)
    packed += _annotations(nlp.pipe(LONG))
    layout = loaded.packing
    loaded.packing = None
    padded = _annotations(nlp.pipe(TEXTS)) + _annotations(nlp.pipe(LONG))
    loaded.packing = layout
    assert len(packed) == len(padded)
    for doc_packed, doc_padded in zip(packed, padded):
        assert [t[:3] for t in doc_packed] == [t[:3] for t in doc_padded]
        for a, b in zip(doc_packed, doc_padded):
            assert (a[3] is None) == (b[3] is None)
            if a[3] is not None:
                assert a[3] == pytest.approx(b[3], abs=1e-5)
    if layout is None:
        assert rows_seen == []
    else:
        # The short texts went into fewer rows than there are texts, and the
        # long one's windows were packed beside the others.
        assert short_rows and sum(short_rows) < len(TEXTS)
        assert len(rows_seen) > len(short_rows)


@pytest.mark.parametrize("family", ["wordpiece-cased", "bpe-roberta", "gpt2", "electra"])
def test_the_probe_finds_the_layout_each_model_reads(family, tiny_models):
    nlp = spacy.blank("en")
    comp = nlp.add_pipe("hf_token_tagger", config={"model": str(tiny_models(family))})
    loaded = comp._ensure_loaded()
    layout = loaded.packing
    if family == "bpe-roberta":
        if transformers_major() < 5:  # 4.x RoBERTa builds its own mask from a 2-d one
            assert layout is None
            return
        # Positions count from the padding index + 1, as the model's own do.
        assert (layout.mask_dims, layout.position_offset) == (
            4,
            loaded.model.config.pad_token_id + 1,
        )
        return
    assert layout is not None
    assert layout.position_offset == 0
    if family == "gpt2":
        assert loaded.causal
    assert layout.mask_dims == (4 if transformers_major() >= 5 or family == "gpt2" else 3)


class _IgnoresTheMask(torch.nn.Module):
    """A stand-in whose outputs mix every position of a row: no packed layout
    can reproduce what it gives each window alone."""

    def forward(self, input_ids, attention_mask=None, position_ids=None, token_type_ids=None):
        emb = torch.nn.functional.one_hot(input_ids % 8, 8).float()
        mixed = emb + emb.mean(dim=1, keepdim=True)

        class Out:
            logits = mixed

        return Out()


def test_the_probe_refuses_a_model_that_mixes_windows(tiny_models):
    nlp = spacy.blank("en")
    comp = nlp.add_pipe("hf_token_tagger", config={"model": str(tiny_models("wordpiece-cased"))})
    loaded = comp._ensure_loaded()
    assert (
        find_layout(
            _IgnoresTheMask(),
            loaded.tokenizer,
            loaded.special,
            False,
            loaded.content_length,
            torch.device("cpu"),
        )
        is None
    )
