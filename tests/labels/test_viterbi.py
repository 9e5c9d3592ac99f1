"""Viterbi decoding: the best label sequence the scheme allows (pure, no model).

Exact sequences on hand-made probabilities for each scheme kind, and a property
test against a brute-force search over every label sequence of small arrays,
written from the definitions (conlleval reading for IOB, validity rules for
strict IOB2 and BIOES), not from the lattice.
"""

from __future__ import annotations

import itertools
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacy_hf_tagger.labels.decoding import predict_entities
from spacy_hf_tagger.labels.schemes import LabelScheme, decode_spans, read_label_scheme
from spacy_hf_tagger.labels.viterbi import viterbi_label_ids


def scheme_of(labels: Sequence[str]) -> LabelScheme:
    return read_label_scheme(dict(enumerate(labels)))


IOB = scheme_of(["B-LOC", "I-LOC", "O", "B-PER", "I-PER"])  # O not at id 0 on purpose
BIOES = scheme_of(["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"])
BILOU = scheme_of(["O", "B-PER", "I-PER", "L-PER", "U-PER"])
IO = scheme_of(["O", "I-PER", "I-LOC"])
NAMES = {"LOC": "LOC", "PER": "PER", "MISC": "MISC", "A": "A", "B": "B"}


def probs(scheme: LabelScheme, *rows: Optional[Dict[str, float]]) -> np.ndarray:
    """One row per token: the given labels' probabilities, the rest of the mass
    spread evenly over the other labels; None is a token with no piece (zeros)."""
    index = {label: i for i, label in enumerate(scheme.labels)}
    out = np.zeros((len(rows), len(scheme.labels)), dtype=np.float32)
    for k, row in enumerate(rows):
        if row is None:
            continue
        rest = (1.0 - sum(row.values())) / (len(scheme.labels) - len(row))
        out[k] = rest
        for label, p in row.items():
            out[k, index[label]] = p
    return out


def names(scheme: LabelScheme, ids: np.ndarray) -> List[str]:
    return [scheme.labels[i] if i >= 0 else "O" for i in ids.tolist()]


def viterbi(scheme, p, has_piece=None, starts=None, iob="conlleval") -> List[str]:
    has_piece = np.ones(len(p), dtype=bool) if has_piece is None else np.asarray(has_piece)
    starts = None if starts is None else np.asarray(starts, dtype=bool)
    return names(scheme, viterbi_label_ids(scheme, p, has_piece, starts, iob=iob))


def entities(scheme, p, decoding, has_piece=None, starts=None) -> List[Tuple[int, int, str]]:
    has_piece = np.ones(len(p), dtype=bool) if has_piece is None else np.asarray(has_piece)
    starts = None if starts is None else np.asarray(starts, dtype=bool)
    pred, _ = predict_entities(
        scheme, p, has_piece, NAMES, 0.0, segment_starts=starts, decoding=decoding
    )
    return [s[:3] for s in pred.spans]


# --- IOB ------------------------------------------------------------------------------


def test_iob_entity_mass_split_between_b_and_i_wins_over_o():
    # P(O) 0.4 is the largest label, but 0.3 + 0.3 say "a PER begins here".
    p = probs(IOB, {"O": 0.9}, {"O": 0.4, "B-PER": 0.3, "I-PER": 0.3}, {"O": 0.9})
    assert entities(IOB, p, "greedy") == []
    assert viterbi(IOB, p) == ["O", "B-PER", "O"]
    assert entities(IOB, p, "viterbi") == [(1, 2, "PER")]


def test_iob1_style_inside_at_entity_start_is_kept():
    # An IOB1 model: I- where an entity begins, B- only right after one of its type.
    p = probs(
        IOB,
        {"I-PER": 0.8},
        {"I-PER": 0.8},
        {"B-PER": 0.7},
        {"O": 0.9},
        {"I-LOC": 0.8},
    )
    expected = [(0, 2, "PER"), (2, 3, "PER"), (4, 5, "LOC")]
    assert entities(IOB, p, "greedy") == expected
    assert viterbi(IOB, p) == ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]
    assert entities(IOB, p, "viterbi") == expected
    # Strict IOB2 cannot begin with I-: it wrecks the IOB1 model's first entity.
    assert entities(IOB, p, "viterbi-iob2") != expected


