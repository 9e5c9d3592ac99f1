"""Where a corpus job's rows go, and how each kind of output resumes.

The job writes chunk after chunk and, after each, records in its checkpoint
how far the output got; a process killed at any point resumes from the last
checkpoint. A JSONL file is appended to and, on resume, cut back to the byte
length the checkpoint names. Parquet files and DocBins cannot be appended
to or cut, so those outputs are written as one file per chunk, each put in
place atomically (written beside, then renamed); on resume, the files beyond
the checkpoint's count are deleted. A Parquet OUTPUT is assembled from its
parts, a row group at a time, when the job completes; a DocBin OUTPUT is a
folder of shards of one chunk each, bounded in size by `--chunk-size`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import IO, Any, Dict, List, Optional, Protocol, Sequence, Tuple

from spacy.tokens import Doc, DocBin

from ..errors import OutputError


class Sink(Protocol):
    """One kind of output. `write` takes a chunk's rows (and Docs, for sinks
    that store Docs) and makes them durable; `position` is what the
    checkpoint stores to resume from; `finish` completes the output."""

    needs_docs: bool

    def write(self, rows: Sequence[Dict[str, Any]], docs: Optional[Sequence[Doc]]) -> None: ...

    def position(self) -> int: ...

    def finish(self) -> None: ...

    def close(self) -> None: ...

    @staticmethod
    def on_disk(output: Path) -> bool:
        """Whether OUTPUT, or what a killed job left of it, is there."""
        ...


def open_for_append(path: Path, length: int) -> IO[bytes]:
    """Open `path` for appending after cutting it to `length` bytes (the last
    checkpoint's), dropping whatever a killed run wrote after that."""
    handle = path.open("r+b" if path.exists() else "w+b")
    handle.truncate(length)
    handle.seek(length)
    return handle


class JsonlSink:
    """One JSON object per line, appended; the position is the byte length."""

    needs_docs = False

    def __init__(self, path: Path, position: int) -> None:
        self._out = open_for_append(path, position)

    @staticmethod
    def on_disk(output: Path) -> bool:
        return output.exists()

    def write(self, rows: Sequence[Dict[str, Any]], docs: Optional[Sequence[Doc]]) -> None:
        self._out.write(b"".join(json_line(r) for r in rows))
        self._out.flush()
        os.fsync(self._out.fileno())

    def position(self) -> int:
        return self._out.tell()

    def finish(self) -> None:
        pass

    def close(self) -> None:
        self._out.close()


def json_line(row: Dict[str, Any]) -> bytes:
    """The row as a line of UTF-8 JSON. A row holding a lone surrogate (an id
    read from a JSON "\\ud800" escape, say), which UTF-8 cannot encode, is
    written with \\u escapes, which read back to the same value."""
    line = json.dumps(row, ensure_ascii=False) + "\n"
    try:
        return line.encode("utf8")
    except UnicodeEncodeError:
        return (json.dumps(row) + "\n").encode("utf8")


class _PartsSink:
    """One file per chunk in `folder`, named by its number; the position is
    the number of parts done."""

    suffix = ""

    @staticmethod
    def on_disk(output: Path) -> bool:
        return output.exists()

    def __init__(self, folder: Path, position: int) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.parts = position
        for path in self._existing():
            if self._number(path) >= position:  # written after the last checkpoint
                path.unlink()
        for path in folder.glob(f"part-*{self.suffix}.tmp"):  # a write a kill cut short
            path.unlink()

    def _existing(self) -> List[Path]:
        return sorted(self.folder.glob(f"part-*{self.suffix}"))

    @staticmethod
    def _number(path: Path) -> int:
        return int(path.name.split("-", 1)[1].split(".", 1)[0])

    def _put(self, write: Any) -> None:
        """Write the next part beside its final name, then rename it there."""
        final = self.folder / f"part-{self.parts:06d}{self.suffix}"
        tmp = final.with_name(final.name + ".tmp")
        write(tmp)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        self.parts += 1

    def position(self) -> int:
        return self.parts

    def finish(self) -> None:
        pass

    def close(self) -> None:
        pass


class DocBinSink(_PartsSink):
    """A folder of DocBin shards (`part-000000.spacy`, ...), one per chunk,
    with user data, so our token and span extensions come back with
    `DocBin(store_user_data=True).from_disk(...).get_docs(nlp.vocab)`."""

    needs_docs = True
    suffix = ".spacy"

    def write(self, rows: Sequence[Dict[str, Any]], docs: Optional[Sequence[Doc]]) -> None:
        doc_bin = DocBin(store_user_data=True, docs=list(docs or ()))
        self._put(doc_bin.to_disk)


class ParquetSink(_PartsSink):
    """A Parquet file, assembled from per-chunk parts in `OUTPUT.parts/` when
    the job completes. `ents` is a list of {start, end, label, score, text};
    `id` and the kept columns take the types the records have (a column that
    is empty in one chunk takes its type from the others); two chunks with
    different types in one column are an error naming it.

    Finishing: the parts are assembled into OUTPUT (written beside, then
    renamed), then the parts folder is renamed `OUTPUT.parts.done` and
    deleted. A resumed job that finds `.parts.done` knows OUTPUT is whole."""

    needs_docs = False
    suffix = ".parquet"

    def __init__(self, output: Path, position: int) -> None:
        try:
            import pyarrow  # noqa: F401
        except ImportError as error:
            raise OutputError(
                f"Writing {output} needs pyarrow: pip install pyarrow (or "
                "'spacy-hf-tagger[ray]'), or write .jsonl."
            ) from error
        self.output = output
        parts, self.done = self._folders(output)
        # A resumed run that finds `.parts.done` was killed after OUTPUT was whole;
        # a run from the start (--overwrite) finds only an old run's leftover.
        leftover = self.done.exists()
        self.assembled = leftover and position > 0
        if leftover:
            shutil.rmtree(self.done)
        super().__init__(parts, position)
        self._first: Optional[Any] = None  # the first part's schema, once read

    @staticmethod
    def _folders(output: Path) -> Tuple[Path, Path]:
        """The parts folder while the job runs, and its name once OUTPUT is whole."""
        return output.with_name(output.name + ".parts"), output.with_name(
            output.name + ".parts.done"
        )

    @staticmethod
    def on_disk(output: Path) -> bool:
        return output.exists() or any(f.exists() for f in ParquetSink._folders(output))

    def write(self, rows: Sequence[Dict[str, Any]], docs: Optional[Sequence[Doc]]) -> None:
        import pyarrow.parquet as pq

        if not rows:
            return
        table = _rows_table(rows)
        if self._first is None:
            existing = self._existing()
            self._first = pq.read_schema(existing[0]) if existing else table.schema
        _unified([self._first, table.schema])  # fail now, not at the end
        self._put(lambda path: pq.write_table(table, path))

    def finish(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.assembled:  # by a run killed while it deleted the parts
            shutil.rmtree(self.folder)
            return
        parts = self._existing()
        tmp = self.output.with_name(self.output.name + ".tmp")
        if parts:
            schema = _unified([pq.read_schema(p) for p in parts])
            with pq.ParquetWriter(tmp, schema) as writer:
                for part in parts:
                    for batch in pq.ParquetFile(part).iter_batches():
                        table = pa.Table.from_batches([batch])
                        writer.write_table(table.select(schema.names).cast(schema))
        else:
            pq.write_table(pa.table({"id": pa.array([], pa.string())}), tmp)
        os.replace(tmp, self.output)
        os.replace(self.folder, self.done)
        shutil.rmtree(self.done)


def entity_type() -> Any:
    """The Arrow type of a row's `ents`: a list of {start, end, label, score, text}."""
    import pyarrow as pa

    fields = [
        ("start", pa.int64()),
        ("end", pa.int64()),
        ("label", pa.string()),
        ("score", pa.float64()),
        ("text", pa.string()),
    ]
    return pa.list_(pa.struct(fields))


def _rows_table(rows: Sequence[Dict[str, Any]]) -> Any:
    import pyarrow as pa

    columns = {}
    for key in rows[0]:
        values = [r.get(key) for r in rows]
        try:
            if key == "ents":
                columns[key] = pa.array(values, type=entity_type())
            else:
                columns[key] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            kinds = sorted({type(v).__name__ for v in values if v is not None})
            raise OutputError(
                f"Column {key!r} mixes {', '.join(kinds)} values ({error}); Parquet needs "
                "one type per column: give every record an id (and kept column) of one "
                "type, or write .jsonl."
            ) from error
    return pa.table(columns)


def _unified(schemas: List[Any]) -> Any:
    import pyarrow as pa

    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise OutputError(
            f"Records of this chunk have other column types than earlier ones ({error}); "
            "Parquet needs one type per column: give every record an id (and kept "
            "column) of one type, or write .jsonl."
        ) from error


def sink_class(output: Path) -> Any:
    """The sink for OUTPUT's kind: .jsonl, .parquet, or a folder (no suffix)."""
    kinds = {".jsonl": JsonlSink, ".parquet": ParquetSink, "": DocBinSink}
    if output.suffix not in kinds:
        raise OutputError(
            f"OUTPUT {output} has suffix {output.suffix!r}: annotate writes .jsonl, "
            ".parquet, or a folder (no suffix) of .spacy DocBin shards."
        )
    return kinds[output.suffix]


def open_sink(output: Path, position: int) -> Sink:
    return sink_class(output)(output, position)
