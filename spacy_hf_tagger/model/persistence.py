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
from typing import Any, Callable, Dict, Optional, Tuple

import srsly
import torch

from ..errors import ModelLoadError
from . import hub
from .loading import LoadedModel

MODEL_DIR = "model"
CFG_FILE = "cfg.json"


def write_folder(
    path: Path, loaded: LoadedModel, cfg: Dict[str, Any], label_map: Dict[str, Optional[str]]
) -> None:
    """Write the model (in the dtype it runs in; float32 stays bit exact) and cfg.json."""
    path.mkdir(parents=True, exist_ok=True)
    model_dir = path / MODEL_DIR
    if model_dir.exists():
        shutil.rmtree(model_dir)
    hub.save_model(loaded.model, loaded.tokenizer, model_dir)
    saved = dict(cfg)
    saved["labels"] = list(loaded.scheme.labels)
    saved["label_scheme"] = loaded.scheme.kind
    saved["resolved_label_map"] = label_map
    (path / CFG_FILE).write_text(json.dumps(saved, indent=2, sort_keys=True), "utf8")


def read_folder(path: Path, dtype: torch.dtype) -> Tuple[Dict[str, Any], Any, torch.nn.Module]:
    """The saved cfg.json, tokenizer and model of a component folder."""
    cfg_path = path / CFG_FILE
    model_dir = path / MODEL_DIR
    if not cfg_path.exists() or not model_dir.is_dir():
        raise ModelLoadError(
            f"{path} is not a saved hf_token_tagger: expected {CFG_FILE} and a "
            f"{MODEL_DIR}/ folder there. Was the pipeline saved with nlp.to_disk?"
        )
    saved = json.loads(cfg_path.read_text("utf8"))
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
