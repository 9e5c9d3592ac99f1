"""Hub and folder I/O: load a checkpoint's tokenizer and weights, save them back.

Only stable, low-level APIs are used (`AutoTokenizer` with offsets,
`AutoModelForTokenClassification`, `config.id2label`), never the pipeline's
post-processing, so behaviour does not drift with transformers releases. What
transformers warns about on load becomes a `ModelLoadError` saying what to do.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import urlsplit

import torch
from safetensors import SafetensorError

from ..errors import ModelLoadError

logger = logging.getLogger("spacy_hf_tagger")


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

    local_only = _check_source(source, local_only)
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


def _check_source(source: str, local_only: bool) -> bool:
    """Fail fast, with what to do, on a `model` that cannot be a model; return
    whether to load it without the network.

    A name that is clearly a path and does not exist is not tried on the hub;
    a spaCy pipeline folder, or a folder with no config.json, is named as such.
    A hub id is tried on the hub only if the hub answers a connection within
    a few seconds: offline, huggingface_hub retries for over a minute before
    it gives up. Unreachable, a copy in the local Hugging Face cache is used;
    without one, the error says so at once.
    """
    if not source:
        raise ModelLoadError(
            "No model given: set the component's `model` to a local folder or a "
            'Hugging Face hub id, e.g. config={"model": "dslim/bert-base-NER"}.'
        )
    expanded = os.path.expanduser(source)
    if os.path.isdir(expanded):
        _check_model_folder(source, expanded)
        return local_only
    if local_only or _looks_like_path(source):
        raise ModelLoadError(
            f"Model folder {source!r} does not exist (looked in {os.path.abspath(expanded)}). "
            "Give the path of a folder made by save_pretrained, or a hub id such as "
            '"dslim/bert-base-NER".'
        )
    offline = _hub_offline()
    why = "HF_HUB_OFFLINE is set" if offline else _hub_unreachable()
    if why is None:
        return False
    if _in_hub_cache(source):
        if not offline:
            logger.info("The Hugging Face Hub cannot be reached (%s): using the cached copy", why)
        return True
    raise ModelLoadError(
        f"Model {source!r} is not a folder here (no {os.path.abspath(expanded)}) nor in the "
        f"Hugging Face cache, and cannot be fetched from the hub: {why}. Give the path of "
        "the model's folder, or download it where there is a network (`hf download ID`, "
        "or from_pretrained) and set HF_HUB_OFFLINE=1 to use that copy."
    )


def _hub_offline() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return constants.HF_HUB_OFFLINE or flag in ("1", "ON", "YES", "TRUE")


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # not a valid repo id
        return False


# Seconds to wait for the hub (or the proxy in front of it) to accept a connection.
HUB_PROBE_SECONDS = 3.0


def _hub_unreachable(timeout: float = HUB_PROBE_SECONDS) -> Optional[str]:
    """Why no connection to the hub's endpoint (through the HTTPS proxy, where
    one is set) opens within `timeout` seconds; None when one does.

    Name resolution cannot be given a timeout, so the probe runs in a thread
    that is abandoned when it takes too long."""
    from huggingface_hub import constants

    proxy = next(
        (
            os.environ[k]
            for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
            if os.environ.get(k)
        ),
        None,
    )
    address = proxy or constants.ENDPOINT
    target = urlsplit(address if "://" in address else f"http://{address}")
    host = target.hostname or "huggingface.co"
    port = target.port or (443 if target.scheme == "https" else 80)
    outcome: Dict[str, str] = {}

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome["ok"] = ""
        except OSError as err:
            outcome["error"] = err.strerror or type(err).__name__

    probe = threading.Thread(target=connect, name="hub-probe", daemon=True)
    probe.start()
    probe.join(timeout + 0.5)
    via = " (the HTTPS proxy)" if proxy else ""
    if "ok" in outcome:
        return None
    if "error" in outcome:
        return f"connecting to {host}{via} failed ({outcome['error']})"
    return f"{host}{via} did not answer within {timeout:.0f} s"


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

    local_only = _check_source(source, local_only)
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
