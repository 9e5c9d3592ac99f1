"""Run and fine-tune Hugging Face token classifiers inside spaCy pipelines.

spaCy finds the `hf_token_tagger` factory and the `spacy_hf_tagger.scorer.v1`
scorer through entry points, so `nlp.add_pipe("hf_token_tagger")` works
without importing this package. Names here load lazily, so light tools such
as `python -m spacy_hf_tagger.convert` do not pay for importing torch.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "HFTokenTagger": "component",
    "make_hf_token_tagger": "component",
    "ModelLoadError": "model.hf",
    "LabelScheme": "labels.schemes",
    "LabelSchemeError": "labels.schemes",
    "read_label_scheme": "labels.schemes",
    "make_hf_tagger_scorer": "training.scoring",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'spacy_hf_tagger' has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)