def test_iob_new_entity_right_after_one_reads_b_only():
    # After a PER, only B-PER begins another PER: I-PER mass continues the first.
    p = probs(IOB, {"B-PER": 0.9}, {"O": 0.2, "B-PER": 0.35, "I-PER": 0.3, "B-LOC": 0.1})
    assert viterbi(IOB, p) == ["B-PER", "B-PER"]
    p = probs(IOB, {"B-PER": 0.9}, {"O": 0.2, "B-PER": 0.3, "I-PER": 0.35, "B-LOC": 0.1})
    assert viterbi(IOB, p) == ["B-PER", "I-PER"]


def test_strict_iob2_continues_where_greedy_starts_another_type():
    # I-LOC right after B-PER: greedy (conlleval) reads a new LOC; strict IOB2
    # cannot enter LOC through I-, and B-LOC is unlikely: the PER goes on.
    p = probs(IOB, {"B-PER": 0.9}, {"I-LOC": 0.5, "I-PER": 0.45, "B-LOC": 0.01})
    assert entities(IOB, p, "greedy") == [(0, 1, "PER"), (1, 2, "LOC")]
    assert entities(IOB, p, "viterbi") == [(0, 1, "PER"), (1, 2, "LOC")]
    assert viterbi(IOB, p, iob="strict") == ["B-PER", "I-PER"]
    assert entities(IOB, p, "viterbi-iob2") == [(0, 2, "PER")]


def test_iob_type_without_b_label_begins_through_i():
    scheme = scheme_of(["O", "B-PER", "I-PER", "I-MISC"])
    p = probs(scheme, {"I-MISC": 0.7}, {"I-MISC": 0.7}, {"B-PER": 0.9})
    assert viterbi(scheme, p) == ["I-MISC", "I-MISC", "B-PER"]
    assert entities(scheme, p, "viterbi") == [(0, 2, "MISC"), (2, 3, "PER")]


# --- BIOES ----------------------------------------------------------------------------


def test_bioes_viterbi_keeps_the_entity_greedy_cuts_short():
    # Greedy: B-PER then O, an entity cut to one token; the model's best valid
    # reading is B-PER E-PER (0.5 * 0.35 > O O 0.4 * 0.4 > S O 0.1 * 0.4).
    p = probs(
        BIOES,
        {"B-PER": 0.5, "S-PER": 0.1, "O": 0.35},
        {"O": 0.4, "E-PER": 0.35, "I-PER": 0.2},
        {"O": 0.95},
    )
    assert entities(BIOES, p, "greedy") == [(0, 1, "PER")]
    assert viterbi(BIOES, p) == ["B-PER", "E-PER", "O"]
    assert entities(BIOES, p, "viterbi") == [(0, 2, "PER")]


def test_bioes_is_strict():
    # Every token E-LOC: greedy makes three entities; no valid sequence has
    # more than one E-LOC in three tokens, and the best has one (ties: the first).
    p = probs(BIOES, *[{"E-LOC": 0.6}] * 3)
    assert len(entities(BIOES, p, "greedy")) == 3
    labels = viterbi(BIOES, p)
    assert _valid_bioes(labels) and labels.count("E-LOC") == 1
    assert entities(BIOES, p, "viterbi") == [(0, 2, "LOC")]
    # A segment cannot end inside an entity, nor begin in its middle.
    p = probs(BIOES, {"I-PER": 0.6, "B-PER": 0.3}, {"I-PER": 0.6, "B-PER": 0.3})
    assert viterbi(BIOES, p) == ["B-PER", "E-PER"]


def test_bilou_reads_as_bioes():
    p = probs(BILOU, {"B-PER": 0.6}, {"L-PER": 0.6}, {"U-PER": 0.6})
    assert viterbi(BILOU, p) == ["B-PER", "L-PER", "U-PER"]
    assert entities(BILOU, p, "viterbi") == [(0, 2, "PER"), (2, 3, "PER")]


# --- segments, tokens without a piece, IO ---------------------------------------------


def test_segments_are_searched_apart():
    p = probs(IOB, {"B-PER": 0.9}, {"I-PER": 0.9})
    # Across a segment start, I-PER cannot continue: it begins a PER of its own.
    assert viterbi(IOB, p, starts=[True, True]) == ["B-PER", "B-PER"]
    assert entities(IOB, p, "viterbi", starts=[True, True]) == [(0, 1, "PER"), (1, 2, "PER")]
    assert viterbi(IOB, p, starts=[True, False]) == ["B-PER", "I-PER"]
    # BIOES: B- cannot end a segment, E- cannot begin one.
    p = probs(BIOES, {"B-PER": 0.6, "S-PER": 0.3}, {"E-PER": 0.6, "S-PER": 0.3})
    assert viterbi(BIOES, p) == ["B-PER", "E-PER"]
    assert viterbi(BIOES, p, starts=[True, True]) == ["S-PER", "S-PER"]
    # The same result for a segment alone and beside others.
    both = np.concatenate([p, p])
    assert viterbi(BIOES, both, starts=[True, True, True, True]) == ["S-PER"] * 4
    assert viterbi(BIOES, both, starts=[True, False, True, False]) == ["B-PER", "E-PER"] * 2


