"""The README's FastAPI server, started for real on 127.0.0.1, under concurrent requests.

Why: the serving example is what users copy. It must answer every concurrent request
with the entities one thread would find, and this test must stop the server itself,
whatever happens.
"""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import spacy
from http_json import free_port, post_json
from tiny_models import training_sentences

pytest.importorskip("fastapi", reason="the serving example needs fastapi (the `dev` extra)")
uvicorn = pytest.importorskip("uvicorn", reason="the serving example needs uvicorn (`dev`)")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from serve_fastapi import create_app  # noqa: E402

REQUESTS = 64
TIME_LIMIT = 120.0


def post(port: int, text: str) -> dict:
    status, answer = post_json(port, {"text": text}, "/ents")
    assert status == 200, answer
    return answer


@pytest.mark.slow
def test_fastapi_server_answers_concurrent_requests(tiny_models, tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "hf_token_tagger", config={"model": str(tiny_models("wordpiece-cased", train_steps=100))}
    )
    nlp.to_disk(tmp_path / "pipe")
    expected = {
        text: [
            {"start": e.start_char, "end": e.end_char, "label": e.label_, "text": e.text}
            for e in nlp(text).ents
        ]
        for text, _ in training_sentences()
    }
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(str(tmp_path / "pipe")), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    # Stop the server whatever happens below: after the test, or at the time limit.
    watchdog = threading.Timer(TIME_LIMIT, lambda: setattr(server, "should_exit", True))
    watchdog.start()
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start in 30 s"
            time.sleep(0.05)
        texts = [text for text, _ in training_sentences()]
        jobs = [texts[i % len(texts)] for i in range(REQUESTS)]
        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(lambda t: post(port, t), jobs))
        for text, answer in zip(jobs, answers):
            got = [{k: e[k] for k in ("start", "end", "label", "text")} for e in answer["ents"]]
            assert got == expected[text], text
            assert all(0.0 < e["score"] <= 1.0 for e in answer["ents"])
    finally:
        server.should_exit = True
        watchdog.cancel()
        thread.join(timeout=30)
    assert not thread.is_alive(), "the server did not stop"
