"""Everything that touches transformers and torch: load, encode, forward, save.

Only stable, low-level APIs are used (`AutoTokenizer` with offsets,
`AutoModelForTokenClassification`, `config.id2label`), never the pipeline's
post-processing, so behaviour does not drift with transformers releases.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from safetensors import SafetensorError

DEVICES_HELP = '"auto", "cpu", "cuda", "cuda:N" or "mps"'
# Models whose position ids start after the padding index (fairseq heritage):
# the usable length is max_position_embeddings - (pad_token_id + 1).
_OFFSET_POSITION_MODELS = frozenset(
    {
        "roberta",
        "xlm-roberta",
        "camembert",
        "longformer",
        "xlm-roberta-xl",
        "ibert",
        "data2vec-text",
        "bart",
        "mbart",
        "luke",
        "mluke",
        "markuplm",
        "roberta-prelayernorm",
        "esm",
        "xmod",
        "lilt",
    }
)
_SENTINEL_MAX_LENGTH = 100_000

logger = logging.getLogger("spacy_hf_tagger")


def _single_thread_after_fork() -> None:
    """A forked child (`nlp.pipe(n_process=N)`) inherits an OpenMP pool it cannot
    use: its first parallel op would hang. One intra-op thread per child avoids
    the pool, and N processes already share the cores."""
    torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_single_thread_after_fork)


class ModelLoadError(ValueError):
    """The model or tokenizer cannot be used; the message says why and what to do."""


def resolve_device(name: str) -> torch.device:
    """Turn the `device` setting into a torch device, checking it exists."""
    value = (name or "auto").strip().lower()
    if value == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(value)
    except RuntimeError as err:
        raise ModelLoadError(f"Unknown device {name!r}: use {DEVICES_HELP}.") from err
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(
                f"device={name!r} but torch sees no CUDA GPU (torch {torch.__version__}, "
                f'CUDA build: {torch.version.cuda}). Use device="cpu" or "auto", or '
                "install a CUDA build of torch."
            )
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise ModelLoadError(
                f"device={name!r} but only {torch.cuda.device_count()} CUDA device(s) "
                f"exist (0..{torch.cuda.device_count() - 1})."
            )
        return device
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ModelLoadError(
                f"device={name!r} but MPS is not available on this machine. "
                'Use device="cpu" or "auto".'
            )
        return device
    raise ModelLoadError(f"Unsupported device {name!r}: use {DEVICES_HELP}.")


def transformers_major() -> int:
    """The installed transformers' major version (4 or 5)."""
    import transformers

    return int(transformers.__version__.split(".")[0])


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers while it loads or saves, unless the user asked it to talk.

    Its warnings are turned into our own errors; transformers 5 also draws
    "Loading weights" and "Writing model shards" progress bars on every load
    and save. Both stay on when transformers' verbosity is INFO or lower.
    """
    from transformers.utils import logging as hf_logging

    if hf_logging.get_verbosity() <= logging.INFO:
        yield
        return
    logger = logging.getLogger("transformers")
    level = logger.level
    bars = hf_logging.is_progress_bar_enabled()
    logger.setLevel(logging.ERROR)
    if bars:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        logger.setLevel(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_tokenizer(source: str, revision: Optional[str], local_only: bool) -> Any:
    """Load a fast tokenizer that splits text exactly as its saved tokenizer.json.

    Offsets are required, so slow tokenizers are refused. transformers 5
    rebuilds many tokenizers from their class definition and keeps only the
    vocabulary of tokenizer.json: the normaliser and pre-tokenizer the model
    was trained with can be replaced (an XLM-R tokenizer then gives "▁" pieces
    offsets on the next character), and a file whose subword model is not the
    one the class expects fails to load. The saved file is the tokenizer the
    model saw, so it wins (see `_use_saved_backend`).
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    _check_source(source, local_only)
    path = os.path.expanduser(source)
    hub_revision = revision if not local_only else None
    saved = _saved_tokenizer_file(path, hub_revision, local_only)
    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(
                path, revision=hub_revision, use_fast=True, local_files_only=local_only
            )
    except Exception as err:
        # A tokenizer.json that its declared class cannot rebuild (transformers 5)
        # still loads as what it is: a plain fast tokenizer.
        if saved is None:
            if isinstance(err, (OSError, ValueError)):
                raise ModelLoadError(_not_found_message(source, "tokenizer", err)) from err
            raise
        try:
            with _quiet_transformers():
                tokenizer = PreTrainedTokenizerFast.from_pretrained(
                    path, revision=hub_revision, local_files_only=local_only
                )
        except Exception as second:
            raise ModelLoadError(
                f"Could not load the tokenizer of {source!r} ({_short(err)}), nor as a "
                f"plain fast tokenizer from {saved} ({_short(second)}). Re-save it with "
                "save_pretrained."
            ) from second
        _keep_class_name(tokenizer, path)
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(
            f"The tokenizer of {source!r} is a slow (Python) tokenizer "
            f"({type(tokenizer).__name__}) and cannot report character offsets, which "
            "hf_token_tagger needs to align pieces to spaCy tokens. Save a fast "
            "tokenizer (tokenizer.json) with the model, e.g. "
            "AutoTokenizer.from_pretrained(..., use_fast=True).save_pretrained(folder)."
        )
    if saved is not None:
        _use_saved_backend(tokenizer, saved, source)
    return tokenizer


