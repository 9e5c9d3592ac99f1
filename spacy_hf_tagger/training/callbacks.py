"""Callbacks for the training configs.

spaCy's training loop writes one `meta.json` performance entry for every key of
`[training.score_weights]`, with 0.0 for scores the pipeline never produced: an
NER pipeline's meta then claims `tag_acc 0.0` and `pos_acc 0.0`, and so does
the package built from it. `spacy_hf_tagger.clean_performance.v1`, as
`[training] before_to_disk`, leaves out those entries (weight null, value 0.0).
"""

from __future__ import annotations

from typing import Callable

from spacy.language import Language
from spacy.util import registry


def clean_performance(nlp: Language) -> Language:
    """Drop meta performance entries of scores this pipeline does not produce."""
    weights = nlp.config["training"].get("score_weights", {})
    performance = nlp.meta.get("performance")
    if isinstance(performance, dict):
        for key, weight in weights.items():
            if weight is None and performance.get(key) == 0.0:
                del performance[key]
    return nlp


@registry.callbacks("spacy_hf_tagger.clean_performance.v1")
def make_clean_performance() -> Callable[[Language], Language]:
    return clean_performance
