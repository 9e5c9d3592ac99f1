"""Every error the package raises on purpose, in one place to import and catch.

Each message says what was wrong, the value (an id, a label, a count, an
offset: never the text of a document or an entity), and what to do.
"""

from __future__ import annotations

__all__ = [
    "AnnotationConflictError",
    "ConfigError",
    "JobError",
    "LabelSchemeError",
    "ModelLoadError",
    "OutputError",
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


class OutputError(ValueError):
    """The output cannot hold what the job produced, said for a person."""
