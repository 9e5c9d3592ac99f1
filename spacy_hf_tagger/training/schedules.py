"""Learning-rate schedules for `[training.optimizer.learn_rate]` that follow `max_steps`.

thinc's `warmup_linear.v1` takes warm-up and total steps as two numbers that
must be changed together; with `total_steps = ${training.max_steps}` and a
warm-up *fraction*, overriding `--training.max_steps` on the command line
keeps the whole schedule consistent.
"""

from __future__ import annotations

from typing import Iterable

from spacy.util import registry
from thinc.api import warmup_linear


@registry.schedules("spacy_hf_tagger.warmup_linear.v1")
def make_warmup_linear(
    initial_rate: float, total_steps: int, warmup_fraction: float = 0.1
) -> Iterable[float]:
    """Linear warm-up over `warmup_fraction` of `total_steps`, then linear decay to 0."""
    if total_steps < 1:
        raise ValueError(
            f"total_steps={total_steps!r}: the schedule needs the number of training steps; "
            "set [training] max_steps (and max_epochs = 0) and total_steps = "
            "${training.max_steps}."
        )
    if not 0.0 <= warmup_fraction < 1.0:
        raise ValueError(f"warmup_fraction={warmup_fraction!r} must be in [0, 1).")
    return warmup_linear(
        initial_rate=initial_rate,
        warmup_steps=warmup_steps(total_steps, warmup_fraction),
        total_steps=total_steps,
    )


def warmup_steps(total_steps: int, warmup_fraction: float) -> int:
    """Whole warm-up steps: the fraction of the total, rounded, at least 1."""
    return max(1, round(total_steps * warmup_fraction))
