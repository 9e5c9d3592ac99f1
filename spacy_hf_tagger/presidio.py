"""A Presidio NLP engine whose entities carry the scores our component gave them.

Presidio's spaCy engine reads `doc.ents` from any pipeline but scores every
entity with one flat `default_score` (0.85): spaCy has no entity confidence
of its own. Ours has one, `span._.hf_score` (the model's probability for the
entity's type, averaged over its tokens), so this engine passes it on, and
Presidio's score threshold then means what it says. An entity written by
another component (an entity ruler before ours) has no model score and keeps
`default_score`.

    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from spacy_hf_tagger.presidio import HFTaggerNlpEngine

    provider = NlpEngineProvider(
        nlp_engines=(HFTaggerNlpEngine,),
        nlp_configuration={
            "nlp_engine_name": "hf_tagger",
            "models": [{"lang_code": "en", "model_name": "path/to/pipeline"}],
        },
    )
    analyzer = AnalyzerEngine(nlp_engine=provider.create_engine())

Entities are the model's at their exact characters (`doc._.hf_char_ents`):
a Korean name without its particle, `Paris` inside `MerkelvisitedParis`,
whatever spaCy's tokens are, beside the entities of earlier components that
`doc.ents` kept (the model's entities that overlap those are left out, as
they are from `doc.ents`).

`model_name` is what `python -m spacy_hf_tagger annotate` takes: an
installed pipeline or a pipeline folder, or a Hugging Face model folder or
hub id (then a blank pipeline of `lang_code` with our component).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from spacy.tokens import Doc

try:
    from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "spacy_hf_tagger.presidio needs presidio-analyzer: pip install 'spacy-hf-tagger[presidio]'"
    ) from error

from .jobs.pipelines import load_pipeline
from .labels.writing import CHAR_ENTS_ATTR, SCORE_ATTR


@dataclass
class CharSpan:
    """What Presidio reads of an entity (offsets, and a label it may rename),
    at characters a spaCy `Span` could not hold (inside a token)."""

    start_char: int
    end_char: int
    label_: str
    score: Optional[float] = None


class HFTaggerNlpEngine(SpacyNlpEngine):
    """Presidio's spaCy engine, loading pipelines with `hf_token_tagger` and
    scoring entities by the model."""

    engine_name = "hf_tagger"
    is_available = True

    def __init__(
        self,
        models: Optional[List[Dict[str, str]]] = None,
        ner_model_configuration: Optional[NerModelConfiguration] = None,
    ) -> None:
        if not models:
            raise ValueError(
                "HFTaggerNlpEngine needs models=[{'lang_code': 'en', 'model_name': "
                "PIPELINE}], PIPELINE being a pipeline (installed or a folder) or a "
                "Hugging Face token-classification model (folder or hub id)."
            )
        super().__init__(models=models, ner_model_configuration=ner_model_configuration)

    def load(self) -> None:
        """Load each language's pipeline once. No spaCy download and no
        `spacy.require_gpu`: the component's own `device` setting decides."""
        self.nlp = {}
        for model in self.models:
            self._validate_model_params(model)
            self.nlp[model["lang_code"]] = load_pipeline(
                model["model_name"], lang=model["lang_code"]
            )

    def _get_entities(self, doc: Doc) -> List[Any]:
        """Earlier components' entities in `doc.ents`, and the model's at exact
        characters where they do not overlap one of those."""
        exact = doc._.get(CHAR_ENTS_ATTR) if doc.has_extension(CHAR_ENTS_ATTR) else None
        if exact is None:
            return list(doc.ents)
        others = [ent for ent in doc.ents if _model_score(ent) is None]
        taken = [(ent.start_char, ent.end_char) for ent in others]
        model = [
            CharSpan(start, end, label, score)
            for start, end, label, score in exact
            if not any(start < e and s < end for s, e in taken)
        ]
        return sorted([*others, *model], key=lambda ent: ent.start_char)

    def _get_scores_for_entities(self, doc: Doc) -> List[float]:
        default = self.ner_model_configuration.default_score
        scores = []
        for ent in self._get_entities(doc):
            score = ent.score if isinstance(ent, CharSpan) else _model_score(ent)
            scores.append(float(score) if score is not None else default)
        return scores


def _model_score(ent: Any) -> Optional[float]:
    """The component's score of an entity in `doc.ents` (None: another component's)."""
    return getattr(ent._, SCORE_ATTR, None) if ent.has_extension(SCORE_ATTR) else None