def _saved_tokenizer_file(path: str, revision: Optional[str], local_only: bool) -> Optional[str]:
    """The tokenizer.json of a folder or (cached) hub repo, if it has one."""
    if os.path.isdir(path):
        candidate = os.path.join(path, "tokenizer.json")
        return candidate if os.path.isfile(candidate) else None
    from transformers.utils import cached_file

    try:
        return cached_file(
            path,
            "tokenizer.json",
            revision=revision,
            local_files_only=local_only,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
    except (OSError, ValueError):
        return None


# The parts of a tokenizer.json that decide how text is split and offset.
_TOKENIZER_PARTS = ("normalizer", "pre_tokenizer", "model", "post_processor", "added_tokens")


def _use_saved_backend(tokenizer: Any, saved: str, source: str) -> None:
    """Run the tokenizer on the backend its tokenizer.json describes.

    When transformers built a backend that splits differently (see
    `load_tokenizer`), the saved one replaces it; `save_pretrained` then
    writes it back unchanged, so a pipeline keeps its tokenizer across
    transformers versions in both directions.
    """
    from tokenizers import Tokenizer

    file_backend = Tokenizer.from_file(saved)
    wanted = json.loads(file_backend.to_str())
    built = json.loads(tokenizer.backend_tokenizer.to_str())
    differs = [part for part in _TOKENIZER_PARTS if wanted.get(part) != built.get(part)]
    if not differs:
        return
    logger.info(
        "transformers %s built the tokenizer of %r (%s) with a different %s than its "
        "tokenizer.json; using tokenizer.json, as the model was trained with it.",
        _transformers_version(),
        source,
        type(tokenizer).__name__,
        ", ".join(differs),
    )
    tokenizer._tokenizer = file_backend


_CLASS_NAME_ATTR = "spacy_hf_tagger_class_name"


def _keep_class_name(tokenizer: Any, path: str) -> None:
    """Save a fallback-loaded tokenizer under its original class name, so the
    transformers version that wrote it still loads it."""
    config_file = os.path.join(path, "tokenizer_config.json")
    if not os.path.isfile(config_file):
        return
    with open(config_file, encoding="utf8") as handle:
        name = json.load(handle).get("tokenizer_class")
    if name:
        setattr(tokenizer, _CLASS_NAME_ATTR, name)


def _transformers_version() -> str:
    import transformers

    return str(transformers.__version__)


def _check_source(source: str, local_only: bool) -> None:
    """Fail fast, with what to do, on a `model` that cannot be a model.

    A name that is clearly a path and does not exist is not tried on the hub
    (offline, that costs a minute of retries); a spaCy pipeline folder, or a
    folder with no config.json, is named as such.
    """
    if not source:
        raise ModelLoadError(
            "No model given: set the component's `model` to a local folder or a "
            'Hugging Face hub id, e.g. config={"model": "dslim/bert-base-NER"}.'
        )
    expanded = os.path.expanduser(source)
    if os.path.isdir(expanded):
        _check_model_folder(source, expanded)
        return
    if local_only or _looks_like_path(source):
        raise ModelLoadError(
            f"Model folder {source!r} does not exist (looked in {os.path.abspath(expanded)}). "
            "Give the path of a folder made by save_pretrained, or a hub id such as "
            '"dslim/bert-base-NER".'
        )


def _looks_like_path(source: str) -> bool:
    """Not a hub id ("name" or "org/name"): starts like a path, has a backslash
    or more than one slash, or its first part is a local folder."""
    if source.startswith((".", "/", "~")) or "\\" in source or source.endswith("/"):
        return True
    parts = source.split("/")
    return len(parts) > 2 or (len(parts) == 2 and os.path.isdir(parts[0]))


def _check_model_folder(source: str, folder: str) -> None:
    if os.path.isfile(os.path.join(folder, "config.json")):
        return
    if os.path.isfile(os.path.join(folder, "config.cfg")) or os.path.isfile(
        os.path.join(folder, "meta.json")
    ):
        inner = [
            os.path.join(source, name, "model")
            for name in sorted(os.listdir(folder))
            if os.path.isfile(os.path.join(folder, name, "model", "config.json"))
        ]
        hint = f" or set model to {inner[0]!r} (its model folder)" if inner else ""
        raise ModelLoadError(
            f"{source!r} is a spaCy pipeline folder, not a Hugging Face model: load it "
            f"with spacy.load({source!r}){hint}."
        )
    files = sorted(os.listdir(folder))[:8]
    raise ModelLoadError(
        f"{source!r} is not a Hugging Face model folder: it has no config.json "
        f"(it holds {files}). Give the folder that save_pretrained wrote."
    )


def _short(err: BaseException, limit: int = 200) -> str:
    """An exception as a short line: its type and the start of its message."""
    text = " ".join(str(err).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"{type(err).__name__}: {text}"


def _not_found_message(source: str, what: str, err: Exception) -> str:
    if os.path.isdir(os.path.expanduser(source)):
        return (
            f"Could not load the {what} from folder {source!r} ({_short(err)}). The folder "
            "must hold the files save_pretrained writes."
        )
    return (
        f"Could not load the {what} for {source!r}: it is not a local folder, and "
        f"fetching it from the Hugging Face Hub failed ({_short(err)}). "
        "Check the id and the network, or pass the path of a downloaded model folder."
    )


def load_model(
    source: str,
    revision: Optional[str],
    local_only: bool,
    *,
    require_head: bool = True,
    config_overrides: Optional[Dict[str, Any]] = None,
    dtype: torch.dtype = torch.float32,
) -> Tuple[torch.nn.Module, Dict[str, List[str]]]:
    """Load a token-classification model and check every weight matched.

    With `require_head`, missing or unexpected weights are an error naming
    them; otherwise (training a new head) they are returned for the caller.
    The weights load in `dtype`, whatever the checkpoint holds: transformers 5
    would otherwise keep a half-precision checkpoint in half precision.
    """
    from transformers import AutoConfig, AutoModelForTokenClassification

    _check_source(source, local_only)
    path = os.path.expanduser(source)
    try:
        with _quiet_transformers():
            config = AutoConfig.from_pretrained(
                path, revision=None if local_only else revision, local_files_only=local_only
            )
    except (OSError, ValueError) as err:
        raise ModelLoadError(_not_found_message(source, "model config", err)) from err
    if config_overrides:
        for key, value in config_overrides.items():
            setattr(config, key, value)
    try:
        with _quiet_transformers():
            model, info = AutoModelForTokenClassification.from_pretrained(
                path,
                config=config,
                revision=None if local_only else revision,
                local_files_only=local_only,
                output_loading_info=True,
                # Mismatched shapes are reported below, in our words, in both
                # transformers majors (5 raises a bare RuntimeError on them).
                ignore_mismatched_sizes=True,
                use_safetensors=None,
                **{_dtype_keyword(): dtype},
            )
    except ValueError as err:
        if "Unrecognized configuration class" in str(err):
            raise ModelLoadError(
                f"{source!r} is a {type(config).__name__} model, which transformers has no "
                "token-classification class for. Use an encoder such as BERT, RoBERTa, "
                "XLM-R or DeBERTa."
            ) from err
        raise ModelLoadError(f"Could not load the weights of {source!r} ({_short(err)}).") from err
    except (OSError, RuntimeError, SafetensorError) as err:
        files = (
            sorted(p.name for p in Path(path).glob("*.safetensors")) if os.path.isdir(path) else []
        )
        where = f" (weights files in {path}: {files})" if files else ""
        raise ModelLoadError(
            f"Could not load the weights of {source!r}{where}: "
            f"{_short(err)}. The weights file is probably truncated or "
            "corrupted: save the model again with save_pretrained."
        ) from err
    problems = {
        key: sorted(_key_name(k) for k in info.get(key, []))
        for key in ("missing_keys", "unexpected_keys")
    }
    mismatched = sorted(info.get("mismatched_keys", []), key=_key_name)
    problems["mismatched_keys"] = [_key_name(k) for k in mismatched]
    problems["mismatched_shapes"] = [_shape_mismatch(k) for k in mismatched]
    # transformers 5 reports weights it failed to convert apart from other errors.
    conversion = info.get("conversion_errors") or {}
    problems["error_msgs"] = [str(e) for e in info.get("error_msgs", [])] + [
        f"{key}: {message}" for key, message in sorted(conversion.items())
    ]
    if require_head:
        _raise_on_weight_problems(source, problems)
    return model, problems


def _dtype_keyword() -> str:
    """transformers 5 calls `from_pretrained`'s precision argument `dtype`."""
    return "dtype" if transformers_major() >= 5 else "torch_dtype"


def _key_name(key: Any) -> str:
    """A weight's name; mismatched weights come as (name, shape, shape)."""
    return str(key[0]) if isinstance(key, (tuple, list)) else str(key)


def _shape_mismatch(key: Any) -> str:
    """'name: size mismatch, checkpoint (9, 64) vs config (7, 64)' where known."""
    if isinstance(key, (tuple, list)) and len(key) == 3:
        name, saved, expected = key
        return f"{name}: size mismatch, checkpoint {tuple(saved)} vs config {tuple(expected)}"
    return f"{_key_name(key)}: size mismatch"


def is_head_key(key: str) -> bool:
    return key.startswith(("classifier.", "score.")) or ".classifier." in key


def _raise_on_weight_problems(source: str, problems: Dict[str, List[str]]) -> None:
    missing = problems["missing_keys"]
    unexpected = problems["unexpected_keys"]
    mismatched = problems["mismatched_keys"]
    errors = problems["error_msgs"]
    if not (missing or unexpected or mismatched or errors):
        return
    head_missing = bool(missing) and all(is_head_key(k) for k in missing)
    if head_missing and not (mismatched or errors):
        extra = f" (and carries other heads: {unexpected[:4]})" if unexpected else ""
        raise ModelLoadError(
            f"{source!r} has no token-classification head (missing weights: "
            f"{missing[:6]}){extra}. It looks like a base encoder: fine-tune it first, e.g. "
            "`spacy train configs/train_ner.cfg --components.hf_token_tagger.model "
            f"{source}`, or use a checkpoint trained for token classification."
        )
    parts = []
    if missing:
        parts.append(f"missing weights {missing[:8]}{' …' if len(missing) > 8 else ''}")
    if unexpected:
        parts.append(f"unexpected weights {unexpected[:8]}{' …' if len(unexpected) > 8 else ''}")
    if mismatched:
        shapes = problems.get("mismatched_shapes") or mismatched
        parts.append(f"weights whose shape does not match the config: {'; '.join(shapes[:4])}")
    if errors:
        parts.append(f"errors {errors[:3]}")
    raise ModelLoadError(
        f"The weights of {source!r} do not match its config: {'; '.join(parts)}. "
        "Re-save the model with save_pretrained, or check that config.json belongs "
        "to these weights."
    )


def position_limit(config: Any) -> Optional[int]:
    """The most positions the model can embed, or None when it has no hard limit.

    `max_position_embeddings` (GPT-2's `n_positions` maps to it), minus the
    padding offset of RoBERTa-like models, whose position ids start after the
    padding index. DeBERTa without absolute positions has no limit.
    """
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int) or positions <= 0:
        return None
    if getattr(config, "position_biased_input", True) is False:
        return None
    if getattr(config, "model_type", "") in _OFFSET_POSITION_MODELS:
        pad = getattr(config, "pad_token_id", None)
        positions -= (pad if pad is not None else 1) + 1
    return positions


def max_input_length(tokenizer: Any, config: Any) -> int:
    """The most subwords (special tokens included) the model accepts at once:
    the tokenizer's `model_max_length`, but never more than the model's
    positions (`position_limit`). Many tokenizers carry a 1e30 sentinel or
    none at all; then the positions decide, else 512."""
    limit = getattr(tokenizer, "model_max_length", None)
    positions = position_limit(config)
    if not isinstance(limit, int) or limit <= 0 or limit > _SENTINEL_MAX_LENGTH:
        limit = positions
    elif positions is not None:
        limit = min(limit, positions)
    if limit is None:
        limit = 512
    return int(limit)


@dataclass(frozen=True)
class SpecialTokens:
    """Ids wrapped around every window, found by encoding a probe text."""

    prefix: Tuple[int, ...]
    suffix: Tuple[int, ...]
    pad_id: int
    uses_token_types: bool

    @property
    def count(self) -> int:
        return len(self.prefix) + len(self.suffix)


def forward_inputs(model: torch.nn.Module) -> frozenset:
    """The input names the model's forward takes, by name.

    The tokenizer's `model_input_names` is no authority: a DistilBERT or
    ModernBERT fine-tuned next to a BERT tokenizer declares token_type_ids
    that their forward refuses.
    """
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return frozenset({"input_ids", "attention_mask"})
    return frozenset(
        name
        for name, p in parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    )


def special_tokens(tokenizer: Any, accepted: frozenset = frozenset()) -> SpecialTokens:
    """The tokenizer's own template for one sequence, as prefix/suffix ids.

    Read from the tokenizer's post-processor by encoding a probe, so every
    family (BERT [CLS]/[SEP], RoBERTa <s>/</s>, none at all) is handled alike.
    Token type ids (all zero) go to the model only when the tokenizer makes
    them and the model's forward takes them (`accepted`, see
    `forward_inputs`). `prepare_for_encoding` must have run on the tokenizer.
    """
    encoding = tokenizer.backend_tokenizer.encode("a", add_special_tokens=True)
    mask = list(encoding.special_tokens_mask)
    ids = list(encoding.ids)
    content = [i for i, m in enumerate(mask) if not m]
    if content:
        prefix = tuple(ids[: content[0]])
        suffix = tuple(ids[content[-1] + 1 :])
    else:
        prefix, suffix = tuple(ids), ()
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = 0
    uses_types = "token_type_ids" in getattr(tokenizer, "model_input_names", [])
    return SpecialTokens(prefix, suffix, int(pad_id), uses_types and "token_type_ids" in accepted)


def sees_only_left_context(
    model: torch.nn.Module, tokenizer: Any, special: SpecialTokens, device: torch.device
) -> bool:
    """Whether the model is a decoder: its output for a piece ignores the pieces
    after it. Found by changing the last piece of a probe and watching the
    first, which works for any architecture, whatever its config says."""
    first = list(tokenizer.backend_tokenizer.encode("the cat sat", add_special_tokens=False).ids)
    if len(first) < 2:
        return False
    other = first[0] if first[0] != first[-1] else first[-2]
    if other == first[-1]:
        return False
    second = [*first[:-1], other]
    rows = [list(special.prefix) + ids + list(special.suffix) for ids in (first, second)]
    input_ids = torch.tensor(rows, dtype=torch.long, device=device)
    with torch.inference_mode():
        logits = model(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids)
        ).logits.float()
    at = len(special.prefix)
    return bool(torch.allclose(logits[0, at], logits[1, at], atol=1e-5, rtol=0))


