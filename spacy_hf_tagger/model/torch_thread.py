"""One thread runs the component's torch work on CPU, so OpenMP keeps one team.

GNU OpenMP, the parallel backend of torch's Linux wheels, gives every thread
that starts a parallel region a team of worker threads of its own, kept until
that thread exits. Once the process holds more OpenMP threads than it has
CPUs, libgomp stops letting idle workers spin between parallel regions (its
"throttled" spin count; no setting turns that off) and they sleep on a futex
instead: every parallel op of every thread then pays a wake-up. A threaded
server meets this at once, as each request thread that runs a forward pass
makes a team, and so does any process where the main thread ran torch before
a worker thread did. Measured on 2 cores (MiniLM-L6 at bf16, Intel Xeon with
AMX): one sentence's forward pass 3.8 ms alone, 10.8 ms once another thread
holds a team; 16 threads calling `nlp(sentence)` spent 2.5-2.7 s in forward
passes that take 1.4-1.6 s on one thread (docs/serving.md).

So on CPU every load, probe, forward pass and training step of every
`hf_token_tagger` in the process runs on one thread, started on first use;
the caller waits for it (forward passes are serialized anyway, and this
thread does nothing else). Torch's thread count, grad mode and CPU autocast
follow the caller's (not its profiler or other thread-local settings). Work
submitted from that thread runs inline, and nothing is routed where it cannot
matter: off Linux, torch without OpenMP, one intra-op thread, or
`SPACY_HF_TAGGER_TORCH_THREAD=0` (for a process whose main thread runs other
torch models, which would otherwise hold a second team; see docs/serving.md).
"""

from __future__ import annotations

import atexit
import os
import queue
import sys
import threading
from concurrent.futures import Future
from contextlib import nullcontext
from typing import Any, Callable, Optional, TypeVar

import torch

T = TypeVar("T")

THREAD_NAME = "hf_tagger_torch"
ENV_SWITCH = "SPACY_HF_TAGGER_TORCH_THREAD"


def routes_for(device: torch.device) -> bool:
    """Whether work on a model on `device` goes to the torch thread now: CPU
    models only (an accelerator's forward passes are not OpenMP's)."""
    return device.type == "cpu" and routes()


def routes() -> bool:
    """Whether torch work goes to the torch thread now: OpenMP is torch's
    parallel backend, torch runs more than one intra-op thread, and the
    environment does not switch it off."""
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    # GNU OpenMP's throttling is what this avoids: torch's Linux builds.
    return (
        sys.platform.startswith("linux")
        and torch.backends.openmp.is_available()
        and torch.get_num_threads() > 1
    )


class _Job:
    __slots__ = ("args", "autocast", "fn", "future", "grad", "kwargs", "threads")

    def __init__(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        # What the caller's torch would have run with (all per thread).
        self.threads = torch.get_num_threads()
        self.grad = torch.is_grad_enabled()
        self.autocast: Optional[torch.dtype] = (
            torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
        )
        self.future: Future = Future()

    def run(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            if torch.get_num_threads() != self.threads:
                torch.set_num_threads(self.threads)
            autocast = (
                nullcontext()
                if self.autocast is None
                else torch.autocast("cpu", dtype=self.autocast)
            )
            with torch.set_grad_enabled(self.grad), autocast:
                result = self.fn(*self.args, **self.kwargs)
        except BaseException as error:  # handed to the caller, who re-raises it
            self.future.set_exception(error)
        else:
            self.future.set_result(result)
        finally:
            self.fn = self.args = self.kwargs = None  # type: ignore[assignment]


class _TorchThread:
    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Optional[_Job]] = queue.SimpleQueue()
        self.stopping = False
        self._thread = threading.Thread(target=self._serve, name=THREAD_NAME, daemon=True)
        self._thread.start()

    @property
    def ident(self) -> Optional[int]:
        return self._thread.ident

    @property
    def alive(self) -> bool:
        """Running, or stopping at exit (in a forked child, `threading` marks
        it stopped)."""
        return self.stopping or self._thread.is_alive()

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if self.stopping:
                job.future.cancel()
            else:
                job.run()

    def submit(self, job: _Job) -> None:
        if self.stopping:
            raise RuntimeError("the torch thread has stopped: the interpreter is exiting")
        self._jobs.put(job)

    def stop(self, timeout: float) -> None:
        """Let the job running finish, drop the queued ones, end the thread."""
        self.stopping = True
        self._jobs.put(None)
        if threading.get_ident() != self.ident:
            self._thread.join(timeout)


_worker: Optional[_TorchThread] = None
_worker_lock = threading.Lock()


def _forget_in_child() -> None:
    """A forked child has none of the parent's threads, and a lock held by one
    of them at the fork would never be released."""
    global _worker, _worker_lock
    _worker, _worker_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


# How long the interpreter's exit waits for a forward pass still running.
EXIT_WAIT_S = 60.0


@atexit.register
def _stop_at_exit() -> None:
    """A caller stopped while waiting (Ctrl-C during `nlp.pipe`) leaves its
    job running here; torch torn down under a running forward pass aborts
    the process ("terminate called without an active exception"), so the
    exit waits for it."""
    worker = _worker
    if worker is not None:
        worker.stop(EXIT_WAIT_S)


def _the_thread() -> _TorchThread:
    """The process's torch thread, started on first use (and again should it
    have died)."""
    global _worker
    worker = _worker
    if worker is not None and worker.alive:
        return worker
    with _worker_lock:
        if _worker is None or not _worker.alive:
            _worker = _TorchThread()
        return _worker


def is_torch_thread() -> bool:
    """Whether the calling thread is the torch thread."""
    worker = _worker
    return worker is not None and threading.get_ident() == worker.ident


def run_for(device: torch.device, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`run` for work on a model on `device` (`routes_for`)."""
    if device.type != "cpu":
        return fn(*args, **kwargs)
    return run(fn, *args, **kwargs)


def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)`, run on the torch thread (see the module's
    docstring) and waited for; its exception is raised here. Inline on the
    torch thread itself, and wherever `routes()` is false."""
    if not routes() or is_torch_thread():
        return fn(*args, **kwargs)
    return submit(fn, *args, **kwargs).result()


def submit(fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
    """`fn(*args, **kwargs)` queued for the torch thread, not waited for: its
    future (which `cancel` drops while it has not started). For a device
    thread's work (`overlap.run_overlapped`): a second thread in between would
    cost a GIL hand-over per call. It runs at once on the torch thread itself
    (queued, it would wait behind the job waiting for it) and while the
    interpreter exits (no thread to hand it to).
    """
    job = _Job(fn, args, kwargs)
    worker = _the_thread()
    if is_torch_thread() or worker.stopping:
        job.run()
    else:
        worker.submit(job)
    return job.future


def check_stopping() -> None:
    """Raise if the interpreter is exiting: long jobs call it between steps,
    so the exit waits for one step, not the whole job."""
    worker = _worker
    if worker is not None and worker.stopping and is_torch_thread():
        raise RuntimeError("stopped: the interpreter is exiting")
