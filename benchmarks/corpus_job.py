"""What the corpus job costs over a plain `nlp.pipe` loop, in one process.

With the same loaded pipeline and the CoNLL-2003 test sentences (natural
rendering) written as JSONL, rounds alternate:

* ``pipe``: ``for doc in nlp.pipe(texts)``, entities read as the job writes
  them (``records.entity_rows``), nothing written: what a user's own loop does;
* ``annotate``: ``run_job`` from the JSONL file to a JSONL (or, with
  ``--output parquet``, a Parquet) file, checkpoints and fsync included.

Each keeps its best round; the model is loaded once, outside the timings.
Bar: annotate's words/s >= 0.9x pipe's (overhead <= 10%).

    python benchmarks/corpus_job.py
    python benchmarks/corpus_job.py --repeat 5 --output parquet
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

from accuracy import DEFAULT_DATA, DEFAULT_MODEL, make_ours, quiet_transformers, versions_line
from conll import read_conll, render_texts

BAR = 0.9


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--output", choices=("jsonl", "parquet"), default="jsonl")
    args = ap.parse_args(argv)

    from spacy_hf_tagger.jobs.corpus import run_job
    from spacy_hf_tagger.jobs.records import entity_rows

    quiet_transformers()
    print(versions_line())
    rendered = render_texts(read_conll(args.data), "natural", "sentences")
    texts = [r.text for r in rendered]
    words = sum(r.n_words for r in rendered)
    nlp = make_ours(args.model)
    list(nlp.pipe(texts[:32]))
    work = Path(tempfile.mkdtemp(prefix="annotate-bench-"))
    try:
        source = work / "in.jsonl"
        source.write_text(
            "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)),
            "utf8",
        )
        best = {"pipe": float("inf"), "annotate": float("inf")}
        for round_no in range(args.repeat):
            start = time.perf_counter()
            n_ents = sum(len(entity_rows(doc)) for doc in nlp.pipe(texts))
            best["pipe"] = min(best["pipe"], time.perf_counter() - start)
            out = work / f"out{round_no}.{args.output}"
            start = time.perf_counter()
            summary = run_job(nlp, source, out, progress=False)
            best["annotate"] = min(best["annotate"], time.perf_counter() - start)
            assert summary.entities == n_ents and summary.records == len(texts)
            print(
                f"round {round_no + 1}: pipe {best['pipe']:.2f} s best, "
                f"annotate {best['annotate']:.2f} s best",
                flush=True,
            )
    finally:
        shutil.rmtree(work)
    print(f"{len(texts)} sentences, {words} words, best of {args.repeat}")
    for name, seconds in best.items():
        print(f"{name:<9} {seconds:>7.2f} s {words / seconds:>8.0f} words/s")
    ratio = best["pipe"] / best["annotate"]
    verdict = "PASS" if ratio >= BAR else "FAIL"
    print(f"annotate/pipe words/s {ratio:.2f}x (bar >= {BAR}x): {verdict}")
    return 0 if ratio >= BAR else 1


if __name__ == "__main__":
    raise SystemExit(main())
