"""SIGINT and SIGTERM during a corpus job: stop at a checkpoint, say how to resume.

An operator's Ctrl-C, or a scheduler's SIGTERM before it kills a container,
should leave a job that `--resume` completes and a message that says so. The
first signal lets the chunk in hand finish: its rows are written and
checkpointed, then the job stops. A second signal stops at once; the
checkpoint on disk still describes what is written, and `--resume` cuts back
whatever the abandoned chunk had written after it. Either way the command
exits with 128 + the signal's number, as a shell expects.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType
from typing import Any, Dict, Optional

from ..errors import JobInterrupted

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequests:
    """While entered (from the main thread; elsewhere Python delivers no
    signals, and it does nothing), SIGINT and SIGTERM are caught: `signal_number`
    is set by the first, and the second raises `JobInterrupted` where the
    program is. The previous handlers are put back on exit, unless a signal
    came and `ignore_after_stop` is set: then the signals are ignored from
    then on, for a process that is about to exit."""

    def __init__(self, ignore_after_stop: bool = False) -> None:
        self.signal_number: Optional[int] = None
        self.ignore_after_stop = ignore_after_stop
        self._previous: Dict[int, Any] = {}
        self._pid = os.getpid()

    def __enter__(self) -> StopRequests:
        self._pid = os.getpid()
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        stopped = self.signal_number is not None and self.ignore_after_stop
        for number, handler in self._previous.items():
            signal.signal(number, signal.SIG_IGN if stopped else handler)
        self._previous.clear()

    def _handle(self, number: int, frame: Optional[FrameType]) -> None:
        if os.getpid() != self._pid:
            # A worker forked by `nlp.pipe(n_process=...)` inherits the handler;
            # a Ctrl-C reaches it too. It goes on, and the job ends it.
            return
        if self.signal_number is None:
            self.signal_number = number
            sys.stderr.write(
                f"\n{signal_name(number)}: stopping once the records in hand are written and "
                "checkpointed; send it again to stop at once.\n"
            )
            sys.stderr.flush()
            return
        raise JobInterrupted(f"Stopped at once by a second {signal_name(number)}.", number)


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
