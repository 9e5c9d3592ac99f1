"""The overlapped pipe: order, errors per chunk, bounded memory, a thread of its own."""

from __future__ import annotations

import threading
import time
from typing import List, Tuple

import pytest

from spacy_hf_tagger.model import torch_thread
from spacy_hf_tagger.model.overlap import doc_chunks, filled_chunks, overlaps, run_overlapped


def test_overlap_setting_defaults_to_accelerators_only() -> None:
    assert overlaps(None, "cuda") is True
    assert overlaps(None, "mps") is False  # MPS cannot run ops from two threads
    assert overlaps(None, "cpu") is False
    assert overlaps(True, "cpu") is True
    assert overlaps(False, "cuda") is False


def test_doc_chunks_cut_by_count_and_by_size() -> None:
    sizes = [5, 5, 5, 30, 1, 1, 1, 1]
    chunks = list(doc_chunks(sizes, max_items=3, max_chars=12, size=lambda n: n))
    # 5+5 fits 12, a third 5 would not; 30 is over the budget alone: a chunk of
    # its own; then the 1s until the count cap.
    assert chunks == [[5, 5], [5], [30], [1, 1, 1], [1]]
    assert [x for c in chunks for x in c] == sizes
    assert list(doc_chunks([], 3, 12, size=lambda n: n)) == []


def test_filled_chunks_end_at_enough_items_and_text_or_at_the_cap() -> None:
    sizes = [1, 1, 1, 10, 1, 1, 1, 1, 1, 1, 1, 1]
    chunks = list(filled_chunks(sizes, min_items=2, max_items=5, min_chars=4, size=lambda n: n))
    # Two 1s are 2 items but 2 chars: the chunk grows to the 10; then four 1s
    # a chunk (4 chars).
    assert chunks == [[1, 1, 1, 10], [1, 1, 1, 1], [1, 1, 1, 1]]
    # Little text: max_items a chunk.
    ones = list(filled_chunks([1] * 12, 2, 5, 100, size=lambda n: n))
    assert [len(c) for c in ones] == [5, 5, 2]
    # Much text: min_items docs a chunk.
    assert list(filled_chunks([9] * 5, 2, 5, 4, size=lambda n: n)) == [[9, 9], [9, 9], [9]]
    assert list(filled_chunks([], 2, 5, 4, size=lambda n: n)) == []


# The forward passes on a device thread of the call's own, or on the torch
# thread (what CPU models use).
THREADS = pytest.mark.parametrize(
    "on_torch_thread", [False, True], ids=["device-thread", "torch-thread"]
)


@THREADS
def test_results_come_in_order_with_forward_in_its_own_thread(on_torch_thread: bool) -> None:
    caller = threading.get_ident()
    forward_threads = set()

    def forward(x: int) -> int:
        forward_threads.add(threading.get_ident())
        time.sleep(0.002 * (x % 3))  # uneven device times
        return x * 10

    out = list(
        run_overlapped(
            range(12),
            lambda x: x + 1,
            forward,
            lambda i, p, y: (i, p, y),
            on_torch_thread=on_torch_thread,
        )
    )
    assert [item for item, _ in out] == list(range(12))
    assert [r for _, r in out] == [(i, i + 1, (i + 1) * 10) for i in range(12)]
    assert forward_threads and caller not in forward_threads
    if on_torch_thread:
        assert forward_threads == {torch_thread.submit(threading.get_ident).result()}


@THREADS
def test_a_failing_item_fails_alone_at_any_step(on_torch_thread: bool) -> None:
    def prepare(x: int) -> int:
        if x == 1:
            raise ValueError("prepare 1")
        return x

    def forward(x: int) -> int:
        if x == 3:
            raise RuntimeError("forward 3")
        return x

    def finish(item: int, p: int, y: int) -> int:
        if item == 5:
            raise KeyError("finish 5")
        return y

    out = list(run_overlapped(range(7), prepare, forward, finish, on_torch_thread=on_torch_thread))
    assert [item for item, _ in out] == list(range(7))
    kinds = [type(r).__name__ if isinstance(r, Exception) else r for _, r in out]
    assert kinds == [0, "ValueError", 2, "RuntimeError", 4, "KeyError", 6]


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_prepared_chunks_stay_bounded(depth: int) -> None:
    """At most depth + 1 chunks are prepared and not yet finished, so memory
    does not grow with the stream."""
    live = 0
    most = 0
    lock = threading.Lock()

    def prepare(x: int) -> int:
        nonlocal live, most
        with lock:
            live += 1
            most = max(most, live)
        return x

    def finish(item: int, p: int, y: int) -> int:
        nonlocal live
        with lock:
            live -= 1
        return y

    out = list(run_overlapped(range(20), prepare, lambda p: p, finish, depth=depth))
    assert len(out) == 20
    assert most <= depth + 1


