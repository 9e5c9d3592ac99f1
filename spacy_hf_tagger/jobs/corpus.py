"""The corpus job behind `python -m spacy_hf_tagger annotate`: annotate a corpus
into JSONL, Parquet or DocBin shards, with a progress bar, an errors file, and
`--resume` after a crash.

How nothing is lost or repeated: records are annotated in chunks, in input
order. After each chunk the rows go to OUTPUT and the bad records to
OUTPUT.errors.jsonl, both durably (see `sinks`), and then a checkpoint
(`OUTPUT.progress.json`: records done, and how far each file got) is
replaced atomically. A process killed at any point leaves a checkpoint that
describes a consistent prefix; `--resume` cuts the outputs back to it
(dropping a half-written chunk) and carries on from the record after.
Memory holds one chunk at a time, whatever the input size.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from ..errors import JobError
from .pipelines import LengthLimit, lift_length_limit
from .records import (
    BadRecord,
    Record,
    count_lines,
    doc_annotation,
    input_files,
    output_row,
    read_records,
)
from .sinks import JsonlSink, open_sink, sink_class

# Texts in; for each, its entities and its word count (`records.doc_annotation`).
TextAnnotator = Callable[[Sequence[str]], List[Tuple[List[Dict[str, Any]], int]]]

# Records per checkpoint. The Ray engine starts an actor pool per chunk, so
# its chunks are larger.
LOCAL_CHUNK = 1000
RAY_CHUNK = 20000


# ----------------------------------------------------------------- checkpoints


@dataclass
class Checkpoint:
    """How far a job got: records done and the byte lengths of its two files."""

    records: int = 0
    # Bytes of a JSONL OUTPUT, or the parts done of a Parquet/DocBin one.
    output_position: int = 0
    errors_bytes: int = 0
    entities: int = 0
    errors: int = 0
    complete: bool = False

    @classmethod
    def read(cls, path: Path) -> Checkpoint:
        try:
            data = json.loads(path.read_text("utf8"))
            if "output_bytes" in data:  # written before outputs other than JSONL
                data.setdefault("output_position", data["output_bytes"])
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (OSError, ValueError, TypeError) as err:
            raise JobError(f"Cannot read the checkpoint {path} ({err}).") from err

    def write(self, path: Path) -> None:
        """Replace the checkpoint atomically (a crash leaves the old or the new one)."""
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", encoding="utf8") as handle:
            json.dump(self.__dict__, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)


def job_paths(output: Path) -> Tuple[Path, Path]:
    """The errors file and the checkpoint beside OUTPUT, named from its whole
    name, so `out.jsonl` and `out.parquet` in one folder never share them."""
    return Path(f"{output}.errors.jsonl"), Path(f"{output}.progress.json")


def _adopt_earlier_job_files(output: Path, on_disk: bool) -> None:
    """Rename the checkpoint and errors file of a job started by an earlier
    version, which named them from OUTPUT without its suffix (`out.progress.json`
    for `out.jsonl`), so `--resume` finds them; only beside an OUTPUT that is
    there, and never over a newer checkpoint."""
    errors_path, progress_path = job_paths(output)
    if not output.suffix or not on_disk or progress_path.exists():
        return
    stem = output.with_suffix("")
    earlier_progress = Path(f"{stem}.progress.json")
    if not earlier_progress.exists():
        return
    earlier_errors = Path(f"{stem}.errors.jsonl")
    if earlier_errors.exists():
        os.replace(earlier_errors, errors_path)
    os.replace(earlier_progress, progress_path)


def _refuse_lost_output(output: Path, progress_path: Path, state: Checkpoint) -> None:
    """Raise when a checkpoint whose OUTPUT is gone says records were done; one
    of a run that stopped before its first record has nothing to lose."""
    if state.records == 0:
        return
    raise JobError(
        f"The checkpoint {progress_path} says {state.records} records were done, but its "
        f"output {output} does not exist (moved or deleted after that run?): restore "
        f"{output} and pass --resume, or pass --overwrite to start again."
    )


# ------------------------------------------------------------------------ job


@dataclass
class Summary:
    records: int
    words: int
    entities: int
    errors: int
    seconds: float
    resumed_from: int

    @property
    def words_per_s(self) -> float:
        return self.words / self.seconds if self.seconds > 0 else float("nan")


class LocalAnnotator:
    """The local engine: `nlp.pipe` in this process (or `n_process` of them)."""

    def __init__(self, nlp, batch_size: int = 256, n_process: int = 1) -> None:
        self.nlp = nlp
        self.batch_size = batch_size
        self.n_process = n_process
        self.length_limit = lift_length_limit(nlp)

    def docs(self, texts: Sequence[str]) -> List[Any]:
        return list(self.nlp.pipe(texts, batch_size=self.batch_size, n_process=self.n_process))

    def __call__(self, texts: Sequence[str]) -> List[Tuple[List[Dict[str, Any]], int]]:
        return [doc_annotation(doc) for doc in self.docs(texts)]


def _chunks(
    items: Iterator[Union[Record, BadRecord]], size: int
) -> Iterator[List[Union[Record, BadRecord]]]:
    while True:
        chunk = list(islice(items, size))
        if not chunk:
            return
        yield chunk


def run_job(
    nlp_or_annotator: Union[Any, TextAnnotator],
    input_path: Path,
    output: Path,
    *,
    text_key: str = "text",
    id_key: str = "id",
    keep: Sequence[str] = (),
    resume: bool = False,
    overwrite: bool = False,
    batch_size: int = 256,
    chunk_size: int = LOCAL_CHUNK,
    n_process: int = 1,
    progress: Optional[bool] = None,
) -> Summary:
    """Annotate INPUT into OUTPUT (.jsonl, .parquet, or a folder of DocBin
    shards; see `sinks`), checkpointing after each chunk.

    `nlp_or_annotator`: a pipeline (run here with `batch_size`/`n_process`)
    or an engine such as `ray_data.RayAnnotator`."""
    sink_kind = sink_class(output)  # an OUTPUT of no known kind fails here
    files = input_files(input_path)
    output_on_disk = sink_kind.on_disk(output)
    _adopt_earlier_job_files(output, output_on_disk)
    errors_path, progress_path = job_paths(output)
    if resume:
        if not progress_path.exists():
            raise JobError(
                f"--resume: no checkpoint {progress_path} beside {output}; run without "
                "--resume to start the job."
            )
        state = Checkpoint.read(progress_path)
        if not output_on_disk:
            _refuse_lost_output(output, progress_path, state)
    else:
        if not overwrite:
            if output_on_disk:
                raise JobError(
                    f"{output} already exists: pass --resume to complete it, or --overwrite "
                    "to start again."
                )
            if progress_path.exists():
                _refuse_lost_output(output, progress_path, Checkpoint.read(progress_path))
        state = Checkpoint()
        errors_path.unlink(missing_ok=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    resumed_from = state.records
    annotate = (
        nlp_or_annotator
        if not hasattr(nlp_or_annotator, "pipe")
        else LocalAnnotator(nlp_or_annotator, batch_size, n_process)
    )
    if sink_kind.needs_docs and not isinstance(annotate, LocalAnnotator):
        raise JobError(
            f"OUTPUT {output} is a DocBin folder, which needs the Docs: use the local "
            "engine, or write .jsonl/.parquet."
        )
    if not resume:  # before any output is touched: --resume can always complete
        state.write(progress_path)
    show = sys.stderr.isatty() if progress is None else progress
    bar = _progress_bar(files, state.records, show)
    start = time.perf_counter()
    words = 0
    # A text over a limit that stays goes to the errors file, not into the
    # pipeline, where it would stop the job.
    limit: Optional[LengthLimit] = getattr(annotate, "length_limit", None)
    records = read_records(
        files,
        text_key=text_key,
        id_key=id_key,
        keep=keep,
        label_files=len(files) > 1,
        too_long=limit.too_long if limit else None,
    )
    sink = open_sink(output, state.output_position)
    errors = JsonlSink(errors_path, state.errors_bytes)
    try:
        for chunk in _chunks(islice(records, state.records, None), chunk_size):
            good = [r for r in chunk if isinstance(r, Record)]
            texts = [r.text for r in good]
            docs = annotate.docs(texts) if sink.needs_docs else None  # type: ignore[union-attr]
            results = annotate(texts) if docs is None else [doc_annotation(d) for d in docs]
            rows = []
            for record, (ents, n_words) in zip(good, results):
                state.entities += len(ents)
                words += n_words
                rows.append(output_row(record, ents))
            bad_rows = [r.row() for r in chunk if isinstance(r, BadRecord)]
            sink.write(rows, docs)
            errors.write(bad_rows, None)
            state.records += len(chunk)
            state.errors += len(bad_rows)
            state.output_position = sink.position()
            state.errors_bytes = errors.position()
            state.write(progress_path)
            bar.update(len(chunk), words, time.perf_counter() - start)
        sink.finish()
    finally:
        sink.close()
        errors.close()
        bar.close()
    state.complete = True
    state.write(progress_path)
    if state.errors == 0:
        errors_path.unlink(missing_ok=True)
    return Summary(
        state.records,
        words,
        state.entities,
        state.errors,
        time.perf_counter() - start,
        resumed_from,
    )


class _progress_bar:
    """tqdm on stderr (records, words/s, ETA) when it is a terminal; silent otherwise."""

    def __init__(self, files: Sequence[Path], done: int, show: bool) -> None:
        self._bar = None
        if show:  # counting the lines (for the ETA) reads the input once more
            from tqdm import tqdm

            total = count_lines(files)
            self._bar = tqdm(total=total, initial=done, unit="rec", file=sys.stderr)

    def update(self, n: int, words: int, seconds: float) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(f"{words / max(seconds, 1e-9):,.0f} words/s", refresh=False)
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
