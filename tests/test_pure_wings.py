"""`align/` and `labels/` are pure: they import neither torch nor transformers,
so their rules run (and are tested) without a model framework."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "spacy_hf_tagger"
PURE_WINGS = ("align", "labels")

# Run in a fresh interpreter where importing torch or transformers fails. thinc
# (under spaCy) imports torch only if it can, so spaCy itself still loads.
CHILD = """
import importlib, sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            raise ImportError(f"{name} imported by a pure wing")
        return None

sys.meta_path.insert(0, Refuse())
for module in sys.argv[1:]:
    importlib.import_module(module)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
assert not leaked, leaked
print("ok", len(sys.argv) - 1)
"""


def test_pure_wings_import_neither_torch_nor_transformers() -> None:
    modules = [
        f"spacy_hf_tagger.{wing}.{path.stem}"
        for wing in PURE_WINGS
        for path in sorted((PACKAGE / wing).glob("*.py"))
        if path.stem != "__init__"
    ]
    assert len(modules) >= 9
    result = subprocess.run(
        [sys.executable, "-c", CHILD, *modules], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == f"ok {len(modules)}"