@dataclass
class EncodedText:
    """Subword ids and their character offsets in the text (no special tokens)."""

    ids: np.ndarray
    offsets: np.ndarray


def prepare_for_encoding(tokenizer: Any) -> None:
    """Switch off the backend's own truncation and padding, once, at load time.

    Windows come later, so whole texts are tokenized. Changing these settings
    mutates the Rust tokenizer; doing it per call made concurrent callers fail
    with "Already borrowed". After this, encoding only reads the tokenizer,
    which any number of threads may do at once.
    """
    backend = tokenizer.backend_tokenizer
    backend.no_truncation()
    backend.no_padding()


def encode_texts(tokenizer: Any, texts: Sequence[str]) -> List[EncodedText]:
    """Tokenize whole texts, no special tokens, offsets in characters.

    Uses the Rust backend directly (one parallel call for the batch, and no
    "sequence longer than the maximum" warnings); `prepare_for_encoding` must
    have run on the tokenizer.
    """
    # No lone surrogates can reach here: spaCy cannot store them in a Doc.
    encodings = tokenizer.backend_tokenizer.encode_batch(list(texts), add_special_tokens=False)
    out = []
    for encoding in encodings:
        ids = np.asarray(encoding.ids, dtype=np.int64)
        offsets = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)
        out.append(EncodedText(ids, offsets))
    return out


