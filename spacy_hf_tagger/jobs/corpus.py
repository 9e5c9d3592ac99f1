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

How it ends when it cannot go on: a failing read or write (a full disk, a
folder that is not writable, an input file gone) raises `JobIOError`, one
line naming the file, the system's reason, and whether `--resume` completes
the job once that is fixed; SIGINT/SIGTERM (with `stop`, as the CLI passes)
stop at a checkpoint and raise `JobInterrupted` saying how to resume.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import time
from contextlib import contextmanager, nullcontext
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

from ..errors import JobError, JobInterrupted, JobIOError
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
from .stopping import StopRequests, signal_name

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


# ------------------------------------------------------------- ending early

# What to do about the commonest failures of a read or a write, by errno.
_FIXES = {
    errno.ENOSPC: "make room on that disk",
    errno.EDQUOT: "make room within the disk quota",
    errno.EACCES: "give this user access to it",
    errno.EPERM: "give this user access to it",
    errno.EROFS: "use a disk that is not read-only",
    errno.ENOENT: "put it back where it was",
    errno.ENOTDIR: "choose a path whose parents are folders",
    errno.EEXIST: "choose a path whose parents are folders",
    errno.EIO: "check the disk",
}


def _checkpointed(progress_path: Path) -> Optional[int]:
    """Records the checkpoint on disk says are done; None without one."""
    try:
        return Checkpoint.read(progress_path).records if progress_path.exists() else None
    except JobError:
        return None


def _how_to_go_on(progress_path: Path, fix: str) -> str:
    done = _checkpointed(progress_path)
    if done is None:
        return f"Nothing was annotated: {fix}, then run the same command again."
    return (
        f"{done:,} records are written and checkpointed: {fix}, then rerun the same "
        "command with --resume to complete the job."
    )


@contextmanager
def _io(action: str, path: Path, progress_path: Path) -> Iterator[None]:
    """Turn an OSError of reading or writing `path` into one line for the
    operator (`JobIOError`): what failed, where, why, and how to go on."""
    try:
        yield
    except OSError as err:
        code = errno.errorcode.get(err.errno, "") if err.errno else ""
        reason = (err.strerror or type(err).__name__) + (f" [{code}]" if code else "")
        where = err.filename or path
        fix = _FIXES.get(err.errno or 0, "fix that")
        raise JobIOError(
            f"{action} {where} failed: {reason}. {_how_to_go_on(progress_path, fix)}"
        ) from err


def _reading(
    records: Iterator[Union[Record, BadRecord]], input_path: Path, progress_path: Path
) -> Iterator[Union[Record, BadRecord]]:
    with _io("Reading", input_path, progress_path):
        yield from records


def _interrupted(signal_number: int, progress_path: Path) -> JobInterrupted:
    done = _checkpointed(progress_path)
    name = signal_name(signal_number)
    if done is None:
        return JobInterrupted(f"Stopped by {name} before the job began.", signal_number)
    return JobInterrupted(
        f"Stopped by {name} after {done:,} records, written and checkpointed in "
        f"{progress_path}: rerun the same command with --resume to complete the job.",
        signal_number,
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
    stop: Optional[StopRequests] = None,
) -> Summary:
    """Annotate INPUT into OUTPUT (.jsonl, .parquet, or a folder of DocBin
    shards; see `sinks`), checkpointing after each chunk.

    `nlp_or_annotator`: a pipeline (run here with `batch_size`/`n_process`)
    or an engine such as `ray_data.RayAnnotator`. `stop`: catch SIGINT and
    SIGTERM while the job runs and stop at a checkpoint (see `stopping`)."""
    sink_kind = sink_class(output)  # an OUTPUT of no known kind fails here
    files = input_files(input_path)
    output_on_disk = sink_kind.on_disk(output)
    _adopt_earlier_job_files(output, output_on_disk)
    _, progress_path = job_paths(output)
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
    with stop if stop is not None else nullcontext():
        try:
            return _annotate_records(
                annotate,
                _records_to_do(annotate, files, state, text_key, id_key, keep, progress_path),
                chunk_size,
                files=files,
                output=output,
                state=state,
                resume=resume,
                progress=progress,
                stop=stop,
            )
        except JobInterrupted as stopped:  # a second signal, wherever the job was
            raise _interrupted(stopped.signal_number, progress_path) from None


