"""Pieces in, probabilities out: tokenize docs, cut windows, pack batches, run the model.

Inference and training share `encode_docs` and `model_batches`, so the model
is trained on exactly the windows and alignment it is later read through.
"""

from __future__ import annotations

from typing import Dict, FrozenSet, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from spacy.tokens import Doc

from ..align.batch import EncodedBatch, encode_batch
from ..align.windows import Window, kept_positions, plan_batches, segment_windows
from . import torch_thread
from .inputs import build_batch, encode_texts, to_device
from .loading import LoadedModel
from .overlap import CHARS_PER_SUBWORD
from .packing import packed_inputs, packing_pays
from .precision import machine_flags

# Cost of one more forward call, in padded subword positions: measured on 2 CPU
# cores with a 6-layer encoder (inference, and training's forward + backward),
# splitting a batch pays off once it saves about this much padding.
# Accelerators pay more per call.
CPU_BATCH_OVERHEAD = 32
DEVICE_BATCH_OVERHEAD = 256
# On an Intel Xeon with AMX at bf16 a call costs about 4 ms, some 150
# positions' worth: padded batches split at 160 (a model that cannot pack,
# minilm-conll03 with packing off, CoNLL sentences: 25 calls instead of 47,
# forward 1.98-2.13 s against 2.12-2.34, two rounds each).
AMX_BF16_BATCH_OVERHEAD = 160


# The shape of a forward call, measured with benchmarks/speed.py
# (docs/speed.md#batch-shape) on CoNLL-2003 windows with a 6-layer MiniLM.
# On an AMD EPYC with avx512_bf16 and no AMX, the bare forward at bf16 showed
# no window count to prefer (64 ran from 19% slower to 7% faster than 32,
# round to round); at fp32, 32 was the faster in 5 of 6 rounds (64 up to 21%
# slower). On an Intel Xeon with AMX at bf16, a position costs so little that
# a call's fixed cost (about 4 ms) and its size in memory decide: calls of up
# to 4,096 padded positions, however many windows that takes (at most 256),
# ran 1.13-1.19x faster than 64 windows under 16,384 positions (median of 6
# interleaved rounds, sentences and documents), and 1.37x on 512-piece windows
# (8 a call instead of 32; median of 4). Accelerators: not measured yet, 32.
BATCH_SIZE = 32
BATCH_SUBWORDS = 16384
AMX_BF16_BATCH_SIZE = 256
AMX_BF16_BATCH_SUBWORDS = 4096


class BatchShape(NamedTuple):
    """At most `windows` windows and `subwords` padded positions per forward
    call; `call_overhead`: what one more call costs, in padded positions
    (None: `model_batches`' default for the device)."""

    windows: int
    subwords: int
    call_overhead: Optional[int] = None

    def call_chars(self, content_length: int) -> int:
        """About how many characters of text fill one call, for windows of at
        most `content_length` pieces (`overlap.CHARS_PER_SUBWORD`)."""
        return min(self.windows * content_length, self.subwords) * CHARS_PER_SUBWORD


def batch_shape_for(
    device_type: str,
    runs_in: str,
    batch_size: Optional[int] = None,
    max_batch_subwords: Optional[int] = None,
    flags: Optional[FrozenSet[str]] = None,
) -> BatchShape:
    """The `batch_size` and `max_batch_subwords` settings, each (null) the value
    measured best for the device, the precision inference runs in and the
    CPU's features (`flags`, default this machine's)."""
    amx = "amx_bf16" in (machine_flags() if flags is None else flags)
    if device_type == "cpu" and runs_in == "bfloat16" and amx:
        best = BatchShape(AMX_BF16_BATCH_SIZE, AMX_BF16_BATCH_SUBWORDS, AMX_BF16_BATCH_OVERHEAD)
    else:
        best = BatchShape(BATCH_SIZE, BATCH_SUBWORDS)
    return BatchShape(
        best.windows if batch_size is None else int(batch_size),
        best.subwords if max_batch_subwords is None else int(max_batch_subwords),
        best.call_overhead,
    )


def encode_docs(
    loaded: LoadedModel, docs: Sequence[Doc], context: str = "sentence"
) -> EncodedBatch:
    """Tokenize docs into pieces and align the pieces to the docs' spaCy tokens;
    the model will see each segment of `context` on its own (`encode_batch`)."""
    tokenizer = loaded.tokenizer

    def tokenize(texts: List[str]) -> List[Tuple[np.ndarray, np.ndarray]]:
        return [(e.ids, e.offsets) for e in encode_texts(tokenizer, texts)]

    return encode_batch(docs, tokenize, context, loaded.scheme.is_entity)


class ModelBatch(NamedTuple):
    """One forward call: the model inputs, and the kept pieces of its windows:
    piece `pieces[k]` is read at flat output position `positions[k]`
    (`windows.kept_positions`; `positions` lives with the inputs)."""

    inputs: Dict[str, torch.Tensor]
    pieces: np.ndarray
    positions: torch.Tensor


def _batch(
    loaded: LoadedModel,
    encoded: EncodedBatch,
    members: List[Window],
    placements: List[Tuple[int, int]],
    inputs: Dict[str, torch.Tensor],
) -> ModelBatch:
    pieces, positions = kept_positions(
        members,
        placements,
        int(inputs["input_ids"].shape[1]),
        len(loaded.special.prefix),
        encoded.piece_bounds,
    )
    on = to_device(torch.from_numpy(positions), inputs["input_ids"].device)
    return ModelBatch(inputs, pieces, on)


