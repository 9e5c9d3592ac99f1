"""Label schemes: reading `id2label`, decoding token labels into spans (pure, no model)."""

from __future__ import annotations

from typing import Dict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spacy_hf_tagger.labels.schemes import (
    UPOS_TAGS,
    DecodedSpan,
    LabelScheme,
    LabelSchemeError,
    decode_spans,
    iob_labels,
    is_upos,
    map_types,
    read_label_scheme,
    spans_of_tags,
    spans_to_iob,
)


def scheme_of(labels):
    return read_label_scheme(dict(enumerate(labels)))


def decode(scheme: LabelScheme, tags, scores=None):
    """Decode label strings; returns (start, end, label) triples."""
    index = {label: i for i, label in enumerate(scheme.labels)}
    ids = np.array([index[t] for t in tags], dtype=np.int64)
    if scores is None:
        scores = np.ones(len(tags), dtype=np.float64)
    return [(s.start, s.end, s.label) for s in decode_spans(scheme, ids, np.asarray(scores))]


IOB2 = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-X", "I-X", "B-Y", "I-Y"]
BIOES = ["O"] + [f"{p}-{t}" for t in ("PER", "LOC", "X", "Y") for p in "BIES"]
BILOU = ["O"] + [f"{p}-{t}" for t in ("PER", "LOC", "X", "Y") for p in "BILU"]

UPOS = "ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ SYM VERB X".split()
PTB = [
    "-LRB-", "-RRB-", ",", ":", ".", "''", "``", "$", "#", "ADD", "AFX", "CC", "CD", "DT",
    "EX", "FW", "HYPH", "IN", "JJ", "JJR", "JJS", "LS", "MD", "NFP", "NN", "NNP", "NNPS",
    "NNS", "PDT", "POS", "PRP", "PRP$", "RB", "RBR", "RBS", "RP", "SYM", "TO", "UH", "VB",
    "VBD", "VBG", "VBN", "VBP", "VBZ", "WDT", "WP", "WP$", "WRB", "XX", "_SP",
]  # fmt: skip


# --- reading the scheme -------------------------------------------------------------


