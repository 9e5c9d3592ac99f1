"""The command line: one typer app (`python -m spacy_hf_tagger` or `spacy-hf-tagger`).

    annotate         annotate a corpus (JSONL, Parquet, DocBin), resumable
    convert          CoNLL/IOB or CoNLL-U to .spacy training data
    precision-check  speed and agreement with float32 of reduced precision
    calibrate        fit the temperature of entity scores on a dev set
    serve            serve a pipeline over HTTP on Ray Serve, replicas batching requests

Each command parses its arguments and prints; the work is done by the module
it names (`jobs.corpus`, `training.convert`, `jobs.precision_check`,
`jobs.calibrate`, `serve`). Modules
load when their command runs, so `convert` never imports transformers.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, Iterable, List, NoReturn, Optional

import typer
from wasabi import msg

from .errors import JobError, JobInterrupted
from .jobs.corpus import LOCAL_CHUNK, RAY_CHUNK

app = typer.Typer(add_completion=False, help="spacy-hf-tagger command-line tools.")

# Options several commands take, alike.
LangOption = Annotated[
    str, typer.Option("--lang", help="language of the blank pipeline for a model")
]
DeviceOption = Annotated[Optional[str], typer.Option("--device", help="hf_token_tagger device")]
DtypeOption = Annotated[Optional[str], typer.Option("--dtype", help="hf_token_tagger dtype")]


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
    lang: LangOption = "en",
    resume: Annotated[bool, typer.Option("--resume", help="complete an interrupted job")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="start again over an existing OUTPUT")
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", help="docs per nlp.pipe batch")
    ] = 256,
    n_process: Annotated[int, typer.Option("--n-process", "-n", help="processes")] = 1,
    device: DeviceOption = None,
    dtype: DtypeOption = None,
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
    verbose: Annotated[
        bool, typer.Option("--verbose", help="on failure, show the traceback too")
    ] = False,
) -> None:
    """Annotate a corpus; extra --section.key value arguments override the
    pipeline's config, as in spaCy's CLI.

    A failure ends in one line saying what failed and how to go on (the
    traceback with --verbose); SIGINT/SIGTERM stop at a checkpoint, and
    --resume completes the job."""
    from spacy.cli._util import parse_config_overrides

    from .jobs.corpus import job_paths, run_job
    from .jobs.pipelines import lift_length_limit, load_pipeline
    from .jobs.stopping import StopRequests

    try:
        overrides = parse_config_overrides(ctx.args)
        annotator: Any
        if engine == "ray":
            from .jobs.ray_data import ActorPool, RayAnnotator

            if n_process != 1:
                raise JobError(
                    "--n-process is for the local engine; with --engine ray use --workers."
                )

            # Loaded here too: fail early, and learn the length limit the actors keep.
            probe = load_pipeline(pipeline, lang, overrides, device=device, dtype=dtype)
            annotator = RayAnnotator(
                ActorPool(
                    pipeline, workers, gpus_per_worker, batch_size, lang, overrides, device, dtype
                ),
                lift_length_limit(probe),
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
            # Once stopped, a repeated Ctrl-C while torch's exit handlers run
            # would print a traceback: the command ignores it.
            stop=StopRequests(ignore_after_stop=True),
        )
    # JobError (JobIOError included), or a problem with INPUT or the pipeline.
    except (ValueError, OSError) as err:
        if verbose:
            raise
        _fail(str(err) if isinstance(err, ValueError) else f"annotate failed: {err}", 1)
    except JobInterrupted as err:
        if verbose:
            raise
        _fail(str(err), 128 + err.signal_number)
    except KeyboardInterrupt:  # before the job began: the pipeline was loading
        if verbose:
            raise
        _fail("Stopped by SIGINT before the job began.", 130)
    resumed = f", resumed after record {summary.resumed_from}" if summary.resumed_from else ""
    errors_path, _ = job_paths(output)
    where = f" (see {errors_path})" if summary.errors else ""
    _say_done(
        f"{summary.records} records, {summary.words_per_s:,.0f} words/s, "
        f"{summary.entities} entities, {summary.errors} errors{where} -> {output}{resumed}"
    )


def _fail(message: str, status: int) -> NoReturn:
    """A failure as one line on stderr, unwrapped, so a log or a scheduler
    keeps it whole; then exit with `status`."""
    print(f"✘ {' '.join(message.split())}", file=sys.stderr, flush=True)
    raise typer.Exit(status)


def _say_done(line: str) -> None:
    """The job's summary on stdout; on stderr when stdout is a closed pipe
    (`annotate ... | head`): the job is done and its output on disk all the same."""
    try:
        msg.good(line)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"Done (stdout was closed): {line}", file=sys.stderr)


@app.command("convert")
def convert_cli(
    file_format: Annotated[str, typer.Argument(metavar="FORMAT", help="iob or conllu")],
    input_path: Annotated[Path, typer.Argument(help="the CoNLL/IOB or CoNLL-U file")],
    output: Annotated[Path, typer.Argument(help="the .spacy file to write")],
    limit: Annotated[int, typer.Option("--limit", help="keep the first N sentences")] = 0,
) -> None:
    """Convert CoNLL/IOB or CoNLL-U to .spacy training data, one Doc per sentence."""
    from .training.convert import FORMATS, convert_file

    if file_format not in FORMATS:
        msg.fail(f"FORMAT {file_format!r} is not known: use one of {', '.join(FORMATS)}.", exits=1)
    n = convert_file(file_format, input_path, output, limit)
    print(f"{input_path} -> {output}: {n} sentences")


@app.command("precision-check")
def precision_check_cli(
    source: Annotated[
        str, typer.Argument(help="pipeline folder, installed pipeline, or HF model folder / id")
    ],
    texts_path: Annotated[
        Path, typer.Argument(metavar="TEXTS", help="a text file, one text per line")
    ],
    dtype: Annotated[
        Optional[List[str]],
        typer.Option(
            "--dtype",
            help='dtype to compare with float32 (repeatable; default: "auto" and "int8")',
        ),
    ] = None,
    limit: Annotated[
        Optional[int], typer.Option("--limit", help="use only the first N texts")
    ] = None,
    lang: LangOption = "en",
) -> None:
    """Speed and agreement with float32 of reduced-precision runs on your texts."""
    from .jobs.precision_check import compare, native_bf16, read_texts, report

    texts = read_texts(texts_path, limit)
    if not texts:
        msg.fail(f"{texts_path} has no non-empty lines.", exits=1)
    bf16 = native_bf16()
    print(f"CPU native bf16: {', '.join(bf16) if bf16 else 'no'}; {len(texts)} texts")
    try:
        reference, results = compare(source, texts, dtype or ["auto", "int8"], lang)
    except JobError as err:
        msg.fail(str(err), exits=1)
    for line in report(reference, results):
        print(line)


@app.command("calibrate")
def calibrate_cli(
    pipeline: Annotated[
        str, typer.Argument(help="pipeline folder, installed pipeline, or HF model folder / id")
    ],
    dev_path: Annotated[
        Path, typer.Argument(metavar="DEV", help="a .spacy file with gold entities to fit on")
    ],
    output: Annotated[
        Path, typer.Argument(metavar="OUTPUT_DIR", help="where to write the calibrated pipeline")
    ],
    per_label: Annotated[
        bool,
        typer.Option("--per-label", help='one temperature per entity type and "O", not one'),
    ] = False,
    eval_path: Annotated[
        Optional[Path],
        typer.Option("--eval", help="a .spacy file with gold entities: its ECE before and after"),
    ] = None,
    plot: Annotated[
        Optional[Path], typer.Option("--plot", help="write the reliability diagram (PNG) here")
    ] = None,
    component: Annotated[
        Optional[str],
        typer.Option("--component", help="which hf_token_tagger (when there are several)"),
    ] = None,
    objective: Annotated[
        str,
        typer.Option(
            "--objective",
            help="entity: fit entity scores to their correctness; token: token NLL",
        ),
    ] = "entity",
    lang: LangOption = "en",
) -> None:
    """Fit the temperature of the entity scores on DEV, write the pipeline with it
    to OUTPUT_DIR, and print the entity-level ECE (10 bins) before and after."""
    from .jobs.calibrate import calibrate, report_lines

    try:
        result = calibrate(
            pipeline,
            dev_path,
            output,
            per_label=per_label,
            objective=objective,
            component=component,
            eval_path=eval_path,
            plot=plot,
            lang=lang,
        )
    except (ValueError, OSError) as err:
        _fail(str(err) if isinstance(err, ValueError) else f"calibrate failed: {err}", 1)
    for line in report_lines(result):
        print(line)


@app.command(
    "serve",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def serve_cli(
    ctx: typer.Context,
    pipeline: Annotated[
        str,
        typer.Argument(
            help="pipeline folder (readable on every node), installed pipeline, "
            "or HF model folder / id"
        ),
    ],
    replicas: Annotated[int, typer.Option("--replicas", help="replicas, each loading it")] = 1,
    host: Annotated[
        str, typer.Option("--host", help="address to listen on (0.0.0.0: every interface)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="HTTP port")] = 8000,
    max_batch_size: Annotated[
        int, typer.Option("--max-batch-size", help="texts per nlp.pipe batch in a replica")
    ] = 32,
    batch_wait_ms: Annotated[
        float,
        typer.Option("--batch-wait-ms", help="how long a batch waits for more texts"),
    ] = 5.0,
    device: DeviceOption = None,
    dtype: DtypeOption = None,
    num_cpus: Annotated[
        float, typer.Option("--num-cpus", help="CPUs per replica (torch threads)")
    ] = 1.0,
    num_gpus: Annotated[float, typer.Option("--num-gpus", help="GPUs per replica")] = 0.0,
    max_ongoing_requests: Annotated[
        int, typer.Option("--max-ongoing-requests", help="requests a replica holds at once")
    ] = 64,
    max_queued_requests: Annotated[
        int,
        typer.Option(
            "--max-queued-requests",
            help="requests queued (per replica behind HAProxy, per proxy behind "
            "Serve's proxy) before a 503",
        ),
    ] = 256,
    request_timeout_s: Annotated[
        float, typer.Option("--request-timeout-s", help="end-to-end limit per request (408)")
    ] = 60.0,
    max_text_chars: Annotated[
        int, typer.Option("--max-text-chars", help="longest text a request may hold (413)")
    ] = 100_000,
    max_texts: Annotated[
        int, typer.Option("--max-texts", help="most texts per request (413)")
    ] = 256,
    max_request_bytes: Annotated[
        int, typer.Option("--max-request-bytes", help="largest request body (413)")
    ] = 4_000_000,
    autoscaling: Annotated[
        Optional[str],
        typer.Option(
            "--autoscaling",
            help='Serve autoscaling_config as JSON, e.g. \'{"min_replicas": 1, '
            '"max_replicas": 8}\' (replaces --replicas)',
        ),
    ] = None,
    haproxy: Annotated[
        Optional[bool],
        typer.Option(
            "--haproxy/--no-haproxy",
            help="HTTP through Ray's HAProxy straight to the replicas, or through "
            "Serve's Python proxy (default: HAProxy where Ray has it; a cluster "
            "in RAY_ADDRESS runs the ingress `ray start` gave it)",
        ),
    ] = None,
    lang: LangOption = "en",
) -> None:
    """Serve the pipeline over HTTP on Ray Serve (the cluster in RAY_ADDRESS, else a
    local one) until SIGINT/SIGTERM: POST {"text": ...} or {"texts": [...]} to /.
    Extra --section.key value arguments override the pipeline's config."""
    import json

    from spacy.cli._util import parse_config_overrides

    try:
        from .serve import ingress
        from .serve.bodies import Limits

        # Written before Ray Serve is imported, for it here and in a cluster
        # started here; a cluster in RAY_ADDRESS runs what it was started
        # with (serve_until_stopped checks an explicit choice against it).
        if haproxy is False:
            ingress.use_serves_proxy(os.environ)
        elif not os.environ.get("RAY_ADDRESS"):
            missing = ingress.haproxy_unavailable()
            if missing and haproxy:
                _fail(f"serve --haproxy: {missing}; --no-haproxy uses Serve's proxy.", 1)
            if missing:
                print(f"Serve's HTTP proxy in front of the replicas: {missing}.")
            else:
                ingress.use_haproxy(os.environ)
                for line in ingress.move_taken_ports(os.environ):
                    print(line)
        from .serve.deployment import build_app
        from .serve.runner import serve_until_stopped
    except ImportError as err:
        _fail(str(err), 1)
    try:
        scaling = json.loads(autoscaling) if autoscaling else None
        if scaling is not None and not isinstance(scaling, dict):
            raise ValueError("--autoscaling must be a JSON object.")
        app_ = build_app(
            pipeline,
            replicas=replicas,
            lang=lang,
            overrides=parse_config_overrides(ctx.args),
            device=device,
            dtype=dtype,
            limits=Limits(max_text_chars, max_texts, max_request_bytes),
            max_batch_size=max_batch_size,
            batch_wait_ms=batch_wait_ms,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            max_ongoing_requests=max_ongoing_requests,
            max_queued_requests=max_queued_requests,
            autoscaling=scaling,
        )
        number = serve_until_stopped(
            app_, host=host, port=port, request_timeout_s=request_timeout_s, haproxy=haproxy
        )
    except (ValueError, OSError) as err:  # json.JSONDecodeError is a ValueError
        _fail(f"serve: {err}", 1)
    except RuntimeError as err:  # a deployment that failed to start (Serve's message)
        _fail(f"serve: the deployment did not start: {type(err).__name__}: {err}", 1)
    if number:
        raise typer.Exit(128 + number)


def main(argv: Optional[Iterable[str]] = None) -> None:
    """Entry point of `python -m spacy_hf_tagger` and the `spacy-hf-tagger` script."""
    app(args=list(argv) if argv is not None else None, prog_name="spacy-hf-tagger")
