"""The `hf_token_tagger` pipeline component: the story of one batch of docs.

    predict:          encode (tokenize, align pieces to tokens) → windows and
                      batches → forward → probabilities per piece → per token
    set_annotations:  decode the label scheme → scores (through `temperature`,
                      `calibration.temperature`) → write ents, spans, tags, token._

Each step is a function of its own module: `model.forward` (encode, batch,
run), `align.batch` and `align.pieces` (pieces to tokens), `align.words`,
`labels.decoding` and `labels.writing`; fine-tuning (`training.fine_tuning`),
loading (`model.loading`), the settings (`settings`) and the saved folder
(`model.persistence`) too. This class holds the settings and the loaded model,
and is a `TrainablePipe`, so `spacy train` fine-tunes it through the same
encoding and alignment inference uses.

"model" names three things here: the `model` setting (a hub id or folder),
`self.model` (the parameterless thinc placeholder spaCy's training loop
expects) and `hf_model` (the transformers module itself).
"""

import copy
import logging
import threading
import warnings
from collections import Counter
from pathlib import Path
from types import MappingProxyType
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

import numpy as np
import torch
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc
from spacy.training import Example, validate_examples
from spacy.util import minibatch
from spacy.vocab import Vocab
from thinc.api import Model, Optimizer

from .align.batch import BatchPrediction, EncodedBatch
from .align.pieces import aggregate_token_probs
from .align.words import word_groups
from .calibration.temperature import calibrated_probs, label_temperatures
from .errors import AnnotationConflictError, ConfigError
from .labels.char_spans import CharEntities, char_entities, piece_cells
from .labels.decoding import predict_entities, predict_tags, split_by_doc, tag_name_map
from .labels.exact import exact_prediction
from .labels.recall import Threshold, check_o_bias_fits, resolve_threshold
from .labels.schemes import LabelScheme, map_types
from .labels.viterbi import resolve_decoding
from .labels.writing import (
    CHAR_ENTS_ATTR,
    EntityPrediction,
    register_extensions,
    write_entities,
    write_tags,
)
from .model import torch_thread
from .model.device import resolve_device
from .model.forward import (
    BatchShape,
    ModelBatch,
    PreparedDocs,
    batch_shape_for,
    encode_docs,
    model_batches,
    on_device,
    piece_probabilities,
)
from .model.iob_probe import IobProbe
from .model.loading import LoadedModel, install, load_source
from .model.overlap import (
    doc_chunks,
    filled_chunks,
    overlaps,
    run_overlapped,
)
from .model.persistence import bytes_to_folder, folder_to_bytes, read_folder, write_folder
from .model.precision import Precision, choose_precision
from .model.residency import release_free_memory
from .serving.coalescing import Coalescer
from .settings import Settings, default_config, factory_signature, resolve_annotate
from .training import fine_tuning
from .training.scoring import make_hf_tagger_scorer

logger = logging.getLogger("spacy_hf_tagger")
# Fewest docs `pipe` annotates together, whatever batch size spaCy passes.
PIPE_FILL = 256
# Without overlap, a chunk of `pipe` grows past the batch size spaCy passes
# until it holds the text of this many full forward calls (or PIPE_MAX_DOCS
# docs): on an Intel Xeon with AMX at bf16 (calls of 4,096 positions), chunks
# of the 3,453 CoNLL test sentences whole instead of spaCy's 1,000 docs ran
# 20 forward calls instead of 25, 10% fewer positions, 1.11x faster (median
# of 6 rounds).
PIPE_CHUNK_CALLS = 16
PIPE_MAX_DOCS = 4096
# A doc this long (spaCy's own default limit) has the memory each stage of its
# batch freed handed back before the next stage (`residency`).
RELEASE_AFTER_CHARS = 1_000_000
# With overlap, chunks of about this many full forward calls of text: the
# device runs one while the CPU prepares the next and writes the last, and
# only the first chunk's preparation and the last one's writing are never
# hidden. Under one: characters only estimate subwords, and a chunk of one
# call's worth often spilled into a second, near-empty call. Measured on an
# Intel Xeon with AMX at bf16 (a replayed model sleeping per position as long
# as the glue, best of 3, documents / sentences): 0.5 of a call 1.61x /
# 1.62x, 0.6 1.64x / 1.70x, 0.75 1.68x / 1.68x and 1.59x / 1.72x, 0.9
# 1.55x / 1.64x, 1 1.56x / 1.59x; 2 calls, sentences only, two rounds:
# 1.41x and 1.45x.
OVERLAP_CHUNK_CALLS = 0.75
HOST = torch.device("cpu")
T = TypeVar("T")