def test_iob2_detected():
    scheme = scheme_of(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
    assert scheme.kind == "iob"
    assert scheme.is_entity
    assert scheme.labels == ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
    assert scheme.prefixes == ("O", "B", "I", "B", "I")
    assert scheme.types == ("", "PER", "PER", "LOC", "LOC")
    assert scheme.entity_types == ("LOC", "PER")
    assert scheme.outside_id == 0


def test_iob1_detected_as_iob():
    # IOB1: I- everywhere, B- only for a type that follows the same type.
    scheme = scheme_of(["I-PER", "O", "I-LOC", "B-LOC", "I-MISC"])
    assert scheme.kind == "iob"
    assert scheme.prefixes == ("I", "O", "I", "B", "I")
    assert scheme.types == ("PER", "", "LOC", "LOC", "MISC")
    assert scheme.entity_types == ("LOC", "MISC", "PER")
    assert scheme.outside_id == 1


def test_bioes_detected():
    scheme = scheme_of(["O", "B-PER", "I-PER", "E-PER", "S-PER"])
    assert scheme.kind == "bioes"
    assert scheme.prefixes == ("O", "B", "I", "E", "S")
    assert scheme.types == ("", "PER", "PER", "PER", "PER")


def test_bilou_read_as_bioes():
    scheme = scheme_of(["O", "B-PER", "I-PER", "L-PER", "U-PER"])
    assert scheme.kind == "bioes"
    assert scheme.labels == ("O", "B-PER", "I-PER", "L-PER", "U-PER")
    assert scheme.prefixes == ("O", "B", "I", "E", "S")
    assert scheme.types == ("", "PER", "PER", "PER", "PER")


def test_bioes_with_only_single_labels_is_bioes():
    scheme = scheme_of(["O", "S-PER", "B-LOC", "I-LOC"])
    assert scheme.kind == "bioes"


@pytest.mark.parametrize("end", ["E", "L"])
def test_bioes_with_end_labels_but_no_single_is_bioes(end: str) -> None:
    scheme = scheme_of(["O", "B-PER", "I-PER", f"{end}-PER"])
    assert scheme.kind == "bioes"
    assert scheme.prefixes == ("O", "B", "I", "E")


def test_io_detected():
    scheme = scheme_of(["O", "I-PER", "I-LOC"])
    assert scheme.kind == "io"
    assert scheme.prefixes == ("O", "I", "I")
    assert scheme.entity_types == ("LOC", "PER")


def test_hyphenated_types_split_on_first_hyphen_only():
    scheme = scheme_of(["O", "B-person-actor", "I-person-actor", "B-geo-loc-city"])
    assert scheme.kind == "iob"
    assert scheme.prefixes == ("O", "B", "I", "B")
    assert scheme.types == ("", "person-actor", "person-actor", "geo-loc-city")
    assert scheme.entity_types == ("geo-loc-city", "person-actor")


def test_underscore_separator():
    scheme = scheme_of(["O", "B_PER", "I_PER", "B_first_name"])
    assert scheme.kind == "iob"
    assert scheme.prefixes == ("O", "B", "I", "B")
    assert scheme.types == ("", "PER", "PER", "first_name")


def test_outside_spellings():
    for outside in ("O", "o", "0"):
        scheme = scheme_of(["B-PER", outside, "I-PER"])
        assert scheme.kind == "iob"
        assert scheme.outside_id == 1
        assert scheme.prefixes == ("B", "O", "I")
        assert scheme.types == ("PER", "", "PER")


def test_entity_scheme_without_outside_label():
    scheme = scheme_of(["B-PER", "I-PER"])
    assert scheme.kind == "iob"
    assert scheme.outside_id is None


@pytest.mark.parametrize("labels", [UPOS, PTB, ["LABEL_0", "LABEL_1", "LABEL_2"]])
def test_tag_sets_read_as_tags(labels):
    scheme = scheme_of(labels)
    assert scheme.kind == "tags"
    assert not scheme.is_entity
    assert scheme.labels == tuple(labels)
    assert scheme.types == tuple(labels)
    assert scheme.prefixes == ("",) * len(labels)
    assert scheme.entity_types == ()
    assert scheme.outside_id is None


def test_tag_set_that_contains_o_is_still_tags():
    scheme = scheme_of(["O", "NOUN", "VERB"])
    assert scheme.kind == "tags"
    assert scheme.types == ("O", "NOUN", "VERB")


def test_mixed_label_set_raises_naming_labels():
    with pytest.raises(LabelSchemeError) as info:
        scheme_of(["O", "B-PER", "I-PER", "NOUN", "LABEL_3"])
    message = str(info.value)
    assert "B-PER" in message
    assert "I-PER" in message
    assert "NOUN" in message
    assert "LABEL_3" in message
    assert "id2label" in message


def test_mixed_label_set_message_names_the_first_five_of_each():
    labels = ["O"] + [f"{p}-{t}" for t in "ABC" for p in "BI"]
    labels += ["NOUN", "VERB", "ADJ", "ADV", "DET", "PRON"]
    with pytest.raises(LabelSchemeError) as info:
        scheme_of(labels)
    assert str(info.value) == (
        "The model's labels mix entity labels (['B-A', 'I-A', 'B-B', 'I-B', 'B-C']) with "
        "labels that have no B-/I-/E-/S-/L-/U- prefix (['NOUN', 'VERB', 'ADJ', 'ADV', "
        "'DET']), so they read neither as entities nor as tags. Rename them in the "
        "model's config.json `id2label` so that all read one way."
    )


def test_empty_id2label_raises():
    with pytest.raises(LabelSchemeError) as info:
        read_label_scheme({})
    assert str(info.value) == (
        "The model config has no labels (`id2label` is empty). Use a "
        "token-classification checkpoint, or fine-tune with `spacy train`."
    )


@pytest.mark.parametrize(
    ("id2label", "shown"),
    [
        ({0: "O", 2: "B-PER"}, "0..1: [0, 2]"),
        ({1: "O", 2: "B-PER"}, "0..1: [1, 2]"),
        ({-1: "O", 0: "B-PER"}, "0..1: [-1, 0]"),
        # the first twenty ids only
        (
            {i: f"B-T{i}" for i in range(1, 26)},
            "0..24: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]",
        ),
    ],
)
def test_non_contiguous_ids_raise(id2label: Dict[int, str], shown: str) -> None:
    with pytest.raises(LabelSchemeError) as info:
        read_label_scheme(id2label)
    assert str(info.value) == (
        f"The model's label ids are not {shown}. Fix `id2label` in the model's config.json."
    )


def test_ids_sorted_numerically_not_by_insertion_order():
    scheme = read_label_scheme(
        {2: "I-PER", 0: "O", 10: "B-LOC", 1: "B-PER", **{i: f"B-T{i}" for i in range(3, 10)}}
    )
    assert scheme.labels[:3] == ("O", "B-PER", "I-PER")
    assert scheme.labels[10] == "B-LOC"


def test_string_keys_as_in_raw_config_json():
    scheme = read_label_scheme({"0": "O", "1": "B-PER", "2": "I-PER"})
    assert scheme.labels == ("O", "B-PER", "I-PER")


# --- begin_to_inside ----------------------------------------------------------------


def test_begin_to_inside_iob():
    scheme = scheme_of(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
    assert scheme.begin_to_inside().tolist() == [0, 2, 2, 4, 4]


def test_begin_to_inside_iob_type_without_inside_label_maps_to_itself():
    scheme = scheme_of(["O", "B-PER", "B-LOC", "I-LOC"])
    assert scheme.begin_to_inside().tolist() == [0, 1, 3, 3]


def test_begin_to_inside_bioes():
    scheme = scheme_of(
        ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]
    )
    assert scheme.begin_to_inside().tolist() == [0, 2, 2, 3, 3, 6, 6, 7, 7]


def test_begin_to_inside_bilou():
    scheme = scheme_of(["U-PER", "L-PER", "I-PER", "B-PER", "O"])
    # U -> L (E), B -> I
    assert scheme.begin_to_inside().tolist() == [1, 1, 2, 2, 4]


def test_begin_to_inside_single_without_end_falls_back_to_inside():
    scheme = scheme_of(["O", "S-PER", "I-PER", "B-PER"])
    assert scheme.begin_to_inside().tolist() == [0, 2, 2, 2]


def test_begin_to_inside_tags_is_identity():
    scheme = scheme_of(UPOS)
    assert scheme.begin_to_inside().tolist() == list(range(len(UPOS)))


# --- decoding ------------------------------------------------------------------------


def test_decode_valid_iob2():
    scheme = scheme_of(IOB2)
    tags = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "O"]
    assert decode(scheme, tags) == [(0, 2, "PER"), (3, 4, "LOC"), (4, 6, "LOC")]


