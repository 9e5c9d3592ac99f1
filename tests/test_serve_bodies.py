"""The server's request rules and rows, without Ray (`spacy_hf_tagger.serve.bodies`).

Why: a client's mistake must get a status and a message that says what to
change (413 for too much, 422 for a shape the server does not read), the
message must never echo the text (it is often someone's name), and the rows
must be exactly those `annotate` writes.
"""

from __future__ import annotations

import json

import pytest
import spacy

from spacy_hf_tagger.errors import RequestError
from spacy_hf_tagger.jobs.pipelines import LengthLimit
from spacy_hf_tagger.jobs.records import Record, entity_rows, output_row
from spacy_hf_tagger.serve.bodies import (
    Limits,
    parse_query,
    read_json,
    response_row,
)

MARKER = "Zebulon Quarrington-Vasquez"
LIMITS = Limits(max_text_chars=100, max_texts=3, max_request_bytes=1000)


def refused(obj, limits=LIMITS, length_limit=None) -> RequestError:
    with pytest.raises(RequestError) as caught:
        parse_query(obj, limits, length_limit)
    assert MARKER not in caught.value.message and "Zebulon" not in caught.value.message
    return caught.value


def test_one_text_and_a_list_of_texts_with_and_without_ids() -> None:
    one = parse_query({"text": MARKER, "id": "a1"}, LIMITS)
    assert (one.many, one.tokens) == (False, False)
    assert one.records == [Record(0, "a1", MARKER, {})]
    many = parse_query({"texts": [MARKER, {"text": "", "id": 7}], "tokens": True}, LIMITS)
    assert (many.many, many.tokens) == (True, True)
    assert many.records == [Record(0, None, MARKER, {}), Record(1, 7, "", {})]
    assert parse_query({"texts": []}, LIMITS).records == []


@pytest.mark.parametrize(
    ("obj", "status", "message"),
    [
        ([MARKER], 422, "the body is a JSON list, not an object"),
        ({"id": 1}, 422, "the request has neither 'text' and 'texts'"),
        ({"text": MARKER, "texts": []}, 422, "the request has both 'text' and 'texts'"),
        ({"text": MARKER, "txt": MARKER}, 422, "unknown keys ['txt'] in the request"),
        ({"text": MARKER, "tokens": "yes"}, 422, "'tokens' is a JSON str, not true or false"),
        ({"texts": MARKER}, 422, "'texts' is a JSON str, not a list"),
        ({"texts": [MARKER, 5]}, 422, "texts[1] is a JSON int, not a string or an object"),
        ({"texts": [{"txt": MARKER}]}, 422, "texts[0]: no 'text' key (keys: ['txt'])"),
        ({"text": 5}, 422, "the request: 'text' is a int, not a string"),
        ({"text": MARKER + "\ud800"}, 422, "holds a lone surrogate (U+D800 at character 27)"),
        ({"texts": [MARKER] * 4}, 413, "the request has 4 texts, over this server's limit of 3"),
        (
            {"texts": ["", MARKER * 4]},
            413,
            "texts[1] has a text of 108 characters, over this server's limit of 100",
        ),
    ],
)
def test_refusals_say_what_and_where_never_the_text(obj, status: int, message: str) -> None:
    error = refused(obj)
    assert error.status == status
    assert message in error.message


def test_the_pipelines_own_length_limit_is_a_413_with_its_reason() -> None:
    error = refused({"text": MARKER * 2}, length_limit=LengthLimit(50, ("parser",)))
    assert error.status == 413
    assert error.message.startswith(
        "the request: text of 54 characters is over the pipeline's max_length of 50, "
        "which its components parser need"
    )


def test_bodies_too_large_or_not_json() -> None:
    with pytest.raises(RequestError) as caught:
        read_json(json.dumps({"text": MARKER * 40}).encode(), LIMITS)
    assert caught.value.status == 413
    assert caught.value.message.startswith("the request body has over 1,000 bytes (1,092 read)")
    for body, message in [
        (b'{"text": "' + MARKER.encode() + b'"', "the body is not JSON (Expecting ',' delimiter"),
        (b'{"text": "\xff' + MARKER.encode() + b'"}', "the body is not valid UTF-8 (invalid start"),
        (b"[" * 50_000 + b"]" * 50_000, "the body is JSON nested too deeply to read"),
    ]:
        with pytest.raises(RequestError) as caught:
            read_json(body, Limits(max_request_bytes=200_000))
        assert caught.value.status == 422
        assert message in caught.value.message, caught.value.message
        assert MARKER not in caught.value.message


def test_rows_are_those_annotate_writes_with_the_id_only_when_given(tiny_models) -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("hf_token_tagger", config={"model": str(tiny_models("wordpiece-cased"))})
    doc = nlp("John Smith visited Berlin.")
    with_id = Record(0, "r1", doc.text, {})
    assert response_row(with_id, doc) == output_row(with_id, entity_rows(doc))
    assert list(response_row(with_id, doc)) == ["id", "ents"]
    assert response_row(Record(0, None, doc.text, {}), doc) == {"ents": entity_rows(doc)}
    tokens = response_row(Record(0, None, doc.text, {}), doc, tokens=True)["tokens"]
    assert [(t["start"], t["end"]) for t in tokens] == [
        (0, 4),
        (5, 10),
        (11, 18),
        (19, 25),
        (25, 26),
    ]
    assert [t["bio"] for t in tokens] == [t._.hf_bio for t in doc]
    assert [t["score"] for t in tokens] == [t._.hf_score for t in doc]


def test_limits_must_be_positive_integers() -> None:
    with pytest.raises(ValueError, match="max_texts must be a positive integer, got 0"):
        Limits(max_texts=0)
    with pytest.raises(ValueError, match="max_text_chars must be a positive integer, got True"):
        Limits(max_text_chars=True)
    with pytest.raises(ValueError, match=r"max_request_bytes must be a positive integer, got 1\.5"):
        Limits(max_request_bytes=1.5)  # type: ignore[arg-type]