__all__ = ["AnnotationConflictError", "ConfigError", "HFTokenTagger", "make_hf_token_tagger"]


def make_hf_token_tagger(
    nlp: Language, name: str, *, scorer: Optional[Callable] = None, **settings: Any
) -> "HFTokenTagger":
    """Build the component. The model itself loads lazily, on first use or
    from_disk, so `spacy.load` of a saved pipeline never touches `model`.

    Its signature, which spaCy validates configs against, is every field of
    `settings.Settings` (typed there) and `scorer`."""
    return HFTokenTagger(nlp.vocab, name=name, scorer=scorer, **settings)


make_hf_token_tagger.__signature__ = factory_signature()  # type: ignore[attr-defined]
Language.factory(
    "hf_token_tagger",
    assigns=[
        "doc.ents",
        "token.ent_iob",
        "token.ent_type",
        "doc.spans",
        "token.tag",
        "token.pos",
        "token._.hf_bio",
        "token._.hf_score",
        "span._.hf_score",
    ],
    default_config=default_config(),
    default_score_weights={
        "ents_f": 1.0,
        "ents_p": 0.0,
        "ents_r": 0.0,
        "ents_per_type": None,
        "tag_acc": 1.0,
        "pos_acc": 1.0,
    },
)(make_hf_token_tagger)


def _text_length(doc: Doc) -> int:
    """len(doc.text), without building the string."""
    return doc[-1].idx + len(doc[-1].text_with_ws) if len(doc) else 0


def _holds_huge_record(docs: Sequence[Doc]) -> bool:
    """Whether one of `docs` is over `RELEASE_AFTER_CHARS` long."""
    return any(_text_length(doc) >= RELEASE_AFTER_CHARS for doc in docs)


def _placeholder_model(name: str) -> Model:
    """A parameterless thinc Model: spaCy's training loop expects `.model` to be one.

    The weights live in the torch module; the optimizer step is ours
    (`finish_update`), so thinc never needs CuPy for a GPU model.
    """
    return Model(name, lambda model, X, is_train: (X, lambda dY: dY))