def test_tokens_without_a_piece_are_skipped_then_filled():
    # "New  York": the extra space has no piece; B-LOC and E-LOC meet across it.
    p = probs(BIOES, {"B-LOC": 0.8}, None, {"E-LOC": 0.8}, {"O": 0.9})
    has_piece = [True, False, True, True]
    assert viterbi(BIOES, p, has_piece) == ["B-LOC", "O", "E-LOC", "O"]
    assert entities(BIOES, p, "viterbi", has_piece) == [(0, 3, "LOC")]
    p = probs(IOB, None, {"I-LOC": 0.8}, None, {"I-LOC": 0.8}, None)
    has_piece = [False, True, False, True, False]
    assert viterbi(IOB, p, has_piece) == ["O", "B-LOC", "O", "I-LOC", "O"]
    assert entities(IOB, p, "viterbi", has_piece) == [(1, 4, "LOC")]
    # A segment whose only tokens have no piece, and one that starts with such a token.
    p = probs(IOB, None, {"B-PER": 0.9}, None, {"I-PER": 0.9})
    assert viterbi(IOB, p, [False, True, False, True], [True, False, True, False]) == [
        "O",
        "B-PER",
        "O",
        "B-PER",
    ]
    assert viterbi(IOB, p[:1], [False]) == ["O"]


def test_io_is_the_argmax():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), size=20).astype(np.float32)
    has_piece = rng.random(20) > 0.2
    expected = np.where(has_piece, p.argmax(1), IO.outside_id)
    assert viterbi_label_ids(IO, p, has_piece, None).tolist() == expected.tolist()
    greedy, _ = predict_entities(IO, p, has_piece, NAMES, 0.0)
    ours, _ = predict_entities(IO, p, has_piece, NAMES, 0.0, decoding="viterbi")
    assert ours == greedy


def test_no_allowed_path_falls_back_to_the_argmax():
    # B- and E- only: a segment of one token has no valid sequence.
    scheme = scheme_of(["B-X", "E-X"])
    p = np.array([[0.7, 0.3]], dtype=np.float32)
    assert viterbi(scheme, p) == ["B-X"]
    p = np.array([[0.4, 0.6], [0.3, 0.7]], dtype=np.float32)
    assert viterbi(scheme, p) == ["B-X", "E-X"]


def test_zero_probabilities_are_unlikely_not_forbidden():
    # float32 softmax underflow: a label at exactly 0 still beats what the
    # scheme forbids.
    scheme = scheme_of(["O", "B-X", "E-X"])
    p = np.array([[0.0, 1.0, 0.0]], dtype=np.float32)
    assert viterbi(scheme, p) == ["O"]


def test_predict_entities_rejects_an_unknown_decoding():
    p = probs(IOB, {"O": 0.9})
    with pytest.raises(ValueError, match="beam"):
        predict_entities(IOB, p, np.ones(1, dtype=bool), NAMES, 0.0, decoding="beam")


def test_viterbi_runs_through_words_ties_and_scores():
    # Tied token (a piece from the previous token) and a hyphenated word: the
    # later steps work on Viterbi's labels as on greedy ones; scores keep their
    # definition (type probability).
    p = probs(IOB, {"O": 0.4, "B-PER": 0.3, "I-PER": 0.3}, {"O": 0.9}, {"O": 0.9})
    tied = np.array([False, True, False])
    pred, _ = predict_entities(
        IOB, p, np.ones(3, dtype=bool), NAMES, 0.0, tied=tied, decoding="viterbi"
    )
    assert [s[:3] for s in pred.spans] == [(0, 2, "PER")]
    assert pred.token_labels == ["B-PER", "I-PER", "O"]
    per = p[:, [3, 4]].sum(1)
    assert pred.token_scores[:2] == pytest.approx(per[:2].tolist())
    assert pred.token_scores[2] == pytest.approx(0.9)


# --- brute force ----------------------------------------------------------------------


def _valid_iob2(labels: Sequence[str]) -> bool:
    before = "O"
    for label in labels:
        if label.startswith("I-") and before[2:] != label[2:]:
            return False
        before = label
    return True


