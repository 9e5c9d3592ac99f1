"""The `hf_token_tagger` pipeline component.

preprocess (encode + windows) → forward (torch) → postprocess (merge windows,
align, aggregate) → decode → write. Each step but `forward` and `write` is a
pure function in its own module; this class holds the model and the settings,
and is a `TrainablePipe`, so `spacy train` fine-tunes it through the same
encoding and alignment code that inference uses.
"""

import json
import shutil
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import (
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

import numpy as np
import torch
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc
from spacy.training import Example, validate_examples
from spacy.vocab import Vocab
from thinc.api import Model, Optimizer

from . import hf
from .alignment import AGGREGATIONS, aggregate_token_probs
from .batch import BatchPrediction, EncodedBatch, encode_batch
from .decoding import predict_entities, predict_tags, split_by_doc, tag_name_map
from .labels import UPOS_TAGS, LabelScheme, iob_labels, map_types, read_label_scheme
from .scoring import make_hf_tagger_scorer
from .targets import IGNORE_INDEX, biluo_to_scheme_ids, piece_targets, tags_to_ids
from .windows import Window, make_windows, pack_batches
from .words import word_groups
from .writing import register_extensions, write_entities, write_tags

ANNOTATE_CHOICES = ("ents", "spans", "tag", "pos")
ERROR_POLICIES = ("raise", "warn", "ignore")
MODEL_DIR = "model"
CFG_FILE = "cfg.json"
# Cost of one more forward call, in padded subword positions: measured on 2 CPU
# cores with a 6-layer encoder (inference, and training's forward + backward),
# splitting a batch pays off once it saves about this much padding.
# Accelerators pay more per call.
_CPU_BATCH_OVERHEAD = 32
_DEVICE_BATCH_OVERHEAD = 256

DEFAULT_CONFIG: Dict[str, Any] = {
    "model": "",
    "revision": None,
    "device": "auto",
    "dtype": "auto",
    "max_length": None,
    "stride": None,
    "batch_size": 32,
    "max_batch_subwords": 16384,
    "aggregation": "first",
    "group_words": True,
    "annotate": None,
    "spans_key": "hf_ents",
    "overwrite_ents": False,
    "label_map": {},
    "ignore_labels": [],
    "threshold": 0.0,
    "errors": "warn",
    "label_all_pieces": False,
    "mixed_precision": "auto",
    "scorer": {"@scorers": "spacy_hf_tagger.scorer.v1"},
}


class ConfigError(ValueError):
    """A setting of the component is invalid; the message names it and the fix."""


class AnnotationConflictError(RuntimeError):
    """Raised under errors="raise" when a prediction cannot be written."""


@Language.factory(
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
    default_config=DEFAULT_CONFIG,
    default_score_weights={
        "ents_f": 1.0,
        "ents_p": 0.0,
        "ents_r": 0.0,
        "ents_per_type": None,
        "tag_acc": 1.0,
        "pos_acc": 1.0,
    },
)
def make_hf_token_tagger(
    nlp: Language,
    name: str,
    model: str,
    revision: Optional[str],
    device: str,
    dtype: str,
    max_length: Optional[int],
    stride: Optional[int],
    batch_size: int,
    max_batch_subwords: int,
    aggregation: str,
    group_words: bool,
    annotate: Optional[List[str]],
    spans_key: str,
    overwrite_ents: bool,
    label_map: Dict[str, str],
    ignore_labels: List[str],
    threshold: float,
    errors: str,
    label_all_pieces: bool,
    mixed_precision: str,
    scorer: Optional[Callable],
) -> "HFTokenTagger":
    """Build the component. The model itself loads lazily, on first use or
    from_disk, so `spacy.load` of a saved pipeline never touches `model`."""
    return HFTokenTagger(
        nlp.vocab,
        name=name,
        model=model,
        revision=revision,
        device=device,
        dtype=dtype,
        max_length=max_length,
        stride=stride,
        batch_size=batch_size,
        max_batch_subwords=max_batch_subwords,
        aggregation=aggregation,
        group_words=group_words,
        annotate=annotate,
        spans_key=spans_key,
        overwrite_ents=overwrite_ents,
        label_map=label_map,
        ignore_labels=ignore_labels,
        threshold=threshold,
        errors=errors,
        label_all_pieces=label_all_pieces,
        mixed_precision=mixed_precision,
        scorer=scorer,
    )


@dataclass
class _Loaded:
    """The loaded model and everything derived from it."""

    model: torch.nn.Module
    tokenizer: Any
    scheme: LabelScheme
    special: hf.SpecialTokens
    content_length: int
    stride: int
    device: torch.device
    continuation: np.ndarray


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
        model: str,
        revision: Optional[str] = None,
        device: str = "auto",
        dtype: str = "auto",
        max_length: Optional[int] = None,
        stride: Optional[int] = None,
        batch_size: int = 32,
        max_batch_subwords: int = 16384,
        aggregation: str = "first",
        group_words: bool = True,
        annotate: Optional[List[str]] = None,
        spans_key: str = "hf_ents",
        overwrite_ents: bool = False,
        label_map: Optional[Dict[str, str]] = None,
        ignore_labels: Optional[List[str]] = None,
        threshold: float = 0.0,
        errors: str = "warn",
        label_all_pieces: bool = False,
        mixed_precision: str = "auto",
        scorer: Optional[Callable] = None,
    ) -> None:
        register_extensions()
        self.vocab = vocab
        self.name = name
        self.model = _placeholder_model(name)
        self.scorer = scorer if scorer is not None else make_hf_tagger_scorer()
        self.cfg: Dict[str, Any] = {
            "model": model,
            "revision": revision,
            "device": device,
            "dtype": dtype,
            "max_length": max_length,
            "stride": stride,
            "batch_size": batch_size,
            "max_batch_subwords": max_batch_subwords,
            "aggregation": aggregation,
            "group_words": group_words,
            "annotate": list(annotate) if annotate is not None else None,
            "spans_key": spans_key,
            "overwrite_ents": overwrite_ents,
            "label_map": dict(label_map or {}),
            "ignore_labels": list(ignore_labels or []),
            "threshold": threshold,
            "errors": errors,
            "label_all_pieces": label_all_pieces,
            "mixed_precision": mixed_precision,
            "resolved_commit": None,
        }
        self._validate_settings()
        # Resolve the device now so a wrong value fails when the pipe is added.
        self._device = hf.resolve_device(device)
        self._dtype = hf.resolve_dtype(dtype, self._device)
        self._loaded: Optional[_Loaded] = None
        self._torch_optimizer: Optional[torch.optim.Optimizer] = None
        self.counters: Counter = Counter()

    # ------------------------------------------------------------------ settings

    def _validate_settings(self) -> None:
        cfg = self.cfg
        if cfg["aggregation"] not in AGGREGATIONS:
            raise ConfigError(
                f"aggregation={cfg['aggregation']!r} is not known: use one of {AGGREGATIONS}."
            )
        if cfg["errors"] not in ERROR_POLICIES:
            raise ConfigError(
                f"errors={cfg['errors']!r} is not known: use one of {ERROR_POLICIES}."
            )
        annotate = cfg["annotate"]
        if annotate is not None:
            if isinstance(annotate, str):
                raise ConfigError(
                    f"annotate={annotate!r} must be a list, e.g. [\"ents\", \"spans\"]."
                )
            bad = [a for a in annotate if a not in ANNOTATE_CHOICES]
            if bad or not annotate:
                raise ConfigError(
                    f"annotate={annotate!r}: each entry must be one of {ANNOTATE_CHOICES} "
                    "(or leave it null to choose from the model's labels)."
                )
        if not isinstance(cfg["batch_size"], int) or cfg["batch_size"] < 1:
            raise ConfigError(f"batch_size={cfg['batch_size']!r} must be a positive integer.")
        if cfg["max_length"] is not None and (
            not isinstance(cfg["max_length"], int) or cfg["max_length"] < 2
        ):
            raise ConfigError(
                f"max_length={cfg['max_length']!r} must be null (use the model's) or an "
                "integer of at least 2."
            )
        if cfg["stride"] is not None and (not isinstance(cfg["stride"], int) or cfg["stride"] < 0):
            raise ConfigError(
                f"stride={cfg['stride']!r} must be null (a quarter of the window) or a "
                "non-negative integer."
            )
        if not 0.0 <= float(cfg["threshold"]) <= 1.0:
            raise ConfigError(f"threshold={cfg['threshold']!r} must be between 0 and 1.")
        if cfg["mixed_precision"] not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError(
                f"mixed_precision={cfg['mixed_precision']!r}: use \"auto\", \"float32\", "
                '"bfloat16" or "float16".'
            )
        if not cfg["spans_key"]:
            raise ConfigError("spans_key must be a non-empty string.")

    # --------------------------------------------------------------------- model

    @property
    def is_loaded(self) -> bool:
        return self._loaded is not None

    @property
    def hf_model(self) -> torch.nn.Module:
        """The underlying transformers model (loaded on first access)."""
        return self._ensure_loaded().model

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

    def _ensure_loaded(self) -> _Loaded:
        if self._loaded is None:
            tokenizer, model, _ = self._load_source(require_head=True)
            self._install(model, tokenizer)
        assert self._loaded is not None
        return self._loaded

    def _load_source(self, *, require_head: bool) -> Tuple[Any, torch.nn.Module, Dict]:
        """Tokenizer, model and weight-loading problems from the `model` setting."""
        source = self.cfg["model"]
        local_only = bool(source) and Path(str(source)).expanduser().is_dir()
        tokenizer = hf.load_tokenizer(source, self.cfg["revision"], local_only)
        model, problems = hf.load_model(
            source, self.cfg["revision"], local_only, require_head=require_head, dtype=self._dtype
        )
        self.cfg["resolved_commit"] = hf.resolved_commit(model)
        return tokenizer, model, problems

    def _install(self, model: torch.nn.Module, tokenizer: Any) -> None:
        """Put a model on the device and derive everything inference needs."""
        scheme = read_label_scheme(model.config.id2label)
        model.to(device=self._device, dtype=self._dtype)
        model.eval()
        special = hf.special_tokens(tokenizer)
        limit = self.cfg["max_length"] or hf.max_input_length(tokenizer, model.config)
        content = limit - special.count
        if content < 1:
            raise ConfigError(
                f"max_length={limit} leaves no room for text after the model's "
                f"{special.count} special tokens; raise max_length."
            )
        stride = self.cfg["stride"]
        if stride is None:
            stride = min(content // 4, 128)
        if stride >= content:
            raise ConfigError(
                f"stride={stride} must be smaller than the window's text length "
                f"{content} (max_length {limit} minus {special.count} special tokens)."
            )
        self._loaded = _Loaded(
            model=model,
            tokenizer=tokenizer,
            scheme=scheme,
            special=special,
            content_length=content,
            stride=stride,
            device=self._device,
            continuation=scheme.begin_to_inside(),
        )
        self._torch_optimizer = None
        self._resolve_annotate(scheme)

    def _resolve_annotate(self, scheme: LabelScheme) -> List[str]:
        annotate = self.cfg["annotate"]
        if annotate is None:
            if scheme.is_entity:
                resolved = ["ents", "spans"]
            elif set(scheme.labels) <= UPOS_TAGS | {"_"}:
                resolved = ["pos"]
            else:
                resolved = ["tag"]
        else:
            resolved = list(annotate)
            entity_targets = {"ents", "spans"} & set(resolved)
            if entity_targets and not scheme.is_entity:
                raise ConfigError(
                    f"annotate={annotate!r} asks for entities, but the model's labels are "
                    f"plain tags ({list(scheme.labels)[:8]}). Use annotate=[\"tag\"] or "
                    "[\"pos\"] for a tagging model."
                )
            if {"tag", "pos"} & set(resolved) and scheme.is_entity:
                raise ConfigError(
                    f"annotate={annotate!r} asks for tags, but the model's labels are "
                    f"entity labels ({list(scheme.labels)[:8]}). Use [\"ents\", \"spans\"]."
                )
            if "pos" in resolved:
                names = tag_name_map(scheme, self.cfg["label_map"])
                bad = sorted(set(names.values()) - UPOS_TAGS - {"_"})
                if bad:
                    raise ConfigError(
                        f"annotate includes \"pos\", but these labels are not Universal POS "
                        f"tags: {bad[:8]}. Use \"tag\", or map them with label_map."
                    )
        self.cfg["annotate_resolved"] = resolved
        return resolved

    @property
    def annotate(self) -> List[str]:
        return list(self.cfg.get("annotate_resolved") or self._resolve_annotate(self.label_scheme))

    # ----------------------------------------------------------------- encoding

    def _encode(self, docs: Sequence[Doc]) -> EncodedBatch:
        """Tokenize docs into pieces and align pieces to the docs' spaCy tokens."""
        tokenizer = self._ensure_loaded().tokenizer

        def tokenize(texts: List[str]) -> List[Tuple[np.ndarray, np.ndarray]]:
            return [(e.ids, e.offsets) for e in hf.encode_texts(tokenizer, texts)]

        return encode_batch(docs, tokenize)

    def _batches(
        self, encoded: EncodedBatch
    ) -> Iterator[Tuple[List[Window], Dict[str, torch.Tensor]]]:
        """Model inputs for the windows of `encoded`, length-sorted and packed.

        Sorted windows are cut into batches where the padding saved outweighs
        the cost of one more forward call: small on CPU, larger on
        accelerators, which pay more per call and less per position. On the
        CoNLL sentence workload this pads 10% fewer positions than filling
        batches in turn, and a training batch of 32 random sentences (over
        half padding when run whole) trains twice as fast.
        """
        loaded = self._ensure_loaded()
        piece_ids = encoded.piece_ids
        windows = make_windows(
            [len(ids) for ids in piece_ids], loaded.content_length, loaded.stride
        )
        lengths = [w.length for w in windows]
        on_cpu = loaded.device.type == "cpu"
        batches = pack_batches(
            lengths,
            self.cfg["batch_size"],
            self.cfg["max_batch_subwords"],
            _CPU_BATCH_OVERHEAD if on_cpu else _DEVICE_BATCH_OVERHEAD,
        )
        for batch in batches:
            members = [windows[i] for i in batch]
            rows = [piece_ids[w.text_index][w.start : w.end] for w in members]
            yield members, hf.build_batch(rows, loaded.special, loaded.device)

    # ---------------------------------------------------------------- inference

    def predict(self, docs: Iterable[Doc]) -> BatchPrediction:
        """Token probabilities [n_tokens, n_labels], has-piece mask, and the mask
        of tokens tied to the previous one (only a piece running in), for all
        tokens of the batch; `result[i]` gives doc i's three arrays."""
        docs = list(docs)
        loaded = self._ensure_loaded()
        encoded = self._encode(docs)
        n_labels = len(loaded.scheme.labels)
        piece_probs = np.zeros((encoded.n_pieces, n_labels), dtype=np.float32)
        piece_bounds = encoded.piece_bounds.tolist()
        n_prefix = len(loaded.special.prefix)
        model = loaded.model
        model.eval()
        with torch.inference_mode():
            for members, inputs in self._batches(encoded):
                logits = model(**inputs).logits
                probs = torch.softmax(logits.float(), dim=-1).cpu().numpy()
                for row, w in enumerate(members):
                    base = piece_bounds[w.text_index]
                    piece_probs[base + w.keep_start : base + w.keep_end] = probs[
                        row, w.kept_columns(n_prefix)
                    ]
        alignment = encoded.alignment
        token_probs = aggregate_token_probs(
            piece_probs, alignment, self.cfg["aggregation"], loaded.continuation
        )
        prediction = BatchPrediction(
            token_probs, alignment.tokens_with_pieces(), alignment.tied_tokens(), encoded
        )
        if loaded.scheme.is_entity and self.cfg["group_words"]:
            prediction.word_starts, prediction.glued = word_groups(
                encoded.text,
                encoded.token_starts,
                encoded.token_ends,
                encoded.spaces,
                encoded.doc_starts,
                encoded.is_space,
            )
        return prediction

    def set_annotations(self, docs: Iterable[Doc], predictions: BatchPrediction) -> None:
        docs = list(docs)
        loaded = self._ensure_loaded()
        scheme = loaded.scheme
        annotate = self.annotate
        encoded = predictions.encoded
        bounds = encoded.token_bounds.tolist()
        token_idx = encoded.token_idx
        conflicts = 0
        lost = 0
        examples: List[str] = []
        if scheme.is_entity:
            type_names = map_types(
                scheme.entity_types, self.cfg["label_map"], self.cfg["ignore_labels"]
            )
            spans_key = self.cfg["spans_key"] if "spans" in annotate else None
            prediction, below = predict_entities(
                scheme,
                predictions.token_probs,
                predictions.has_piece,
                type_names,
                float(self.cfg["threshold"]),
                tied=predictions.tied,
                word_starts=predictions.word_starts,
                glued_punct=predictions.glued,
                doc_starts=encoded.doc_starts,
            )
            per_doc = split_by_doc(prediction, encoded.token_bounds)
            for i, (doc, doc_prediction) in enumerate(zip(docs, per_doc)):
                report = write_entities(
                    doc,
                    doc_prediction,
                    set_ents="ents" in annotate,
                    spans_key=spans_key,
                    overwrite_ents=bool(self.cfg["overwrite_ents"]),
                    token_idx=token_idx[bounds[i] : bounds[i + 1]],
                )
                conflicts += len(report.conflicts)
                self.counters["ents_replaced"] += report.replaced
                if report.conflicts and spans_key is None:
                    lost += len(report.conflicts)
                    for start, end, label in report.conflicts[:3]:
                        examples.append(f"{doc[start:end].text!r} ({label})")
            self.counters["ents_below_threshold"] += below
        else:
            names = tag_name_map(scheme, self.cfg["label_map"])
            attrs = [a for a in annotate if a in ("tag", "pos")]
            tags, scores = predict_tags(
                scheme, predictions.token_probs, predictions.has_piece, names
            )
            for i, doc in enumerate(docs):
                lo, hi = bounds[i], bounds[i + 1]
                write_tags(
                    doc, tags[lo:hi], scores[lo:hi], attrs=attrs, token_idx=token_idx[lo:hi]
                )
        self.counters["docs"] += len(docs)
        self.counters["ents_conflicts"] += conflicts
        self.counters["ents_lost"] += lost
        if lost:
            self._report_lost(lost, examples)

    def _report_lost(self, lost: int, examples: List[str]) -> None:
        message = (
            f"{self.name}: {lost} predicted entities overlap entities set by an earlier "
            f"component and were not written (e.g. {', '.join(examples[:3])}); "
            f"{self.counters['ents_lost']} so far (see .counters). Add \"spans\" to "
            "`annotate` to keep them in doc.spans, set overwrite_ents=true to let the "
            'model win, or errors="ignore" to silence this.'
        )
        if self.cfg["errors"] == "raise":
            raise AnnotationConflictError(message)
        if self.cfg["errors"] == "warn":
            warnings.warn(message, stacklevel=3)

    # ----------------------------------------------------------------- training

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Sequence[str]] = None,
    ) -> None:
        """Prepare for training: choose the label set and (if needed) a new head.

        Labels come from `labels` or from the gold data: entity types become
        IOB2 labels, tags stay tags. If the checkpoint already has all of them
        its head is kept; if it has some, the head is extended and its rows
        for the old labels are kept bit for bit; otherwise a new head is built.
        """
        validate_examples(get_examples(), "HFTokenTagger.initialize")
        source = self.cfg["model"]
        tokenizer, model, problems = self._load_source(require_head=False)
        _check_encoder_loaded(source, problems)
        has_head = not problems["missing_keys"] and not problems["mismatched_keys"]
        checkpoint_scheme: Optional[LabelScheme] = None
        if has_head:
            try:
                checkpoint_scheme = read_label_scheme(model.config.id2label)
            except ValueError:
                checkpoint_scheme = None
        gold = _gold_labels(get_examples)
        kind = self._training_kind(gold, checkpoint_scheme)
        if labels is None:
            labels = sorted(gold[kind])
        if not labels:
            if checkpoint_scheme is None:
                raise ConfigError(
                    f"No gold {kind} labels were found in the training examples and "
                    f"{source!r} has no token-classification head to take labels from. "
                    "Check the corpus (e.g. `spacy debug data`) or pass labels in "
                    "[initialize.components.<name>.labels]."
                )
            # Nothing to learn labels from (e.g. `spacy assemble`): keep the checkpoint.
            labels = list(
                checkpoint_scheme.entity_types
                if checkpoint_scheme.is_entity
                else checkpoint_scheme.labels
            )
        new_labels = self._merge_labels(checkpoint_scheme, kind, list(labels))
        if checkpoint_scheme is None or list(new_labels) != list(checkpoint_scheme.labels):
            keep = checkpoint_scheme.labels if checkpoint_scheme is not None else ()
            model = _resize_head(model, list(new_labels), list(keep))
        self._install(model, tokenizer)

    def _training_kind(
        self, gold: Dict[str, set], scheme: Optional[LabelScheme]
    ) -> str:
        """What to train: from `annotate`, else the gold data, else the checkpoint."""
        annotate = self.cfg["annotate"]
        if annotate:
            if "ents" in annotate or "spans" in annotate:
                return "ents"
            return "pos" if "pos" in annotate else "tag"
        for kind in ("ents", "pos", "tag"):
            if gold[kind]:
                return kind
        if scheme is not None:
            if scheme.is_entity:
                return "ents"
            return "pos" if set(scheme.labels) <= UPOS_TAGS | {"_"} else "tag"
        raise ConfigError(
            "Cannot tell what to train: the examples have no entities, POS or tags. "
            "Set `annotate` (e.g. [\"ents\", \"spans\"] or [\"pos\"])."
        )

    @staticmethod
    def _merge_labels(
        checkpoint: Optional[LabelScheme], kind: str, wanted: List[str]
    ) -> List[str]:
        if kind == "ents":
            if checkpoint is not None and checkpoint.is_entity:
                missing = [t for t in wanted if t not in checkpoint.entity_types]
                if not missing:
                    return list(checkpoint.labels)
                if checkpoint.kind == "iob" and len(missing) < len(wanted):
                    return list(checkpoint.labels) + [
                        lab for t in missing for lab in (f"B-{t}", f"I-{t}")
                    ]
            return iob_labels(wanted)
        if checkpoint is not None and not checkpoint.is_entity:
            missing = [t for t in wanted if t not in checkpoint.labels]
            if len(missing) < len(wanted):
                return list(checkpoint.labels) + missing
        return list(wanted)

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
        loaded = self._ensure_loaded()
        model = loaded.model
        _set_dropout(model, drop)
        model.train(drop > 0)
        batches = self._training_batches(examples)
        total = sum(int((t != IGNORE_INDEX).sum()) for _, t in batches)
        if total == 0:
            return losses
        loss_value = 0.0
        for inputs, targets in batches:
            with self._autocast():
                logits = model(**inputs).logits
            loss = self.get_loss(examples, (logits, targets)) * (
                int((targets != IGNORE_INDEX).sum()) / total
            )
            loss.backward()
            loss_value += float(loss.detach())
        model.eval()
        losses[self.name] += loss_value
        if sgd not in (None, False):
            self.finish_update(sgd)
        return losses

    def get_loss(self, examples: Iterable[Example], scores: Any) -> torch.Tensor:
        """Mean cross-entropy of (logits, targets) over pieces that carry a target."""
        logits, targets = scores
        return torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]),
            targets.reshape(-1),
            ignore_index=IGNORE_INDEX,
        )

    def _training_batches(self, examples: Sequence[Example]) -> List[Tuple[dict, torch.Tensor]]:
        """Model inputs and piece targets for examples, windowed like inference."""
        loaded = self._ensure_loaded()
        scheme = loaded.scheme
        encoded = self._encode([eg.predicted for eg in examples])
        token_ids = []
        for eg in examples:
            if scheme.is_entity:
                ids, unknown = biluo_to_scheme_ids(scheme, eg.get_aligned_ner())
            else:
                attr = "POS" if "pos" in self.annotate else "TAG"
                ids, unknown = tags_to_ids(scheme, eg.get_aligned(attr, as_string=True))
            self.counters["train_unknown_labels"] += len(unknown)
            token_ids.append(ids)
        targets_all = piece_targets(
            np.concatenate(token_ids) if token_ids else np.zeros(0, dtype=np.int64),
            encoded.alignment,
            encoded.n_pieces,
            label_all_pieces=bool(self.cfg["label_all_pieces"]),
            continuation=loaded.continuation,
        )
        piece_bounds = encoded.piece_bounds.tolist()
        n_prefix = len(loaded.special.prefix)
        out = []
        for members, inputs in self._batches(encoded):
            targets = np.full(inputs["input_ids"].shape, IGNORE_INDEX, dtype=np.int64)
            for row, w in enumerate(members):
                base = piece_bounds[w.text_index]
                targets[row, w.kept_columns(n_prefix)] = targets_all[
                    base + w.keep_start : base + w.keep_end
                ]
            out.append((inputs, torch.from_numpy(targets).to(loaded.device)))
        return out

    def _autocast(self) -> Any:
        loaded = self._ensure_loaded()
        choice = self.cfg["mixed_precision"]
        device_type = loaded.device.type
        if choice == "auto":
            if device_type == "cuda":
                choice = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
            else:
                choice = "float32"
        if choice == "float32" or device_type not in ("cuda", "cpu", "mps"):
            return torch.autocast(device_type=device_type, enabled=False)
        return torch.autocast(device_type=device_type, dtype=hf.DTYPES[choice])

    def finish_update(self, sgd: Optimizer) -> None:
        """Apply accumulated gradients with the settings of spaCy's optimizer.

        The step is torch's AdamW, driven by the thinc optimizer's current
        (scheduled) learn rate, betas, eps, weight decay (L2) and grad clip, so
        `[training.optimizer]` and its schedules in the config apply as usual.
        """
        loaded = self._ensure_loaded()
        params = [p for p in loaded.model.parameters() if p.requires_grad]
        if self._torch_optimizer is None:
            self._torch_optimizer = _adamw(params, float(sgd.learn_rate))
        opt = self._torch_optimizer
        weight_decay = float(sgd.L2) if getattr(sgd, "L2_is_weight_decay", True) else 0.0
        for group in opt.param_groups:
            group["lr"] = float(sgd.learn_rate)
            group["betas"] = (float(sgd.b1), float(sgd.b2))
            group["eps"] = float(sgd.eps)
            group["weight_decay"] = weight_decay
        if sgd.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, float(sgd.grad_clip))
        opt.step()
        opt.zero_grad(set_to_none=True)

    def add_label(self, label: str) -> int:
        raise NotImplementedError(
            "hf_token_tagger takes its labels from the training data in initialize(); "
            "pass them as [initialize.components.hf_token_tagger.labels] instead."
        )

    # ------------------------------------------------------------ serialization

    def to_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = ()) -> None:
        """Write settings and the whole model (safetensors + tokenizer) to `path`."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        loaded = self._ensure_loaded()
        model_dir = path / MODEL_DIR
        if model_dir.exists():
            shutil.rmtree(model_dir)
        # Save in the dtype used for inference; float32 stays bit exact.
        hf.save_model(loaded.model, loaded.tokenizer, model_dir)
        cfg = {k: v for k, v in self.cfg.items() if k != "annotate_resolved"}
        cfg["labels"] = list(loaded.scheme.labels)
        cfg["label_scheme"] = loaded.scheme.kind
        cfg["resolved_label_map"] = self._resolved_label_map(loaded.scheme)
        (path / CFG_FILE).write_text(json.dumps(cfg, indent=2, sort_keys=True), "utf8")

    def _resolved_label_map(self, scheme: LabelScheme) -> Dict[str, Optional[str]]:
        if scheme.is_entity:
            return dict(
                map_types(scheme.entity_types, self.cfg["label_map"], self.cfg["ignore_labels"])
            )
        return dict(tag_name_map(scheme, self.cfg["label_map"]))

    def from_disk(
        self, path: Union[str, Path], *, exclude: Iterable[str] = ()
    ) -> "HFTokenTagger":
        """Load settings and the model from `path` only: never from `model`'s hub id."""
        path = Path(path)
        cfg_path = path / CFG_FILE
        model_dir = path / MODEL_DIR
        if not cfg_path.exists() or not model_dir.is_dir():
            raise hf.ModelLoadError(
                f"{path} is not a saved hf_token_tagger: expected {CFG_FILE} and a "
                f"{MODEL_DIR}/ folder there. Was the pipeline saved with nlp.to_disk?"
            )
        saved = json.loads(cfg_path.read_text("utf8"))
        # Settings come from the pipeline's config (config.cfg, plus any
        # overrides given to spacy.load); cfg.json only restores what the
        # config cannot know: which weights were resolved when it was saved.
        self.cfg["resolved_commit"] = saved.get("resolved_commit")
        if self.cfg.get("revision") is None:
            self.cfg["revision"] = saved.get("revision")
        self.cfg.pop("annotate_resolved", None)
        tokenizer = hf.load_tokenizer(str(model_dir), None, local_only=True)
        model, _ = hf.load_model(str(model_dir), None, local_only=True, dtype=self._dtype)
        self._install(model, tokenizer)
        return self

    def to_bytes(self, *, exclude: Iterable[str] = ()) -> bytes:
        """The same folder as to_disk, packed as a msgpack map of file contents."""
        import srsly

        with tempfile.TemporaryDirectory() as tmp:
            self.to_disk(tmp)
            files = {
                str(p.relative_to(tmp)): p.read_bytes() for p in Path(tmp).rglob("*") if p.is_file()
            }
        return srsly.msgpack_dumps(files)

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = ()) -> "HFTokenTagger":
        import srsly

        files = srsly.msgpack_loads(bytes_data)
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in files.items():
                target = Path(tmp) / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            self.from_disk(tmp)
        return self


