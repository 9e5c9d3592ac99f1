"""Does a text's annotation depend on which texts share its batch?

For each dtype, one pipeline annotates the CoNLL-2003 test sentences (natural
rendering) three ways:

* ``call``: ``nlp(text)``, one text at a time (a batch of one);
* ``pipe``: ``nlp.pipe(texts)`` (chunks of 1,000 docs, sorted by length);
* ``job``: the corpus job (``run_job``, JSONL in and out: chunks of 256).

and counts the texts whose entities (start, end, label) differ between any
two ways, and the largest difference of an entity score among the texts that
agree. Bar: 0 texts in float32 (the rounding of fp32 kernels does not move an
argmax here); bf16 and int8 are reported, not barred (their rounding depends
on the batch's shape: docs/speed.md#batch-invariance).

    python benchmarks/batch_invariance.py
    python benchmarks/batch_invariance.py --dtypes float32 --limit 500
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from accuracy import DEFAULT_DATA, DEFAULT_MODEL, make_ours, quiet_transformers, versions_line
from conll import read_conll, render_texts

Entity = Tuple[int, int, str]


def doc_entities(doc) -> Tuple[List[Entity], List[float]]:
    ents = [(e.start_char, e.end_char, e.label_) for e in doc.ents]
    return ents, [float(e._.hf_score) for e in doc.ents]


def job_entities(nlp, texts: Sequence[str], work: Path) -> List[Tuple[List[Entity], List[float]]]:
    from spacy_hf_tagger.jobs.corpus import run_job

    source, out = work / "in.jsonl", work / "out.jsonl"
    source.write_text(
        "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)), "utf8"
    )
    run_job(nlp, source, out, progress=False, overwrite=True)
    rows: Dict[int, Tuple[List[Entity], List[float]]] = {}
    for line in out.read_text("utf8").splitlines():
        record = json.loads(line)
        ents = record.get("ents") or []
        rows[int(record["id"])] = (
            [(e["start"], e["end"], e["label"]) for e in ents],
            [float(e["score"]) for e in ents],
        )
    return [rows[i] for i in range(len(texts))]


def compare(a, b) -> Tuple[int, float]:
    """Texts whose entities differ; the largest score difference where they agree."""
    differ = 0
    worst = 0.0
    for (ents_a, scores_a), (ents_b, scores_b) in zip(a, b):
        if ents_a != ents_b:
            differ += 1
        else:
            worst = max([worst, *(abs(x - y) for x, y in zip(scores_a, scores_b))])
    return differ, worst


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--dtypes", default="float32,bfloat16,int8")
    ap.add_argument("--limit", type=int, default=None, help="first N sentences only")
    args = ap.parse_args(argv)

    quiet_transformers()
    print(versions_line())
    texts = [r.text for r in render_texts(read_conll(args.data), "natural", "sentences")]
    if args.limit:
        texts = texts[: args.limit]
    fails: List[str] = []
    work = Path(tempfile.mkdtemp(prefix="batch-invariance-"))
    try:
        for dtype in [d.strip() for d in args.dtypes.split(",") if d.strip()]:
            nlp = make_ours(args.model, {"dtype": dtype})
            runs_in = nlp.get_pipe("hf_token_tagger").precision.runs_in
            ways = {
                "call": [doc_entities(nlp(t)) for t in texts],
                "pipe": [doc_entities(d) for d in nlp.pipe(texts)],
                "job": job_entities(nlp, texts, work),
            }
            for a, b in (("call", "pipe"), ("call", "job"), ("pipe", "job")):
                differ, worst = compare(ways[a], ways[b])
                print(
                    f"{dtype:<9} (runs in {runs_in:<8}) {a} vs {b}: {differ} of {len(texts)} "
                    f"texts differ ({differ / len(texts):.3%}); largest score difference "
                    f"where they agree {worst:.2e}",
                    flush=True,
                )
                if runs_in == "float32" and differ:
                    fails.append(f"float32 {a} vs {b}: {differ} texts differ")
    finally:
        shutil.rmtree(work)
    print("verdict:", "FAIL" if fails else "PASS")
    for f in fails:
        print("  -", f)
    return 1 if fails else 0


if __name__ == "__main__":
    raise SystemExit(main())
