"""One pipeline shared by many threads: a web server's worker pool.

Why: servers (FastAPI's threadpool, Flask threaded, gunicorn gthread) share one
loaded `nlp` across threads. The lazy model load raced ("Cannot copy out of meta
tensor") and the Rust tokenizer failed when two threads used it ("Already
borrowed"). Every thread must get the same entities as a single thread would.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest
import spacy
from tiny_models import training_sentences

from spacy_hf_tagger.model import loading
from spacy_hf_tagger.serving.coalescing import Coalescer

TEXTS = [text for text, _ in training_sentences()]
THREADS = 8
ROUNDS = 3

Ents = List[Tuple[int, int, str]]


def ents(doc) -> Ents:
    return [(e.start_char, e.end_char, e.label_) for e in doc.ents]


def hf_bio(doc) -> List[str]:
    return [t._.hf_bio for t in doc]


@pytest.fixture(scope="module")
def model_dir(tiny_models) -> Path:
    return tiny_models("wordpiece-cased", train_steps=100)


@pytest.fixture(scope="module")
def expected(model_dir) -> Dict[str, Tuple[Ents, List[str]]]:
    """Entities and BIO labels from one thread, one text at a time."""
    nlp = spacy.blank("en")
    nlp.add_pipe("hf_token_tagger", config={"model": str(model_dir)})
    out = {}
    for text in TEXTS:
        doc = nlp(text)
        out[text] = (ents(doc), hf_bio(doc))
    return out


def fresh_nlp(model_dir: Path):
    nlp = spacy.blank("en")
    nlp.add_pipe("hf_token_tagger", config={"model": str(model_dir)})
    return nlp


def hammer(call: Callable[[str], object], threads: int = THREADS, rounds: int = ROUNDS):
    """Every thread annotates every text `rounds` times, all starting together.
    Returns (text, doc) pairs and the errors raised."""
    barrier = threading.Barrier(threads)
    results: List[Tuple[str, object]] = []
    errors: List[BaseException] = []
    lock = threading.Lock()

    def work(offset: int) -> None:
        barrier.wait()
        for r in range(rounds):
            for k in range(len(TEXTS)):
                text = TEXTS[(k + offset + r) % len(TEXTS)]
                try:
                    doc = call(text)
                except BaseException as error:  # reported below, never swallowed
                    with lock:
                        errors.append(error)
                    continue
                with lock:
                    results.append((text, doc))

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
    assert not any(w.is_alive() for w in workers), "threads still running after 300 s"
    return results, errors


def check(results, errors, expected) -> None:
    assert not errors, errors[:3]
    assert len(results) == THREADS * ROUNDS * len(TEXTS)
    for text, doc in results:
        assert (ents(doc), hf_bio(doc)) == expected[text], text


def test_many_threads_from_cold_load_the_model_once(model_dir, expected, monkeypatch):
    calls = []
    real = loading.load_source

    def counting(*args, **kwargs):
        calls.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr("spacy_hf_tagger.component.load_source", counting)
    nlp = fresh_nlp(model_dir)
    comp = nlp.get_pipe("hf_token_tagger")
    assert not comp.is_loaded
    results, errors = hammer(nlp)
    check(results, errors, expected)
    assert len(calls) == 1
    # The pipeline still works afterwards, also through nlp.pipe in this thread.
    docs = list(nlp.pipe(TEXTS))
    assert [(ents(d), hf_bio(d)) for d in docs] == [expected[t] for t in TEXTS]


def test_many_threads_warm_share_forward_passes(model_dir, expected):
    nlp = fresh_nlp(model_dir)
    nlp("warm up")
    comp = nlp.get_pipe("hf_token_tagger")
    before = comp._coalescer.batches
    results, errors = hammer(nlp)
    check(results, errors, expected)
    batches = comp._coalescer.batches - before
    # Concurrent calls were annotated together: fewer batches than calls.
    assert batches < THREADS * ROUNDS * len(TEXTS)
    assert comp.counters["docs"] == 1 + THREADS * ROUNDS * len(TEXTS)


def test_threads_using_nlp_pipe_concurrently_from_cold(model_dir, monkeypatch):
    """nlp.pipe runs outside the coalescer: threads load, tokenize and predict side by
    side. Long texts keep the Rust tokenizer busy, so the threads really overlap."""
    calls = []
    real = loading.load_source

    def counting(*args, **kwargs):
        calls.append(threading.get_ident())
        return real(*args, **kwargs)

    long_texts = [" ".join(TEXTS[k:] + TEXTS[:k]) * 6 for k in range(4)]
    single = fresh_nlp(model_dir)
    want = {t: (ents(d), hf_bio(d)) for t, d in zip(long_texts, single.pipe(long_texts))}
    monkeypatch.setattr("spacy_hf_tagger.component.load_source", counting)
    nlp = fresh_nlp(model_dir)
    barrier = threading.Barrier(4)
    errors: List[BaseException] = []
    got: List[Tuple[str, object]] = []

    def work(k: int) -> None:
        barrier.wait()
        try:
            for _ in range(3):
                texts = long_texts[k:] + long_texts[:k]
                got.extend(zip(texts, nlp.pipe(texts, batch_size=2)))
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
    assert not any(w.is_alive() for w in workers)
    assert not errors, errors[:3]
    assert len(calls) == 1
    assert len(got) == 4 * 3 * 4
    for text, doc in got:
        assert (ents(doc), hf_bio(doc)) == want[text]


def test_asyncio_callers_through_run_in_executor(model_dir, expected):
    nlp = fresh_nlp(model_dir)

    async def main() -> list:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(max_workers=8) as pool:
            jobs = [loop.run_in_executor(pool, nlp, t) for t in TEXTS * 3]
            return await asyncio.wait_for(asyncio.gather(*jobs), timeout=300)

    docs = asyncio.run(main())
    for doc in docs:
        assert (ents(doc), hf_bio(doc)) == expected[doc.text]


def test_a_failing_doc_fails_only_its_own_caller(model_dir, expected, monkeypatch):
    nlp = fresh_nlp(model_dir)
    comp = nlp.get_pipe("hf_token_tagger")
    nlp("warm up")
    real_predict = comp.predict

    def predict(docs):
        if any("BOOM" in d.text for d in docs):
            raise ValueError("bad doc")
        return real_predict(docs)

    monkeypatch.setattr(comp, "predict", predict)

    def call(text: str):
        return nlp(text)

    texts = [*TEXTS, "BOOM goes the doc."]
    barrier = threading.Barrier(len(texts))
    outcome: Dict[str, object] = {}

    def work(text: str) -> None:
        barrier.wait()
        try:
            outcome[text] = call(text)
        except ValueError as error:
            outcome[text] = error

    workers = [threading.Thread(target=work, args=(t,)) for t in texts]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert not any(w.is_alive() for w in workers)
    assert isinstance(outcome["BOOM goes the doc."], ValueError)
    for text in TEXTS:
        doc = outcome[text]
        assert not isinstance(doc, BaseException), (text, doc)
        assert (ents(doc), hf_bio(doc)) == expected[text]


def test_a_leader_that_dies_mid_batch_does_not_strand_the_others():
    """The thread running a batch is stopped by a non-Exception (as KeyboardInterrupt
    or SystemExit would); the callers waiting on it get an error or their result,
    and the coalescer keeps working."""
    started = threading.Event()
    release = threading.Event()
    processed: List[List[int]] = []

    def process(items):
        if 0 in items:
            started.set()
            release.wait(10)
            raise SystemExit("leader stopped")
        processed.append(list(items))

    coalescer: Coalescer[int] = Coalescer(process)
    outcome: Dict[int, object] = {}

    def work(item: int) -> None:
        try:
            outcome[item] = coalescer.submit(item)
        except BaseException as error:
            outcome[item] = error

    leader = threading.Thread(target=work, args=(0,))
    leader.start()
    assert started.wait(10)
    followers = [threading.Thread(target=work, args=(i,)) for i in range(1, 6)]
    for f in followers:
        f.start()
    release.set()
    for t in [leader, *followers]:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in [leader, *followers]), "a caller was stranded"
    assert isinstance(outcome[0], SystemExit)
    # The followers arrived while the leader ran: they form the next batch.
    assert all(outcome[i] == i for i in range(1, 6)), outcome
    assert sorted(x for batch in processed for x in batch) == [1, 2, 3, 4, 5]
    assert coalescer.submit(7) == 7


def test_coalescer_waits_for_a_batch_only_when_callers_are_concurrent():
    seen: List[int] = []
    coalescer: Coalescer[int] = Coalescer(lambda items: seen.append(len(items)), wait=0.3)
    # A lone caller never waits.
    start = time.monotonic()
    assert coalescer.submit(0) == 0
    assert time.monotonic() - start < 0.2
    # Once a batch held several items, the leader waits up to 0.3 s for as
    # many (here, as if the last batch held 4).
    coalescer._last_batch = 4
    barrier = threading.Barrier(4)

    def work(i: int) -> None:
        barrier.wait()
        coalescer.submit(i)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=30)
    assert seen == [1, 4]


def test_the_wait_ends_when_the_last_batch_s_callers_are_back():
    seen: List[int] = []
    coalescer: Coalescer[int] = Coalescer(lambda items: seen.append(len(items)), wait=20.0)
    coalescer._last_batch = 3
    barrier = threading.Barrier(3)

    def work(i: int) -> None:
        barrier.wait()
        coalescer.submit(i)

    start = time.monotonic()
    workers = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    # Not the 20 s: the leader stops waiting once three items are in.
    assert time.monotonic() - start < 10
    assert seen == [3]


def test_thread_batch_wait_setting_is_checked(model_dir):
    from spacy_hf_tagger.settings import ConfigError

    nlp = spacy.blank("en")
    with pytest.raises(ConfigError, match="thread_batch_wait_ms"):
        nlp.add_pipe(
            "hf_token_tagger", config={"model": str(model_dir), "thread_batch_wait_ms": -1}
        )