def test_decode_repairs_inside_without_begin():
    scheme = scheme_of(IOB2)
    assert decode(scheme, ["I-PER", "I-PER", "O", "I-LOC"]) == [(0, 2, "PER"), (3, 4, "LOC")]


def test_decode_begin_after_begin_gives_two_spans():
    scheme = scheme_of(IOB2)
    assert decode(scheme, ["B-PER", "B-PER"]) == [(0, 1, "PER"), (1, 2, "PER")]


def test_decode_inside_of_other_type_starts_new_span():
    scheme = scheme_of(IOB2)
    assert decode(scheme, ["B-LOC", "I-PER", "I-PER"]) == [(0, 1, "LOC"), (1, 3, "PER")]


def test_decode_iob1_begin_splits_same_type():
    scheme = scheme_of(["O", "I-X", "B-X", "I-Y"])
    assert decode(scheme, ["I-X", "I-X", "B-X"]) == [(0, 2, "X"), (2, 3, "X")]
    assert decode(scheme, ["I-X", "B-X", "I-X", "O", "I-Y"]) == [
        (0, 1, "X"),
        (1, 3, "X"),
        (4, 5, "Y"),
    ]


def test_decode_io():
    scheme = scheme_of(["O", "I-X", "I-Y"])
    assert decode(scheme, ["I-X", "I-X", "I-Y", "O", "I-X"]) == [
        (0, 2, "X"),
        (2, 3, "Y"),
        (4, 5, "X"),
    ]


