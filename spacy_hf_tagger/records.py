"""Records of a corpus job: read from .txt / .jsonl files (or a folder of them),
one record per line, and the output row of an annotated record.

Reading never stops at a bad line: a line that is not valid UTF-8, not JSON,
or has no string text becomes a `BadRecord` with its position and the reason,
for the job's errors file. Positions count every line (good or bad) across
the input, in order, which is what `--resume` counts to skip what is done.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

from spacy.tokens import Doc

SUFFIXES = (".txt", ".jsonl")


@dataclass
class Record:
    """One text to annotate. `id` is the input's id, else the line number
    (1-based; "file:line" when the input is a folder). `keep` holds the input
    columns the user asked to copy to the output."""

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
    """The files of INPUT: the file itself, or a folder's .txt/.jsonl files in
    sorted order (recursively)."""
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
            f"{', '.join(SUFFIXES)} files or a folder of them (.parquet and .spacy "
            "inputs are not supported yet)."
        )
    return [path]


def count_lines(files: Sequence[Path]) -> int:
    """Lines in the files (the number of records), for the progress bar's ETA."""
    total = 0
    for path in files:
        with path.open("rb") as handle:
            last = b"\n"
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                total += chunk.count(b"\n")
                last = chunk[-1:]
            total += last != b"\n"
    return total


def read_records(
    files: Sequence[Path],
    *,
    text_key: str = "text",
    id_key: str = "id",
    keep: Sequence[str] = (),
    label_files: bool = False,
) -> Iterator[Union[Record, BadRecord]]:
    """Every line of the files, in order, as a Record or a BadRecord."""
    position = 0
    for path in files:
        source = str(path)
        with path.open("rb") as handle:
            for line_no, raw in enumerate(handle, start=1):
                default_id: Any = f"{path.name}:{line_no}" if label_files else line_no
                yield _parse(
                    raw, path.suffix, position, source, line_no, default_id, text_key, id_key, keep
                )
                position += 1


def _parse(
    raw: bytes,
    suffix: str,
    position: int,
    source: str,
    line_no: int,
    default_id: Any,
    text_key: str,
    id_key: str,
    keep: Sequence[str],
) -> Union[Record, BadRecord]:
    def bad(reason: str, record_id: Any = default_id) -> BadRecord:
        return BadRecord(position, source, line_no, record_id, reason)

    try:
        line = raw.decode("utf8")
    except UnicodeDecodeError as err:
        return bad(f"not valid UTF-8 ({err.reason} at byte {err.start})")
    line = line.rstrip("\r\n") if suffix == ".txt" else line.strip()
    if suffix == ".txt":
        return Record(position, default_id, line)
    if not line:
        return bad("empty line, not a JSON object")
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        return bad(f"invalid JSON ({err.msg} at column {err.colno})")
    if not isinstance(obj, dict):
        return bad(f"a JSON {type(obj).__name__}, not an object")
    record_id = obj.get(id_key, default_id)
    if text_key not in obj:
        return bad(f"no {text_key!r} key (keys: {sorted(obj)[:10]})", record_id)
    text = obj[text_key]
    if not isinstance(text, str):
        return bad(f"{text_key!r} is a {type(text).__name__}, not a string", record_id)
    return Record(position, record_id, text, {k: obj.get(k) for k in keep})


def entity_rows(doc: Doc) -> List[Dict[str, Any]]:
    """The doc's entities with character offsets into its text. `score` is our
    component's span score; None for entities another component set."""
    rows = []
    for ent in doc.ents:
        score: Optional[float] = None
        if ent.has_extension("hf_score"):
            score = ent._.hf_score
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


def output_row(record: Record, ents: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The output row of an annotated record: its id, its entities (see
    `entity_rows`), and the input columns the user asked to keep."""
    return {"id": record.id, "ents": ents, **record.keep}
