"""Annotate on Ray Data: an actor pool, each actor loading the pipeline once.

`annotate_dataset` is for users already in Ray: it maps a `ray.data.Dataset`
with a text column to the same dataset with an `ents` column, the rows the
annotate CLI writes. `RayAnnotator` is the CLI's `--engine ray`: the driver
reads INPUT, writes OUTPUT and checkpoints exactly as the local engine does;
each chunk of records goes through the actor pool on the cluster.

The pipeline is loaded inside each actor from its name or path (an installed
package or a folder every node can read), never pickled from the driver: a
loaded model is hundreds of MB, and torch modules do not survive pickling
across versions.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

try:
    import pyarrow as pa
    import ray
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the Ray engine needs Ray Data: pip install 'spacy-hf-tagger[ray]'"
    ) from error

from .pipelines import LengthLimit
from .records import doc_annotation
from .sinks import entity_type

# Columns the actors add: the entities as JSON (one string column, whatever the
# entities), and the words counted the way the local engine does.
_ENTS_JSON = "__hf_ents_json"
_WORDS = "__hf_words"


class _PipelineActor:
    """Loads the pipeline once, then annotates batches of texts."""

    def __init__(
        self,
        pipeline: str,
        lang: str,
        overrides: Optional[Dict[str, Any]],
        device: Optional[str],
        dtype: Optional[str],
        text_key: str,
        batch_size: int,
    ) -> None:
        from .pipelines import load_pipeline

        self.nlp = load_pipeline(pipeline, lang, overrides, device=device, dtype=dtype)
        self.text_key = text_key
        self.batch_size = batch_size

    def __call__(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        texts = list(batch[self.text_key])
        for position, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(
                    f"column {self.text_key!r} holds a {type(text).__name__} at row "
                    f"{position} of a batch, not a string: filter or convert those rows "
                    "before annotating."
                )
        ents: List[str] = []
        words: List[int] = []
        for doc in self.nlp.pipe(texts, batch_size=self.batch_size):
            doc_ents, doc_words = doc_annotation(doc)
            ents.append(json.dumps(doc_ents, ensure_ascii=False))
            words.append(doc_words)
        out = dict(batch)
        out[_ENTS_JSON] = ents
        out[_WORDS] = words
        return out


@dataclass(frozen=True)
class ActorPool:
    """Where and how the pipeline runs: `workers` actors with `gpus_per_worker`
    GPUs each, each loading `pipeline` (with `lang`, config `overrides`,
    `device`, `dtype` as the annotate CLI takes them) and annotating
    `batch_size` rows per `nlp.pipe` call."""

    pipeline: str
    workers: int = 1
    gpus_per_worker: float = 0
    batch_size: int = 256
    lang: str = "en"
    overrides: Optional[Dict[str, Any]] = None
    device: Optional[str] = None
    dtype: Optional[str] = None

    def map(self, ds: ray.data.Dataset, text_key: str) -> ray.data.Dataset:
        """`ds` with the two columns the actors add."""
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        return ds.map_batches(
            _PipelineActor,
            fn_constructor_args=(
                self.pipeline,
                self.lang,
                self.overrides,
                self.device,
                self.dtype,
                text_key,
                self.batch_size,
            ),
            batch_size=self.batch_size,
            batch_format="numpy",
            concurrency=self.workers,
            num_gpus=self.gpus_per_worker or None,
        )


def annotate_dataset(
    ds: ray.data.Dataset,
    pipeline: str,
    *,
    text_key: str = "text",
    workers: int = 1,
    gpus_per_worker: float = 0,
    batch_size: int = 256,
    lang: str = "en",
    overrides: Optional[Dict[str, Any]] = None,
    device: Optional[str] = None,
    dtype: Optional[str] = None,
) -> ray.data.Dataset:
    """`ds` with an `ents` column: a list of {start, end, label, score, text}
    per row, character offsets into the row's text, as the annotate CLI writes.

    `pipeline` is what the CLI takes (a pipeline name or folder, or a model
    folder or hub id), and must be loadable on every worker. Each of the
    `workers` actors loads it once (with `gpus_per_worker` GPUs each);
    `batch_size` rows go to each `nlp.pipe` call. A row whose text is not a
    string stops the job with an error naming the column.
    """

    def decode(batch: Any) -> Any:
        # Typed explicitly: a block without entities would otherwise hold a
        # list<null> column that Parquet readers cannot merge with the others.
        ents = pa.array(
            [json.loads(e) for e in batch.column(_ENTS_JSON).to_pylist()], type=entity_type()
        )
        return batch.drop_columns([_ENTS_JSON, _WORDS]).append_column("ents", ents)

    pool = ActorPool(pipeline, workers, gpus_per_worker, batch_size, lang, overrides, device, dtype)
    return pool.map(ds, text_key).map_batches(decode, batch_format="pyarrow")


class RayAnnotator:
    """The annotate job's `--engine ray`: texts in, (entities, words) out, in order.

    Connects to the cluster in `RAY_ADDRESS`, else starts a local one. Each
    call (one chunk of the job) runs through a fresh actor pool, so a chunk
    should be large (the CLI uses 20,000 records): the pool's start, a
    pipeline load per actor, is then a small share of its time.
    """

    def __init__(self, pool: ActorPool, length_limit: Optional[LengthLimit] = None) -> None:
        if not ray.is_initialized():
            ray.init(address=os.environ.get("RAY_ADDRESS") or None, log_to_driver=False)
        self.pool = pool
        # The actors' pipelines keep this max_length (`lift_length_limit`).
        self.length_limit = length_limit

    def __call__(self, texts: Sequence[str]) -> List[Tuple[List[Dict[str, Any]], int]]:
        if not texts:
            return []
        ds = ray.data.from_items(
            [{"row": i, "text": t} for i, t in enumerate(texts)],
            override_num_blocks=max(1, min(len(texts) // 64, 4 * self.pool.workers)),
        )
        rows = self.pool.map(ds, "text").take_all()
        rows.sort(key=lambda r: int(r["row"]))  # in any order from the pool: put back
        if len(rows) != len(texts):
            raise RuntimeError(f"Ray returned {len(rows)} rows for a chunk of {len(texts)} records")
        return [(json.loads(r[_ENTS_JSON]), int(r[_WORDS])) for r in rows]
