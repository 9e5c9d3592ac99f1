"""`python -m spacy_hf_tagger annotate PIPELINE INPUT OUTPUT`: annotate a corpus
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
    Annotated,
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import typer
from wasabi import msg

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

FACTORY = "hf_token_tagger"

# Texts in; for each, its entities and its word count (`records.doc_annotation`).
TextAnnotator = Callable[[Sequence[str]], List[Tuple[List[Dict[str, Any]], int]]]

# Records per checkpoint. The Ray engine starts an actor pool per chunk, so
# its chunks are larger.
LOCAL_CHUNK = 1000
RAY_CHUNK = 20000


class JobError(ValueError):
    """A problem with the job's arguments or its files, said for a person."""


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


# ------------------------------------------------------------------- pipeline


def load_pipeline(
    source: str,
    lang: str = "en",
    overrides: Optional[Dict[str, Any]] = None,
    device: Optional[str] = None,
    dtype: Optional[str] = None,
):
    """`spacy.load` for an installed pipeline or a pipeline folder; otherwise a
    blank `lang` pipeline with our component on `source` (a model folder or a
    hub id). `overrides` are spaCy config overrides ("components.x.y": value);
    `device`/`dtype` set those of every hf_token_tagger."""
    import spacy

    overrides = dict(overrides or {})
    path = Path(source).expanduser()
    if (path / "config.cfg").is_file() or (not path.exists() and spacy.util.is_package(source)):
        config = spacy.util.load_config(
            path / "config.cfg"
            if path.exists()
            else spacy.util.get_package_path(source) / "config.cfg"
        )
        for name, block in config["components"].items():
            if block.get("factory") == FACTORY:
                if device is not None:
                    overrides[f"components.{name}.device"] = device
                if dtype is not None:
                    overrides[f"components.{name}.dtype"] = dtype
        return spacy.load(source, config=overrides)
    component: Dict[str, Any] = {"model": source}
    if device is not None:
        component["device"] = device
    if dtype is not None:
        component["dtype"] = dtype
    prefix = f"components.{FACTORY}."
    for key, value in overrides.items():
        if not key.startswith(prefix) or "." in key[len(prefix) :]:
            raise JobError(
                f"Override {key!r} does not apply to a blank pipeline with {FACTORY} on a "
                f"model: use {prefix}SETTING (e.g. {prefix}threshold 0.5)."
            )
        component[key[len(prefix) :]] = value
    nlp = spacy.blank(lang)
    nlp.add_pipe(FACTORY, config=component)
    return nlp


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
    records = read_records(
        files, text_key=text_key, id_key=id_key, keep=keep, label_files=len(files) > 1
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


# ------------------------------------------------------------------------ CLI

app = typer.Typer(add_completion=False, help="spacy-hf-tagger command-line tools.")


@app.callback()
def _main() -> None:
    """spacy-hf-tagger command-line tools."""


@app.command(
    "annotate",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def annotate_cli(
    ctx: typer.Context,
    pipeline: Annotated[
        str, typer.Argument(help="pipeline folder, installed pipeline, or HF model folder / id")
    ],
    input_path: Annotated[
        Path,
        typer.Argument(help=".txt (one text per line), .jsonl, .parquet, .spacy, or a folder"),
    ],
    output: Annotated[
        Path,
        typer.Argument(help=".jsonl or .parquet (one row per record), or a folder: DocBin shards"),
    ],
    text_key: Annotated[str, typer.Option("--text-key", help="JSONL key of the text")] = "text",
    id_key: Annotated[
        str, typer.Option("--id-key", help="JSONL key of the id (else the line number)")
    ] = "id",
    keep: Annotated[
        str, typer.Option("--keep", help="comma-separated input columns to copy to each row")
    ] = "",
    lang: Annotated[
        str, typer.Option("--lang", help="language of the blank pipeline for a model")
    ] = "en",
    resume: Annotated[bool, typer.Option("--resume", help="complete an interrupted job")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="start again over an existing OUTPUT")
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", help="docs per nlp.pipe batch")
    ] = 256,
    n_process: Annotated[int, typer.Option("--n-process", "-n", help="processes")] = 1,
    device: Annotated[
        Optional[str], typer.Option("--device", help="hf_token_tagger device")
    ] = None,
    dtype: Annotated[Optional[str], typer.Option("--dtype", help="hf_token_tagger dtype")] = None,
    engine: Annotated[
        str,
        typer.Option("--engine", help="local, or ray (Ray Data; RAY_ADDRESS or a local cluster)"),
    ] = "local",
    workers: Annotated[
        int, typer.Option("--workers", help="--engine ray: actors, each loading the pipeline")
    ] = 1,
    gpus_per_worker: Annotated[
        float, typer.Option("--gpus-per-worker", help="--engine ray: GPUs per actor")
    ] = 0,
    chunk_size: Annotated[
        Optional[int],
        typer.Option(
            "--chunk-size",
            help=f"records per checkpoint (default {LOCAL_CHUNK}; {RAY_CHUNK} with --engine ray)",
        ),
    ] = None,
) -> None:
    """Annotate a corpus; extra --section.key value arguments override the
    pipeline's config, as in spaCy's CLI."""
    from spacy.cli._util import parse_config_overrides

    try:
        overrides = parse_config_overrides(ctx.args)
        annotator: Any
        if engine == "ray":
            from .ray_data import ActorPool, RayAnnotator

            if n_process != 1:
                raise JobError(
                    "--n-process is for the local engine; with --engine ray use --workers."
                )

            load_pipeline(pipeline, lang, overrides, device=device, dtype=dtype)  # fail early
            annotator = RayAnnotator(
                ActorPool(
                    pipeline, workers, gpus_per_worker, batch_size, lang, overrides, device, dtype
                )
            )
        elif engine == "local":
            annotator = load_pipeline(pipeline, lang, overrides, device=device, dtype=dtype)
        else:
            raise JobError(f"--engine {engine!r}: use local or ray.")
        summary = run_job(
            annotator,
            input_path,
            output,
            text_key=text_key,
            id_key=id_key,
            keep=[k for k in keep.split(",") if k],
            resume=resume,
            overwrite=overwrite,
            batch_size=batch_size,
            n_process=n_process,
            chunk_size=chunk_size or (RAY_CHUNK if engine == "ray" else LOCAL_CHUNK),
        )
    except ValueError as err:  # JobError, or a problem reading INPUT
        msg.fail(str(err), exits=1)
    resumed = f", resumed after record {summary.resumed_from}" if summary.resumed_from else ""
    errors_path, _ = job_paths(output)
    where = f" (see {errors_path})" if summary.errors else ""
    msg.good(
        f"{summary.records} records, {summary.words_per_s:,.0f} words/s, "
        f"{summary.entities} entities, {summary.errors} errors{where} -> {output}{resumed}"
    )


def main(argv: Optional[Iterable[str]] = None) -> None:
    """Entry point of `python -m spacy_hf_tagger` and the `spacy-hf-tagger` script."""
    app(args=list(argv) if argv is not None else None, prog_name="spacy-hf-tagger")
