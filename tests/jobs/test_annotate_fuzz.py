"""Fuzzing the corpus job (`annotate`): whatever bytes INPUT holds, the job
ends, accounts for every record exactly once, and keeps texts out of
everything but OUTPUT.

Why: a corpus job runs for hours over files nobody has read line by line:
exports with a BOM, CRLF and stray CR line ends, cut-off writes, binary junk,
JSON of every shape (a number or a list where the text should be, duplicate
keys, ids of every JSON type, escapes of lone surrogates, integers Python
refuses, nesting past the recursion limit) and lines of megabytes. A bad line
must cost one row in the errors file, never the job; and the errors file,
stdout and stderr travel further than OUTPUT, so they name records by id or
line, never by text.

The expected fate of each line is computed here from the contract in
`records.py` (lines are split at b"\\n"; a .txt line is its text, CRs at its
end dropped; a .jsonl line is an object with a string `text` whose id is its
`id`, else its line number), not from its code, and compared exactly with
OUTPUT and OUTPUT.errors.jsonl.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tiny_models import NER_LABELS, training_sentences

from spacy_hf_tagger.jobs.corpus import Summary, job_paths, run_job
from spacy_hf_tagger.jobs.records import count_lines, input_files

TEXTS = [text for text, _ in training_sentences()]
LABELS = {label.split("-", 1)[1] for label in NER_LABELS if label != "O"}
# In (almost) every generated text, and in junk lines; never in an id or a key.
MARKER = "Qzxjvfuzzmark"
KEEP = "lang"  # the column the job is asked to keep
MiB = 1 << 20
LONE_SURROGATE = re.compile("[\ud800-\udfff]")

SETTINGS = settings(
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


# ------------------------------------------------------------- what is due


@dataclass(frozen=True)
class Due:
    """What the contract says a line of INPUT becomes: a row with `id` (and
    `keep`) whose entities lie in `text`, or, where `text` is None, an errors
    row naming `source`, `line` and `id`."""

    source: str
    line: int
    id: Any
    text: Optional[str] = None
    keep: Any = None


def due_records(files: Sequence[Path]) -> List[Due]:
    due = []
    for path in files:
        lines = path.read_bytes().split(b"\n")
        if lines[-1] == b"":  # the final newline ends the last line, starts none
            lines.pop()
        for number, raw in enumerate(lines, start=1):
            default_id = f"{path.name}:{number}" if len(files) > 1 else number
            due.append(_due_line(raw, path, number, default_id))
    return due


def _due_line(raw: bytes, path: Path, number: int, default_id: Any) -> Due:
    def bad(record_id: Any = None) -> Due:
        return Due(str(path), number, default_id if record_id is None else record_id)

    try:
        line = raw.decode("utf8")
    except UnicodeDecodeError:
        return bad()
    if path.suffix == ".txt":
        return Due(str(path), number, default_id, line.rstrip("\r"))
    try:
        obj = json.loads(line.strip())  # "" fails here too: an empty line is bad
    except (ValueError, RecursionError):
        return bad()
    if not isinstance(obj, dict):
        return bad()
    record_id = obj.get("id")
    text = obj.get("text")
    if not isinstance(text, str) or LONE_SURROGATE.search(text):
        return bad(record_id)
    return Due(
        str(path), number, default_id if record_id is None else record_id, text, obj.get(KEEP)
    )


def canonical(value: Any) -> str:
    """Equal JSON values, types included (1, 1.0 and true differ; so do 0 and -0.0)."""
    return json.dumps(value)


def strict_json(raw: bytes) -> Any:
    """A line of OUTPUT: valid UTF-8, valid JSON (no NaN), one object."""

    def refuse(constant: str) -> Any:
        raise AssertionError(f"{constant} in a row: not JSON")

    row = json.loads(raw.decode("utf8"), parse_constant=refuse)
    assert isinstance(row, dict)
    return row


def jsonl_rows(path: Path) -> List[Dict[str, Any]]:
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n")
    # Split at b"\n" only: rows may hold U+2028 or U+0085, which splitlines() splits at.
    return [strict_json(line) for line in data.split(b"\n")[:-1]]


def check_entities(ents: List[Dict[str, Any]], text: str) -> None:
    end = 0
    for ent in ents:
        assert set(ent) == {"start", "end", "label", "score", "text"}
        assert end <= ent["start"] < ent["end"] <= len(text), (ent, len(text))
        assert text[ent["start"] : ent["end"]] == ent["text"]
        assert ent["label"] in LABELS
        assert isinstance(ent["score"], float) and 0.0 < ent["score"] <= 1.0
        end = ent["end"]


def check_job(files: Sequence[Path], out: Path, summary: Summary, said: str) -> List[Due]:
    """Every line of the files exactly once: a good record's row in OUTPUT, in
    order, with its id, kept column and entities inside its text; a bad one's
    in the errors file, in order, naming source, line and id, with a reason;
    the marker in neither the errors file nor `said`."""
    due = due_records(files)
    good = [d for d in due if d.text is not None]
    bad = [d for d in due if d.text is None]
    assert count_lines(files) == len(due)
    assert (summary.records, summary.errors) == (len(due), len(bad))
    rows = jsonl_rows(out)
    errors_path, _ = job_paths(out)
    assert errors_path.exists() == bool(bad)
    errors = jsonl_rows(errors_path) if bad else []
    assert len(rows) + len(errors) == len(due)
    assert [canonical(r["id"]) for r in rows] == [canonical(d.id) for d in good]
    for row, record in zip(rows, good):
        assert set(row) == {"id", "ents", KEEP}
        assert canonical(row[KEEP]) == canonical(record.keep)
        assert record.text is not None
        check_entities(row["ents"], record.text)
    assert summary.entities == sum(len(r["ents"]) for r in rows)
    assert [(e["source"], e["line"], canonical(e["id"])) for e in errors] == [
        (d.source, d.line, canonical(d.id)) for d in bad
    ]
    for error in errors:
        assert set(error) == {"source", "line", "id", "error"}
        assert isinstance(error["error"], str) and error["error"].strip()
        event(f"error: {' '.join(error['error'].split()[:3])}")  # which reasons were met
    event(f"rows with entities: {min(sum(bool(r['ents']) for r in rows), 3)}+")
    if bad:
        assert MARKER not in errors_path.read_text("utf8")
    assert MARKER not in said, said[-2000:]
    return due


class _Said(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def everything_said() -> Iterator[List[str]]:
    """What the job prints, logs (any logger, any level) and warns, joined into
    the one string the list holds on exit."""
    said: List[str] = []
    handler, root = _Said(), logging.getLogger()
    level = root.level
    stdout, stderr = io.StringIO(), io.StringIO()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                yield said
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    said.append(
        "\n".join(
            [stdout.getvalue(), stderr.getvalue(), *handler.messages]
            + [str(w.message) for w in caught]
        )
    )


# ------------------------------------------------------------- generators

NASTY_CHARS = [
    "\x00", "\x01", "\r", "\t", "\x0b", "\x0c", "\x1c", "\x1f", "\x7f", "\x85", "\xa0",
    "\u2028", "\u2029", "\u3000", "\ufeff", "\u200b", "\u200d", "\u202e", "\u0301",
    "\ufffd", "\U0010ffff", "🙂", "👨‍👩‍👧", "東京", "مرحبا", "\\", '"', "{", "}", "[",
    "Sarah", "Paris", "Berlin", " ", "  ",
]  # fmt: skip
# Lone surrogates, high and low: what a JSON "\ud800" escape reads as.
surrogates = st.integers(0xD800, 0xDFFF).map(chr)
# Any character but a surrogate (codec="utf-8"): those come only where asked for.
characters = st.characters(codec="utf-8")
plain_text = st.lists(characters | st.sampled_from(NASTY_CHARS), max_size=12).map("".join)


@st.composite
def marked_texts(draw: st.DrawFn) -> str:
    """A training sentence (entities to place) and the marker, in junk."""
    before, after = draw(plain_text), draw(plain_text)
    sentence = draw(st.sampled_from(TEXTS))
    glue = draw(st.sampled_from(["", " ", "\n", "\u00a0"]))
    return f"{before}{sentence}{glue}{MARKER}{glue}{after}"


@st.composite
def surrogate_texts(draw: st.DrawFn) -> str:
    text = draw(marked_texts())
    at = draw(st.integers(0, len(text)))
    return text[:at] + draw(surrogates) + text[at:]


long_texts = st.builds(
    lambda n, sentence: (sentence + " ") * n + MARKER, st.integers(20, 200), st.sampled_from(TEXTS)
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(10**60), 10**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.builds(lambda a, s: a + s, st.text(max_size=3), surrogates)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
text_values = st.one_of(
    marked_texts(),
    marked_texts(),
    marked_texts(),
    surrogate_texts(),
    surrogate_texts(),
    long_texts,
    st.lists(marked_texts(), max_size=2),
    st.dictionaries(st.sampled_from(["text", "body"]), marked_texts(), max_size=2),
    json_values,
)


@st.composite
def object_lines(draw: st.DrawFn) -> bytes:
    """A JSON object with a text (mostly), an id and the kept column (often),
    other keys, duplicate keys, in any order, spacing, escaping and padding."""
    pairs: List[Tuple[str, Any]] = []
    if draw(st.integers(0, 9)) > 0:
        pairs.append(("text", draw(text_values)))
    if draw(st.booleans()):
        pairs.append(("id", draw(json_values)))
    if draw(st.booleans()):
        pairs.append((KEEP, draw(json_values)))
    if draw(st.integers(0, 4)) == 0:  # a second id: the last one counts
        pairs.append(("id", draw(json_values)))
    # Other keys, some holding texts: never "id", which the errors file shows.
    keys = st.sampled_from(["text", KEEP, "body", ""]) | st.text(max_size=4)
    other = st.tuples(keys.filter(lambda key: key != "id"), json_values | marked_texts())
    pairs += draw(st.lists(other, max_size=2))
    pairs = draw(st.permutations(pairs))
    ascii_only = draw(st.booleans())
    comma, colon = draw(st.sampled_from([(", ", ": "), (",", ":"), ("\t,\r ", " :\n")]))
    body = comma.join(
        json.dumps(k, ensure_ascii=ascii_only) + colon + json.dumps(v, ensure_ascii=ascii_only)
        for k, v in pairs
    )
    pad = draw(st.sampled_from(["", " ", "\t", "\r", "\u00a0", "\u3000", "\x1c"]))
    # Unescaped lone surrogates (ensure_ascii off) become bytes that are not UTF-8.
    return f"{pad}{{{body}}}{pad}".encode("utf8", "surrogatepass")


class Blob(bytes):
    """Bytes that Hypothesis reports by their length and start, not in full."""

    def __repr__(self) -> str:
        return f"Blob({len(self):,} bytes: {bytes(self[:40])!r}...)"


MARK = MARKER.encode()
# Lines no JSON library writes, each a case the job once stopped at or might.
RAW_JSON_LINES = [
    b'{"id": "cut", "text": "Sarah ' + MARK,  # cut off mid-string
    b'{"id": "x", "text": "' + MARK + b'"} {"text": "x"}',  # extra data
    b'{"text": "a\x00b ' + MARK + b'"}',  # a raw control character: not JSON
    b'{"text": "a\\u0000b ' + MARK + b'"}',  # an escaped one: a good text
    b'{"text": "Sarah \\ud800 ' + MARK + b'"}',  # a lone surrogate in the text
    b'{"text": "\\ud83d\\ude00 Paris ' + MARK + b'"}',  # a surrogate pair: one emoji
    b'{"id": "\\udc00", "text": "Sarah lives in Paris. ' + MARK + b'"}',  # ... in the id
    b'{"id": "\\ud83d", "text": 7}',  # ... in a bad record's id
    Blob(b'{"id": "big", "text": "' + MARK + b'", "n": ' + b"9" * 4400 + b"}"),  # int() refuses
    Blob(b'{"id": ' + b"9" * 4400 + b', "text": "' + MARK + b'"}'),
    Blob(b'{"text": "' + MARK + b'", "n": ' + b"[" * 4000 + b"]" * 4000 + b"}"),  # too deep
    b'{"text": "' + MARK + b'", "text": null}',  # duplicate keys: the last wins
    b'{"text": null, "text": "' + MARK + b'", "id": 1, "id": [1, {"a": null}]}',
    b'{"id": null, "text": "' + MARK + b'"}',
    b'{"id": 0, "text": "' + MARK + b'"}',
    b'{"id": false, "text": ""}',
    b'{"TEXT": "' + MARK + b'"}',
    b'"' + MARK + b'"',
    b"[" + MARK + b"]",
    b"NaN",
    b"null",
    b"{}",
    b'{"": ""}',
    b"\xef\xbb\xbf" + b'{"text": "' + MARK + b'"}',  # a BOM
    b"\x00" * 5,
    b"",
    b" \t ",
]
BYTES = [
    b"\x00", b"\xff", b"\xfe", b"\x80", b"\xc3", b"\xe2\x82", b"\xc0\x80", b"\xed\xa0\x80",
    b"\xed\xbf\xbf", b"\xf4\x90\x80\x80", b"\xef\xbb\xbf", b"\r", b"\r\n", b"\x85",
    b"\xe2\x80\xa8", b"\xc2\x85", MARK, b"{", b'"', b"\\", b"Sarah ", b" Paris",
]  # fmt: skip
byte_lines = st.lists(st.binary(max_size=6) | st.sampled_from(BYTES), max_size=8).map(b"".join)
text_lines = st.one_of(
    marked_texts().map(lambda t: t.encode("utf8")),
    plain_text.map(lambda t: t.encode("utf8")),
    surrogate_texts().map(lambda t: t.encode("utf8", "surrogatepass")),  # not UTF-8
    long_texts.map(lambda t: t.encode("utf8")),
)
jsonl_lines = st.one_of(
    object_lines(),
    object_lines(),
    object_lines(),
    st.sampled_from(RAW_JSON_LINES),
    st.sampled_from(RAW_JSON_LINES),
    byte_lines,
)
txt_lines = st.one_of(text_lines, text_lines, byte_lines)
ENDINGS = [b"\n", b"\n", b"\n", b"\r\n", b"\r\r\n", b"\n\n", b"\r", b"\n\r\n"]


@st.composite
def file_bytes(draw: st.DrawFn, lines: st.SearchStrategy[bytes], max_lines: int = 10) -> bytes:
    """Lines with any line ends, a BOM in front sometimes, and a last line
    without its newline sometimes."""
    items = draw(st.lists(st.tuples(lines, st.sampled_from(ENDINGS)), max_size=max_lines))
    data = b"".join(line + end for line, end in items)
    if items and draw(st.booleans()):
        data = data[: -len(items[-1][1])]
    if draw(st.integers(0, 4)) == 0:
        data = b"\xef\xbb\xbf" + data
    return data


def corpora() -> st.SearchStrategy[Dict[str, bytes]]:
    """INPUT: a .jsonl or a .txt file, or a folder of both (ids "name:line"),
    as {relative path: bytes}."""

    def of(suffix: str) -> st.SearchStrategy[bytes]:
        return file_bytes(jsonl_lines if suffix == ".jsonl" else txt_lines)

    return st.one_of(
        st.fixed_dictionaries({"in.jsonl": of(".jsonl")}),
        st.fixed_dictionaries({"in.txt": of(".txt")}),
        st.fixed_dictionaries(
            {"corpus/a.jsonl": of(".jsonl"), "corpus/b.txt": of(".txt")},
            optional={"corpus/sub/c.jsonl": of(".jsonl")},
        ),
    )


def write_corpus(folder: Path, corpus: Dict[str, bytes]) -> Tuple[Path, List[Path]]:
    """Write the corpus; return INPUT (the file, or the folder) and its files in order."""
    for name, data in corpus.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    names = sorted(corpus)
    source = folder / names[0].split("/")[0]
    files = input_files(source)
    assert files == [folder / name for name in names]
    return source, files


# ----------------------------------------------------------------- the job


@settings(SETTINGS, max_examples=200)
@given(corpus=corpora(), chunk_size=st.sampled_from([1, 3, 1000]))
def test_every_line_of_any_input_is_a_row_or_an_error_once(
    nlp, corpus: Dict[str, bytes], chunk_size: int
) -> None:
    """Files of junk bytes, texts and JSON of every shape; chunks of 1, 3 or
    1000 records (a chunk boundary anywhere)."""
    with tempfile.TemporaryDirectory() as tmp:
        source, files = write_corpus(Path(tmp), corpus)
        out = Path(tmp) / "out.jsonl"
        with everything_said() as said:
            summary = run_job(nlp, source, out, keep=[KEEP], chunk_size=chunk_size)
        check_job(files, out, summary, said[0])


def huge_line(suffix: str, kind: str, size: int) -> Blob:
    """A line of about `size` bytes for a file of `suffix`: bad ones of every
    kind, and good ones of a quarter of that, mostly whitespace (the tiny model
    annotates about a MiB of that a second; a MiB of words would take ten)."""
    words = ((MARKER + " ") * (size // (len(MARKER) + 1))).encode()
    if suffix == ".txt":
        if kind == "not utf8":
            return Blob(words + b"\xff")
        return Blob(f"Sarah lives in Paris.{' ' * (size // 4)}\t\r{MARKER}".encode())
    if kind == "cut off":
        line = b'{"id": "huge", "text": "' + words
    elif kind == "not utf8":
        line = b'{"id": "huge", "text": "' + words + b'\xff"}'
    elif kind == "text list":
        line = json.dumps({"id": "huge", "text": words.decode().split()}).encode()
    elif kind == "text digits":
        line = b'{"id": "huge", "text": ' + b"7" * size + b"}"
    elif kind == "deep":
        line = b'{"id": "huge", "text": ' + b"[" * (size // 2) + b"]" * (size // 2) + b"}"
    elif kind == "huge id":
        line = json.dumps({"id": "i" * size, "text": 5}).encode()
    else:
        text = "Sarah lives in Paris." + " \t\r\n" * (size // 16) + MARKER
        line = json.dumps({"id": "huge", "text": text}).encode()
    return Blob(line)


HUGE_KINDS = {
    ".jsonl": ("cut off", "not utf8", "text list", "text digits", "deep", "huge id", "good"),
    ".txt": ("not utf8", "good"),
}
huge_sizes = st.integers(MiB, 4 * MiB)


@settings(SETTINGS, max_examples=10)
@given(corpus=corpora(), data=st.data())
def test_lines_of_megabytes_among_ordinary_ones(
    nlp, corpus: Dict[str, bytes], data: st.DataObject
) -> None:
    """A huge line, whole, somewhere in some of the files (at least one)."""
    corpus = dict(corpus)
    names = sorted(corpus)
    chosen = data.draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
    for name in chosen:
        lines = corpus[name].split(b"\n")
        at = data.draw(st.integers(0, len(lines)))
        suffix = Path(name).suffix
        kind = data.draw(st.sampled_from(HUGE_KINDS[suffix]))
        huge = huge_line(suffix, kind, data.draw(huge_sizes))
        corpus[name] = Blob(b"\n".join([*lines[:at], huge, *lines[at:]]))
        event(f"huge line: {suffix} {kind}")
    with tempfile.TemporaryDirectory() as tmp:
        source, files = write_corpus(Path(tmp), corpus)
        out = Path(tmp) / "out.jsonl"
        with everything_said() as said:
            summary = run_job(nlp, source, out, keep=[KEEP])
        check_job(files, out, summary, said[0])
    assert max(len(line) for data in corpus.values() for line in data.split(b"\n")) > MiB // 4


def test_lines_that_stopped_the_job_go_to_the_errors_file(nlp, tmp_path: Path) -> None:
    """Each of these lines once ended the job (with nothing of its chunk written):
    a lone surrogate in a text (spaCy's tokenizer raised UnicodeEncodeError), in
    a good record's id or a bad one's (writing its row raised it), an integer of
    more digits than int() converts (json.loads raised a ValueError that is not
    a JSONDecodeError), nesting past the recursion limit (RecursionError)."""
    lines = [
        b'{"id": "a", "text": "Sarah \\ud800 ' + MARK + b'"}',
        b'{"id": "\\udc00", "text": "Sarah lives in Paris."}',
        b'{"id": "\\ud83d", "text": 7}',
        b'{"id": "big", "text": "x", "n": ' + b"9" * (sys.get_int_max_str_digits() + 1) + b"}",
        b'{"id": "deep", "text": "x", "n": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"id": "z", "text": "Sarah lives in Paris.", "lang": "\\udfff"}',
    ]
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out.jsonl"
    summary = run_job(nlp, source, out, keep=[KEEP])
    assert (summary.records, summary.errors) == (6, 4)
    rows = jsonl_rows(out)
    assert [(r["id"], r[KEEP]) for r in rows] == [("\udc00", None), ("z", "\udfff")]
    assert [e["text"] for e in rows[0]["ents"]] == ["Sarah", "Paris"]
    assert b'"id": "\\udc00"' in out.read_bytes()  # escaped, as it came: UTF-8 cannot hold it
    errors = [(e["line"], e["id"], e["error"]) for e in jsonl_rows(job_paths(out)[0])]
    assert errors == [
        (
            1,
            "a",
            "'text' holds a lone surrogate (U+D800 at character 6), which is not Unicode text",
        ),
        (3, "\ud83d", "'text' is a int, not a string"),
        (
            4,
            4,
            f"JSON that Python cannot read (Exceeds the limit ({sys.get_int_max_str_digits()} "
            "digits) for integer string conversion)",
        ),
        (5, 5, "JSON nested too deeply for Python to read (its recursion limit)"),
    ]
    assert MARKER not in job_paths(out)[0].read_text("utf8")


def test_a_txt_line_has_every_kept_column_as_none(nlp, tmp_path: Path) -> None:
    """A .txt line has no columns, and its row used to have none of the kept
    ones: a Parquet chunk whose first row was one dropped the kept column for
    all its rows (Parquet takes a chunk's columns from its first row)."""
    pq = pytest.importorskip(
        "pyarrow.parquet", reason="pyarrow not installed (pip install '.[ray]')"
    )
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text(TEXTS[0] + "\n", "utf8")
    (folder / "b.jsonl").write_text(json.dumps({"text": TEXTS[1], KEEP: "en"}) + "\n", "utf8")
    run_job(nlp, folder, tmp_path / "out.parquet", keep=[KEEP])
    got = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert [(r["id"], r[KEEP]) for r in got] == [("a.txt:1", None), ("b.jsonl:1", "en")]
    run_job(nlp, folder, tmp_path / "out.jsonl", keep=[KEEP])
    assert [set(r) for r in jsonl_rows(tmp_path / "out.jsonl")] == [{"id", "ents", KEEP}] * 2


# ------------------------------------------------------------ the real CLI


@st.composite
def nastiest_corpora(draw: st.DrawFn) -> Dict[str, bytes]:
    """A folder whose .jsonl holds every raw line above, a huge bad line and a
    huge good one among generated lines, and whose .txt holds junk bytes and
    texts, all in any order, with any line ends."""
    jsonl = [
        *RAW_JSON_LINES,
        huge_line(".jsonl", draw(st.sampled_from(HUGE_KINDS[".jsonl"][:-1])), draw(huge_sizes)),
        huge_line(".jsonl", "good", draw(huge_sizes)),
        *draw(st.lists(object_lines(), min_size=3, max_size=8)),
    ]
    txt = [
        *BYTES,
        huge_line(".txt", "not utf8", draw(huge_sizes)),
        *draw(st.lists(txt_lines, min_size=3, max_size=8)),
    ]
    out = {}
    for name, lines in (("nasty/a.jsonl", jsonl), ("nasty/b.txt", txt)):
        lines = draw(st.permutations(lines))
        ends = draw(st.lists(st.sampled_from(ENDINGS), min_size=len(lines), max_size=len(lines)))
        out[name] = Blob(b"\xef\xbb\xbf" + b"".join(line + end for line, end in zip(lines, ends)))
    return out


@settings(SETTINGS, max_examples=2)
@given(corpus=nastiest_corpora())
def test_the_cli_on_the_nastiest_inputs(model: Path, corpus: Dict[str, bytes]) -> None:
    """`python -m spacy_hf_tagger annotate` itself: exit 0, every line once,
    and the marker in neither stdout, stderr, nor the errors file."""
    with tempfile.TemporaryDirectory() as tmp:
        source, files = write_corpus(Path(tmp), corpus)
        out = Path(tmp) / "out.jsonl"
        cmd = [sys.executable, "-m", "spacy_hf_tagger", "annotate", str(model), str(source)]
        done = subprocess.run(
            [*cmd, str(out), "--keep", KEEP], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        said = " ".join(done.stdout.split())
        counts = re.search(r"(\d+) records, .* words/s, (\d+) entities, (\d+) errors", said)
        assert counts is not None, said
        n_records, n_entities, n_errors = (int(n) for n in counts.groups())
        summary = Summary(n_records, 0, n_entities, n_errors, 0.0, 0)
        due = check_job(files, out, summary, done.stdout + done.stderr)
    assert sum(d.text is None for d in due) > len(RAW_JSON_LINES) // 2
