"""The torch thread: every CPU torch op of the component on one thread, so
OpenMP keeps one team and its workers keep spinning (`model/torch_thread.py`).

Why: with a second thread's OpenMP team in the process (a server's request
threads, or the main thread having loaded the model), libgomp makes its idle
workers sleep, and a one-sentence forward pass took 2.8x as long.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import spacy
import torch
from tiny_models import training_sentences

from spacy_hf_tagger.model import torch_thread

# Where the torch thread is used at all (`torch_thread.routes`).
needs_openmp = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and torch.backends.openmp.is_available()),
    reason="the torch thread is for GNU OpenMP: Linux, torch built with OpenMP",
)


@pytest.fixture
def two_torch_threads() -> Iterator[None]:
    """The suite runs torch on one intra-op thread, where nothing is routed."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def test_nothing_is_routed_with_one_intra_op_thread() -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert not torch_thread.routes()
        assert torch_thread.run(threading.get_ident) == threading.get_ident()
    finally:
        torch.set_num_threads(previous)


@needs_openmp
def test_runs_on_one_other_thread_and_returns_its_result(two_torch_threads) -> None:
    here = threading.get_ident()
    idents = {torch_thread.run(threading.get_ident) for _ in range(5)}
    assert len(idents) == 1 and here not in idents
    assert torch_thread.run(lambda a, b=0: a + b, 2, b=3) == 5
    # Callers on other threads meet the same thread.
    seen = []
    callers = [
        threading.Thread(target=lambda: seen.append(torch_thread.run(threading.get_ident)))
        for _ in range(4)
    ]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert set(seen) == idents
    assert not torch_thread.is_torch_thread()
    assert torch_thread.run(torch_thread.is_torch_thread)


@needs_openmp
def test_work_submitted_from_the_torch_thread_runs_inline(two_torch_threads) -> None:
    def nested() -> tuple:
        return threading.get_ident(), torch_thread.run(threading.get_ident)

    outer, inner = torch_thread.run(nested)
    assert outer == inner


@needs_openmp
def test_the_exception_reaches_the_caller(two_torch_threads) -> None:
    class Boom(ValueError):
        pass

    def fail() -> None:
        raise Boom("row 3")

    with pytest.raises(Boom, match="row 3") as info:
        torch_thread.run(fail)
    assert info.traceback[-1].name == "fail"
    # The thread survives it.
    assert torch_thread.run(lambda: 7) == 7


@needs_openmp
def test_the_callers_thread_count_grad_mode_and_autocast_apply(two_torch_threads) -> None:
    assert torch_thread.run(torch.get_num_threads) == 2
    with torch.no_grad():
        assert torch_thread.run(torch.is_grad_enabled) is False
    assert torch_thread.run(torch.is_grad_enabled) is True
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch_thread.run(lambda: torch.is_autocast_enabled("cpu")) is True
        assert torch_thread.run(lambda: torch.get_autocast_dtype("cpu")) == torch.bfloat16
    assert torch_thread.run(lambda: torch.is_autocast_enabled("cpu")) is False
    # A limit set on the caller's side later reaches the (older) torch thread.
    torch.set_num_threads(3)
    assert torch_thread.run(torch.get_num_threads) == 3


@needs_openmp
def test_the_environment_switches_it_off(two_torch_threads, monkeypatch) -> None:
    monkeypatch.setenv(torch_thread.ENV_SWITCH, "0")
    assert not torch_thread.routes()
    assert torch_thread.run(threading.get_ident) == threading.get_ident()


def _child_runs(queue) -> None:
    torch.set_num_threads(2)
    queue.put(torch_thread.run(lambda: (os.getpid(), torch_thread.is_torch_thread())))


@needs_openmp
@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="no fork on this OS"
)
def test_a_forked_child_starts_its_own_thread(two_torch_threads) -> None:
    """The child inherits the parent's object but not its thread: waiting on
    the parent's queue would hang forever."""
    torch_thread.run(lambda: None)  # the parent's thread exists
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_runs, args=(queue,))
    child.start()
    pid, on_torch_thread = queue.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert pid == child.pid and on_torch_thread


