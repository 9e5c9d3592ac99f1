"""The layout's promises: `align/`, `labels/` and `calibration/` are pure (they import neither
torch nor transformers, so their rules run and are tested without a model
framework), and no two modules of the package import each other, directly or
round a longer circle, when they load."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

PACKAGE = Path(__file__).resolve().parents[1] / "spacy_hf_tagger"
PURE_WINGS = ("align", "labels", "calibration")

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


def _load_time_imports(path: Path, module: str) -> Set[str]:
    """Package modules `module` imports when it loads: top-level imports, not
    those inside functions (loaded on use) or under `if TYPE_CHECKING`."""
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found: Set[str] = set()
    for node in ast.parse(path.read_text("utf8")).body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            names = [f"{target}.{alias.name}" for alias in node.names]
            found.update(n for n in [target, *names] if n.startswith("spacy_hf_tagger"))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("spacy_hf_tagger"))
    return found


def test_no_import_circle() -> None:
    modules: Dict[str, Path] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph = {
        name: sorted(m for m in _load_time_imports(path, name) if m in modules and m != name)
        for name, path in modules.items()
    }
    assert "spacy_hf_tagger.model.hub" in graph["spacy_hf_tagger.model.loading"]  # it reads
    # Depth-first search for a back edge.
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for child in graph[name]:
            if state.get(child) == 1:
                circle = [*stack[stack.index(child) :], child]
                raise AssertionError("import circle: " + " -> ".join(circle))
            if child not in state:
                visit(child)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
