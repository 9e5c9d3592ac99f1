"""Batch the docs of concurrent callers: one forward pass for many threads.

A web server shares one pipeline across worker threads, each calling
`nlp(text)` on one short text. Run one at a time, each call is a forward
pass of one sentence; run side by side, the calls fight over the same cores.
Here the calls meet: a thread that arrives while no batch is running leads,
runs the batch (its own doc and every doc waiting), and hands leadership to
a waiting thread; docs that arrive meanwhile wait and go into the next
batch. No thread is started and none outlives a call.

Failures stay with their doc: when a batch raises, its docs are retried one
by one, so only the caller whose doc fails sees the error. A leader that
dies mid-batch (any exception, KeyboardInterrupt included) still hands
leadership on, so no caller waits forever.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Generic, List, Optional, Sequence, TypeVar

T = TypeVar("T")


class _Request(Generic[T]):
    __slots__ = ("done", "error", "item", "lead", "wake")

    def __init__(self, item: T) -> None:
        self.item = item
        self.wake = threading.Event()
        self.done = False
        self.lead = False
        self.error: Optional[BaseException] = None


class Coalescer(Generic[T]):
    """Runs `process(items)` on the items of concurrent `submit` calls, together.

    `process` must handle any number of items and do its work in place (it
    annotates docs). `max_items` caps a batch. `wait` (seconds) is how long a
    leader waits for the callers of the last batch to come back before it
    runs a smaller batch, and only while callers are concurrent (the last
    batch held more than one item): a lone caller never waits, and the wait
    ends as soon as as many items as last time are in. With 0, batching
    comes only from calls that arrive while a batch runs; callers released by
    one batch then mostly miss the next, which halves the batches.
    """

    def __init__(
        self, process: Callable[[Sequence[T]], None], max_items: int = 256, wait: float = 0.0
    ) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be at least 1, got {max_items}")
        self._process = process
        self._max_items = max_items
        self._wait = max(0.0, float(wait))
        self._lock = threading.Lock()
        self._pending: List[_Request[T]] = []
        self._busy = False
        self._last_batch = 0
        self.batches = 0
        self.items = 0

    def submit(self, item: T) -> T:
        """Process `item` (in a batch with whatever else is waiting) and return it."""
        request: _Request[T] = _Request(item)
        with self._lock:
            self._pending.append(request)
            if not self._busy:
                self._busy = True
                request.lead = True
        while not request.done:
            if request.lead:
                self._lead()
            else:
                request.wake.wait()
                request.wake.clear()
        if request.error is not None:
            raise request.error
        return request.item

    def _lead(self) -> None:
        """Run one batch, then pass the lead to the next waiting caller."""
        batch: List[_Request[T]] = []
        try:
            if self._wait and self._last_batch > 1:
                self._gather()
            with self._lock:
                batch = self._pending[: self._max_items]
                del self._pending[: self._max_items]
            self._run(batch)
        finally:
            with self._lock:
                for request in batch:
                    if not request.done:  # the leader died mid-batch
                        request.error = RuntimeError(
                            "the thread running this batch stopped before it finished"
                        )
                        request.done = True
                for request in batch:
                    request.lead = False
                    request.wake.set()
                if self._pending:
                    successor = self._pending[0]
                    successor.lead = True
                    successor.wake.set()
                else:
                    self._busy = False

    def _gather(self) -> None:
        """Wait up to `wait` seconds for as many items as the last batch held."""
        deadline = time.monotonic() + self._wait
        target = min(self._max_items, self._last_batch)
        while time.monotonic() < deadline:
            with self._lock:
                if len(self._pending) >= target:
                    return
            time.sleep(min(0.0005, max(0.0, deadline - time.monotonic())))

    def _run(self, batch: List[_Request[T]]) -> None:
        if not batch:
            return
        try:
            self._process([r.item for r in batch])
        except Exception as error:
            if len(batch) == 1:
                batch[0].error = error
            else:
                # Retry one by one: only the caller whose doc fails sees an error.
                for request in batch:
                    try:
                        self._process([request.item])
                    except Exception as single:
                        request.error = single
        for request in batch:
            request.done = True
        self._last_batch = len(batch)
        self.batches += 1
        self.items += len(batch)
