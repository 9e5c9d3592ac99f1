"""The numeric precision the model runs in, chosen from the `dtype` setting and
the hardware.

Reduced precision only pays where the hardware has units for it: bf16 on a
CPU with `avx512_bf16` or AMX runs ~2.5x faster than fp32, and ~3.5x *slower*
on one without (measured on two machines of this project). So "auto" looks at
the CPU's flags, and the decision is kept on the component (`.precision`) and
logged, for the user to see why.

On CPU, reduced precision is an inference-time copy of the model: the loaded
weights stay float32, so training, `to_disk` and a later run on another
machine see exactly the weights that were trained. The copy is made on the
first prediction and again whenever the weights changed since
(`loading.weights_state`).
"""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import FrozenSet, Optional

import torch

from ..errors import ConfigError

logger = logging.getLogger("spacy_hf_tagger")

FLOAT_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
DTYPE_CHOICES = '"auto", "float32", "bfloat16", "float16" or "int8"'
# CPU flags (as /proc/cpuinfo names them) of native bf16 arithmetic.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@dataclass(frozen=True)
class Precision:
    """What the `dtype` setting resolved to on this machine.

    `weights` is the dtype the loaded model holds (what training updates and
    `to_disk` saves); `runs_in` is what inference computes in: "float32",
    "bfloat16", "float16" or "int8". `reason` says why, in words.
    """

    weights: torch.dtype
    runs_in: str
    reason: str

    @property
    def needs_copy(self) -> bool:
        """Whether inference runs a converted copy rather than the weights themselves."""
        return self.runs_in != _dtype_name(self.weights)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> FrozenSet[str]:
    """The CPU's feature flags, from /proc/cpuinfo where there is one.

    Elsewhere (macOS, Windows), torch's own probes for the two bf16 features
    stand in; an empty set means "no native bf16 known"."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("flags") and ":" in line:
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    flags = set()
    probes = {"avx512_bf16": "_is_avx512_bf16_supported", "amx_bf16": "_is_amx_tile_supported"}
    for flag, probe in probes.items():
        check = getattr(torch.cpu, probe, None)
        try:
            if check is not None and check():
                flags.add(flag)
        except Exception:  # a probe that fails says nothing
            continue
    return frozenset(flags)


@lru_cache(maxsize=1)
def machine_flags() -> FrozenSet[str]:
    """This machine's CPU flags, read once: for choices made per batch (the
    batch shape); `choose_precision` reads `cpu_flags` each time it decides."""
    return cpu_flags()


def choose_precision(
    setting: Optional[str], device: torch.device, flags: Optional[FrozenSet[str]] = None
) -> Precision:
    """Resolve the `dtype` setting for `device`; any explicit value wins over "auto".

    "auto": on CPU, bf16 where the CPU computes it natively (`flags` holds
    avx512_bf16 or amx_bf16), else float32; on a CUDA GPU bf16 where supported,
    else float16; on MPS float16. "int8": dynamic int8 of the linear layers,
    CPU only. `flags` defaults to this machine's (`cpu_flags()`).
    """
    value = (setting or "auto").strip().lower()
    if value == "auto":
        if device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return Precision(dtype, _dtype_name(dtype), "auto on a CUDA GPU")
        if device.type == "mps":
            return Precision(torch.float16, "float16", "auto on Apple MPS")
        native = sorted((cpu_flags() if flags is None else flags) & BF16_FLAGS)
        if native:
            why = f"auto: this CPU computes bf16 natively ({', '.join(native)})"
            return Precision(torch.float32, "bfloat16", why)
        return Precision(
            torch.float32,
            "float32",
            "auto: this CPU has no native bf16 (no avx512_bf16 or amx_bf16), where bf16 "
            "runs slower than float32",
        )
    if value == "int8":
        if device.type != "cpu":
            raise ConfigError(
                f'dtype="int8" is dynamic int8 quantization for CPU, but the device is '
                f'{device.type!r}: use dtype="auto" (bf16/fp16) on a GPU, or device="cpu".'
            )
        return Precision(torch.float32, "int8", 'dtype="int8" was asked for')
    if value not in FLOAT_DTYPES:
        raise ConfigError(f"Unknown dtype {setting!r}: use {DTYPE_CHOICES}.")
    dtype = FLOAT_DTYPES[value]
    return Precision(dtype, _dtype_name(dtype), f"dtype={setting!r} was asked for")


def inference_copy(model: torch.nn.Module, precision: Precision) -> torch.nn.Module:
    """The module inference runs: the model itself, or a converted copy of it."""
    if not precision.needs_copy:
        return model
    if precision.runs_in == "int8":
        return quantize_linear_layers(model)
    dtype = FLOAT_DTYPES[precision.runs_in]
    # Each floating tensor is converted straight into the copy: a plain
    # deepcopy would first duplicate every float32 weight (and gradient),
    # memory the allocator then keeps for the life of the process.
    # Other tensors are copied on their own too: a deepcopy of a view copies
    # its whole storage (a mapped checkpoint file, for one).
    memo = {}
    for tensor in [*model.parameters(), *model.buffers()]:
        if id(tensor) in memo:
            continue
        if tensor.is_floating_point():
            converted = tensor.detach().to(dtype, copy=True)
        else:
            converted = tensor.detach().clone()
        if isinstance(tensor, torch.nn.Parameter):
            converted = torch.nn.Parameter(converted, requires_grad=False)
        memo[id(tensor)] = converted
    runner = copy.deepcopy(model, memo).to(dtype)
    runner.eval()
    return runner


def quantize_linear_layers(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` with dynamic int8 linear layers (int8 weights, activations
    quantized per call), except the classifier.

    The classifier (any linear layer with one output per label) stays float32:
    it is tiny, and its rounding moves label probabilities directly. Weights
    are quantized per output channel, which loses less than one scale per matrix.
    """
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    n_labels = getattr(getattr(model, "config", None), "num_labels", None)
    quantized = {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module.out_features != n_labels
    }
    spec = {name: per_channel_dynamic_qconfig for name in quantized}
    # The copy shares every tensor that stays float32 (embeddings, norms, the
    # classifier) with the model, read-only: only the quantized layers cost memory.
    quantized_tensors = {id(t) for m in quantized.values() for t in (m.weight, m.bias)}
    memo = {
        id(t): t for t in [*model.parameters(), *model.buffers()] if id(t) not in quantized_tensors
    }
    runner = copy.deepcopy(model, memo)
    with warnings.catch_warnings():
        # torch marks its eager quantization API as deprecated (moving to
        # torchao); it is still the one that runs on every CPU torch supports.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        quantize_dynamic(runner, spec, dtype=torch.qint8, inplace=True)
    runner.eval()
    return runner
