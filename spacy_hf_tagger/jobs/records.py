"""Records of a corpus job: read from .txt / .jsonl / .parquet / .spacy files
(or a folder of them), and the output row of an annotated record.

A record is a line of a .txt or .jsonl file, a row of a .parquet file (the
same keys as JSONL: `text_key`, `id_key`, the columns to keep), or a Doc of a
.spacy DocBin (its text; its id from `doc.user_data[id_key]`; the pipeline
tokenizes the text again). Reading never stops at a bad record: a line that
is not valid UTF-8, not JSON (or JSON that Python cannot read: an integer of
over 4,300 digits by default, nesting past the recursion limit), a record
without a string text, a text holding a lone surrogate (a JSON "\\ud800"
escape, which no tokenizer takes), or one too long for the pipeline
(`too_long`) becomes a `BadRecord` with its position and the reason, for the
job's errors file.
Positions count every record (good or bad) across the input, in order, which
is what `--resume` counts to skip what is done.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from spacy.tokens import Doc

from ..labels.writing import SCORE_ATTR

SUFFIXES = (".txt", ".jsonl", ".parquet", ".spacy")
# A UTF-16 surrogate alone: JSON's "\\ud800" escape reads as one, UTF-8 cannot hold it.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class Record:
    """One text to annotate. `id` is the input's id, else the line number
    (1-based; "file:line" when the input is a folder). `keep` holds the input
    columns the user asked to copy to the output, every one of them (None
    where the record has none), so all rows have the same columns."""

    position: int
    id: Any
    text: str
    keep: Dict[str, Any] = field(default_factory=dict)


@dataclass
class BadRecord:
    """A line that could not be read as a record, and why."""

    position: int
    source: str
    line: int
    id: Any
    reason: str

    def row(self) -> Dict[str, Any]:
        return {"source": self.source, "line": self.line, "id": self.id, "error": self.reason}


def input_files(path: Path) -> List[Path]:
    """The files of INPUT: the file itself, or a folder's files of the
    supported kinds in sorted order (recursively)."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
        if not files:
            raise ValueError(f"{path} holds no {' or '.join(SUFFIXES)} files.")
        return files
    if not path.exists():
        raise ValueError(f"INPUT {path} does not exist.")
    if path.suffix not in SUFFIXES:
        raise ValueError(
            f"INPUT {path} has suffix {path.suffix!r}: annotate reads "
            f"{', '.join(SUFFIXES)} files or a folder of them."
        )
    return [path]


def count_lines(files: Sequence[Path]) -> int:
    """Records in the files (lines, rows, docs), for the progress bar's ETA."""
    total = 0
    for path in files:
        if path.suffix == ".parquet":
            total += _parquet_file(path).metadata.num_rows
            continue
        if path.suffix == ".spacy":
            total += len(_doc_bin(path))
            continue
        with path.open("rb") as handle:
            last = b"\n"
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                total += chunk.count(b"\n")
                last = chunk[-1:]
            total += last != b"\n"
    return total


@dataclass(frozen=True)
class _Keys:
    """Where a record object keeps its text and id, and the columns to copy."""

    text: str
    id: str
    keep: Sequence[str]


@dataclass(frozen=True)
class _Place:
    """Where a record comes from: its position in the input, its file, its
    line (or row, or doc) number there, and the id it has without an id key."""

    position: int
    source: str
    line: int
    default_id: Any

    def bad(self, reason: str, record_id: Any = None) -> BadRecord:
        chosen = self.default_id if record_id is None else record_id
        return BadRecord(self.position, self.source, self.line, chosen, reason)


def read_records(
    files: Sequence[Path],
    *,
    text_key: str = "text",
    id_key: str = "id",
    keep: Sequence[str] = (),
    label_files: bool = False,
    too_long: Optional[Callable[[int], Optional[str]]] = None,
) -> Iterator[Union[Record, BadRecord]]:
    """Every record of the files, in order, as a Record or a BadRecord (also
    a text for whose length `too_long` gives a reason)."""
    keys = _Keys(text_key, id_key, keep)
    position = 0
    for path in files:
        items: Iterator[Any]
        if path.suffix == ".parquet":
            items = _parquet_rows(path)
        elif path.suffix == ".spacy":
            items = _doc_objects(path, text_key)
        else:
            items = iter(path.open("rb"))
        try:
            for number, item in enumerate(items, start=1):
                default_id = f"{path.name}:{number}" if label_files else number
                place = _Place(position, str(path), number, default_id)
                if isinstance(item, bytes):
                    record = _parse(item, path.suffix, place, keys)
                else:
                    record = _from_object(item, place, keys)
                if too_long is not None and isinstance(record, Record):
                    reason = too_long(len(record.text))
                    if reason is not None:
                        record = place.bad(reason, record.id)
                yield record
                position += 1
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()