def _valid_bioes(labels: Sequence[str]) -> bool:
    norm = {"L": "E", "U": "S"}
    before = ("O", "")
    for label in [*labels, "O"]:
        prefix, type_ = ("O", "") if label == "O" else (norm.get(label[0], label[0]), label[2:])
        inside = before[0] in ("B", "I")
        if inside != (prefix in ("I", "E")):
            return False
        if inside and type_ != before[1]:
            return False
        before = (prefix, type_)
    return True


def _best(scheme: LabelScheme, p: np.ndarray, iob: str) -> Tuple[float, object]:
    """The best score over every label sequence and what it is a score of.

    conlleval IOB: entity sets (as `decode_spans` reads a sequence), each scored
    by the summed probability of every sequence that reads so. Strict IOB2 and
    BIOES: valid sequences, each scored by its probability."""
    n = len(p)
    best: Dict[object, float] = {}
    for seq in itertools.product(range(len(scheme.labels)), repeat=n):
        labels = [scheme.labels[i] for i in seq]
        prob = float(np.prod([p[t, i] for t, i in enumerate(seq)], dtype=np.float64))
        if scheme.kind == "iob" and iob == "conlleval":
            key = _spans(scheme, np.array(seq))
            best[key] = best.get(key, 0.0) + prob
        elif _valid_iob2(labels) if scheme.kind == "iob" else _valid_bioes(labels):
            best[tuple(seq)] = max(best.get(tuple(seq), 0.0), prob)
    key = max(best, key=best.get)
    return best[key], best


def _spans(scheme: LabelScheme, ids: np.ndarray) -> tuple:
    return tuple((s.start, s.end, s.label) for s in decode_spans(scheme, ids, np.zeros(len(ids))))


BRUTE_SCHEMES = {
    "iob": scheme_of(["I-B", "O", "B-A", "I-A", "B-B"]),
    "iob-no-b": scheme_of(["O", "B-A", "I-A", "I-B"]),
    "iob-no-o": scheme_of(["B-A", "I-A", "B-B", "I-B"]),
    "bioes": scheme_of(["S-A", "B-A", "O", "I-A", "E-A"]),
    "bilou-2": scheme_of(["O", "B-A", "I-A", "L-A", "U-A", "U-B", "B-B", "L-B"]),
}


@settings(max_examples=120, deadline=None)
@given(
    name=st.sampled_from(sorted(BRUTE_SCHEMES)),
    iob=st.sampled_from(["conlleval", "strict"]),
    # segments of 1-4 tokens; True marks a token without a piece
    shape=st.lists(
        st.lists(st.sampled_from([False, False, False, True]), min_size=1, max_size=4),
        min_size=1,
        max_size=3,
    ),
    seed=st.integers(0, 2**32 - 1),
    peaked=st.booleans(),
)
def test_viterbi_is_the_brute_force_best(name, iob, shape, seed, peaked):
    """Segments of 1-4 tokens (some without a piece) decoded together: each
    segment's result is the best of all its label sequences (piece-less tokens
    left out), and piece-less tokens are O."""
    scheme = BRUTE_SCHEMES[name]
    if name == "bilou-2":
        shape = [seg[:3] for seg in shape]  # 8 labels: keep the search small
    rng = np.random.default_rng(seed)
    alpha = 0.3 if peaked else 1.0
    has_piece = np.array([not gap for seg in shape for gap in seg], dtype=bool)
    starts = np.zeros(len(has_piece), dtype=bool)
    starts[np.cumsum([0] + [len(seg) for seg in shape[:-1]])] = True
    p = rng.dirichlet(np.full(len(scheme.labels), alpha), size=len(has_piece)).astype(np.float32)
    p[~has_piece] = 0.0
    out = viterbi_label_ids(scheme, p, has_piece, starts, iob=iob)
    outside = scheme.outside_or_none
    assert (out[~has_piece] == outside).all()
    bounds = [*np.flatnonzero(starts).tolist(), len(has_piece)]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        rows = np.arange(lo, hi)[has_piece[lo:hi]]
        if len(rows) == 0:
            continue
        sub = p[rows].astype(np.float64)
        best, table = _best(scheme, sub, iob)
        ids = out[rows]
        if scheme.kind == "iob" and iob == "conlleval":
            got = table[_spans(scheme, ids)]
        else:
            got = table.get(tuple(ids.tolist()), -1.0)  # -1: an invalid sequence
        assert got >= best * (1 - 1e-6), (name, iob, sub, ids)
