"""Everything that touches transformers and torch: load, encode, forward, save.

Only stable, low-level APIs are used (`AutoTokenizer` with offsets,
`AutoModelForTokenClassification`, `config.id2label`), never the pipeline's
post-processing, so behaviour does not drift with transformers releases.
"""

from __future__ import annotations

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
DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
# Models whose position ids start after the padding index (fairseq heritage):
# the usable length is max_position_embeddings - (pad_token_id + 1).
_OFFSET_POSITION_MODELS = frozenset(
    {"roberta", "xlm-roberta", "camembert", "longformer", "xlm-roberta-xl", "ibert",
     "data2vec-text", "bart", "mbart", "luke", "mluke", "markuplm", "roberta-prelayernorm",
     "esm", "xmod", "lilt"}
)
_SENTINEL_MAX_LENGTH = 100_000


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
        raise ModelLoadError(
            f"Unknown device {name!r}: use {DEVICES_HELP}."
        ) from err
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(
                f"device={name!r} but torch sees no CUDA GPU (torch {torch.__version__}, "
                f"CUDA build: {torch.version.cuda}). Use device=\"cpu\" or \"auto\", or "
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


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """Turn the `dtype` setting into a torch dtype for `device`.

    "auto" is float32 on CPU (reduced precision is rarely faster there and
    changes results), bfloat16 on GPUs that support it, else float16.
    """
    value = (name or "auto").strip().lower()
    if value == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "mps":
            return torch.float16
        return torch.float32
    if value not in DTYPES:
        raise ModelLoadError(
            f"Unknown dtype {name!r}: use \"auto\", \"float32\", \"bfloat16\" or \"float16\"."
        )
    return DTYPES[value]


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' info/warning logs we turn into our own errors."""
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def load_tokenizer(source: str, revision: Optional[str], local_only: bool) -> Any:
    """Load a fast tokenizer; offsets are required, so slow ones are refused."""
    from transformers import AutoTokenizer

    _check_source(source, local_only)
    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(
                os.path.expanduser(source),
                revision=revision if not local_only else None,
                use_fast=True,
                local_files_only=local_only,
            )
    except (OSError, ValueError) as err:
        raise ModelLoadError(_not_found_message(source, "tokenizer", err)) from err
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(
            f"The tokenizer of {source!r} is a slow (Python) tokenizer "
            f"({type(tokenizer).__name__}) and cannot report character offsets, which "
            "hf_token_tagger needs to align pieces to spaCy tokens. Save a fast "
            "tokenizer (tokenizer.json) with the model, e.g. "
            "AutoTokenizer.from_pretrained(..., use_fast=True).save_pretrained(folder)."
        )
    return tokenizer


def _check_source(source: str, local_only: bool) -> None:
    if not source:
        raise ModelLoadError(
            "No model given: set the component's `model` to a local folder or a "
            'Hugging Face hub id, e.g. config={"model": "dslim/bert-base-NER"}.'
        )
    expanded = os.path.expanduser(source)
    if (local_only or source.startswith((".", "/", "~"))) and not os.path.isdir(expanded):
        raise ModelLoadError(
            f"Model folder {source!r} does not exist. Give the path of a folder "
            "made by save_pretrained (config.json, weights, tokenizer files)."
        )


def _not_found_message(source: str, what: str, err: Exception) -> str:
    if os.path.isdir(os.path.expanduser(source)):
        return (
            f"Could not load the {what} from folder {source!r}: {err}. The folder "
            "must hold files written by save_pretrained."
        )
    return (
        f"Could not load the {what} for {source!r}: it is not a local folder, and "
        f"fetching it from the Hugging Face Hub failed ({type(err).__name__}: {err}). "
        "Check the id and the network, or pass the path of a downloaded model folder."
    )


def load_model(
    source: str,
    revision: Optional[str],
    local_only: bool,
    *,
    require_head: bool = True,
    config_overrides: Optional[Dict[str, Any]] = None,
) -> Tuple[torch.nn.Module, Dict[str, List[str]]]:
    """Load a token-classification model and check every weight matched.

    With `require_head`, missing or unexpected weights are an error naming
    them; otherwise (training a new head) they are returned for the caller.
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
                ignore_mismatched_sizes=not require_head,
                use_safetensors=None,
            )
    except ValueError as err:
        if "Unrecognized configuration class" in str(err):
            raise ModelLoadError(
                f"{source!r} is a {type(config).__name__} model, which transformers has no "
                "token-classification class for. Use an encoder such as BERT, RoBERTa, "
                "XLM-R or DeBERTa."
            ) from err
        raise ModelLoadError(f"Could not load the weights of {source!r}: {err}") from err
    except (OSError, RuntimeError, SafetensorError) as err:
        files = sorted(p.name for p in Path(path).glob("*.safetensors")) if os.path.isdir(
            path
        ) else []
        where = f" (weights files in {path}: {files})" if files else ""
        raise ModelLoadError(
            f"Could not load the weights of {source!r}{where}: "
            f"{type(err).__name__}: {err}. The weights file is probably truncated or "
            "corrupted: save the model again with save_pretrained."
        ) from err
    problems = {
        key: [str(k) for k in info.get(key, [])]
        for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")
    }
    if require_head:
        _raise_on_weight_problems(source, problems)
    return model, problems


def _is_head_key(key: str) -> bool:
    return key.startswith(("classifier.", "score.")) or ".classifier." in key


def _raise_on_weight_problems(source: str, problems: Dict[str, List[str]]) -> None:
    missing = problems["missing_keys"]
    unexpected = problems["unexpected_keys"]
    mismatched = problems["mismatched_keys"]
    errors = problems["error_msgs"]
    if not (missing or unexpected or mismatched or errors):
        return
    head_missing = bool(missing) and all(_is_head_key(k) for k in missing)
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
        parts.append(f"weights whose shape does not match the config {mismatched[:8]}")
    if errors:
        parts.append(f"errors {errors[:3]}")
    raise ModelLoadError(
        f"The weights of {source!r} do not match its config: {'; '.join(parts)}. "
        "Re-save the model with save_pretrained, or check that config.json belongs "
        "to these weights."
    )


def max_input_length(tokenizer: Any, config: Any) -> int:
    """The most subwords (special tokens included) the model accepts at once.

    Many tokenizers carry a 1e30 sentinel for `model_max_length`; then the
    model's position embeddings decide, minus the padding offset of
    RoBERTa-like models.
    """
    limit = getattr(tokenizer, "model_max_length", None)
    positions = getattr(config, "max_position_embeddings", None)
    if positions is not None and getattr(config, "model_type", "") in _OFFSET_POSITION_MODELS:
        pad = getattr(config, "pad_token_id", None)
        positions -= (pad if pad is not None else 1) + 1
    if limit is None or limit > _SENTINEL_MAX_LENGTH:
        limit = positions
    elif positions is not None and positions > 0:
        limit = min(limit, positions)
    if limit is None or limit <= 0:
        # Relative-position models (DeBERTa) have no hard limit; stay safe.
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


def special_tokens(tokenizer: Any) -> SpecialTokens:
    """The tokenizer's own template for one sequence, as prefix/suffix ids.

    Read from the tokenizer's post-processor by encoding a probe, so every
    family (BERT [CLS]/[SEP], RoBERTa <s>/</s>, none at all) is handled alike.
    """
    backend = tokenizer.backend_tokenizer
    backend.no_truncation()
    backend.no_padding()
    encoding = backend.encode("a", add_special_tokens=True)
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
    return SpecialTokens(prefix, suffix, int(pad_id), uses_types)


@dataclass
class EncodedText:
    """Subword ids and their character offsets in the text (no special tokens)."""

    ids: np.ndarray
    offsets: np.ndarray


def encode_texts(tokenizer: Any, texts: Sequence[str]) -> List[EncodedText]:
    """Tokenize whole texts, no truncation, offsets in characters.

    Uses the Rust backend directly: one parallel call for the batch, and no
    "sequence longer than the maximum" warnings, since windows come later.
    """
    backend = tokenizer.backend_tokenizer
    backend.no_truncation()
    backend.no_padding()
    # No lone surrogates can reach here: spaCy cannot store them in a Doc.
    encodings = backend.encode_batch(list(texts), add_special_tokens=False)
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
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)


def resolved_commit(model: torch.nn.Module) -> Optional[str]:
    """The hub commit the weights came from, when they came from a hub."""
    return getattr(getattr(model, "config", None), "_commit_hash", None)