def _records_to_do(
    annotate: Any,
    files: Sequence[Path],
    state: Checkpoint,
    text_key: str,
    id_key: str,
    keep: Sequence[str],
    progress_path: Path,
) -> Iterator[Union[Record, BadRecord]]:
    """The records after the checkpoint's. A text over a limit that stays goes
    to the errors file, not into the pipeline, where it would stop the job."""
    limit: Optional[LengthLimit] = getattr(annotate, "length_limit", None)
    records = read_records(
        files,
        text_key=text_key,
        id_key=id_key,
        keep=keep,
        label_files=len(files) > 1,
        too_long=limit.too_long if limit else None,
    )
    where = files[0] if len(files) == 1 else files[0].parent
    return _reading(islice(records, state.records, None), where, progress_path)


def _annotate_records(
    annotate: Any,
    records: Iterator[Union[Record, BadRecord]],
    chunk_size: int,
    *,
    files: Sequence[Path],
    output: Path,
    state: Checkpoint,
    resume: bool,
    progress: Optional[bool],
    stop: Optional[StopRequests],
) -> Summary:
    """The job proper, from its first write: chunk after chunk, each written and
    then checkpointed."""
    errors_path, progress_path = job_paths(output)
    with _io("Writing", output, progress_path):
        if not resume:  # before any output is touched: --resume can always complete
            errors_path.unlink(missing_ok=True)
            output.parent.mkdir(parents=True, exist_ok=True)
            state.write(progress_path)
    resumed_from = state.records
    show = sys.stderr.isatty() if progress is None else progress
    with _io("Reading", files[0], progress_path):
        bar = _progress_bar(files, state.records, show)
    start = time.perf_counter()
    words = 0
    with _io("Writing", output, progress_path):
        sink = open_sink(output, state.output_position)
    with _io("Writing", errors_path, progress_path):
        errors = JsonlSink(errors_path, state.errors_bytes)
    failed = True
    try:
        for chunk in _chunks(records, chunk_size):
            if stop is not None and stop.signal_number is not None:
                raise _interrupted(stop.signal_number, progress_path)
            good = [r for r in chunk if isinstance(r, Record)]
            texts = [r.text for r in good]
            docs = annotate.docs(texts) if sink.needs_docs else None
            results = annotate(texts) if docs is None else [doc_annotation(d) for d in docs]
            rows = []
            for record, (ents, n_words) in zip(good, results):
                state.entities += len(ents)
                words += n_words
                rows.append(output_row(record, ents))
            bad_rows = [r.row() for r in chunk if isinstance(r, BadRecord)]
            with _io("Writing", output, progress_path):
                sink.write(rows, docs)
            with _io("Writing", errors_path, progress_path):
                errors.write(bad_rows, None)
            state.records += len(chunk)
            state.errors += len(bad_rows)
            state.output_position = sink.position()
            state.errors_bytes = errors.position()
            with _io("Writing", progress_path, progress_path):
                state.write(progress_path)
            bar.update(len(chunk), words, time.perf_counter() - start)
        with _io("Writing", output, progress_path):
            sink.finish()
        failed = False
    finally:
        bar.close()
        # After a failure, closing may fail again (a full disk refuses the
        # buffered rest too): the first failure is the one to report.
        for handle, path in ((sink, output), (errors, errors_path)):
            try:
                with _io("Writing", path, progress_path):
                    handle.close()
            except JobIOError:
                if not failed:
                    raise
    state.complete = True
    with _io("Writing", progress_path, progress_path):
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
