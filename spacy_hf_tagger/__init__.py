"""Run and fine-tune Hugging Face token classifiers inside spaCy pipelines.

Importing the package registers the `hf_token_tagger` factory and the
`spacy_hf_tagger.scorer.v1` scorer; spaCy also finds both through entry
points, so `nlp.add_pipe("hf_token_tagger")` works without this import.
"""

from .component import HFTokenTagger, make_hf_token_tagger
from .hf import ModelLoadError
from .labels import LabelScheme, LabelSchemeError, read_label_scheme
from .scoring import make_hf_tagger_scorer

__all__ = [
    "HFTokenTagger",
    "LabelScheme",
    "LabelSchemeError",
    "ModelLoadError",
    "make_hf_tagger_scorer",
    "make_hf_token_tagger",
    "read_label_scheme",
]
__version__ = "0.1.0"
