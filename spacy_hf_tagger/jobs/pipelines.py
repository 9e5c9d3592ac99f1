"""The pipeline a job runs: a saved or installed spaCy pipeline, or a model.

Every job (the corpus job, its Ray actors, the precision check, Presidio's
engine) loads through `load_pipeline`, so "a pipeline folder, an installed
pipeline, or a Hugging Face model folder / hub id" means the same everywhere.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from spacy.language import Language

from ..errors import JobError

FACTORY = "hf_token_tagger"
# Components that take a text of any length: ours cuts it into windows, and
# these rule components work in one pass over the tokens. spaCy's max_length
# (E088) is there for the parser and the NER, which need ~1 GB of memory per
# 100,000 characters.
LENGTH_SAFE_FACTORIES = frozenset(
    {FACTORY, "sentencizer", "entity_ruler", "span_ruler", "attribute_ruler", "merge_entities"}
)


@dataclass(frozen=True)
class LengthLimit:
    """spaCy's max_length where a pipeline keeps it, and the components that need it."""

    chars: int
    components: Tuple[str, ...]

    def too_long(self, n_chars: int) -> Optional[str]:
        """Why a text of `n_chars` characters is skipped (for the errors file),
        or None when it is not."""
        if n_chars <= self.chars:
            return None
        return (
            f"text of {n_chars:,} characters is over the pipeline's max_length of "
            f"{self.chars:,}, which its components {', '.join(self.components)} need "
            "(spaCy's E088: ~1 GB of memory per 100,000 characters); split the record, "
            "or raise nlp.max_length where the memory is there"
        )


def lift_length_limit(nlp: Language) -> Optional[LengthLimit]:
    """Lift spaCy's max_length when every component takes any length; else
    return the limit that stays."""
    bound = tuple(
        name
        for name in nlp.pipe_names
        if nlp.get_pipe_meta(name).factory not in LENGTH_SAFE_FACTORIES
    )
    if bound:
        return LengthLimit(int(nlp.max_length), bound)
    nlp.max_length = sys.maxsize
    return None


def load_pipeline(
    source: str,
    lang: str = "en",
    overrides: Optional[Dict[str, Any]] = None,
    device: Optional[str] = None,
    dtype: Optional[str] = None,
) -> Language:
    """`spacy.load` for an installed pipeline or a pipeline folder; otherwise a
    blank `lang` pipeline with our component on `source` (a model folder or a
    hub id). `overrides` are spaCy config overrides ("components.x.y": value);
    `device`/`dtype` set those of every hf_token_tagger. spaCy's max_length
    is lifted when every component takes any length (`lift_length_limit`)."""
    import spacy

    overrides = dict(overrides or {})
    path = Path(source).expanduser()
    if (path / "config.cfg").is_file() or (not path.exists() and spacy.util.is_package(source)):
        config = spacy.util.load_config(
            path / "config.cfg"
            if path.exists()
            else spacy.util.get_package_path(source) / "config.cfg"
        )
        for name, block in config["components"].items():
            if block.get("factory") == FACTORY:
                if device is not None:
                    overrides[f"components.{name}.device"] = device
                if dtype is not None:
                    overrides[f"components.{name}.dtype"] = dtype
        nlp = spacy.load(source, config=overrides)
        lift_length_limit(nlp)
        return nlp
    component: Dict[str, Any] = {"model": source}
    if device is not None:
        component["device"] = device
    if dtype is not None:
        component["dtype"] = dtype
    prefix = f"components.{FACTORY}."
    for key, value in overrides.items():
        if not key.startswith(prefix) or "." in key[len(prefix) :]:
            raise JobError(
                f"Override {key!r} does not apply to a blank pipeline with {FACTORY} on a "
                f"model: use {prefix}SETTING (e.g. {prefix}threshold 0.5)."
            )
        component[key[len(prefix) :]] = value
    nlp = spacy.blank(lang)
    nlp.add_pipe(FACTORY, config=component)
    lift_length_limit(nlp)
    return nlp


def tagger_names(nlp: Language) -> List[str]:
    """The names of the pipeline's hf_token_tagger components."""
    return [name for name in nlp.pipe_names if nlp.get_pipe_meta(name).factory == FACTORY]