def test_prepare_overlaps_the_forward_of_the_chunk_before() -> None:
    """With a device as slow as the glue, the two hide behind each other."""
    events: List[Tuple[str, int, float]] = []

    def prepare(x: int) -> int:
        events.append(("prepare", x, time.perf_counter()))
        time.sleep(0.02)
        return x

    def forward(x: int) -> int:
        start = time.perf_counter()
        time.sleep(0.02)
        events.append(("forward", x, start))
        return x

    t0 = time.perf_counter()
    list(run_overlapped(range(10), prepare, forward, lambda i, p, y: y))
    elapsed = time.perf_counter() - t0
    # One after the other: 10 x 40 ms; overlapped: about 11 x 20 ms.
    assert elapsed < 0.35, elapsed
    starts = {(kind, x): t for kind, x, t in events}
    assert starts[("prepare", 1)] < starts[("forward", 0)] + 0.015


def test_a_failing_stream_still_gives_what_came_before() -> None:
    def stream():
        yield from range(3)
        raise OSError("the source went away")

    out = []
    with pytest.raises(OSError, match="went away"):
        for item, result in run_overlapped(
            stream(), lambda x: x, lambda x: x * 2, lambda i, p, y: y
        ):
            out.append((item, result))
    assert out == [(0, 0), (1, 2), (2, 4)]


def test_closing_early_stops_the_device_thread() -> None:
    seen: List[int] = []

    def forward(x: int) -> int:
        seen.append(x)
        return x

    it = run_overlapped(range(1000), lambda x: x, forward, lambda i, p, y: y)
    first = [next(it) for _ in range(3)]
    it.close()
    assert [i for i, _ in first] == [0, 1, 2]
    assert len(seen) <= 5
    assert not [t for t in threading.enumerate() if t.name.startswith("hf_tagger_device")]


def test_closing_early_on_the_torch_thread_drops_the_queued_passes() -> None:
    seen: List[int] = []

    def forward(x: int) -> int:
        time.sleep(0.005)
        seen.append(x)
        return x

    it = run_overlapped(
        range(1000), lambda x: x, forward, lambda i, p, y: y, depth=3, on_torch_thread=True
    )
    first = [next(it) for _ in range(3)]
    it.close()
    settled = len(seen)
    assert [i for i, _ in first] == [0, 1, 2]
    assert settled <= 3 + 3  # what was queued ran at most, the rest was cancelled
    assert torch_thread.submit(lambda: "still serving").result(timeout=10) == "still serving"
    assert len(seen) == settled  # nothing ran after the close returned


def test_negative_depth_is_refused() -> None:
    with pytest.raises(ValueError, match="depth"):
        list(run_overlapped([1], lambda x: x, lambda x: x, lambda i, p, y: y, depth=-1))


# ------------------------------------------------------------------ batch shape


def test_batch_shape_follows_precision_and_cpu() -> None:
    from spacy_hf_tagger.model.forward import BatchShape, batch_shape_for

    amx = frozenset({"avx512_bf16", "amx_bf16"})
    no_amx = frozenset({"avx512_bf16"})
    # AMX at bf16: many windows, few positions a call; elsewhere 32 windows.
    # AMX at bf16 also splits padded batches only where that saves 160 positions.
    assert batch_shape_for("cpu", "bfloat16", flags=amx) == BatchShape(256, 4096, 160)
    assert batch_shape_for("cpu", "bfloat16", flags=no_amx) == BatchShape(32, 16384)
    assert batch_shape_for("cpu", "float32", flags=amx) == BatchShape(32, 16384)
    assert batch_shape_for("cpu", "int8", flags=amx) == BatchShape(32, 16384)
    assert batch_shape_for("cuda", "bfloat16", flags=amx) == BatchShape(32, 16384)
    # A set value wins everywhere, each on its own.
    assert batch_shape_for("cpu", "bfloat16", 7, flags=amx) == BatchShape(7, 4096, 160)
    assert batch_shape_for("cpu", "bfloat16", None, 100, flags=amx) == BatchShape(256, 100, 160)
    assert batch_shape_for("cuda", "float16", 7, 40) == BatchShape(7, 40)
