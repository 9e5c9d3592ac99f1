"""The default scorer: entity P/R/F, span-group P/R/F and tag/POS accuracy.

What is scored follows what the component writes (its resolved `annotate`
setting, passed in by `Pipe.score` from the component's cfg), so `spacy
evaluate` and `spacy train` report the figures that match the model.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Optional

from spacy.scorer import Scorer
from spacy.training import Example
from spacy.util import registry


def score_hf_tagger(
    examples: Iterable[Example],
    *,
    annotate_resolved: Optional[List[str]] = None,
    spans_key: str = "hf_ents",
    **kwargs: Any,
) -> Dict[str, Any]:
    """Score what the component wrote; without a resolved setting, score ents."""
    examples = list(examples)
    annotate = annotate_resolved or ["ents"]
    scores: Dict[str, Any] = {}
    if "ents" in annotate:
        scores.update(Scorer.score_spans(examples, "ents"))
    if "spans" in annotate:
        # Scored only against gold docs that carry the same span group.
        attr = f"spans_{spans_key}"
        scores.update(
            Scorer.score_spans(
                examples,
                attr,
                getter=lambda doc, name: doc.spans.get(name[len("spans_") :], []),
                has_annotation=lambda doc: spans_key in doc.spans,
                allow_overlap=True,
            )
        )
    if "tag" in annotate:
        scores.update(Scorer.score_token_attr(examples, "tag"))
    if "pos" in annotate:
        scores.update(Scorer.score_token_attr(examples, "pos"))
    return scores


@registry.scorers("spacy_hf_tagger.scorer.v1")
def make_hf_tagger_scorer() -> Callable[..., Dict[str, Any]]:
    return score_hf_tagger
