"""Memory and time of one huge record in an annotate job.

Writes a JSONL corpus of a few ordinary records and one record of `--chars`
characters (CoNLL-2003 test sentences, natural text, repeated and joined by
spaces: one line, no line breaks), runs the corpus job (`run_job`, local
engine, the default pipeline on `--model`) and prints, from this process:
peak RSS before the job (model loaded, one sentence annotated), peak RSS
after it, the RSS once it is done (what the rest of a job would carry), and
words/s. spaCy's own limit is 1,000,000 characters; the job
lifts it for a pipeline of our component alone.

    python benchmarks/long_record.py                   # 10 M characters
    python benchmarks/long_record.py --chars 2000000
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

from accuracy import DEFAULT_DATA, DEFAULT_MODEL, ROOT, quiet_transformers, versions_line
from conll import read_conll, render_texts
from stream_memory import rss_mib


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--chars", type=int, default=10_000_000)
    ap.add_argument("--dtype", default="auto")
    args = ap.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from spacy_hf_tagger.jobs.corpus import run_job
    from spacy_hf_tagger.jobs.pipelines import load_pipeline

    quiet_transformers()
    print(versions_line())
    sentences = [r.text for r in render_texts(read_conll(Path(args.data)), "natural", "sentences")]
    block = " ".join(sentences)
    huge = (block + " ") * (args.chars // (len(block) + 1) + 1)
    huge = huge[: args.chars].rstrip()
    nlp = load_pipeline(args.model, dtype=args.dtype)
    nlp(sentences[0])
    before = peak_rss_mib()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "in.jsonl"
        with corpus.open("w", encoding="utf8") as out:
            for i, text in enumerate(sentences[:50]):
                out.write(json.dumps({"id": i, "text": text}) + "\n")
            out.write(json.dumps({"id": "huge", "text": huge}) + "\n")
        del huge
        start = time.perf_counter()
        summary = run_job(nlp, corpus, Path(tmp) / "out.jsonl", progress=False)
        seconds = time.perf_counter() - start
    after = peak_rss_mib()
    left = rss_mib()
    print(
        f"records {summary.records}, errors {summary.errors}, entities {summary.entities}, "
        f"words {summary.words:,} in {seconds:.1f} s ({summary.words_per_s:,.0f} words/s)"
    )
    print(
        f"record of {args.chars:,} characters: peak RSS {before:,.0f} MiB before the job, "
        f"{after:,.0f} MiB after (+{after - before:,.0f} MiB); RSS once the job is done "
        f"{left:,.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
