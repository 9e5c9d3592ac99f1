"""Run and fine-tune Hugging Face token classifiers inside spaCy pipelines.

The layout: `component` (the pipe), `settings`, `errors` and `cli` at the
door; `align/` and `labels/` (pure: pieces to tokens, labels to spans, no
torch), `model/` (torch and transformers), `training/` (what `spacy train`
resolves), `jobs/` (corpus jobs, Ray Data, the precision check), `serving/`.

spaCy finds the `hf_token_tagger` factory and the `spacy_hf_tagger.scorer.v1`
scorer through entry points, so `nlp.add_pipe("hf_token_tagger")` works
without importing this package. Names here load lazily, so light tools such
as `python -m spacy_hf_tagger convert` do not pay for importing transformers.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "HFTokenTagger": "component",
    "make_hf_token_tagger": "component",
    "ModelLoadError": "errors",
    "LabelScheme": "labels.schemes",
    "LabelSchemeError": "errors",
    "ConfigError": "errors",
    "AnnotationConflictError": "errors",
    "JobError": "errors",
    "JobInterrupted": "errors",
    "JobIOError": "errors",
    "OutputError": "errors",
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
