"""Resident memory over a long stream: ours against the bare model, each in a process of its own.

Writes `--words` words (default 1,000,000) of CoNLL-2003 test sentences,
natural rendering, repeated, one JSONL record per sentence (`--unit
documents`: per document, sentences joined by "\\n"), split into `--shards`
files, and runs each system in a fresh process (multiprocessing, "spawn"),
one after the other:

* ``bare``: the model's tokenizer + ``AutoModelForTokenClassification``
  forward (``speed.Floor``: the windows our component would see, padded
  batches of ours' windows per forward call, ``torch.inference_mode``, in the
  precision ours resolves `--dtype` to), records read from the shards in
  chunks of the job's size and fed in groups of ours' pipe size; no spaCy;
* ``ours``: ``run_job`` (the local engine, ``LocalAnnotator``) with the
  default pipeline on `--model` (``load_pipeline``), the shards' folder in,
  one `--output` file (or folder of DocBin shards) out;
* ``pipe``: ``nlp.pipe`` over the same texts (entities read, docs dropped);
* ``threads``: `--threads` threads calling ``nlp(text)`` on one pipeline.

A sampler thread in each process reads its RSS (``/proc/self/statm``) every
`--interval` seconds. Printed per system: RSS once imported, with the model
loaded (one text annotated), after warm-up (the first `--warmup` of the
stream, default 10%), the maximum after warm-up (the kernel's high-water
mark, reset at the end of warm-up, else the sampler's maximum), at
25/50/75/100% of the stream, and the growth from 25% to 100% (a leak shows as
growth); then ours/bare of the maxima after warm-up (bar <= 1.2x) and each
system's growth beyond the bare model's against `--growth-bar` (the bare
model's RSS grows too, over a million words: the runtime's). `--trim-marks`
reads, at each mark, the RSS after malloc_trim as well (memory in use, not
kept free for reuse) and takes the growth from those; the trims lower the
later peaks, so the ratio is then printed, not judged.

    python benchmarks/stream_memory.py                      # 1 M words, bare, ours, threads
    python benchmarks/stream_memory.py --only bare,ours --trim-marks
    python benchmarks/stream_memory.py --words 30000 --only bare,ours,pipe,threads
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import queue
import re
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

from accuracy import DEFAULT_DATA, DEFAULT_MODEL, ROOT, quiet_transformers, versions_line
from conll import UNITS, count_words, read_conll, render_texts

SYSTEMS = ("bare", "ours", "pipe", "threads")
BAR_RATIO = 1.2
MARKS = (0.25, 0.5, 0.75, 1.0)
# Passes over the test set after which RSS levels off, bare model and ours
# alike (measured: ~1.5 passes, sentence records).
WARM_PASSES = 2
MIB = 1024 * 1024
TAGGER = "hf_token_tagger"


# --------------------------------------------------------------------------- memory


def rss_mib() -> float:
    """This process's resident memory now."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MIB
    except OSError:
        import psutil  # not on Linux: psutil, where installed

        return psutil.Process().memory_info().rss / MIB


def status_mib(field: str) -> Optional[float]:
    """A memory field of /proc/self/status (in kB there) in MiB, or None."""
    try:
        with open("/proc/self/status") as status:
            found = re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.M)
    except OSError:
        return None
    return int(found.group(1)) / 1024 if found else None


def rss_file_mib() -> Optional[float]:
    """The file-backed part of this process's RSS now (RssFile): mapped files'
    pages, such as model weights mapped from model.safetensors, which the
    kernel can drop under memory pressure and read again."""
    return status_mib("RssFile")


