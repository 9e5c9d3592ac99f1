"""The component's settings, written once: defaults, meaning, validation, and
the factory's signature all come from `Settings`.

Settings are checked when the pipe is added, so a wrong value fails with a
message naming it and the fix, before any model is loaded. What to annotate
can only be settled once the model's labels are known (`resolve_annotate`).
The README's settings table is `settings_table()`; a test holds them equal,
and the configs in `configs/` to the same defaults.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Union, get_type_hints

from .align.batch import CONTEXTS
from .align.pieces import AGGREGATIONS
from .calibration.temperature import check_temperature
from .errors import ConfigError
from .labels.decoding import tag_name_map
from .labels.recall import OTHER_TYPES
from .labels.schemes import UPOS_TAGS, LabelScheme, is_upos
from .labels.viterbi import DECODINGS

ANNOTATE_CHOICES = ("ents", "spans", "tag", "pos")
ERROR_POLICIES = ("raise", "warn", "ignore")
MIXED_PRECISION_CHOICES = ("auto", "float32", "bfloat16", "float16")
SCORER = {"@scorers": "spacy_hf_tagger.scorer.v1"}
SCORER_MEANING = (
    "what `spacy evaluate` and `spacy train` report, following what the component "
    "writes (`annotate`): entity P/R/F, span-group P/R/F, tag/POS accuracy"
)


def _setting(default: Any, meaning: str) -> Any:
    """A field with its default and its one-line meaning (the README's table)."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"meaning": meaning})
    return field(default=default, metadata={"meaning": meaning})


@dataclass(frozen=True)
class Settings:
    """Every setting of `hf_token_tagger` but `scorer` (a registered function)."""

    model: str = _setting("", "hub id or local folder (`save_pretrained` output, fast tokenizer)")
    revision: Optional[str] = _setting(
        None, "hub revision; the resolved commit is saved with the pipeline"
    )
    device: str = _setting(
        "auto", '`"auto"`, `"cpu"`, `"cuda"`, `"cuda:N"`, `"mps"` (no CuPy needed)'
    )
    dtype: str = _setting(
        "auto",
        '`"float32"`, `"bfloat16"`, `"float16"`, `"int8"` (CPU); auto = bf16 on a CPU '
        "with native bf16, else fp32; bf16/fp16 on GPU (see [precision](docs/precision.md))",
    )
    context: str = _setting(
        "sentence",
        '`"sentence"`: the model sees each sentence on its own, as sentence-trained '
        "models need: an earlier component's sentences, each line, and where neither "
        "cuts, sentences by a light rule ([how it works](docs/how-it-works.md#segments)); "
        '`"line"`: the same without the rule; `"document"`: each doc whole, in windows '
        "across sentences",
    )
    max_length: Optional[int] = _setting(
        None, "subwords per window incl. special tokens; null = the model's"
    )
    stride: Optional[int] = _setting(
        None, "window overlap in subwords; null = a quarter of the window, at most 128"
    )
    batch_size: Optional[int] = _setting(
        None,
        "windows per forward pass; null = chosen for the device and precision "
        "([speed](docs/speed.md#batch-shape))",
    )
    max_batch_subwords: Optional[int] = _setting(
        None,
        "padded subwords per forward pass; null = chosen for the device and precision "
        "([speed](docs/speed.md#batch-shape))",
    )
    overlap: Optional[bool] = _setting(
        None,
        "`nlp.pipe` prepares the next docs while the model runs these; null = on for "
        "CUDA GPUs, off on CPU, where the forward already uses every core, and on MPS "
        "([speed](docs/speed.md#overlap))",
    )
    aggregation: str = _setting(
        "first", "how a token combines its pieces: `first`, `average`, `max`"
    )
    group_words: bool = _setting(
        True,
        'tokens joined by an infix hyphen/slash ("al-Boushi") share their first token\'s '
        'entity label, and glued punctuation (the "." of "1.") cannot begin an entity: '
        "first-subword models were trained on such words whole "
        "(`spacy_hf_tagger/align/words.py`)",
    )
    decoding: str = _setting(
        "auto",
        '`"auto"`: `"viterbi-iob2"` for a model that reads as trained on IOB2 labels (asked '
        'of the model once, at load), `"viterbi"` for BIOES/BILOU, else `"greedy"` '
        "(+0.9 to +1.9 F1 over greedy on CoNLL-2003, NCBI-disease, WNUT-17); "
        '`"greedy"`: each token\'s most probable label, invalid sequences repaired; '
        '`"viterbi"`: the most probable entities the label scheme allows in each segment '
        "(IOB1/IOB2 alike, BIOES/BILOU strictly; IO and tag sets: each token's best); "
        '`"viterbi-iob2"`: the same, IOB read as strict IOB2 (wrong for IOB1 models) '
        "([how it works](docs/how-it-works.md#decoding))",
    )
    annotate: Optional[List[str]] = _setting(
        None,
        'any of `ents`, `spans`, `tag`, `pos`; null = `["ents","spans"]` for entity '
        'models, `["pos"]` for UPOS models, `["tag"]` for other tag sets',
    )
    spans_key: str = _setting("hf_ents", 'the `doc.spans` group (scores in `.attrs["scores"]`)')
    split_tokens: bool = _setting(
        False,
        "true: split spaCy tokens where the model's entities begin or end inside them "
        "(`김태웅이고` → `김태웅` `이고`), so `doc.ents` are exact; changes `len(doc)` "
        "([exact boundaries](README.md#entities-inside-a-token))",
    )
    overwrite_ents: bool = _setting(False, "true: model entities replace overlapping existing ones")
    label_map: Dict[str, str] = _setting({}, 'rename types/tags, e.g. `{"PER": "PERSON"}`')
    ignore_labels: List[str] = _setting([], "types to drop (model name or mapped name)")
    threshold: Union[float, Dict[str, float]] = _setting(
        0.0,
        "drop entities whose score (mean over its tokens of the model's probability for "
        "the entity's type, after `temperature`) is below it; or one per type, e.g. "
        '`{"PER": 0.3, "*": 0.6}` (model or mapped name; `"*"`: every type not named, else 0) '
        "([recall](docs/how-it-works.md#recall))",
    )
    o_bias: float = _setting(
        0.0,
        "lower log P(O) by this before decoding: more and longer entities, to miss fewer "
        "at the cost of precision (negative: fewer); scores stay the model's "
        "probabilities; needs an O label ([recall](docs/how-it-works.md#recall))",
    )
    temperature: Union[float, Dict[str, float]] = _setting(
        1.0,
        "temperature scaling of the probabilities scores are read from (q ∝ p^(1/T)): a "
        'number, or a table over the model\'s entity types and "O" (tags for tagging '
        "models; others keep 1); entities are decoded from the model's own probabilities, "
        "so it changes scores, never entities; `calibrate` fits it on a dev set "
        "([calibrated scores](docs/calibration.md))",
    )
    errors: str = _setting(
        "warn", "`raise`, `warn` or `ignore` for predictions that cannot be written"
    )
    label_all_pieces: bool = _setting(
        False, "training: also put loss on a token's non-first pieces"
    )
    mixed_precision: str = _setting(
        "auto", "training autocast: auto = bf16/fp16 on CUDA, fp32 on CPU"
    )
    thread_batch_wait_ms: float = _setting(
        2.0,
        "concurrent `nlp(text)` calls from several threads are annotated as one batch; "
        "while calls are concurrent, a batch waits up to this long for as many callers "
        "as the last batch held (a lone caller never waits); 0 = no wait "
        "([serving](docs/serving.md))",
    )

    def __post_init__(self) -> None:
        # Lists and maps arrive as spaCy's config types; keep plain, owned copies.
        if self.annotate is not None and not isinstance(self.annotate, str):
            object.__setattr__(self, "annotate", list(self.annotate))
        object.__setattr__(self, "label_map", dict(self.label_map or {}))
        object.__setattr__(self, "ignore_labels", list(self.ignore_labels or []))
        if isinstance(self.threshold, Mapping):
            object.__setattr__(self, "threshold", dict(self.threshold))
        if isinstance(self.temperature, Mapping):
            object.__setattr__(self, "temperature", dict(self.temperature))
        validate_settings(self.as_dict())

    def as_dict(self) -> Dict[str, Any]:
        """The settings as `pipe.cfg` shows them and cfg.json saves them."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def is_positive_int(value: Any) -> bool:
    """A count of 1 or more: an int, and not a bool (Python's True is an int 1,
    and a config's `true` is never meant as a count)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def default_config() -> Dict[str, Any]:
    """The factory's `default_config`: every setting's default, and the scorer."""
    defaults = Settings().as_dict()
    defaults["scorer"] = dict(SCORER)
    return defaults


def factory_signature() -> inspect.Signature:
    """`make_hf_token_tagger(nlp, name, <every setting>, scorer)`, typed from
    `Settings`: spaCy validates a config against this signature."""
    from spacy.language import Language

    hints = get_type_hints(Settings)
    params = [
        inspect.Parameter("nlp", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Language),
        inspect.Parameter("name", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str),
    ]
    params += [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=hints[f.name])
        for f in dataclasses.fields(Settings)
    ]
    params.append(
        inspect.Parameter("scorer", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Callable])
    )
    return inspect.Signature(params)


