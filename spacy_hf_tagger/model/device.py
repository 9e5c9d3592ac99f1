"""Where the model runs: the `device` setting checked against this machine.

Also makes forked children (`nlp.pipe(n_process=N)`) start with one torch
thread, since the OpenMP pool they inherit would hang them.
"""

from __future__ import annotations

import os

import torch

from ..errors import ModelLoadError

DEVICES_HELP = '"auto", "cpu", "cuda", "cuda:N" or "mps"'


def _single_thread_after_fork() -> None:
    """A forked child (`nlp.pipe(n_process=N)`) inherits an OpenMP pool it cannot
    use: its first parallel op would hang. One intra-op thread per child avoids
    the pool, and N processes already share the cores."""
    torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_single_thread_after_fork)


def resolve_device(name: str) -> torch.device:
    """Turn the `device` setting into a torch device, checking it exists."""
    value = (name or "auto").strip().lower()
    if value == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(value)
    except RuntimeError as err:
        raise ModelLoadError(f"Unknown device {name!r}: use {DEVICES_HELP}.") from err
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(
                f"device={name!r} but torch sees no CUDA GPU (torch {torch.__version__}, "
                f'CUDA build: {torch.version.cuda}). Use device="cpu" or "auto", or '
                "install a CUDA build of torch."
            )
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise ModelLoadError(
                f"device={name!r} but only {torch.cuda.device_count()} CUDA device(s) "
                f"exist (0..{torch.cuda.device_count() - 1})."
            )
        return device
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ModelLoadError(
                f"device={name!r} but MPS is not available on this machine. "
                'Use device="cpu" or "auto".'
            )
        return device
    raise ModelLoadError(f"Unsupported device {name!r}: use {DEVICES_HELP}.")
