"""Every error the package raises on purpose, in one place to import and catch.

Each message says what was wrong, the value (an id, a label, a count, an
offset: never the text of a document or an entity), and what to do.
"""

from __future__ import annotations

__all__ = [
    "AnnotationConflictError",
    "ConfigError",
    "JobError",
    "JobIOError",
    "JobInterrupted",
    "LabelSchemeError",
    "ModelLoadError",
    "OutputError",
    "RequestError",
]


class ConfigError(ValueError):
    """A setting of the component is invalid; the message names it and the fix."""


class ModelLoadError(ValueError):
    """The model or tokenizer cannot be used; the message says why and what to do."""


class LabelSchemeError(ValueError):
    """The model's labels cannot be read as entity or tag labels."""


class AnnotationConflictError(RuntimeError):
    """Raised under errors="raise" when a prediction cannot be written."""


class JobError(ValueError):
    """A problem with a corpus job's arguments or its files, said for a person."""


class JobIOError(JobError):
    """Reading INPUT or writing OUTPUT, its errors file or its checkpoint failed;
    the message names the file, the system's reason, and whether `--resume`
    completes the job once the cause is fixed."""


class JobInterrupted(Exception):
    """A corpus job stopped by SIGINT or SIGTERM. Not a ValueError: nothing was
    wrong with the job. `signal_number` gives the exit status (128 + it)."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal_number = signal_number


class OutputError(ValueError):
    """The output cannot hold what the job produced, said for a person."""


class RequestError(ValueError):
    """A request to the Ray Serve deployment that cannot be answered: `status`
    is the HTTP status it gets (405 not a POST, 413 too large, 422 not a
    request it reads, 500 the pipeline or the replica failed on it); the
    message says which limit, field or exception type, with counts, never
    the text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __reduce__(self) -> tuple:
        # Raised in a replica and re-raised in the caller of a handle: Ray pickles it.
        return (type(self), (self.status, self.message))