def _cell(value: Any) -> str:
    return f"`{json.dumps(value)}`"


def settings_table() -> str:
    """The README's settings table (markdown), from `Settings`."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(Settings):
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        rows.append(f"| `{f.name}` | {_cell(default)} | {f.metadata['meaning']} |")
    rows.append(f"| `scorer` | {_cell(SCORER)} | {SCORER_MEANING} |")
    return "\n".join(rows)


def validate_settings(cfg: Mapping[str, Any]) -> None:
    """Raise ConfigError for the first setting that cannot work."""
    if cfg["aggregation"] not in AGGREGATIONS:
        raise ConfigError(
            f"aggregation={cfg['aggregation']!r} is not known: use one of {AGGREGATIONS}."
        )
    if cfg["context"] not in CONTEXTS:
        raise ConfigError(
            f'context={cfg["context"]!r} is not known: use "sentence" (the model sees '
            'each sentence alone, as most hub models were trained), "line" (each line or '
            'earlier component\'s sentence, no rule) or "document" (windows run across '
            "sentences, for models trained on long windows)."
        )
    if cfg["decoding"] not in DECODINGS:
        raise ConfigError(
            f'decoding={cfg["decoding"]!r} is not known: use "auto" ("viterbi-iob2" for '
            'a model that reads as trained on IOB2 labels, "viterbi" for BIOES/BILOU, else '
            '"greedy"), "greedy" '
            '(each token\'s most probable label, then repaired), "viterbi" (the most '
            'probable label sequence the model\'s label scheme allows) or "viterbi-iob2" '
            "(the same, for a model trained on IOB2 labels)."
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
    for name in ("batch_size", "max_batch_subwords"):
        value = cfg[name]
        if value is not None and not is_positive_int(value):
            raise ConfigError(
                f"{name}={value!r} must be null (chosen for the device and precision) or a "
                "positive integer."
            )
    if cfg["overlap"] is not None and not isinstance(cfg["overlap"], bool):
        raise ConfigError(
            f"overlap={cfg['overlap']!r} must be null (on for GPUs, off on CPU), true or false."
        )
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
    _check_threshold(cfg["threshold"])
    o_bias = cfg["o_bias"]
    if not _is_number(o_bias) or not math.isfinite(o_bias):
        raise ConfigError(
            f"o_bias={o_bias!r} must be a finite number: how much to lower log P(O) "
            "before decoding (0 = the model's own decision, 1 or 2 = more entities, "
            "negative = fewer)."
        )
    check_temperature(cfg["temperature"])
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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_threshold(threshold: Any) -> None:
    """A number in [0, 1], or a table of them by label (see `labels.recall`);
    whether the table's labels are the model's is checked when it loads."""
    if not isinstance(threshold, Mapping):
        if not _is_number(threshold) or not 0.0 <= threshold <= 1.0:
            raise ConfigError(
                f"threshold={threshold!r} must be between 0 and 1, or a table of such "
                f'values by label, e.g. {{"PER": 0.3, "{OTHER_TYPES}": 0.6}}.'
            )
        return
    for key, value in threshold.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(
                f"threshold has the key {key!r}: name entity types (model or label_map "
                f'names) or "{OTHER_TYPES}" for every type not named.'
            )
        if len(key) > 1 and key[0] == key[-1] and key[0] in "\"'":
            raise ConfigError(
                f"threshold has the key {key!r}, quotes included: in a "
                "[components.NAME.threshold] block, write keys without quotes "
                f"(`{key[1:-1]} = 0.5`)."
            )
        if not _is_number(value) or not 0.0 <= value <= 1.0:
            raise ConfigError(
                f"threshold[{key!r}]={value!r} must be a number between 0 and 1 (a span "
                "of that type is kept when its score is at least this)."
            )


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
