"""What reduced precision costs on the user's own texts: speed and agreement with
float32, for a pipeline folder, an installed pipeline, or a model folder.

    python -m spacy_hf_tagger.precision_check PIPELINE_OR_MODEL texts.txt --dtype int8

Agreement is measured against the float32 run of the same component, so it
needs no gold annotation: entity spans (start, end, label) scored as precision,
recall and F1 with float32 as the reference, or the share of tokens whose tag
is the same. A model that agrees at 99.5+ F1 loses little; the benchmark
`benchmarks/precision.py` measures F1 against gold on CoNLL-2003.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Set, Tuple

from spacy.language import Language

from ..model import precision
from . import corpus as annotate

FACTORY = "hf_token_tagger"


@dataclass
class PrecisionRun:
    """One dtype's run over the texts."""

    dtype: str
    runs_in: str
    seconds: float
    words: int
    entities: Set[Tuple[int, int, int, str]]
    tags: List[Tuple[int, int, str]]

    @property
    def words_per_s(self) -> float:
        return self.words / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class Agreement:
    """A run compared with float32 (the reference)."""

    dtype: str
    runs_in: str
    speedup: float
    entity_p: float
    entity_r: float
    entity_f: float
    tag_agreement: Optional[float]
    n_entities: int
    n_reference_entities: int


def load_pipeline(source: str, dtype: str, lang: str = "en") -> Language:
    """A pipeline with our component at `dtype` (see `annotate.load_pipeline`)."""
    nlp = annotate.load_pipeline(source, lang, dtype=dtype)
    if not any(type(pipe).__name__ == "HFTokenTagger" for _, pipe in nlp.pipeline):
        raise ValueError(f"{source!r} is a spaCy pipeline without an {FACTORY} component.")
    return nlp


def run_pipeline(nlp: Language, dtype: str, texts: Sequence[str], warmup: int = 8) -> PrecisionRun:
    """Annotate the texts once (after a short warm-up) and keep what was written."""
    list(nlp.pipe(texts[:warmup]))
    taggers = [pipe for _, pipe in nlp.pipeline if type(pipe).__name__ == "HFTokenTagger"]
    start = time.perf_counter()
    docs = list(nlp.pipe(texts))
    seconds = time.perf_counter() - start
    entities = {
        (i, e.start_char, e.end_char, e.label_) for i, doc in enumerate(docs) for e in doc.ents
    }
    tags = [
        (i, t.i, t.tag_ or t.pos_) for i, doc in enumerate(docs) for t in doc if t.tag_ or t.pos_
    ]
    runs_in = taggers[0].precision.runs_in if taggers else "?"
    words = sum(sum(not t.is_space for t in doc) for doc in docs)
    return PrecisionRun(dtype, runs_in, seconds, words, entities, tags)


def agreement(reference: PrecisionRun, other: PrecisionRun) -> Agreement:
    """`other` scored against `reference`: entity P/R/F1 (in %), tag agreement."""
    same = len(reference.entities & other.entities)
    p = 100.0 * same / len(other.entities) if other.entities else 100.0
    r = 100.0 * same / len(reference.entities) if reference.entities else 100.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    tag_agreement = None
    if reference.tags:
        tag_agreement = 100.0 * len(set(reference.tags) & set(other.tags)) / len(reference.tags)
    return Agreement(
        other.dtype,
        other.runs_in,
        reference.seconds / other.seconds if other.seconds else float("nan"),
        p,
        r,
        f,
        tag_agreement,
        len(other.entities),
        len(reference.entities),
    )


def compare(
    source: str, texts: Sequence[str], dtypes: Iterable[str], lang: str = "en"
) -> Tuple[PrecisionRun, List[Agreement]]:
    """Run float32 and each dtype over the texts; compare each with float32."""
    reference = run_pipeline(load_pipeline(source, "float32", lang), "float32", texts)
    results = []
    for dtype in dtypes:
        run = run_pipeline(load_pipeline(source, dtype, lang), dtype, texts)
        results.append(agreement(reference, run))
    return reference, results


def read_texts(path: Path, limit: Optional[int]) -> List[str]:
    """Non-empty lines of a text file, one text per line."""
    texts = [line.rstrip("\n") for line in path.open(encoding="utf8")]
    texts = [t for t in texts if t.strip()]
    return texts[:limit] if limit else texts


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m spacy_hf_tagger.precision_check",
        description="Speed and agreement with float32 of reduced-precision runs on your texts.",
    )
    ap.add_argument("source", help="pipeline folder, installed pipeline, or HF model folder / id")
    ap.add_argument("texts", type=Path, help="a text file, one text per line")
    ap.add_argument(
        "--dtype",
        action="append",
        default=None,
        help='dtype to compare with float32 (repeatable; default: "auto" and "int8")',
    )
    ap.add_argument("--limit", type=int, default=None, help="use only the first N texts")
    ap.add_argument("--lang", default="en", help="language of the blank pipeline for a model")
    args = ap.parse_args(argv)
    texts = read_texts(args.texts, args.limit)
    if not texts:
        ap.error(f"{args.texts} has no non-empty lines")
    # Through the module: what `dtype="auto"` itself reads (tests can fake it).
    bf16 = sorted(precision.cpu_flags() & precision.BF16_FLAGS)
    print(f"CPU native bf16: {', '.join(bf16) if bf16 else 'no'}; {len(texts)} texts")
    reference, results = compare(args.source, texts, args.dtype or ["auto", "int8"], args.lang)
    print(
        f"{'dtype':<10} {'runs in':<9} {'words/s':>9} {'x fp32':>7} {'ent P':>7} "
        f"{'ent R':>7} {'ent F':>7} {'tags':>7}"
    )
    ref_tags = "100.00" if reference.tags else ""
    print(
        f"{'float32':<10} {'float32':<9} {reference.words_per_s:9.0f} {1.0:7.2f} "
        f"{100.0:7.2f} {100.0:7.2f} {100.0:7.2f} {ref_tags:>7}"
    )
    for a in results:
        tags = "" if a.tag_agreement is None else f"{a.tag_agreement:.2f}"
        print(
            f"{a.dtype:<10} {a.runs_in:<9} {reference.words_per_s * a.speedup:9.0f} "
            f"{a.speedup:7.2f} {a.entity_p:7.2f} {a.entity_r:7.2f} {a.entity_f:7.2f} {tags:>7}"
        )
    print(f"(float32 found {len(reference.entities)} entities, {len(reference.tags)} tags)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
