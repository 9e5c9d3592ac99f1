"""The model as the component runs it: loaded from the `model` setting, placed on
its device and dtype, with everything derived from it once (label scheme,
special tokens, window size).

Loading is lazy (first use or `from_disk`), so `spacy.load` of a saved
pipeline never touches the original hub id.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..errors import ConfigError
from ..labels.schemes import LabelScheme, read_label_scheme
from . import hub, inputs, torch_thread
from .iob_probe import IobProbe, probe_iob
from .packing import PackedLayout, find_layout
from .precision import Precision, inference_copy
from .residency import page_out_weights

logger = logging.getLogger("spacy_hf_tagger")


@dataclass
class LoadedModel:
    """The loaded model and everything derived from it."""

    model: torch.nn.Module
    tokenizer: Any
    scheme: LabelScheme
    special: inputs.SpecialTokens
    content_length: int
    stride: int
    device: torch.device
    continuation: np.ndarray
    # A decoder (GPT-2, Llama-style) sees only what comes before each piece.
    causal: bool = False
    # What inference computes in; None: the weights' own dtype.
    precision: Optional[Precision] = None
    # How inference packs several windows into one row; None: it pads them.
    packing: Optional[PackedLayout] = None
    _runner: Optional[torch.nn.Module] = field(default=None, repr=False)
    _copied_from: Optional[WeightsWatch] = field(default=None, repr=False)
    _iob_probe: Optional[IobProbe] = field(default=None, repr=False)
    _probe_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def inference_model(self) -> torch.nn.Module:
        """The module forward passes run: the model, or its reduced-precision copy.

        The copy is remade whenever the model's weights changed since it was
        made, however they changed (an optimizer step, `load_state_dict`, an
        in-place edit, a new head), so it is never stale."""
        if self.precision is None or not self.precision.needs_copy:
            return self.model
        watch = self._copied_from
        if self._runner is None or watch is None or not watch.unchanged(self.model):
            watch = WeightsWatch(self.model)
            self._runner = inference_copy(self.model, self.precision)
            self._copied_from = watch
            if self.device.type == "cpu":
                advised = page_out_weights(self.model, self._runner)
                if advised:
                    logger.debug(
                        "advised the kernel to page out %.0f MiB of float32 weights mapped "
                        "from the model's files",
                        advised / 2**20,
                    )
        return self._runner

    def weights_changed(self) -> None:
        """Drop the inference copy and the IOB probe's answer: the next
        prediction copies the weights again and asks them again.

        For the copy, only needed after writes through `tensor.data`, which
        torch deliberately hides from the version counters `weights_state`
        reads; every training step calls it (`finish_update`)."""
        self._runner = None
        self._copied_from = None
        self._iob_probe = None

    def iob_probe(self) -> IobProbe:
        """Whether the model reads as trained on IOB1 or IOB2 labels
        (`iob_probe`; an "iob" scheme only): probed once, and again after
        `weights_changed` (each training step), never from the texts being
        annotated. It is not checked against the weights' version counters
        on each call (`WeightsWatch`), so weights
        changed by hand keep the first answer until `weights_changed`."""
        probe = self._iob_probe
        if probe is not None:
            return probe
        # Checked again on the torch thread: no caller waits for it holding the lock.
        return torch_thread.run_for(self.device, self._probe_once)

    def _probe_once(self) -> IobProbe:
        with self._probe_lock:
            if self._iob_probe is None:
                self._iob_probe = probe_iob(
                    self.model,
                    self.tokenizer,
                    self.scheme,
                    self.special,
                    self.content_length,
                    self.device,
                )
            return self._iob_probe


WeightsState = Tuple[Tuple[torch.Tensor, int, int], ...]


def weights_state(model: torch.nn.Module) -> WeightsState:
    """Which tensors the model holds and how often each was written in place.

    Every in-place write to a tensor (an optimizer step, `load_state_dict`,
    `weight[i] = x` under `no_grad`) bumps its version counter, and a replaced
    tensor or module is another object (`same_weights`), so two equal states
    mean the same weights. It walks the modules' own tables, faster than
    `parameters()` alone (0.19 ms with the comparison against 0.31 ms for just
    listing the 105 tensors of a 6-layer MiniLM), and never reads the weights."""
    state = []
    stack = [model]
    while stack:
        module = stack.pop()
        for table in (module._parameters, module._buffers):
            tensors = [t for t in table.values() if t is not None]
            state.extend((t, t.data_ptr(), _version(t)) for t in tensors)
        stack.extend(child for child in module._modules.values() if child is not None)
    return tuple(state)


def same_weights(state: WeightsState, before: Optional[WeightsState]) -> bool:
    """Whether two `weights_state`s hold the same tensors, unwritten since.

    Tensors are compared by identity, and the state holds them: a replaced
    tensor stays alive until the next comparison, so a new one can never take
    its id or its storage and pass for it."""
    if before is None or len(state) != len(before):
        return False
    return all(
        a is b and ptr_a == ptr_b and version_a == version_b
        for (a, ptr_a, version_a), (b, ptr_b, version_b) in zip(state, before)
    )


# Parameters, buffers and submodules assigned anywhere in the process, as
# torch's global registration hooks report them (`WeightsWatch`).
_registrations = 0
_hooks_lock = threading.Lock()
_hooks_installed = False


def _count_registration(*_: Any) -> None:
    global _registrations
    _registrations += 1


def _install_registration_counter() -> None:
    """Install the counting hooks, once per process. Each costs a function
    call per registration anywhere (building a model makes thousands), and
    returns None, so the assigned value stays as it was."""
    global _hooks_installed
    with _hooks_lock:
        if _hooks_installed:
            return
        from torch.nn.modules import module as torch_modules

        torch_modules.register_module_parameter_registration_hook(_count_registration)
        torch_modules.register_module_buffer_registration_hook(_count_registration)
        torch_modules.register_module_module_registration_hook(_count_registration)
        _hooks_installed = True


class WeightsWatch:
    """`weights_state` of a model, and a cheap check that it still holds.

    Walking the module tree on every forward pass cost 0.16-0.17 ms a call
    on MiniLM-L6 (2 cores; a single sentence's pass is about 5 ms). The tree
    changes only through an assignment (`module.weight = ...`, a new head),
    which torch's global registration hooks count; while the count stands,
    the tensors seen last are read directly (their storage and in-place
    version counters: 14 µs). After any registration in the process the
    tree is walked again. An assignment made on another thread while a
    check runs may be seen only at the next check."""

    def __init__(self, model: torch.nn.Module) -> None:
        _install_registration_counter()
        self._registrations = _registrations
        self.state = weights_state(model)
        self._tensors = [t for t, _, _ in self.state]
        self._pointers = [ptr for _, ptr, _ in self.state]
        # Inference tensors have no version counter, and cannot be written.
        self._versioned = [t for t, _, version in self.state if version >= 0]
        self._versions = [version for _, _, version in self.state if version >= 0]

    def unchanged(self, model: torch.nn.Module) -> bool:
        """Whether `model` holds the same tensors, unwritten since."""
        registrations = _registrations
        if registrations != self._registrations:
            same = same_weights(weights_state(model), self.state)
            if same:  # the next checks read the tensors alone again
                self._registrations = registrations
            return same
        return [t._version for t in self._versioned] == self._versions and [
            t.data_ptr() for t in self._tensors
        ] == self._pointers


def _version(tensor: torch.Tensor) -> int:
    try:
        return int(tensor._version)
    except RuntimeError:  # an inference tensor has no version counter and can't change
        return -1


@dataclass
class Source:
    """What `load_source` read: the weight-loading problems are for training,
    which may give the model a new head."""

    tokenizer: Any
    model: torch.nn.Module
    problems: Dict[str, List[str]]
    resolved_commit: Optional[str]


def load_source(
    source: str,
    revision: Optional[str],
    dtype: torch.dtype,
    *,
    require_head: bool,
) -> Source:
    """Tokenizer and model from a local folder or a hub id."""
    local_only = bool(source) and Path(str(source)).expanduser().is_dir()
    tokenizer = hub.load_tokenizer(source, revision, local_only)
    model, problems = hub.load_model(
        source, revision, local_only, require_head=require_head, dtype=dtype
    )
    return Source(tokenizer, model, problems, hub.resolved_commit(model))


def window_size(
    tokenizer: Any,
    model: torch.nn.Module,
    special: inputs.SpecialTokens,
    max_length: Optional[int],
    stride: Optional[int],
) -> Tuple[int, int]:
    """Pieces of text per window and the overlap between windows.

    The window holds `max_length` (else the model's limit) minus the special
    tokens; the overlap is `stride`, else a quarter of the window, at most 128.
    """
    limit = max_length or inputs.max_input_length(tokenizer, model.config)
    positions = inputs.position_limit(model.config)
    if positions is not None and limit > positions:
        raise ConfigError(
            f"max_length={limit} is more than the {positions} positions the model can "
            f"embed ({type(model.config).__name__}.max_position_embeddings): set "
            f"max_length to at most {positions}, or leave it null to use the model's."
        )
    content = limit - special.count
    if content < 1:
        raise ConfigError(
            f"max_length={limit} leaves no room for text after the model's "
            f"{special.count} special tokens; raise max_length."
        )
    if stride is None:
        stride = min(content // 4, 128)
    if stride >= content:
        raise ConfigError(
            f"stride={stride} must be smaller than the window's text length "
            f"{content} (max_length {limit} minus {special.count} special tokens)."
        )
    return content, stride


def install(
    model: torch.nn.Module,
    tokenizer: Any,
    max_length: Optional[int],
    stride: Optional[int],
    device: torch.device,
    precision: Precision,
) -> LoadedModel:
    """Put a model on the device, in eval mode, and derive what inference needs."""
    scheme = read_label_scheme(model.config.id2label)
    model.to(device=device, dtype=precision.weights)
    model.eval()
    inputs.prepare_for_encoding(tokenizer)
    special = inputs.special_tokens(tokenizer, inputs.forward_inputs(model))
    content, stride = window_size(tokenizer, model, special, max_length, stride)
    causal = inputs.sees_only_left_context(model, tokenizer, special, device)
    # Padding is what costs on a CPU; accelerators run padded rows nearly free
    # and their fastest attention kernels take no block mask.
    packing = (
        find_layout(model, tokenizer, special, causal, content, device)
        if device.type == "cpu"
        else None
    )
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        scheme=scheme,
        special=special,
        content_length=content,
        stride=stride,
        device=device,
        continuation=scheme.begin_to_inside(),
        causal=causal,
        precision=precision,
        packing=packing,
    )