def test_decode_bioes_valid():
    scheme = scheme_of(BIOES)
    assert decode(scheme, ["B-X", "I-X", "E-X", "S-Y"]) == [(0, 3, "X"), (3, 4, "Y")]


def test_decode_bioes_end_alone():
    scheme = scheme_of(BIOES)
    assert decode(scheme, ["E-X"]) == [(0, 1, "X")]
    assert decode(scheme, ["O", "E-X", "O"]) == [(1, 2, "X")]


def test_decode_bioes_starting_with_inside():
    scheme = scheme_of(BIOES)
    assert decode(scheme, ["I-X", "E-X"]) == [(0, 2, "X")]


def test_decode_bioes_end_closes_span():
    scheme = scheme_of(BIOES)
    # after E-X, an I-X cannot continue: it starts a new span
    assert decode(scheme, ["B-X", "E-X", "I-X", "E-X"]) == [(0, 2, "X"), (2, 4, "X")]
    # S-X closes immediately too
    assert decode(scheme, ["S-X", "I-X"]) == [(0, 1, "X"), (1, 2, "X")]
    # B-X left open runs to the end of the text
    assert decode(scheme, ["O", "B-X", "I-X"]) == [(1, 3, "X")]
    # E of another type closes the open span and is a span of its own
    assert decode(scheme, ["B-X", "E-Y"]) == [(0, 1, "X"), (1, 2, "Y")]


def test_decode_bilou_same_as_bioes():
    scheme = scheme_of(BILOU)
    assert decode(scheme, ["B-X", "I-X", "L-X", "U-Y", "L-Y"]) == [
        (0, 3, "X"),
        (3, 4, "Y"),
        (4, 5, "Y"),
    ]


def test_decode_hyphenated_type():
    scheme = scheme_of(["O", "B-person-actor", "I-person-actor"])
    assert decode(scheme, ["B-person-actor", "I-person-actor", "O"]) == [(0, 2, "person-actor")]


def test_decode_empty():
    scheme = scheme_of(IOB2)
    assert decode_spans(scheme, np.zeros(0, dtype=np.int64), np.zeros(0)) == []


def test_decode_span_score_is_mean_of_token_scores():
    scheme = scheme_of(IOB2)
    index = {label: i for i, label in enumerate(scheme.labels)}
    tags = ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC"]
    ids = np.array([index[t] for t in tags])
    scores = np.array([0.5, 0.75, 1.0, 0.125, 0.25, 0.5])
    spans = decode_spans(scheme, ids, scores)
    assert spans == [DecodedSpan(0, 3, "PER", 0.75), DecodedSpan(4, 6, "LOC", 0.375)]
    assert all(isinstance(s.score, float) for s in spans)


def test_decode_span_without_scores_scores_zero():
    # NaN marks tokens no piece covers; a span of only such tokens has no mean.
    scheme = scheme_of(IOB2)
    ids = np.array([1, 2, 0, 3], dtype=np.int64)
    scores = np.array([np.nan, np.nan, 0.5, 0.25])
    assert decode_spans(scheme, ids, scores) == [
        DecodedSpan(0, 2, "PER", 0.0),
        DecodedSpan(3, 4, "LOC", 0.25),
    ]