def build_batch(
    rows: Sequence[np.ndarray], special: SpecialTokens, device: torch.device
) -> Dict[str, torch.Tensor]:
    """Pad rows (pieces of one window each) into model inputs with special tokens."""
    n_prefix, n_suffix = len(special.prefix), len(special.suffix)
    width = max(len(r) for r in rows) + n_prefix + n_suffix
    input_ids = np.full((len(rows), width), special.pad_id, dtype=np.int64)
    attention = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        n = len(row) + n_prefix + n_suffix
        input_ids[i, :n_prefix] = special.prefix
        input_ids[i, n_prefix : n_prefix + len(row)] = row
        if n_suffix:
            input_ids[i, n_prefix + len(row) : n] = special.suffix
        attention[i, :n] = 1
    batch = {
        "input_ids": torch.from_numpy(input_ids).to(device),
        "attention_mask": torch.from_numpy(attention).to(device),
    }
    if special.uses_token_types:
        batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
    return batch


def save_model(model: torch.nn.Module, tokenizer: Any, path: Path) -> None:
    """Write weights (safetensors, sharded and streamed), config and tokenizer."""
    path.mkdir(parents=True, exist_ok=True)
    with _quiet_transformers():
        model.save_pretrained(path, safe_serialization=True)
        tokenizer.save_pretrained(path)
    name = getattr(tokenizer, _CLASS_NAME_ATTR, None)
    config_file = path / "tokenizer_config.json"
    if name and config_file.is_file():
        config = json.loads(config_file.read_text("utf8"))
        config["tokenizer_class"] = name
        config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False), "utf8")


def resolved_commit(model: torch.nn.Module) -> Optional[str]:
    """The hub commit the weights came from, when they came from a hub."""
    return getattr(getattr(model, "config", None), "_commit_hash", None)