@needs_openmp
def test_component_torch_work_runs_on_the_torch_thread(tiny_models, two_torch_threads) -> None:
    """Loading, forward passes from the main and other threads and a training
    step: every module call happens on the torch thread (saving runs no
    module: the one-team test below covers it)."""
    from spacy.training import Example

    calls = set()
    hook = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda module, args: calls.add(threading.get_ident())
    )
    try:
        nlp = spacy.blank("en")
        nlp.add_pipe("hf_token_tagger", config={"model": str(tiny_models("wordpiece-cased"))})
        texts = [text for text, _ in training_sentences()]
        nlp(texts[0])
        list(nlp.pipe(texts))
        callers = [threading.Thread(target=nlp, args=(text,)) for text in texts[:4]]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()
        optimizer = nlp.resume_training()
        doc = nlp.make_doc(texts[0])
        nlp.update([Example.from_dict(doc, {"entities": []})], sgd=optimizer)
        nlp(texts[1])
    finally:
        hook.remove()
    assert calls == {torch_thread.run(threading.get_ident)}


_TEAMS_SCRIPT = r"""
import json, os, sys, threading
import spacy, torch
from spacy.training import Example
def others():
    python = {t.native_id for t in threading.enumerate()}
    return len({int(n) for n in os.listdir("/proc/self/task")} - python)
model, out = sys.argv[1], sys.argv[2]
nlp = spacy.blank("en")
before = others()  # torch's own and OpenBLAS's (scipy, imported by spaCy)
nlp.add_pipe("hf_token_tagger", config={"model": model})
texts = ["Angela Merkel visited Paris .", "John lives in Berlin ."] * 8
list(nlp.pipe(texts))
release = threading.Event()
def caller(text):
    nlp(text)
    release.wait()
callers = [threading.Thread(target=caller, args=(t,)) for t in texts[:4]]
for c in callers: c.start()
optimizer = nlp.resume_training()
nlp.update([Example.from_dict(nlp.make_doc(texts[0]), {"entities": []})], sgd=optimizer)
nlp.to_disk(out)
spacy.load(out)(texts[1])
print(json.dumps({"new": others() - before, "torch": torch.get_num_threads()}))
release.set()
for c in callers: c.join()
"""