class PreparedDocs(NamedTuple):
    """Docs ready for the model: their pieces aligned to tokens, and the model
    inputs (a lazy iterator, or a list built ahead for a device thread)."""

    encoded: EncodedBatch
    batches: Iterable[ModelBatch]


def model_batches(
    loaded: LoadedModel,
    encoded: EncodedBatch,
    batch_size: int,
    max_batch_subwords: int,
    *,
    pack: bool = False,
    device: Optional[torch.device] = None,
    call_overhead: Optional[int] = None,
) -> Iterator[ModelBatch]:
    """Model inputs for the windows of `encoded`, length-sorted, in batches.

    Padded (the default, and training's way): sorted windows are cut into
    batches where the padding saved outweighs the cost of one more forward
    call: small on CPU, larger on accelerators, which pay more per call and
    less per position. On the CoNLL sentence workload this pads 10% fewer
    positions than filling batches in turn, and a training batch of 32
    random sentences (over half padding when run whole) trains twice as fast.

    With `pack` and a model that takes packed rows (`loaded.packing`, see
    `packing`), batches of up to `batch_size` windows go end to end into
    rows instead: almost no padding, whatever the lengths.

    The inputs are built on `device` (default: the model's). `call_overhead`:
    what one more call costs in padded positions (default: by device).
    """
    piece_ids = encoded.piece_ids
    windows = segment_windows(encoded.segments, loaded.content_length, loaded.stride, loaded.causal)
    layout = loaded.packing if pack else None
    if layout is not None and len(windows) > 1:
        # Filled in turn, longest first (no least-padding split: a batch that
        # packs pads little, and one that would not is run padded below).
        lengths = [w.length + loaded.special.count for w in windows]
        for batch in plan_batches(lengths, batch_size, max_batch_subwords):
            members = [windows[i] for i in batch]
            rows = [piece_ids[w.text_index][w.start : w.end] for w in members]
            if packing_pays([lengths[i] for i in batch], max_row=layout.max_row):
                inputs, placements = packed_inputs(
                    rows, loaded.special, layout, loaded.causal, device or loaded.device
                )
                yield _batch(loaded, encoded, members, placements, inputs)
            else:  # a row per window anyway: the plain mask is the cheaper input
                yield _padded(loaded, encoded, members, rows, device)
        return
    if call_overhead is None:
        on_cpu = loaded.device.type == "cpu"
        call_overhead = CPU_BATCH_OVERHEAD if on_cpu else DEVICE_BATCH_OVERHEAD
    batches = plan_batches(
        [w.length for w in windows], batch_size, max_batch_subwords, call_overhead
    )
    for batch in batches:
        members = [windows[i] for i in batch]
        rows = [piece_ids[w.text_index][w.start : w.end] for w in members]
        yield _padded(loaded, encoded, members, rows, device)


def _padded(
    loaded: LoadedModel,
    encoded: EncodedBatch,
    members: List[Window],
    rows: List[np.ndarray],
    device: Optional[torch.device] = None,
) -> ModelBatch:
    """A row per window, padded to the longest."""
    inputs = build_batch(rows, loaded.special, device or loaded.device)
    placements = [(i, 0) for i in range(len(members))]
    return _batch(loaded, encoded, members, placements, inputs)


def on_device(batches: Iterable[ModelBatch], device: torch.device) -> Iterator[ModelBatch]:
    """Batches built on the host, moved to `device` as the forward loop takes
    them: from the thread (and so on the CUDA stream) that runs the forward."""
    for batch in batches:
        inputs = {name: to_device(t, device) for name, t in batch.inputs.items()}
        yield batch._replace(inputs=inputs, positions=to_device(batch.positions, device))


def piece_probabilities(
    loaded: LoadedModel,
    encoded: EncodedBatch,
    batches: Iterator[ModelBatch],
) -> np.ndarray:
    """Label probabilities [n_pieces, n_labels] for every piece of the batch.

    Softmax in float32, moved to numpy once per forward call; each piece keeps
    the row of the window where it has the most context (`Window.keep_*`).
    """
    n_labels = len(loaded.scheme.labels)
    probs_out = np.zeros((encoded.n_pieces, n_labels), dtype=np.float32)
    model = loaded.inference_model()
    if model.training:  # only if someone switched it: eval() walks every module
        model.eval()
    with torch.inference_mode():
        for batch in batches:
            torch_thread.check_stopping()
            try:
                logits = model(**batch.inputs).logits
            except IndexError as error:
                raise IndexError(
                    f"{type(model).__name__} failed on a batch of windows of "
                    f"{batch.inputs['input_ids'].shape[1]} positions ({error}). Its embeddings "
                    "are probably smaller than its config says: set the component's "
                    "max_length below that length."
                ) from error
            # Only the kept positions are read, normalised and moved: padding,
            # special tokens and the overlaps of windows stay on the device.
            kept = logits.reshape(-1, logits.shape[-1]).index_select(0, batch.positions)
            probs_out[batch.pieces] = torch.softmax(kept.float(), dim=-1).cpu().numpy()
    return probs_out


def window_targets(
    piece_targets: np.ndarray, batch: ModelBatch, ignore_index: int
) -> torch.Tensor:
    """Training targets laid out like `batch`'s model inputs, beside them: each
    window's kept pieces carry their targets, everything else `ignore_index`
    (the same positions inference reads)."""
    ids = batch.inputs["input_ids"]
    targets = torch.full(ids.shape, ignore_index, dtype=torch.long, device=ids.device)
    values = torch.from_numpy(piece_targets[batch.pieces]).to(ids.device)
    targets.view(-1)[batch.positions] = values
    return targets