def _gold_labels(get_examples: Callable[[], Iterable[Example]]) -> Dict[str, set]:
    """Entity types, POS tags and fine tags found in the gold data, in one pass."""
    found: Dict[str, set] = {"ents": set(), "pos": set(), "tag": set()}
    for eg in get_examples():
        ref = eg.reference
        found["ents"].update(ent.label_ for ent in ref.ents)
        found["pos"].update(t.pos_ for t in ref if t.pos_)
        found["tag"].update(t.tag_ for t in ref if t.tag_)
    return found


def _adamw(params: List[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """AdamW with torch's fused kernel where the device has one (3x faster on CPU
    than the per-tensor loop), else the portable implementation."""
    try:
        return torch.optim.AdamW(params, lr=lr, fused=True)
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.AdamW(params, lr=lr)


def _set_dropout(model: torch.nn.Module, drop: float) -> None:
    """Apply spaCy's `dropout` setting to the model's dropout layers."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = float(drop)


def _check_encoder_loaded(source: str, problems: Dict[str, List[str]]) -> None:
    """Refuse a checkpoint whose encoder weights did not load (wrong folder)."""
    encoder_missing = [k for k in problems["missing_keys"] if not hf._is_head_key(k)]
    encoder_mismatched = [
        shape
        for key, shape in zip(problems["mismatched_keys"], problems["mismatched_shapes"])
        if not hf._is_head_key(key)
    ]
    if encoder_missing or encoder_mismatched or problems["error_msgs"]:
        details = []
        if encoder_missing:
            details.append(f"missing {encoder_missing[:8]}")
        if encoder_mismatched:
            details.append(f"{'; '.join(encoder_mismatched[:4])}")
        if problems["error_msgs"]:
            details.append(f"errors {problems['error_msgs'][:3]}")
        raise hf.ModelLoadError(
            f"The encoder weights of {source!r} did not load: {', '.join(details)}. "
            "Check that the folder holds the weights that belong to its config.json."
        )


def _classifier(model: torch.nn.Module) -> Tuple[str, torch.nn.Linear]:
    for name in ("classifier", "score"):
        layer = getattr(model, name, None)
        if isinstance(layer, torch.nn.Linear):
            return name, layer
    raise ConfigError(
        f"Cannot find the token-classification head of {type(model).__name__} "
        "(expected a Linear layer named `classifier` or `score`)."
    )


def _resize_head(
    model: torch.nn.Module, labels: List[str], keep_labels: List[str]
) -> torch.nn.Module:
    """Give the model a head for `labels`, copying the rows of `keep_labels`."""
    name, old = _classifier(model)
    new = torch.nn.Linear(old.in_features, len(labels), bias=old.bias is not None)
    new.to(device=old.weight.device, dtype=old.weight.dtype)
    std = getattr(model.config, "initializer_range", 0.02)
    with torch.no_grad():
        new.weight.normal_(mean=0.0, std=std)
        if new.bias is not None:
            new.bias.zero_()
        old_index = {label: i for i, label in enumerate(keep_labels)}
        for i, label in enumerate(labels):
            j = old_index.get(label)
            if j is not None and j < old.out_features:
                new.weight[i].copy_(old.weight[j])
                if new.bias is not None and old.bias is not None:
                    new.bias[i].copy_(old.bias[j])
    setattr(model, name, new)
    model.num_labels = len(labels)
    model.config.num_labels = len(labels)
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = {label: i for i, label in enumerate(labels)}
    return model