def reset_peak() -> bool:
    """Reset the kernel's high-water mark of this process's RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def peak_mib() -> Optional[float]:
    """The kernel's high-water mark of this process's RSS (VmHWM)."""
    return status_mib("VmHWM")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


class Meter:
    """Progress through the stream (records done) and RSS at its marks, with a
    sampler thread that keeps the maximum RSS after warm-up."""

    def __init__(self, total: int, warmup: float, interval: float, label: str) -> None:
        self.total = total
        self.warmup = warmup
        self.interval = interval
        self.label = label
        self.done = 0
        self.warm_rss: Optional[float] = None
        self.peak_reset = False
        self.sampled_max = 0.0
        self.at: Dict[float, float] = {}
        # With `trim` (--trim-marks): the RSS at each mark after it handed the
        # allocator's free pages back (memory in use).
        self.trim: Optional[Callable[[], bool]] = None
        self.in_use: Dict[float, float] = {}
        self.file_backed: Optional[float] = None
        self.trace: List[tuple] = []
        self.keep_trace = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.start = 0.0
        self.seconds = 0.0

    def __enter__(self) -> Meter:
        self.start = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            rss = rss_mib()
            if self.warm_rss is not None:
                self.sampled_max = max(self.sampled_max, rss)
            if self.keep_trace:
                self.trace.append((time.perf_counter() - self.start, self.done, rss))

    def advance(self, n: int) -> None:
        with self._lock:
            self.done += n
            fraction = self.done / self.total
            if self.warm_rss is None and fraction >= self.warmup:
                self.warm_rss = rss_mib()
                self.sampled_max = self.warm_rss
                self.peak_reset = reset_peak()
            for mark in MARKS:
                if mark not in self.at and fraction >= mark:
                    self.at[mark] = rss = rss_mib()
                    self.file_backed = rss_file_mib()
                    if self.trim is not None and self.trim():
                        self.in_use[mark] = rss_mib()
                    print(
                        f"  [{self.label}] {mark:4.0%} mark: {self.done:,} records "
                        f"({fraction:.0%}), {time.perf_counter() - self.start:.0f} s, "
                        f"RSS {rss:,.0f} MiB",
                        flush=True,
                    )

    def result(self) -> Dict[str, Any]:
        peak = peak_mib() if self.peak_reset else None
        return {
            "warm": self.warm_rss,
            "max": max(self.sampled_max, peak or 0.0),
            "max_from": "kernel high-water mark" if peak is not None else "sampler",
            "at": dict(self.at),
            "in_use": dict(self.in_use),
            "file_backed": self.file_backed,
            "seconds": self.seconds,
            "records": self.done,
            "trace": self.trace,
        }


# --------------------------------------------------------------------------- stream


def write_stream(
    docs, unit: str, words: int, folder: Path, shards: int
) -> tuple[List[Path], int, int]:
    """`words` CoNLL words of natural text (the test set, repeated), one JSONL
    record per sentence or document, split into `shards` files of about equal
    records. Returns the files, the records and the words written."""
    rendered = render_texts(docs, "natural", unit)
    texts: List[tuple[str, int]] = []
    total = 0
    while total < words:
        for r in rendered:
            texts.append((r.text, r.n_words))
            total += r.n_words
            if total >= words:
                break
    folder.mkdir(parents=True, exist_ok=True)
    per_shard = -(-len(texts) // shards)
    paths = []
    for s in range(shards):
        path = folder / f"part-{s:03d}.jsonl"
        part = texts[s * per_shard : (s + 1) * per_shard]
        with path.open("w", encoding="utf8") as out:
            for i, (text, _) in enumerate(part, start=s * per_shard):
                out.write(json.dumps({"id": i, "text": text}) + "\n")
        paths.append(path)
    return paths, len(texts), total


def read_texts(paths: Sequence[str]) -> Iterator[str]:
    for path in paths:
        with open(path, encoding="utf8") as lines:
            for line in lines:
                if line.strip():
                    yield json.loads(line)["text"]


def chunks(texts: Iterator[str], size: int) -> Iterator[List[str]]:
    chunk: List[str] = []
    for text in texts:
        chunk.append(text)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def pipe_groups(texts: List[str], job: Dict[str, Any]) -> Iterator[List[str]]:
    """`texts` in the groups ours' `pipe` annotates together (without overlap)."""
    from spacy_hf_tagger.model.overlap import filled_chunks  # no spaCy, no torch

    return filled_chunks(
        texts, job["pipe_fill"], job["pipe_max_docs"], job["pipe_chunk_chars"], len
    )


# --------------------------------------------------------------------------- children


def imported(*modules: str) -> float:
    """RSS once `modules` are imported (the model classes included), before any model."""
    for name in modules:
        importlib.import_module(name)
    from transformers import AutoModelForTokenClassification, AutoTokenizer  # noqa: F401

    return rss_mib()


