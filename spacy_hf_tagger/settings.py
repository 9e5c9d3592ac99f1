"""The component's settings: defaults, validation, and what `annotate` means for a model.

Settings are checked when the pipe is added, so a wrong value fails with a
message naming it and the fix, before any model is loaded. What to annotate
can only be settled once the model's labels are known (`resolve_annotate`).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

from .errors import ConfigError
from .labels.decoding import tag_name_map
from .labels.schemes import UPOS_TAGS, LabelScheme

ANNOTATE_CHOICES = ("ents", "spans", "tag", "pos")
ERROR_POLICIES = ("raise", "warn", "ignore")
CONTEXTS = ("sentence", "document")
MIXED_PRECISION_CHOICES = ("auto", "float32", "bfloat16", "float16")

DEFAULT_CONFIG: Dict[str, Any] = {
    "model": "",
    "revision": None,
    "device": "auto",
    "dtype": "auto",
    "context": "sentence",
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
    "thread_batch_wait_ms": 2.0,
    "scorer": {"@scorers": "spacy_hf_tagger.scorer.v1"},
}



def validate_settings(cfg: Mapping[str, Any], aggregations: tuple) -> None:
    """Raise ConfigError for the first setting that cannot work."""
    if cfg["aggregation"] not in aggregations:
        raise ConfigError(
            f"aggregation={cfg['aggregation']!r} is not known: use one of {aggregations}."
        )
    if cfg["context"] not in CONTEXTS:
        raise ConfigError(
            f'context={cfg["context"]!r} is not known: use "sentence" (the model sees '
            'each sentence or line alone, as most hub models were trained) or "document" '
            "(windows run across sentences, for models trained on long windows)."
        )
    if cfg["errors"] not in ERROR_POLICIES:
        raise ConfigError(f"errors={cfg['errors']!r} is not known: use one of {ERROR_POLICIES}.")
    annotate = cfg["annotate"]
    if annotate is not None:
        if isinstance(annotate, str):
            raise ConfigError(f'annotate={annotate!r} must be a list, e.g. ["ents", "spans"].')
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
    if cfg["mixed_precision"] not in MIXED_PRECISION_CHOICES:
        raise ConfigError(
            f'mixed_precision={cfg["mixed_precision"]!r}: use "auto", "float32", '
            '"bfloat16" or "float16".'
        )
    if not cfg["spans_key"]:
        raise ConfigError("spans_key must be a non-empty string.")
    wait = cfg["thread_batch_wait_ms"]
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= 1000:
        raise ConfigError(
            f"thread_batch_wait_ms={wait!r} must be a number of milliseconds from 0 to 1000 "
            "(how long concurrent calls wait for each other before a batch starts)."
        )


def is_upos(scheme: LabelScheme) -> bool:
    """A tag set inside the Universal POS tags is written to `token.pos_`."""
    return set(scheme.labels) <= UPOS_TAGS | {"_"}


def resolve_annotate(
    annotate: Optional[List[str]], scheme: LabelScheme, label_map: Mapping[str, str]
) -> List[str]:
    """What to write for this model: the setting, checked against its labels, or
    (null) entities and spans for entity models, `pos` for UPOS tag sets, `tag`
    for other tag sets."""
    if annotate is None:
        if scheme.is_entity:
            return ["ents", "spans"]
        return ["pos"] if is_upos(scheme) else ["tag"]
    resolved = list(annotate)
    if {"ents", "spans"} & set(resolved) and not scheme.is_entity:
        raise ConfigError(
            f"annotate={annotate!r} asks for entities, but the model's labels are "
            f'plain tags ({list(scheme.labels)[:8]}). Use annotate=["tag"] or '
            '["pos"] for a tagging model.'
        )
    if {"tag", "pos"} & set(resolved) and scheme.is_entity:
        raise ConfigError(
            f"annotate={annotate!r} asks for tags, but the model's labels are "
            f'entity labels ({list(scheme.labels)[:8]}). Use ["ents", "spans"].'
        )
    if "pos" in resolved:
        names = tag_name_map(scheme, label_map)
        bad = sorted(set(names.values()) - UPOS_TAGS - {"_"})
        if bad:
            raise ConfigError(
                f'annotate includes "pos", but these labels are not Universal POS '
                f'tags: {bad[:8]}. Use "tag", or map them with label_map.'
            )
    return resolved