@needs_openmp
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
@pytest.mark.parametrize("routed", [True, False])
def test_the_process_holds_one_openmp_team(tiny_models, tmp_path, routed) -> None:
    """In a fresh process with 2 torch threads, after a load, a pipe, four
    request threads (kept alive), a training step, a save and a reload, the
    one thread Python does not know of, beyond torch's own, is the worker of
    the torch thread's team. Switched off, the main thread and each request
    thread that led a batch hold a team (a worker each)."""
    env = {
        **os.environ,
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "2",  # torch.set_num_threads would start a team on main
        torch_thread.ENV_SWITCH: "1" if routed else "0",
    }
    done = subprocess.run(
        [sys.executable, "-c", _TEAMS_SCRIPT, str(tiny_models("wordpiece-cased")), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts["torch"] == 2
    if routed:
        assert counts["new"] == 1
    else:
        assert counts["new"] >= 2


@needs_openmp
def test_threads_through_the_torch_thread_annotate_as_one_thread_does(
    tiny_models, two_torch_threads, monkeypatch
) -> None:
    """8 request threads, 3 rounds, routed: the same entities and labels as
    one thread calling with nothing routed, and scores within 1e-4."""
    model = str(tiny_models("wordpiece-cased", train_steps=100))
    texts = [text for text, _ in training_sentences()]

    def annotations(doc) -> tuple:
        return (
            [(e.start_char, e.end_char, e.label_) for e in doc.ents],
            [t._.hf_bio for t in doc],
            [float(t._.hf_score or 0.0) for t in doc],
        )

    def fresh():
        # float32: in bf16 a text's scores move with its batch by up to ~1e-2.
        nlp = spacy.blank("en")
        nlp.add_pipe("hf_token_tagger", config={"model": model, "dtype": "float32"})
        return nlp

    with monkeypatch.context() as off:
        off.setenv(torch_thread.ENV_SWITCH, "0")
        alone = fresh()
        expected = {text: annotations(alone(text)) for text in texts}
    shared = fresh()
    results: list = []
    errors: list = []

    def caller(offset: int) -> None:
        try:
            for round_ in range(3):
                for k in range(len(texts)):
                    text = texts[(k + offset + round_) % len(texts)]
                    results.append((text, annotations(shared(text))))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    callers = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
    for c in callers:
        c.start()
    for c in callers:
        c.join()
    assert not errors
    assert len(results) == 8 * 3 * len(texts)
    for text, (spans, bio, scores) in results:
        want_spans, want_bio, want_scores = expected[text]
        assert (spans, bio) == (want_spans, want_bio)
        # Other neighbours in a batch, other rounding (docs/speed.md).
        assert scores == pytest.approx(want_scores, abs=1e-4)


@needs_openmp
def test_overlapped_pipe_through_the_torch_thread_writes_the_same(
    tiny_models, two_torch_threads
) -> None:
    """`overlap = true` on CPU queues its forward passes on the torch thread
    itself (no device thread in between): the same entities as plain."""
    model = str(tiny_models("wordpiece-cased", train_steps=100))
    texts = [text for text, _ in training_sentences()] * 3

    def entities(overlap: bool) -> list:
        nlp = spacy.blank("en")
        nlp.add_pipe(
            "hf_token_tagger", config={"model": model, "dtype": "float32", "overlap": overlap}
        )
        docs = list(nlp.pipe(texts, batch_size=2))
        return [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in docs]

    plain = entities(False)
    assert any(plain)
    forwards = set()
    hook = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda module, args: forwards.add(threading.get_ident())
    )
    try:
        assert entities(True) == plain
    finally:
        hook.remove()
    assert forwards == {torch_thread.run(threading.get_ident)}


@needs_openmp
def test_an_overlapped_pipe_and_request_threads_at_once_all_finish(
    tiny_models, two_torch_threads
) -> None:
    """An overlapped pipe queues its forward passes on the torch thread while
    request threads of the same component wait there too: a caller holding
    the forward lock while waiting would block the pipe's queued pass."""
    model = str(tiny_models("wordpiece-cased", train_steps=100))
    texts = [text for text, _ in training_sentences()]
    nlp = spacy.blank("en")
    nlp.add_pipe("hf_token_tagger", config={"model": model, "dtype": "float32", "overlap": True})
    expected = [[(e.start_char, e.end_char, e.label_) for e in nlp(t).ents] for t in texts]
    results: dict = {}

    def piped() -> None:
        for _ in range(5):
            docs = list(nlp.pipe(texts * 4, batch_size=1))
            results.setdefault("pipe", []).append(
                [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in docs]
            )

    def requests(k: int) -> None:
        for _ in range(20):
            for i, text in enumerate(texts):
                got = [(e.start_char, e.end_char, e.label_) for e in nlp(text).ents]
                results.setdefault(k, []).append(got == expected[i])

    workers = [threading.Thread(target=piped, daemon=True)] + [
        threading.Thread(target=requests, args=(k,), daemon=True) for k in range(3)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert not [w for w in workers if w.is_alive()], "a caller hung"
    assert all(run == expected * 4 for run in results["pipe"]) and len(results["pipe"]) == 5
    assert all(all(results[k]) and len(results[k]) == 20 * len(texts) for k in range(3))


def test_submit_on_the_torch_thread_runs_at_once() -> None:
    """Queued behind the job that waits for it, it would never run."""

    def inner() -> str:
        return torch_thread.submit(lambda: "ran").result(timeout=10)

    assert torch_thread.submit(inner).result(timeout=20) == "ran"


_EXIT_SCRIPT = r"""
import sys, threading, time, torch
from spacy_hf_tagger.model import torch_thread
started = threading.Event()
def slow():
    started.set()
    time.sleep(2.0)  # the interpreter starts exiting meanwhile
    torch.ones(300, 300) @ torch.ones(300, 300)
    open(sys.argv[1], "w").write("done")
torch_thread.submit(slow)
torch_thread.submit(lambda: open(sys.argv[1] + ".queued", "w").write("ran"))
started.wait()
sys.exit(3)
"""


def test_the_exit_waits_for_the_job_running_and_drops_the_queued(tmp_path) -> None:
    """A caller stopped while waiting (Ctrl-C during a corpus job) leaves its
    forward pass running on the torch thread; torch torn down under it
    aborted the process (SIGABRT, "terminate called without an active
    exception") once in a local run of the whole suite (the signal tests)."""
    marker = tmp_path / "job"
    done = subprocess.run(
        [sys.executable, "-c", _EXIT_SCRIPT, str(marker)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr[-2000:]
    assert marker.read_text() == "done"
    assert not (tmp_path / "job.queued").exists()


_STEPS_SCRIPT = r"""
import sys, threading, time
from spacy_hf_tagger.model import torch_thread
started = threading.Event()
def steps():
    started.set()
    for _ in range(600):  # a minute of steps, were nothing to stop it
        torch_thread.check_stopping()
        time.sleep(0.1)
torch_thread.submit(steps)
started.wait()
sys.exit(3)
"""


def test_the_exit_waits_for_one_step_of_a_long_job() -> None:
    """`piece_probabilities` checks between forward calls: the exit waits for
    the call running, not for the whole chunk."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _STEPS_SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 3, done.stderr[-2000:]
    assert time.perf_counter() - start < 30