def run_system(system: str, job: Dict[str, Any]) -> Dict[str, Any]:
    """One system over the stream, in this (fresh) process."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    quiet_transformers()
    meter = Meter(job["records"], job["warmup"], job["interval"], system)
    meter.keep_trace = job["trace"]
    if job["trim_marks"]:
        from spacy_hf_tagger.model.residency import release_free_memory

        meter.trim = release_free_memory
    first = next(read_texts(job["shards"]))
    note = ""
    if system == "bare":
        from speed import Floor

        imports = imported("torch", "transformers")
        floor = Floor(
            job["model"],
            job["max_length"],
            job["stride"],
            (job["batch_size"], job["batch_subwords"]),
            job["split_lines"],
            runs_in=job["runs_in"],
        )
        floor.forward(floor.prepare([first]))
        loaded = rss_mib()
        windows = 0
        with meter:
            for chunk in chunks(read_texts(job["shards"]), job["chunk_size"]):
                for group in pipe_groups(chunk, job):
                    floor.forward(floor.prepare(group))
                    windows += floor.n_windows
                    meter.advance(len(group))
        note = f"{windows:,} windows, {floor.runs_in}; spacy imported: {'spacy' in sys.modules}"
    else:
        from spacy_hf_tagger.jobs.pipelines import load_pipeline

        imports = imported("torch", "transformers", "spacy", "spacy_hf_tagger.component")
        nlp = load_pipeline(job["model"], dtype=job["dtype"])
        nlp(first)
        loaded = rss_mib()
        if system == "ours":
            note = run_ours(nlp, job, meter)
        elif system == "pipe":
            with meter:
                ents = 0
                for doc in nlp.pipe(read_texts(job["shards"]), batch_size=job["pipe_fill"]):
                    ents += len(doc.ents)
                    meter.advance(1)
            note = f"{ents:,} entities"
        else:
            note = run_threads(nlp, job, meter)
    return {"system": system, "imports": imports, "loaded": loaded, "note": note, **meter.result()}


def run_ours(nlp, job: Dict[str, Any], meter: Meter) -> str:
    import inspect

    from spacy_hf_tagger.jobs.corpus import LocalAnnotator, run_job

    class CountingAnnotator(LocalAnnotator):
        """The local engine run_job makes from a pipeline, counting records as
        its `nlp.pipe` yields them (LocalAnnotator.docs, one doc at a time)."""

        def docs(self, texts: Sequence[str]) -> List[Any]:
            out = []
            for doc in self.nlp.pipe(texts, batch_size=self.batch_size, n_process=self.n_process):
                out.append(doc)
                meter.advance(1)
            return out

    batch_size = inspect.signature(run_job).parameters["batch_size"].default
    annotator = CountingAnnotator(nlp, batch_size=batch_size)
    suffix = {"jsonl": ".jsonl", "parquet": ".parquet", "docbin": ""}[job["output"]]
    output = Path(job["work"]) / f"out-ours{suffix}"
    with meter:
        summary = run_job(
            annotator,
            Path(job["shards"][0]).parent,
            output,
            chunk_size=job["chunk_size"],
            progress=False,
        )
    return (
        f"run_job, {len(job['shards'])} shards in, {job['output']} out; "
        f"{summary.records:,} records, {summary.entities:,} entities, {summary.errors} errors"
    )


def run_threads(nlp, job: Dict[str, Any], meter: Meter) -> str:
    """`job["threads"]` threads calling nlp(text) on one pipeline, texts from a
    bounded queue a reader thread fills."""
    n = job["threads"]
    texts: queue.Queue[Optional[str]] = queue.Queue(maxsize=4 * job["pipe_fill"])
    ents = [0] * n
    failures: List[BaseException] = []

    def reader() -> None:
        for text in read_texts(job["shards"]):
            texts.put(text)
        for _ in range(n):
            texts.put(None)

    def worker(k: int) -> None:
        try:
            while (text := texts.get()) is not None:
                ents[k] += len(nlp(text).ents)
                meter.advance(1)
        except BaseException as error:  # reported by the parent
            failures.append(error)
            while texts.get() is not None:  # let the reader finish
                pass

    with meter:
        workers = [threading.Thread(target=reader)]
        workers += [threading.Thread(target=worker, args=(k,)) for k in range(n)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    if failures:
        raise failures[0]
    return f"{n} threads calling nlp(text), {sum(ents):,} entities"


# --------------------------------------------------------------------------- report


def probe(model: str, dtype: str) -> Dict[str, Any]:
    """What ours resolves on this machine: the precision, windows per forward
    call, window length and overlap, and whether the model sees lines alone."""
    from spacy_hf_tagger import component
    from spacy_hf_tagger.jobs.corpus import LOCAL_CHUNK
    from spacy_hf_tagger.jobs.pipelines import load_pipeline

    nlp = load_pipeline(model, dtype=dtype)
    pipe = nlp.get_pipe(TAGGER)
    loaded = pipe._ensure_loaded()
    found = {
        "runs_in": pipe.precision.runs_in,
        "reason": pipe.precision.reason,
        "batch_size": pipe._batch_shape.windows,
        "batch_subwords": pipe._batch_shape.subwords,
        # How `pipe` chunks docs without overlap (component.pipe).
        "pipe_chunk_chars": component.PIPE_CHUNK_CALLS
        * pipe._batch_shape.call_chars(loaded.content_length),
        "pipe_max_docs": component.PIPE_MAX_DOCS,
        "max_length": loaded.content_length + 2,
        "stride": loaded.stride,
        "split_lines": pipe.settings.context != "document",
        "chunk_size": LOCAL_CHUNK,
    }
    del nlp, pipe, loaded
    gc.collect()
    return found


def fmt(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def report(results: Dict[str, Dict[str, Any]], words: int, growth_bar: float) -> List[str]:
    """The table, the ratio and the growth verdicts; returns FAIL lines."""
    marks = [f"{m:.0%}" for m in MARKS]
    head = ["imports", "loaded", "warm-up", "max>warm", *marks, "growth", "seconds", "words/s"]
    print(f"\nRSS in MiB; growth: 100% - 25%\n{'system':<8} " + " ".join(f"{h:>9}" for h in head))
    fails: List[str] = []
    for system, r in results.items():
        at = r["at"]
        growth = at[1.0] - at[0.25] if 1.0 in at and 0.25 in at else None
        r["growth"] = growth
        cells = [
            r["imports"],
            r["loaded"],
            r["warm"],
            r["max"],
            *(at.get(m) for m in MARKS),
            growth,
        ]
        row = " ".join(f"{fmt(c):>9}" for c in cells)
        speed = words / r["seconds"] if r["seconds"] else float("nan")
        print(f"{system:<8} {row} {r['seconds']:>9.1f} {speed:>9,.0f}  {r['note']}")
    print("max>warm: " + ", ".join(f"{s} {r['max_from']}" for s, r in results.items()))
    if "ours" in results and "bare" in results:
        ratio = results["ours"]["max"] / results["bare"]["max"]
        ok = ratio <= BAR_RATIO
        # Trimming at the marks lowers later peaks, the more so for a process
        # that kept more free memory: the ratio is judged on plain runs only.
        trimmed = bool(results["ours"].get("in_use"))
        verdict = "not judged under --trim-marks" if trimmed else ("PASS" if ok else "FAIL")
        print(
            f"ours/bare, max RSS after warm-up: {results['ours']['max']:,.0f} / "
            f"{results['bare']['max']:,.0f} MiB = {ratio:.2f}x (bar <= {BAR_RATIO}x): {verdict}"
        )
        if not ok and not trimmed:
            fails.append(f"ours/bare max RSS after warm-up {ratio:.2f}x, bar <= {BAR_RATIO}x")
        above = {s: results[s]["max"] - results[s]["loaded"] for s in ("bare", "ours")}
        fixed = results["ours"]["loaded"] - results["bare"]["loaded"]
        print(
            f"  of which the stream (max after warm-up - loaded): bare +{above['bare']:,.0f}, "
            f"ours +{above['ours']:,.0f} MiB; loaded, ours - bare: {fixed:+,.0f} MiB "
            f"(imports {results['ours']['imports'] - results['bare']['imports']:+,.0f})"
        )
        files = {s: results[s].get("file_backed") for s in ("bare", "ours")}
        if None not in files.values():
            print(
                f"  file-backed pages at the end (RssFile: mapped files, e.g. weights mapped "
                f"from model.safetensors; dropped under memory pressure): bare "
                f"{files['bare']:,.0f}, ours {files['ours']:,.0f} MiB"
            )
    for system, r in results.items():
        in_use = r.get("in_use") or {}
        if 1.0 in in_use and 0.25 in in_use:
            print(
                f"{system}: in use (RSS after malloc_trim) at the marks "
                + " / ".join(fmt(in_use.get(m)) for m in MARKS)
                + f" MiB: growth {in_use[1.0] - in_use[0.25]:+,.1f} (RSS {r['growth']:+,.1f})"
            )
            r["growth"] = in_use[1.0] - in_use[0.25]
    # The runtime's own growth (allocator arenas, oneDNN's kernels per batch
    # shape) is the bare model's too: a system leaks what it grows beyond it.
    reference = results.get("bare", {}).get("growth")
    for system, r in results.items():
        growth = r["growth"]
        if growth is None:
            continue
        what = "in use" if r.get("in_use") else "RSS"
        if system == "bare" and reference is not None and len(results) > 1:
            print(f"bare: growth 25% -> 100% ({what}) {growth:+,.1f} MiB: the runtime's own")
            continue
        excess = growth - reference if reference is not None else growth
        ok = excess <= growth_bar
        beyond = f", {excess:+,.1f} beyond the bare model's" if reference is not None else ""
        print(
            f"{system}: growth 25% -> 100% ({what}) {growth:+,.1f} MiB{beyond} "
            f"(bar <= {growth_bar:g} MiB): {'PASS' if ok else 'FAIL'}"
        )
        if not ok:
            fails.append(
                f"{system}: RSS grew {growth:+,.1f} MiB from 25% to 100% of the stream{beyond}"
            )
    return fails


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--words", type=int, default=1_000_000, help="CoNLL words in the stream")
    ap.add_argument("--dtype", default="auto", help="ours' dtype; the bare model follows")
    ap.add_argument("--unit", default="sentences", choices=UNITS, help="one record per ...")
    ap.add_argument("--shards", type=int, default=4, help="JSONL files the stream is split into")
    ap.add_argument(
        "--only",
        default="bare,ours,threads",
        help=f"comma-separated systems out of {','.join(SYSTEMS)}",
    )
    ap.add_argument("--threads", type=int, default=4, help="caller threads of `threads`")
    ap.add_argument(
        "--output", default="jsonl", choices=("jsonl", "parquet", "docbin"), help="ours' output"
    )
    ap.add_argument(
        "--warmup", type=float, default=0.1, help="fraction of the stream that is warm-up"
    )
    ap.add_argument("--interval", type=float, default=0.05, help="seconds between RSS samples")
    ap.add_argument(
        "--growth-bar",
        type=float,
        default=32.0,
        help="MiB of growth from 25%% to 100%% of the stream beyond the bare model's (when "
        "it runs; else in all) taken as a leak",
    )
    ap.add_argument("--trace", default=None, help="write every RSS sample to this CSV file")
    ap.add_argument(
        "--trim-marks",
        action="store_true",
        help="at each mark, also read the RSS after malloc_trim (memory in use); the growth "
        "bar then applies to that: growth of memory kept free for reuse is not a leak",
    )
    args = ap.parse_args(argv)

    systems = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in systems if s not in SYSTEMS]
    if bad:
        ap.error(f"--only: unknown {bad}; choose from {list(SYSTEMS)}")
    if not 0 < args.warmup < MARKS[0]:
        ap.error(f"--warmup must be in (0, {MARKS[0]})")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from spacy_hf_tagger.component import PIPE_FILL

    quiet_transformers()
    print(versions_line())
    print(f"CPU {cpu_model()}, {os.cpu_count()} cores")
    found = probe(args.model, args.dtype)
    print(
        f"ours runs in {found['runs_in']} ({found['reason']}); at most {found['batch_size']} "
        f"windows and {found['batch_subwords']} padded positions a forward call, max length "
        f"{found['max_length']}, stride {found['stride']}"
    )
    work = Path(tempfile.mkdtemp(prefix="stream-memory-"))
    try:
        docs = read_conll(Path(args.data))
        shards, records, words = write_stream(docs, args.unit, args.words, work / "in", args.shards)
        size = sum(p.stat().st_size for p in shards) / MIB
        passes = words / count_words(docs)
        print(
            f"stream: {words:,} words ({passes:.1f} passes over the data), {records:,} records "
            f"({args.unit}, natural), {len(shards)} shards, {size:.1f} MiB of JSONL; warm-up "
            f"{args.warmup:.0%}; {', '.join(systems)}, each in a process of its own",
            flush=True,
        )
        if passes * args.warmup < WARM_PASSES:
            print(
                f"  note: the warm-up is shorter than {WARM_PASSES} passes over the data, "
                "so RSS still rises after it (new batch shapes; the bare model's too): "
                "growth on such a stream is not a leak by itself"
            )
        job = {
            **found,
            "model": args.model,
            "dtype": args.dtype,
            "shards": [str(p) for p in shards],
            "records": records,
            "warmup": args.warmup,
            "interval": args.interval,
            "trace": bool(args.trace),
            "trim_marks": args.trim_marks,
            "pipe_fill": PIPE_FILL,
            "threads": args.threads,
            "output": args.output,
            "work": str(work),
        }
        results: Dict[str, Dict[str, Any]] = {}
        for system in systems:
            print(f"-- {system}", flush=True)
            with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as child:
                results[system] = child.submit(run_system, system, job).result()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    fails = report(results, words, args.growth_bar)
    if args.trace:
        with open(args.trace, "w", encoding="utf8") as out:
            out.write("system,seconds,records,rss_mib\n")
            for system, r in results.items():
                for t, done, rss in r["trace"]:
                    out.write(f"{system},{t:.3f},{done},{rss:.1f}\n")
        print(f"samples written to {args.trace}")
    print(f"\nverdict: {'FAIL' if fails else 'PASS'}")
    for f in fails:
        print(f"  - {f}")
    return 1 if fails else 0


if __name__ == "__main__":
    raise SystemExit(main())
