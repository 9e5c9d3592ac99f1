"""Keep an accelerator busy: prepare the next chunk of docs while this one runs.

On a GPU the forward pass of a chunk takes a fraction of what tokenizing,
aligning, decoding and writing it takes on the CPU; run one after the other,
the device waits for the CPU most of the time. Here the forward passes run in
a thread of their own (the "device thread"), fed through a bounded queue:
while the device runs chunk k, the caller's thread prepares chunk k+1 and
finishes chunk k-1 (a forward pass releases the GIL while it waits for the
device). At most `depth + 1` chunks are prepared and not yet finished, so
memory stays bounded whatever the stream's length.

On a CPU the forward pass already keeps every core busy: glue running beside
it takes cores from it, so the default is off there (`overlaps`). The inputs
are built on the host and moved to the device in the device thread, so the
copies run on the stream the forward pass reads them from.

Chunks are cut by text, not by a count of docs (`doc_chunks`): overlapping
needs several chunks, and a chunk of a little under one full forward call
of text keeps the device fed and fills its call.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import (
    Callable,
    Deque,
    Generic,
    Iterable,
    Iterator,
    List,
    Optional,
    Tuple,
    TypeVar,
    Union,
)

from . import torch_thread

Item = TypeVar("Item")
Prepared = TypeVar("Prepared")
Output = TypeVar("Output")
Result = TypeVar("Result")

DEVICE_THREAD = "hf_tagger_device"
# Chunks prepared ahead of the one the device runs.
DEPTH = 1
# Text a chunk should hold, in characters per subword of a full window
# (English BPE/WordPiece averages ~4.5 characters per subword).
CHARS_PER_SUBWORD = 4


def overlaps(setting: Optional[bool], device_type: str) -> bool:
    """The `overlap` setting resolved: null means on for CUDA GPUs only. Off on
    CPU (see above), and on Apple MPS, whose backend cannot run ops from two
    threads at once."""
    if setting is None:
        return device_type == "cuda"
    return bool(setting)


def doc_chunks(
    items: Iterable[Item], max_items: int, max_chars: int, size: Callable[[Item], int]
) -> Iterator[List[Item]]:
    """Consecutive chunks of at most `max_items` items and, past the first item
    of a chunk, at most `max_chars` of `size` (an item larger than the budget
    is a chunk of its own)."""
    chunk: List[Item] = []
    chars = 0
    for item in items:
        n = size(item)
        if chunk and (len(chunk) >= max_items or chars + n > max_chars):
            yield chunk
            chunk, chars = [], 0
        chunk.append(item)
        chars += n
    if chunk:
        yield chunk


def filled_chunks(
    items: Iterable[Item],
    min_items: int,
    max_items: int,
    min_chars: int,
    size: Callable[[Item], int],
) -> Iterator[List[Item]]:
    """Consecutive chunks that each end once they hold `min_items` items and
    `min_chars` of `size`, or `max_items` items, whichever comes first.

    Without overlap, each chunk's sorted windows end in a part-filled forward
    call: the more calls a chunk fills, the less that tail costs."""
    chunk: List[Item] = []
    chars = 0
    for item in items:
        chunk.append(item)
        chars += size(item)
        if len(chunk) >= max_items or (len(chunk) >= min_items and chars >= min_chars):
            yield chunk
            chunk, chars = [], 0
    if chunk:
        yield chunk


class _InFlight(Generic[Item, Prepared, Output]):
    __slots__ = ("error", "future", "item", "prepared")

    def __init__(
        self,
        item: Item,
        prepared: Optional[Prepared] = None,
        future: Optional[Future[Output]] = None,
        error: Optional[Exception] = None,
    ) -> None:
        self.item = item
        self.prepared = prepared
        self.future = future
        self.error = error


def run_overlapped(
    items: Iterable[Item],
    prepare: Callable[[Item], Prepared],
    forward: Callable[[Prepared], Output],
    finish: Callable[[Item, Prepared, Output], Result],
    depth: int = DEPTH,
    on_torch_thread: bool = False,
) -> Iterator[Tuple[Item, Union[Result, Exception]]]:
    """`finish(item, p, forward(p))` for `p = prepare(item)`, item by item, in
    order, with `forward` running in a thread of its own, overlapping the
    `prepare` of the next `depth` items and the `finish` of the previous one.

    Yields `(item, result)`, or `(item, error)` when any step of that item
    raised an `Exception`: a failing item never stops the others. Closing the
    iterator early waits for the forward pass running, and drops the rest.

    `forward` runs on a device thread started for the call, or with
    `on_torch_thread` queued on the process's torch thread (`torch_thread`).
    """
    if depth < 0:
        raise ValueError(f"depth must be at least 0, got {depth}")
    device = None
    submit: Callable[..., Future[Output]] = torch_thread.submit
    if not on_torch_thread:
        device = ThreadPoolExecutor(max_workers=1, thread_name_prefix=DEVICE_THREAD)
        submit = device.submit
    in_flight: Deque[_InFlight[Item, Prepared, Output]] = deque()
    stream = iter(items)
    try:
        while True:
            try:
                item = next(stream)
            except StopIteration:
                break
            except BaseException:
                # The stream itself failed: what it gave so far is still written.
                while in_flight:
                    yield _finished(in_flight.popleft(), finish)
                raise
            try:
                prepared = prepare(item)
                in_flight.append(_InFlight(item, prepared, submit(forward, prepared)))
            except Exception as error:
                in_flight.append(_InFlight(item, error=error))
            while len(in_flight) > depth:
                yield _finished(in_flight.popleft(), finish)
        while in_flight:
            yield _finished(in_flight.popleft(), finish)
    finally:
        if device is not None:
            # A generator freed by the garbage collector can be closed from any
            # thread, the device thread included, which cannot wait for itself.
            waits = not threading.current_thread().name.startswith(DEVICE_THREAD)
            device.shutdown(wait=waits, cancel_futures=True)
        else:
            _drop(in_flight)


def _drop(in_flight: Deque[_InFlight[Item, Prepared, Output]]) -> None:
    """Cancel the forward passes on the torch thread not started yet; wait
    for the one running, unless this is the torch thread (a generator closed
    there by the garbage collector)."""
    running = [e.future for e in in_flight if e.future is not None and not e.future.cancel()]
    if running and not torch_thread.is_torch_thread():
        wait(running)


def _finished(
    entry: _InFlight[Item, Prepared, Output],
    finish: Callable[[Item, Prepared, Output], Result],
) -> Tuple[Item, Union[Result, Exception]]:
    if entry.error is not None:
        return entry.item, entry.error
    assert entry.future is not None
    try:
        output = entry.future.result()
        return entry.item, finish(entry.item, entry.prepared, output)  # type: ignore[arg-type]
    except Exception as error:
        return entry.item, error
