"""Fixtures of the corpus-job tests: one small trained tiny model per module,
and the pipeline `annotate` would load from it (a module that needs another
dtype or model defines its own)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from spacy_hf_tagger.jobs.pipelines import load_pipeline


@pytest.fixture(scope="module")
def model(tiny_models: Callable[..., Path]) -> Path:
    return tiny_models("wordpiece-cased", train_steps=100)


@pytest.fixture(scope="module")
def nlp(model: Path):
    return load_pipeline(str(model))
