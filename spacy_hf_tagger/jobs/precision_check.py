"""What reduced precision costs on the user's own texts: speed and agreement with
float32, for a pipeline folder, an installed pipeline, or a model folder.

    python -m spacy_hf_tagger precision-check PIPELINE_OR_MODEL texts.txt --dtype int8

Agreement is measured against the float32 run of the same component, so it
needs no gold annotation: entity spans (start, end, label) scored as precision,
recall and F1 with float32 as the reference, or the share of tokens whose tag
is the same. A model that agrees at 99.5+ F1 loses little; the benchmark
`benchmarks/precision.py` measures F1 against gold on CoNLL-2003.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Set, Tuple

from spacy.language import Language

from ..errors import JobError
from ..model import precision
from .pipelines import FACTORY, load_pipeline, tagger_names


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


def pipeline_at(source: str, dtype: str, lang: str = "en") -> Language:
    """A pipeline with our component at `dtype`; a pipeline without one is an error."""
    nlp = load_pipeline(source, lang, dtype=dtype)
    if not tagger_names(nlp):
        raise JobError(f"{source!r} is a spaCy pipeline without an {FACTORY} component.")
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
    reference = run_pipeline(pipeline_at(source, "float32", lang), "float32", texts)
    results = []
    for dtype in dtypes:
        run = run_pipeline(pipeline_at(source, dtype, lang), dtype, texts)
        results.append(agreement(reference, run))
    return reference, results


def read_texts(path: Path, limit: Optional[int]) -> List[str]:
    """Non-empty lines of a text file, one text per line."""
    texts = [line.rstrip("\n") for line in path.open(encoding="utf8")]
    texts = [t for t in texts if t.strip()]
    return texts[:limit] if limit else texts


def report(reference: PrecisionRun, results: Sequence[Agreement]) -> List[str]:
    """The comparison as a table: one line per dtype, float32 first."""
    lines = [
        f"{'dtype':<10} {'runs in':<9} {'words/s':>9} {'x fp32':>7} {'ent P':>7} "
        f"{'ent R':>7} {'ent F':>7} {'tags':>7}"
    ]
    ref_tags = "100.00" if reference.tags else ""
    lines.append(
        f"{'float32':<10} {'float32':<9} {reference.words_per_s:9.0f} {1.0:7.2f} "
        f"{100.0:7.2f} {100.0:7.2f} {100.0:7.2f} {ref_tags:>7}"
    )
    for a in results:
        tags = "" if a.tag_agreement is None else f"{a.tag_agreement:.2f}"
        lines.append(
            f"{a.dtype:<10} {a.runs_in:<9} {reference.words_per_s * a.speedup:9.0f} "
            f"{a.speedup:7.2f} {a.entity_p:7.2f} {a.entity_r:7.2f} {a.entity_f:7.2f} {tags:>7}"
        )
    lines.append(f"(float32 found {len(reference.entities)} entities, {len(reference.tags)} tags)")
    return lines


def native_bf16() -> List[str]:
    """This CPU's native bf16 flags, read as `dtype="auto"` reads them (through
    the precision module, so tests can fake them)."""
    return sorted(precision.cpu_flags() & precision.BF16_FLAGS)
