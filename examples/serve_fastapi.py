"""Serve a pipeline with hf_token_tagger over HTTP, shared by FastAPI's worker threads.

    pip install fastapi uvicorn
    SPACY_PIPELINE=path/to/pipeline uvicorn examples.serve_fastapi:create_app \
        --factory --host 127.0.0.1 --port 8000
    curl -s localhost:8000/ents -H 'content-type: application/json' \
        -d '{"text": "Angela Merkel visited Paris."}'

The endpoint is a plain `def`: FastAPI runs it in its thread pool, and every
thread calls the one `nlp` loaded at start-up. The component is safe to share
(the model loads once; the tokenizer is only read) and batches the texts of
concurrent requests into one forward pass.
"""

from __future__ import annotations

import os
from typing import List, Optional

import spacy
from fastapi import FastAPI
from pydantic import BaseModel


class Text(BaseModel):
    text: str


class Entity(BaseModel):
    start: int
    end: int
    label: str
    text: str
    score: Optional[float]


class Entities(BaseModel):
    ents: List[Entity]


def create_app(pipeline: Optional[str] = None) -> FastAPI:
    """The app for a pipeline folder or package (default: $SPACY_PIPELINE)."""
    nlp = spacy.load(pipeline or os.environ["SPACY_PIPELINE"])
    nlp("warm up")  # load the model before the first request
    app = FastAPI(title="spacy-hf-tagger")

    @app.post("/ents", response_model=Entities)
    def ents(request: Text) -> Entities:
        doc = nlp(request.text)
        return Entities(
            ents=[
                Entity(
                    start=e.start_char,
                    end=e.end_char,
                    label=e.label_,
                    text=e.text,
                    score=e._.hf_score,
                )
                for e in doc.ents
            ]
        )

    return app