def test_decode_tag_scheme_raises():
    with pytest.raises(ValueError) as info:
        decode_spans(scheme_of(UPOS), np.array([0]), np.array([1.0]))
    assert str(info.value) == "decode_spans needs an entity label scheme, not a tag set"


# --- helpers -------------------------------------------------------------------------


def test_spans_to_iob():
    assert spans_to_iob(6, [(0, 2, "PER"), (3, 4, "LOC"), (4, 6, "LOC")]) == [
        "B-PER",
        "I-PER",
        "O",
        "B-LOC",
        "B-LOC",
        "I-LOC",
    ]
    assert spans_to_iob(0, []) == []
    assert spans_to_iob(2, []) == ["O", "O"]


def test_iob_labels():
    assert iob_labels(["PER", "LOC"]) == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    assert iob_labels([]) == ["O"]
    assert scheme_of(iob_labels(["PER", "person-actor"])).kind == "iob"


def test_map_types():
    resolved = map_types(
        ["PER", "LOC", "MISC", "ORG"],
        {"PER": "PERSON", "ORG": "COMPANY"},
        ["MISC", "COMPANY"],
    )
    assert resolved == {"PER": "PERSON", "LOC": "LOC", "MISC": None, "ORG": None}
    assert map_types(["PER"], {}, []) == {"PER": "PER"}


# --- properties ----------------------------------------------------------------------

_SCHEMES = {"iob2": IOB2, "bioes": BIOES, "bilou": BILOU, "io": ["O", "I-X", "I-Y", "I-PER"]}


@settings(max_examples=80, deadline=None)
@given(
    name=st.sampled_from(sorted(_SCHEMES)),
    data=st.data(),
)
def test_decode_properties(name, data):
    labels = _SCHEMES[name]
    scheme = scheme_of(labels)
    ids = data.draw(st.lists(st.integers(0, len(labels) - 1), max_size=30))
    scores = data.draw(st.lists(st.floats(0, 1), min_size=len(ids), max_size=len(ids)))
    ids_arr = np.array(ids, dtype=np.int64)
    spans = decode_spans(scheme, ids_arr, np.array(scores, dtype=np.float64))
    covered = [None] * len(ids)
    previous_end = 0
    for span in spans:
        assert previous_end <= span.start < span.end <= len(ids)
        previous_end = span.end
        for k in range(span.start, span.end):
            # every token of a span is an entity label of the span's type
            assert scheme.prefixes[ids[k]] != "O"
            assert scheme.types[ids[k]] == span.label
            covered[k] = span
        assert span.score == pytest.approx(float(np.mean(scores[span.start : span.end])))
    # every entity-labelled token is in exactly one span; O tokens in none
    for k, label_id in enumerate(ids):
        assert (covered[k] is None) == (scheme.prefixes[label_id] == "O")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["PER", "LOC", "X"])), max_size=12))
def test_iob2_round_trip(pieces):
    # Non-overlapping spans -> IOB2 strings -> decode gives the same spans back.
    spans = []
    position = 0
    for gap_and_length, label in pieces:
        start = position + (gap_and_length % 2)
        end = start + 1 + gap_and_length // 2
        spans.append((start, end, label))
        position = end
    scheme = scheme_of(["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-X", "I-X"])
    tags = spans_to_iob(position + 1, spans)
    assert decode(scheme, tags) == spans


# --- spans_of_tags: gold tag strings, decoded by the one conlleval rule ----------


def _conlleval_spans(tags):
    """conlleval for IOB1/IOB2, written out plainly as the oracle."""
    spans, start, current = [], None, ""
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, type_ = tag.partition("-")
        begins = prefix == "B" or (prefix == "I" and type_ != current)
        if tag == "O" or begins:
            if start is not None:
                spans.append((start, i, current))
            start, current = (i, type_) if begins else (None, "")
    return spans


