"""The component's folder inside a saved pipeline: `cfg.json` and `model/`.

`model/` is the Hugging Face model and tokenizer as `save_pretrained` writes
them (safetensors), so `spacy.load` needs nothing but this folder: no hub, no
original `model` path. `cfg.json` records what the pipeline's config.cfg
cannot: the label set and scheme, the resolved label map, and which hub
commit the weights came from. Bytes are the same folder, packed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

import srsly
import torch

from ..errors import ModelLoadError
from . import hub
from .loading import LoadedModel

MODEL_DIR = "model"
CFG_FILE = "cfg.json"


PARTS = frozenset({"cfg", "model"})


def write_folder(
    path: Path,
    loaded: LoadedModel,
    cfg: Dict[str, Any],
    label_map: Dict[str, Optional[str]],
    exclude: Iterable[str] = (),
) -> None:
    """Write the model (in the dtype it runs in; float32 stays bit exact) and
    cfg.json, but for the parts named in `exclude` ("model", "cfg")."""
    path.mkdir(parents=True, exist_ok=True)
    if "model" not in exclude:
        model_dir = path / MODEL_DIR
        if model_dir.exists():
            shutil.rmtree(model_dir)
        hub.save_model(loaded.model, loaded.tokenizer, model_dir)
    if "cfg" not in exclude:
        saved = dict(cfg)
        saved["labels"] = list(loaded.scheme.labels)
        saved["label_scheme"] = loaded.scheme.kind
        saved["resolved_label_map"] = label_map
        (path / CFG_FILE).write_text(json.dumps(saved, indent=2, sort_keys=True), "utf8")


def read_folder(
    path: Path, dtype: torch.dtype, exclude: Iterable[str] = ()
) -> Tuple[Dict[str, Any], Any, Optional[torch.nn.Module]]:
    """The saved cfg.json ({} when excluded), tokenizer and model (None, None
    when "model" is excluded) of a component folder."""
    exclude = set(exclude)
    cfg_path = path / CFG_FILE
    model_dir = path / MODEL_DIR
    missing = [
        name
        for part, name, there in (
            ("cfg", CFG_FILE, cfg_path.is_file()),
            ("model", f"{MODEL_DIR}/", model_dir.is_dir()),
        )
        if part not in exclude and not there
    ]
    if missing:
        raise ModelLoadError(
            f"{path} is not a saved hf_token_tagger: expected {' and '.join(missing)} "
            "there. Was the pipeline saved with nlp.to_disk?"
        )
    saved = json.loads(cfg_path.read_text("utf8")) if "cfg" not in exclude else {}
    if "model" in exclude:
        return saved, None, None
    tokenizer = hub.load_tokenizer(str(model_dir), None, local_only=True)
    model, _ = hub.load_model(str(model_dir), None, local_only=True, dtype=dtype)
    return saved, tokenizer, model


def folder_to_bytes(write: Callable[[Path], None]) -> bytes:
    """What `write` puts in a folder, as a msgpack map of relative path → content."""
    with tempfile.TemporaryDirectory() as tmp:
        write(Path(tmp))
        files = {
            str(p.relative_to(tmp)): p.read_bytes() for p in Path(tmp).rglob("*") if p.is_file()
        }
    return srsly.msgpack_dumps(files)


def bytes_to_folder(data: bytes, read: Callable[[Path], None]) -> None:
    """Unpack `folder_to_bytes` output into a temporary folder and `read` it."""
    files = srsly.msgpack_loads(data)
    with tempfile.TemporaryDirectory() as tmp:
        for name, content in files.items():
            target = Path(tmp) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        read(Path(tmp))