def _parse(raw: bytes, suffix: str, place: _Place, keys: _Keys) -> Union[Record, BadRecord]:
    try:
        line = raw.decode("utf8")
    except UnicodeDecodeError as err:
        return place.bad(f"not valid UTF-8 ({err.reason} at byte {err.start})")
    line = line.rstrip("\r\n") if suffix == ".txt" else line.strip()
    if suffix == ".txt":  # no columns: every kept one is None, as for a JSON line without it
        return Record(place.position, place.default_id, line, dict.fromkeys(keys.keep))
    if not line:
        return place.bad("empty line, not a JSON object")
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        return place.bad(f"invalid JSON ({err.msg} at column {err.colno})")
    except ValueError as err:  # an integer of more digits than int() converts
        # The message up to its first colon: no piece of the line after it.
        return place.bad(f"JSON that Python cannot read ({str(err).split(':')[0]})")
    except RecursionError:
        return place.bad("JSON nested too deeply for Python to read (its recursion limit)")
    if not isinstance(obj, dict):
        return place.bad(f"a JSON {type(obj).__name__}, not an object")
    return _from_object(obj, place, keys)


def _from_object(obj: Dict[str, Any], place: _Place, keys: _Keys) -> Union[Record, BadRecord]:
    record_id = obj.get(keys.id)
    if keys.text not in obj:
        return place.bad(f"no {keys.text!r} key (keys: {sorted(obj)[:10]})", record_id)
    text = obj[keys.text]
    if not isinstance(text, str):
        return place.bad(f"{keys.text!r} is a {type(text).__name__}, not a string", record_id)
    lone = _LONE_SURROGATE.search(text)
    if lone is not None:
        return place.bad(
            f"{keys.text!r} holds a lone surrogate (U+{ord(lone.group()):04X} at character "
            f"{lone.start()}), which is not Unicode text",
            record_id,
        )
    if record_id is None:
        record_id = place.default_id
    return Record(place.position, record_id, text, {k: obj.get(k) for k in keys.keep})


def record_from_object(
    obj: Dict[str, Any], position: int, *, text_key: str = "text", id_key: str = "id"
) -> Union[Record, BadRecord]:
    """A JSON object that is not a line of a file (a request to the server) as
    a record, checked as a JSONL line is; its id stays None when it has none."""
    place = _Place(position, "request", position, None)
    return _from_object(obj, place, _Keys(text_key, id_key, ()))


def _parquet_file(path: Path) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError as error:
        raise ValueError(
            f"Reading {path} needs pyarrow: pip install pyarrow (or 'spacy-hf-tagger[ray]')."
        ) from error
    return pq.ParquetFile(path)


def _parquet_rows(path: Path) -> Iterator[Dict[str, Any]]:
    """The rows of a Parquet file as dicts, a row group's batch at a time."""
    for batch in _parquet_file(path).iter_batches(batch_size=4096):
        yield from batch.to_pylist()


def _doc_bin(path: Path) -> Any:
    from spacy.tokens import DocBin

    return DocBin(store_user_data=True).from_disk(path)


def _doc_objects(path: Path, text_key: str) -> Iterator[Dict[str, Any]]:
    """The Docs of a DocBin as records: the text under `text_key`, and the
    Doc's user_data string keys (an id, say) beside it."""
    from spacy.vocab import Vocab

    for doc in _doc_bin(path).get_docs(Vocab()):
        obj = {k: v for k, v in doc.user_data.items() if isinstance(k, str)}
        obj[text_key] = doc.text
        yield obj


def entity_rows(doc: Doc) -> List[Dict[str, Any]]:
    """The doc's entities with character offsets into its text. `score` is our
    component's span score; None for entities another component set."""
    rows = []
    for ent in doc.ents:
        score: Optional[float] = None
        if ent.has_extension(SCORE_ATTR):
            score = ent._.get(SCORE_ATTR)
        rows.append(
            {
                "start": ent.start_char,
                "end": ent.end_char,
                "label": ent.label_,
                "score": score,
                "text": ent.text,
            }
        )
    return rows


def doc_annotation(doc: Doc) -> Tuple[List[Dict[str, Any]], int]:
    """What every engine reports for an annotated doc: its entities
    (`entity_rows`) and its words (tokens that are not whitespace)."""
    return entity_rows(doc), sum(not t.is_space for t in doc)


def output_row(record: Record, ents: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The output row of an annotated record: its id, its entities (see
    `entity_rows`), and the input columns the user asked to keep."""
    return {"id": record.id, "ents": ents, **record.keep}