@pytest.mark.parametrize(
    "tags, spans",
    [
        ([], []),
        (["O", "O"], []),
        (["I-PER", "I-PER", "O", "I-LOC"], [(0, 2, "PER"), (3, 4, "LOC")]),  # IOB1
        (["I-PER", "B-PER", "I-PER"], [(0, 1, "PER"), (1, 3, "PER")]),  # IOB1 boundary
        (["B-PER", "I-PER", "I-LOC", "B-LOC"], [(0, 2, "PER"), (2, 3, "LOC"), (3, 4, "LOC")]),
        (["S-PER", "B-LOC", "E-LOC", "O"], [(0, 1, "PER"), (1, 3, "LOC")]),  # BIOES
        (["U-ORG", "B-MISC", "L-MISC"], [(0, 1, "ORG"), (1, 3, "MISC")]),  # BILOU
    ],
)
def test_spans_of_tags(tags, spans):
    assert spans_of_tags(tags) == spans


@given(st.lists(st.sampled_from(["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG"]), max_size=30))
def test_spans_of_tags_is_conlleval_on_iob(tags):
    assert spans_of_tags(tags) == _conlleval_spans(tags)


def test_spans_of_tags_refuses_tags_without_prefixes():
    with pytest.raises(LabelSchemeError, match=r"\['PER'\]"):
        spans_of_tags(["PER", "O"])


def test_is_upos_reads_only_tag_sets_inside_the_universal_tags():
    assert is_upos(scheme_of(["NOUN", "VERB", "_"]))
    assert is_upos(scheme_of(sorted(UPOS_TAGS)))
    assert not is_upos(scheme_of(["NOUN", "NN"]))
    assert not is_upos(scheme_of(["O", "B-PER", "I-PER"]))


def _decode_one_by_one(scheme, label_ids, scores, breaks):
    """decode_spans' rule token by token (conlleval's reading), as a reference."""
    spans = []
    open_type, open_start = "", 0

    def close(end):
        if open_type:
            known = [v for v in scores[open_start:end] if v == v]
            spans.append((open_start, end, open_type, sum(known) / len(known) if known else 0.0))

    for i, label_id in enumerate(label_ids):
        if breaks[i] and open_type:
            close(i)
            open_type = ""
        prefix = scheme.prefixes[label_id] if label_id >= 0 else "O"
        if prefix == "O":
            close(i)
            open_type = ""
            continue
        type_ = scheme.types[label_id]
        if not (prefix in ("I", "E") and open_type == type_):
            close(i)
            open_type, open_start = type_, i
        if prefix in ("E", "S"):
            close(i + 1)
            open_type = ""
    close(len(label_ids))
    return spans


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(["iob", "bioes", "no-outside"]),
    data=st.data(),
)
def test_decode_spans_over_arrays_reads_tokens_as_one_by_one(kind: str, data) -> None:
    names = {
        "iob": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"],
        "bioes": ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"],
        "no-outside": ["B-PER", "I-PER", "B-LOC", "I-LOC"],
    }[kind]
    scheme = read_label_scheme(dict(enumerate(names)))
    n = data.draw(st.integers(0, 30))
    low = -1 if kind == "no-outside" else 0
    ids = data.draw(st.lists(st.integers(low, len(names) - 1), min_size=n, max_size=n))
    scores = data.draw(
        st.lists(
            st.one_of(st.floats(0, 1), st.just(float("nan"))), min_size=n, max_size=n
        )
    )
    breaks = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    got = decode_spans(
        scheme, np.array(ids, dtype=np.int64), np.array(scores), np.array(breaks, dtype=bool)
    )
    expected = _decode_one_by_one(scheme, ids, scores, breaks)
    assert [(s.start, s.end, s.label) for s in got] == [e[:3] for e in expected]
    assert [s.score for s in got] == pytest.approx([e[3] for e in expected], abs=1e-12)