class HFTokenTagger(TrainablePipe):
    """Run a Hugging Face token classifier and write its predictions on spaCy tokens."""

    def __init__(
        self,
        vocab: Vocab,
        *,
        name: str = "hf_token_tagger",
        scorer: Optional[Callable] = None,
        **settings: Any,
    ) -> None:
        """`settings` are those of `settings.Settings`, checked here."""
        register_extensions()
        self.vocab = vocab
        self.name = name
        self.model = _placeholder_model(name)
        self.scorer = scorer if scorer is not None else make_hf_tagger_scorer()
        self.settings = Settings(**settings)
        # What was settled at load time, not set: the hub commit of the weights
        # and what `annotate` means for the model's labels.
        self.resolved_commit: Optional[str] = None
        self._annotate_resolved: Optional[List[str]] = None
        # And the threshold, one number or one per model type.
        self._threshold: Threshold = 0.0
        # Per-label temperatures for scores (None: the model's own probabilities).
        self._temperatures: Optional[np.ndarray] = None
        # Resolve the device now so a wrong value fails when the pipe is added.
        self._device = resolve_device(self.settings.device)
        # And the precision, which follows the device and the CPU's features.
        self.precision: Precision = choose_precision(self.settings.dtype, self._device)
        self._loaded: Optional[LoadedModel] = None
        # The last IOB probe logged, and what "auto" resolved to with it.
        self._logged_probe: Optional[IobProbe] = None
        self._logged_decoding: Optional[str] = None
        self._torch_step: Optional[fine_tuning.TorchStep] = None
        self.counters: Counter = Counter()
        # One pipeline may serve many threads: the model loads once, one
        # forward pass runs at a time (each uses every core), and concurrent
        # `nlp(text)` calls are annotated as one batch.
        self._load_lock = threading.Lock()
        self._forward_lock = threading.Lock()
        self._counters_lock = threading.Lock()
        self._coalescer: Coalescer[Doc] = Coalescer(
            self._annotate_docs, wait=float(self.settings.thread_batch_wait_ms) / 1000.0
        )

    @property
    def cfg(self) -> Mapping[str, Any]:  # type: ignore[override]
        """The settings, read-only (a copy: change them through the config)."""
        return MappingProxyType(copy.deepcopy(self.settings.as_dict()))

    # --------------------------------------------------------------------- model

    @property
    def is_loaded(self) -> bool:
        return self._loaded is not None

    @property
    def hf_model(self) -> torch.nn.Module:
        """The underlying transformers model (loaded on first access)."""
        return self._ensure_loaded().model

    def weights_changed(self) -> None:
        """Say the model's weights were written where torch does not count it
        (through `tensor.data`, as peft merges LoRA weights), so the next
        prediction copies them again; every other change is seen by itself."""
        if self._loaded is not None:
            self._loaded.weights_changed()

    @property
    def tokenizer(self) -> Any:
        return self._ensure_loaded().tokenizer

    @property
    def label_scheme(self) -> LabelScheme:
        return self._ensure_loaded().scheme

    @property
    def labels(self) -> Tuple[str, ...]:
        """Entity types (for entity models) or tags (for tagging models)."""
        if self._loaded is None:
            return ()
        scheme = self._loaded.scheme
        return scheme.entity_types if scheme.is_entity else scheme.labels

    @property
    def annotate(self) -> List[str]:
        """What the component writes, resolved against the model's labels."""
        if self._annotate_resolved is None:
            self._ensure_loaded()
        assert self._annotate_resolved is not None
        return list(self._annotate_resolved)

    @property
    def decoding_resolved(self) -> str:
        """The decoding predictions use: the `decoding` setting, or what "auto"
        chose for the loaded model (`viterbi.resolve_decoding`)."""
        return self._decoding(self._ensure_loaded())

    @property
    def iob_probe(self) -> Optional[IobProbe]:
        """For `decoding="auto"` on an IOB model, whether it reads as trained on
        IOB1 or IOB2 labels, and the probe's figures (`model.iob_probe`); else None."""
        return self._iob_probe(self._ensure_loaded())

    def _iob_probe(self, loaded: LoadedModel) -> Optional[IobProbe]:
        if self.settings.decoding != "auto" or loaded.scheme.kind != "iob":
            return None
        return loaded.iob_probe()

    def _decoding(self, loaded: LoadedModel) -> str:
        """`decoding_resolved`; logs what "auto" chose whenever it probes anew
        (at load, and after training steps changed the weights)."""
        setting = self.settings.decoding
        probe = self._iob_probe(loaded)
        if probe is None:
            return resolve_decoding(setting, loaded.scheme.kind)
        resolved = resolve_decoding(setting, loaded.scheme.kind, probe.flavour)
        if probe is not self._logged_probe:
            changed = self._logged_probe is None or resolved != self._logged_decoding
            logger.log(
                logging.INFO if changed else logging.DEBUG,
                '%s: decoding "auto" is %r: the model reads as %s',
                self.name,
                resolved,
                probe.describe(),
            )
            self._logged_probe, self._logged_decoding = probe, resolved
        return resolved

    def _ensure_loaded(self) -> LoadedModel:
        loaded = self._loaded
        if loaded is not None:
            return loaded
        # The lock is taken on the torch thread: no caller waits for it holding the lock.
        self._on_torch_thread(self._load_once)
        assert self._loaded is not None
        return self._loaded

    def _load_once(self) -> None:
        with self._load_lock:
            if self._loaded is None:
                source = load_source(
                    self.settings.model,
                    self.settings.revision,
                    self.precision.weights,
                    require_head=True,
                )
                self.resolved_commit = source.resolved_commit
                self._install(source.model, source.tokenizer)

    def _on_torch_thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """On CPU, torch work runs on the process's one torch thread
        (`model.torch_thread`: one OpenMP team, so its workers keep spinning)."""
        return torch_thread.run_for(self._device, fn, *args, **kwargs)

    def _install(self, model: torch.nn.Module, tokenizer: Any) -> None:
        loaded = install(
            model,
            tokenizer,
            self.settings.max_length,
            self.settings.stride,
            self._device,
            self.precision,
        )
        logger.info(
            "%s: %s runs in %s on %s (%s)",
            self.name,
            self.settings.model,
            self.precision.runs_in,
            self._device,
            self.precision.reason,
        )
        self._annotate_resolved = resolve_annotate(
            self.settings.annotate, loaded.scheme, self.settings.label_map
        )
        check_o_bias_fits(float(self.settings.o_bias), loaded.scheme)
        self._threshold = resolve_threshold(
            self.settings.threshold, loaded.scheme.entity_types, self.settings.label_map
        )
        self._temperatures = label_temperatures(loaded.scheme, self.settings.temperature)
        self._loaded = loaded
        self._torch_step = None
        # Settled now, so the load logs it and no batch waits for the probe.
        self._decoding(loaded)

    # ------------------------------------------------------------------ predict

    def __call__(self, doc: Doc) -> Doc:
        """Annotate one doc; docs of concurrent calls from other threads go into
        the same batch (see `coalescing`)."""
        error_handler = self.get_error_handler()
        try:
            if torch_thread.is_torch_thread():
                # Work run on the torch thread cannot wait for a batch whose
                # leader waits for the torch thread.
                self._annotate_docs([doc])
                return doc
            return self._coalescer.submit(doc)
        except Exception as error:
            error_handler(self.name, self, [doc], error)
            return doc

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        """Annotate a stream of docs in chunks cut by their text, whatever
        `batch_size` spaCy passes: without overlap, of about `PIPE_CHUNK_CALLS`
        full forward calls of text and at least `PIPE_FILL` docs; with
        `overlap` (on for CUDA GPUs), of about `OVERLAP_CHUNK_CALLS` calls,
        the next prepared while the model runs this one (see `overlap`). Either
        way at most `PIPE_MAX_DOCS` docs (or `batch_size`, when larger).

        `spacy apply` passes 1 by default; one doc per forward call would run
        at a fraction of the speed, and forward batches are best cut from many
        docs sorted by length (see `forward.model_batches`).
        """
        error_handler = self.get_error_handler()
        fill = max(int(batch_size), PIPE_FILL)
        try:
            loaded = self._ensure_loaded()
        except Exception:  # the plain path hands it to the error handler, per chunk
            yield from self._pipe_plain(minibatch(stream, size=fill), error_handler)
            return
        shape = self._batch_shape
        call_chars = shape.call_chars(loaded.content_length)
        if not overlaps(self.settings.overlap, self._device.type):
            chunks = filled_chunks(
                stream, fill, max(fill, PIPE_MAX_DOCS), PIPE_CHUNK_CALLS * call_chars, _text_length
            )
            yield from self._pipe_plain(chunks, error_handler)
            return
        chunks = doc_chunks(
            stream, max(fill, PIPE_MAX_DOCS), int(OVERLAP_CHUNK_CALLS * call_chars), _text_length
        )
        for docs, outcome in run_overlapped(
            chunks,
            lambda docs: self._prepare(docs, materialize=True),
            self._forward,
            lambda docs, prepared, probs: self.set_annotations(docs, self._finish(prepared, probs)),
            # On CPU, straight to the torch thread (no device thread in between).
            on_torch_thread=torch_thread.routes_for(self._device),
        ):
            if isinstance(outcome, Exception):
                error_handler(self.name, self, docs, outcome)
            else:
                yield from docs

    def _pipe_plain(
        self, chunks: Iterable[List[Doc]], error_handler: Callable[..., Any]
    ) -> Iterator[Doc]:
        for docs in chunks:
            try:
                self._annotate_docs(docs)
                yield from docs
            except Exception as error:  # as spaCy's own pipes: the handler decides
                error_handler(self.name, self, docs, error)

    @property
    def _batch_shape(self) -> BatchShape:
        return batch_shape_for(
            self._device.type,
            self.precision.runs_in,
            self.settings.batch_size,
            self.settings.max_batch_subwords,
        )

    def _annotate_docs(self, docs: Sequence[Doc]) -> None:
        # Through `predict`, which a wrapper may replace; it scans the lengths
        # too (1 ms per 3,453 sentences), not worth bypassing it for.
        self.set_annotations(docs, self.predict(docs))
        if _holds_huge_record(docs):
            release_free_memory()

    def _encode(self, docs: Sequence[Doc]) -> EncodedBatch:
        """Tokenize docs into pieces and align the pieces to the docs' spaCy tokens."""
        return encode_docs(self._ensure_loaded(), docs, self.settings.context)

    def predict(self, docs: Iterable[Doc]) -> BatchPrediction:
        """Token probabilities [n_tokens, n_labels], has-piece mask, and the mask
        of tokens tied to the previous one (only a piece running in), for all
        tokens of the batch; `result[i]` gives doc i's three arrays."""
        batch = list(docs)
        prepared = self._prepare(batch)
        # A huge record: what each stage freed goes back to the system before
        # the next allocates (`residency.release_free_memory`).
        huge = _holds_huge_record(batch)
        if huge:
            release_free_memory()
        piece_probs = self._forward(prepared)
        if huge:
            release_free_memory()
        return self._finish(prepared, piece_probs)

    def _prepare(self, docs: Sequence[Doc], materialize: bool = False) -> PreparedDocs:
        """The CPU's work before the model: pieces aligned to tokens, and the
        model inputs, on the host (`_forward` moves them), built as the forward
        loop asks for them, or all at once with `materialize` (for a device
        thread to run)."""
        loaded = self._ensure_loaded()
        encoded = self._encode(docs)
        shape = self._batch_shape
        batches: Iterable[ModelBatch] = model_batches(
            loaded,
            encoded,
            shape.windows,
            shape.subwords,
            pack=True,
            device=HOST,
            call_overhead=shape.call_overhead,
        )
        if materialize:
            batches = list(batches)
        return PreparedDocs(encoded, batches)

    def _forward(self, prepared: PreparedDocs) -> np.ndarray:
        """The model's part: label probabilities per piece (one forward at a time).
        Inputs reach the device here, from the thread (and so on the CUDA
        stream) that runs the forward."""
        loaded = self._ensure_loaded()
        batches = iter(prepared.batches)
        if loaded.device.type != "cpu":
            batches = on_device(batches, loaded.device)
        # The lock is taken where the forward runs: a caller holding it while
        # it waits for the torch thread would block an overlapped pipe's
        # forward already queued there.
        return self._on_torch_thread(self._locked_forward, loaded, prepared.encoded, batches)

    def _locked_forward(
        self, loaded: LoadedModel, encoded: EncodedBatch, batches: Iterator[ModelBatch]
    ) -> np.ndarray:
        with self._forward_lock:
            return piece_probabilities(loaded, encoded, batches)

    def _finish(self, prepared: PreparedDocs, piece_probs: np.ndarray) -> BatchPrediction:
        """The CPU's work after the model: probabilities per token, word groups."""
        loaded = self._ensure_loaded()
        encoded = prepared.encoded
        alignment = encoded.alignment
        token_probs = aggregate_token_probs(
            piece_probs, alignment, self.settings.aggregation, loaded.continuation
        )
        prediction = BatchPrediction(
            token_probs,
            alignment.tokens_with_pieces(),
            alignment.tied_tokens(),
            encoded,
            piece_probs=piece_probs,
        )
        if loaded.scheme.is_entity:
            words = word_groups(
                encoded.text,
                encoded.token_starts,
                encoded.token_ends,
                encoded.spaces,
                encoded.segment_starts,
                encoded.is_space,
            )
            # Whatever `group_words` says: entities are read (and trained)
            # through pieces that may hold a bracket with the word.
            prediction.edge_punct = words.separating & alignment.shares_piece_with_neighbour()
            if self.settings.group_words:
                prediction.word_starts, prediction.glued = words.starts, words.glued
        return prediction

    def set_annotations(self, docs: Iterable[Doc], predictions: BatchPrediction) -> None:
        docs = list(docs)
        if self._ensure_loaded().scheme.is_entity:
            self._write_entities(docs, predictions)
        else:
            self._write_tags(docs, predictions)
        self._count(docs=len(docs))

    def _write_entities(self, docs: List[Doc], predictions: BatchPrediction) -> None:
        """Decode the batch's spans once, then write each doc; count and report
        predictions that lose to entities set by an earlier component."""
        annotate = self.annotate
        encoded = predictions.encoded
        bounds = encoded.token_bounds.tolist()
        spans_key = self.settings.spans_key if "spans" in annotate else None
        prediction, below = self.decode_entities(predictions)
        char = self.char_entities(predictions, prediction)
        lost = 0
        counts: Counter = Counter()
        examples: List[str] = []
        for i, (doc, doc_prediction) in enumerate(
            zip(docs, split_by_doc(prediction, encoded.token_bounds))
        ):
            lo, hi = bounds[i], bounds[i + 1]
            token_idx: Optional[np.ndarray] = encoded.token_idx[lo:hi]
            if char is not None:
                doc._.set(CHAR_ENTS_ATTR, tuple(char.per_doc[i]))
                if char.inside[i]:
                    # An entity edge inside a token (`labels.exact`).
                    doc_prediction, exact_counts, retokenized = exact_prediction(
                        doc,
                        i,
                        char,
                        doc_prediction,
                        split_tokens=bool(self.settings.split_tokens),
                        overwrite_ents=bool(self.settings.overwrite_ents),
                    )
                    counts.update(exact_counts)
                    if retokenized:
                        token_idx = None
            report = write_entities(
                doc,
                doc_prediction,
                set_ents="ents" in annotate,
                spans_key=spans_key,
                overwrite_ents=bool(self.settings.overwrite_ents),
                token_idx=token_idx,
            )
            counts["ents_conflicts"] += len(report.conflicts)
            counts["ents_replaced"] += report.replaced
            if report.conflicts and spans_key is None:
                lost += len(report.conflicts)
                for start, end, label in report.conflicts[:3]:
                    # Where and what, never the text: users tag personal data.
                    span = doc[start:end]
                    examples.append(f"doc {i} chars {span.start_char}-{span.end_char} ({label})")
        counts["ents_below_threshold"] += below
        if char is not None:
            counts["char_ents_below_threshold"] += char.below_threshold
        counts["ents_lost"] += lost
        self._count(**counts)
        if lost:
            self._report_lost(lost, examples)

    def decode_entities(
        self, predictions: BatchPrediction, *, raw: bool = False
    ) -> Tuple[EntityPrediction, int]:
        """The batch's entities (over its tokens, `split_by_doc` cuts them per
        doc) and how many the threshold removed: what `set_annotations` writes.

        `raw`: every decoded entity under the model's type name, before
        `label_map`, `ignore_labels` and `threshold`, which only rename and
        drop: what calibration fits on (decoded as written, `o_bias`
        included). Scores are read through `temperature` either way; the spans
        never depend on it.
        """
        loaded = self._ensure_loaded()
        scheme = loaded.scheme
        if raw:
            type_names: Mapping[str, Optional[str]] = {t: t for t in scheme.entity_types}
        else:
            type_names = self._type_names(scheme)
        return predict_entities(
            scheme,
            predictions.token_probs,
            predictions.has_piece,
            type_names,
            0.0 if raw else self._threshold,
            tied=predictions.tied,
            word_starts=predictions.word_starts,
            glued_punct=predictions.glued,
            edge_punct=predictions.edge_punct,
            segment_starts=predictions.encoded.segment_starts,
            decoding=self._decoding(loaded),
            o_bias=float(self.settings.o_bias),
            score_probs=self._score_probs(predictions.token_probs),
        )

    def char_entities(
        self, predictions: BatchPrediction, prediction: EntityPrediction
    ) -> Optional[CharEntities]:
        """The batch's entities at exact character offsets (`labels.char_spans`),
        refining `prediction` (its decoded entities); None without piece
        probabilities."""
        encoded = predictions.encoded
        if predictions.piece_probs is None or encoded.piece_spans is None:
            return None
        loaded = self._ensure_loaded()
        alignment = encoded.alignment
        temperatures = self._temperatures
        return char_entities(
            scheme=loaded.scheme,
            type_names=self._type_names(loaded.scheme),
            spans=prediction.spans,
            token_scores=prediction.token_scores,
            cells=piece_cells(
                alignment.piece,
                alignment.token,
                alignment.continues,
                alignment.marker,
                encoded.piece_spans,
                encoded.token_starts,
                encoded.token_ends,
            ),
            piece_probs=predictions.piece_probs,
            token_starts=encoded.token_starts,
            token_ends=encoded.token_ends,
            token_bounds=encoded.token_bounds,
            char_base=encoded.token_starts - encoded.token_idx,
            segment_starts=encoded.segment_starts,
            threshold=self._threshold,
            o_bias=float(self.settings.o_bias),
            calibrate=None
            if temperatures is None
            else (lambda rows: calibrated_probs(rows, temperatures)),
        )

    def _score_probs(self, token_probs: np.ndarray) -> Optional[np.ndarray]:
        """The probabilities scores are read from (None: `token_probs` as they are)."""
        if self._temperatures is None:
            return None
        return calibrated_probs(token_probs, self._temperatures)

    def _write_tags(self, docs: List[Doc], predictions: BatchPrediction) -> None:
        scheme = self._ensure_loaded().scheme
        encoded = predictions.encoded
        bounds = encoded.token_bounds.tolist()
        names = tag_name_map(scheme, self.settings.label_map)
        attrs = [a for a in self.annotate if a in ("tag", "pos")]
        tags, scores = predict_tags(
            scheme,
            predictions.token_probs,
            predictions.has_piece,
            names,
            score_probs=self._score_probs(predictions.token_probs),
        )
        for i, doc in enumerate(docs):
            lo, hi = bounds[i], bounds[i + 1]
            write_tags(
                doc, tags[lo:hi], scores[lo:hi], attrs=attrs, token_idx=encoded.token_idx[lo:hi]
            )

    def _count(self, **increments: int) -> None:
        """Add to `counters` (from any thread)."""
        with self._counters_lock:
            self.counters.update(increments)

    def _report_lost(self, lost: int, examples: List[str]) -> None:
        message = (
            f"{self.name}: {lost} predicted entities overlap entities set by an earlier "
            f"component and were not written (e.g. {', '.join(examples[:3])}, doc numbers "
            "counted within the batch); "
            f'{self.counters["ents_lost"]} so far (see .counters). Add "spans" to '
            "`annotate` to keep them in doc.spans, set overwrite_ents=true to let the "
            'model win, or errors="ignore" to silence this.'
        )
        if self.settings.errors == "raise":
            raise AnnotationConflictError(message)
        if self.settings.errors == "warn":
            warnings.warn(message, stacklevel=4)

    # ----------------------------------------------------------------- training

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Sequence[str]] = None,
    ) -> None:
        """Prepare for training: choose the label set and, if needed, a new head
        (see `fine_tuning.choose_head`)."""
        validate_examples(get_examples(), "HFTokenTagger.initialize")
        self._on_torch_thread(self._initialize_model, get_examples, labels)

    def _initialize_model(
        self, get_examples: Callable[[], Iterable[Example]], labels: Optional[Sequence[str]]
    ) -> None:
        source = load_source(
            self.settings.model, self.settings.revision, self.precision.weights, require_head=False
        )
        self.resolved_commit = source.resolved_commit
        model = fine_tuning.choose_head(
            self.settings.model, source, self.settings.annotate, get_examples, labels
        )
        self._install(model, source.tokenizer)

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """One gradient step's worth of loss on `examples` (gradients accumulate)."""
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "HFTokenTagger.update")
        if not examples:
            return losses
        losses[self.name] += self._on_torch_thread(self._accumulate, examples, drop)
        if sgd not in (None, False):
            self.finish_update(sgd)
        return losses

    def _accumulate(self, examples: List[Example], drop: float) -> float:
        loaded = self._ensure_loaded()
        return fine_tuning.accumulate_gradients(
            loaded.model,
            self._training_batches(examples),
            drop,
            lambda: fine_tuning.autocast(self.settings.mixed_precision, loaded.device),
            lambda logits, targets: self.get_loss(examples, (logits, targets)),
        )

    def get_loss(self, examples: Iterable[Example], scores: Any) -> torch.Tensor:
        """Mean cross-entropy of (logits, targets) over pieces that carry a target."""
        logits, targets = scores
        return fine_tuning.cross_entropy(logits, targets)

    def _training_batches(
        self, examples: Sequence[Example]
    ) -> List[Tuple[Dict[str, torch.Tensor], torch.Tensor]]:
        """Model inputs and piece targets for examples, windowed like inference."""
        # Training computes in the weights' dtype, float32 on CPU.
        shape = batch_shape_for(
            self._device.type, "float32", self.settings.batch_size, self.settings.max_batch_subwords
        )
        batches, unknown = fine_tuning.training_batches(
            self._ensure_loaded(),
            examples,
            tag_attr="POS" if "pos" in self.annotate else "TAG",
            label_all_pieces=bool(self.settings.label_all_pieces),
            context=self.settings.context,
            batch_size=shape.windows,
            max_batch_subwords=shape.subwords,
        )
        self._count(train_unknown_labels=unknown)
        return batches

    def finish_update(self, sgd: Optimizer) -> None:
        """Apply accumulated gradients with the settings of spaCy's optimizer."""
        self._on_torch_thread(self._step, sgd)

    def _step(self, sgd: Optimizer) -> None:
        if self._torch_step is None:
            self._torch_step = fine_tuning.TorchStep(self._ensure_loaded().model)
        self._torch_step(sgd)
        self._ensure_loaded().weights_changed()

    def score(self, examples: Iterable[Example], **kwargs: Any) -> Dict[str, Any]:
        """Score what the component writes: the scorer gets every setting, the
        labels and, once the model is loaded, `annotate_resolved` (what
        `annotate` means for its labels); `kwargs` win."""
        if self.scorer is None:
            return {}
        scorer_kwargs: Dict[str, Any] = {
            **self.cfg,
            "annotate_resolved": self._annotate_resolved,
            "labels": self.labels,
            **kwargs,
        }
        return self.scorer(examples, **scorer_kwargs)

    def add_label(self, label: str) -> int:
        raise NotImplementedError(
            "hf_token_tagger takes its labels from the training data in initialize(); "
            "pass them as [initialize.components.hf_token_tagger.labels] instead."
        )

    # ------------------------------------------------------------ serialization

    def to_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = ()) -> None:
        """Write settings, labels and the resolved commit (`cfg.json`) and the
        whole model (`model/`: safetensors + tokenizer) to `path`, but for the
        parts named in `exclude` ("cfg", "model")."""
        loaded = self._ensure_loaded()
        cfg = {**self.settings.as_dict(), "resolved_commit": self.resolved_commit}
        label_map = self._resolved_label_map(loaded.scheme)
        self._on_torch_thread(
            write_folder, Path(path), loaded, cfg, label_map, exclude=set(exclude)
        )

    def _resolved_label_map(self, scheme: LabelScheme) -> Dict[str, Optional[str]]:
        if scheme.is_entity:
            return dict(self._type_names(scheme))
        return dict(tag_name_map(scheme, self.settings.label_map))

    def _type_names(self, scheme: LabelScheme) -> Mapping[str, Optional[str]]:
        """The name written for each entity type (None: dropped), after
        `label_map` and `ignore_labels`."""
        return map_types(scheme.entity_types, self.settings.label_map, self.settings.ignore_labels)

    def from_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = ()) -> "HFTokenTagger":
        """Load the model from `path`, never from `model`'s hub id; with "model"
        excluded it loads from the `model` setting when first needed."""
        exclude = set(exclude)
        saved, tokenizer, model = self._on_torch_thread(
            read_folder, Path(path), self.precision.weights, exclude
        )
        # Settings come from the pipeline's config (config.cfg, plus any
        # overrides given to spacy.load); cfg.json only restores what the
        # config cannot know: which weights were resolved when it was saved.
        self.resolved_commit = saved.get("resolved_commit")
        if self.settings.revision is None and saved.get("revision") is not None:
            self.settings = self.settings.replace(revision=saved["revision"])
        if model is None:
            return self
        self._on_torch_thread(self._install, model, tokenizer)
        return self

    def to_bytes(self, *, exclude: Iterable[str] = ()) -> bytes:
        """The same folder as to_disk, packed as a msgpack map of file contents."""
        return folder_to_bytes(lambda path: self.to_disk(path, exclude=exclude))

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = ()) -> "HFTokenTagger":
        bytes_to_folder(bytes_data, lambda path: self.from_disk(path, exclude=exclude))
        return self
