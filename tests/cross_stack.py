"""Build, save and annotate pipelines in one Python environment, for another to check.

Why: users carry saved pipelines across transformers majors (a folder trained under
4.x loaded after upgrading to 5.x, or the reverse). ``test_stack.py`` runs this module
with the *other* environment's interpreter (``SPACY_HF_TAGGER_OTHER_PYTHON``), then
loads the folders it wrote in the current one and compares every annotation.

    python tests/cross_stack.py OUT_DIR

writes ``OUT_DIR/<family>/`` (a pipeline trained and saved here, one per tokenizer
family) and ``OUT_DIR/expected.json`` (versions, and the annotations of ``TEXTS``
made here before saving).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_models import FAMILIES, build_tiny_model, training_sentences

TRAIN_STEPS = 100

# The memorised sentences, plus CJK, emoji, full-width letters (NFKC folds them),
# extra whitespace and a text that needs several windows.
TEXTS: List[str] = [
    *(text for text, _ in training_sentences()),
    "Kenji 😀 moved to 東京 in 1999 ❤️ with Sarah.",
    "My name is Ｓａｒａｈ and I live in Ｐａｒｉｓ.",
    "Olga and  Peter moved to\nLondon yesterday.",
    " ".join(text for text, _ in training_sentences()[8:14]),
    "",
]


def annotations(doc: Any) -> Dict[str, Any]:
    """What the component wrote on a doc, as JSON values."""
    return {
        "ents": [[e.start_char, e.end_char, e.label_] for e in doc.ents],
        "bio": [t._.hf_bio for t in doc],
        "scores": [t._.hf_score for t in doc],
    }


def main(out_dir: Path) -> None:
    import spacy
    import tokenizers
    import torch
    import transformers

    torch.set_num_threads(1)
    out_dir.mkdir(parents=True, exist_ok=True)
    expected: Dict[str, Any] = {
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "pipelines": {},
    }
    for family in FAMILIES:
        model = build_tiny_model(family, out_dir / "models" / family, train_steps=TRAIN_STEPS)
        nlp = spacy.blank("en")
        # float32: agreement across the majors is exact there (bf16 rounds
        # differently wherever the two majors order their operations differently).
        nlp.add_pipe("hf_token_tagger", config={"model": str(model), "dtype": "float32"})
        expected["pipelines"][family] = [annotations(doc) for doc in nlp.pipe(TEXTS)]
        nlp.to_disk(out_dir / family)
    (out_dir / "expected.json").write_text(json.dumps(expected), "utf8")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
