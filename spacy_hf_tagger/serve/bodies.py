"""What the server reads and what it answers: a request body checked against
the server's limits, and the rows it returns.

Kept apart from Ray so the rules are tested without a cluster, and so the
rows are exactly those of `annotate` (`jobs.records`: the same record checks,
the same `entity_rows` and `output_row`). Every message names a field, a
position and counts, never a piece of the text: the texts are often someone's
name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from spacy.tokens import Doc, Token

from ..errors import RequestError
from ..jobs.pipelines import LengthLimit
from ..jobs.records import BadRecord, Record, entity_rows, output_row, record_from_object
from ..labels.writing import BIO_ATTR, SCORE_ATTR
from ..settings import is_positive_int

_ONE_KEYS = frozenset({"text", "id", "tokens"})
_MANY_KEYS = frozenset({"texts", "tokens"})
_USAGE = 'send {"text": "...", "id": ...} or {"texts": ["...", {"text": "...", "id": ...}]}'


@dataclass(frozen=True)
class Limits:
    """What one request may hold. A text over `max_text_chars`, a body over
    `max_request_bytes` or a list over `max_texts` is refused with 413 before
    any model work, so one client cannot hold a replica for minutes or fill
    its memory."""

    max_text_chars: int = 100_000
    max_texts: int = 256
    max_request_bytes: int = 4_000_000

    def __post_init__(self) -> None:
        for name in ("max_text_chars", "max_texts", "max_request_bytes"):
            value = getattr(self, name)
            if not is_positive_int(value):
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Query:
    """A checked request: its records (ids None where the request gave none),
    whether it asked for a list (`texts`) and for per-token BIO labels."""

    records: List[Record]
    many: bool
    tokens: bool


def too_large(size: int, limits: Limits) -> RequestError:
    """The 413 of a body of `size` bytes over the limit."""
    return RequestError(
        413,
        f"the request body has over {limits.max_request_bytes:,} bytes "
        f"({size:,} read), this server's limit (--max-request-bytes): send fewer "
        "or shorter texts per request.",
    )


def read_json(body: bytes, limits: Limits) -> Any:
    """The body as JSON; 413 when it is over the size limit, 422 when it is
    not JSON (the message gives the position of the fault, not the text)."""
    if len(body) > limits.max_request_bytes:
        raise too_large(len(body), limits)
    try:
        return json.loads(body)
    except UnicodeDecodeError as err:
        raise RequestError(
            422, f"the body is not valid UTF-8 ({err.reason} at byte {err.start})."
        ) from None
    except json.JSONDecodeError as err:
        raise RequestError(
            422, f"the body is not JSON ({err.msg} at character {err.pos}): {_USAGE}."
        ) from None
    except ValueError as err:  # an integer of more digits than int() converts
        raise RequestError(
            422, f"the body is JSON that Python cannot read ({str(err).split(':')[0]})."
        ) from None
    except RecursionError:
        raise RequestError(422, "the body is JSON nested too deeply to read.") from None


def parse_query(obj: Any, limits: Limits, length_limit: Optional[LengthLimit] = None) -> Query:
    """The request object as a `Query`: 422 for a shape the server does not
    read, 413 for more or longer texts than `limits` (or the pipeline's own
    `length_limit`) allow."""
    if not isinstance(obj, dict):
        raise RequestError(
            422, f"the body is a JSON {type(obj).__name__}, not an object: {_USAGE}."
        )
    many = "texts" in obj
    if many == ("text" in obj):
        raise RequestError(
            422, f"the request has {'both' if many else 'neither'} 'text' and 'texts': {_USAGE}."
        )
    unknown = sorted(set(obj) - (_MANY_KEYS if many else _ONE_KEYS))
    if unknown:
        raise RequestError(
            422,
            f"unknown keys {unknown[:10]} in the request "
            f"(it reads {sorted(_ONE_KEYS | _MANY_KEYS)}).",
        )
    tokens = obj.get("tokens", False)
    if not isinstance(tokens, bool):
        raise RequestError(422, f"'tokens' is a JSON {type(tokens).__name__}, not true or false.")
    if many:
        items = obj["texts"]
        if not isinstance(items, list):
            raise RequestError(
                422, f"'texts' is a JSON {type(items).__name__}, not a list: {_USAGE}."
            )
        if len(items) > limits.max_texts:
            raise RequestError(
                413,
                f"the request has {len(items):,} texts, over this server's limit of "
                f"{limits.max_texts:,} per request (--max-texts): split it.",
            )
        objects = [{"text": item} if isinstance(item, str) else item for item in items]
    else:
        objects = [{k: v for k, v in obj.items() if k != "tokens"}]
    records = []
    for position, item in enumerate(objects):
        where = f"texts[{position}]" if many else "the request"
        if not isinstance(item, dict):
            raise RequestError(
                422, f"{where} is a JSON {type(item).__name__}, not a string or an object."
            )
        record = record_from_object(item, position)
        if isinstance(record, BadRecord):
            raise RequestError(422, f"{where}: {record.reason}.")
        _check_length(record, where, limits, length_limit)
        records.append(record)
    return Query(records, many, tokens)


def _check_length(
    record: Record, where: str, limits: Limits, length_limit: Optional[LengthLimit]
) -> None:
    n_chars = len(record.text)
    if n_chars > limits.max_text_chars:
        raise RequestError(
            413,
            f"{where} has a text of {n_chars:,} characters, over this server's limit of "
            f"{limits.max_text_chars:,} (--max-text-chars): split it, or annotate long "
            "documents with the annotate command.",
        )
    reason = length_limit.too_long(n_chars) if length_limit is not None else None
    if reason is not None:
        raise RequestError(413, f"{where}: {reason}.")


def response_row(record: Record, doc: Doc, tokens: bool = False) -> Dict[str, Any]:
    """The row `annotate` writes for the record (its id, its entities), without
    the id when the request gave none; with `tokens`, each token's offsets,
    BIO label and score too."""
    row = output_row(record, entity_rows(doc))
    if record.id is None:
        del row["id"]
    if tokens:
        row["tokens"] = token_rows(doc)
    return row


def token_rows(doc: Doc) -> List[Dict[str, Any]]:
    """Each token's character offsets, `hf_bio` label and `hf_score` (None for
    tokens no component labelled)."""
    has_bio = Token.has_extension(BIO_ATTR)
    return [
        {
            "start": token.idx,
            "end": token.idx + len(token),
            "bio": token._.get(BIO_ATTR) if has_bio else None,
            "score": token._.get(SCORE_ATTR) if has_bio else None,
        }
        for token in doc
    ]
