"""Several windows in one row of model input, each seeing only itself.

A batch of short windows of different lengths pads every row to the longest
one; on a CPU the padded positions cost as much as real ones. Sorting many
docs by length keeps padding small (`nlp.pipe`), but a batch that cannot be
chosen, like the sixteen sentences of sixteen concurrent server requests,
is over half padding. Packed, the windows of such a batch lie end to end in
one or a few rows; a block-diagonal attention mask keeps each window to its
own positions and position ids restart at each window, so every window gets
the outputs it would get alone (the probe checks it), with almost no
padding and one forward call.

Whether a model can be fed this way depends on how its forward reads a
mask and position ids, which differs between architectures and transformers
versions; `find_layout` finds out by running the model both ways on a probe,
as `inputs.sees_only_left_context` does, and packing is used only where the
outputs agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .inputs import SpecialTokens, build_batch, forward_inputs, to_device

# A packed row is as long as the batch's longest window, and at least this
# many positions. Attention over a row grows with the square of its length: no
# longer than the longest window, it costs what padding would, and a floor this
# low keeps it so. Measured (MiniLM-L6, 2 CPU cores): batches of 16 random
# CoNLL sentences 1.48x faster than padded; length-sorted `nlp.pipe` batches
# the same (rows of 256 positions made those 30% slower).
PACKED_ROW_POSITIONS = 64

# Largest difference of logits, between a window run alone and packed, still
# taken as the same output (float32 reductions in another order differ ~1e-5).
_PROBE_TOLERANCE = 1e-3


@dataclass(frozen=True)
class PackedLayout:
    """How this model takes packed rows.

    `mask_dims`: 4 for a boolean mask [rows, 1, positions, positions], 3 for
    an integer mask [rows, positions, positions] (older BERT-style code).
    `position_offset`: added to each window's positions 0, 1, ... (models of
    fairseq heritage count from the padding index + 1); None when the model
    takes no position ids (its positions are relative).
    """

    mask_dims: int
    position_offset: Optional[int]
    # The widest packed row the probe checked: no wider row is packed (a
    # window longer than that still gets a row of its own).
    max_row: int = 10**9


def row_width(sizes: Sequence[int], capacity: int, max_row: int) -> int:
    """How long a packed row may be: as the longest window, at least
    `capacity`, at most `max_row`."""
    return min(max(capacity, max(sizes)), max_row)


def pack_rows(lengths: Sequence[int], capacity: int) -> List[List[int]]:
    """Indices of `lengths` grouped into rows of at most `capacity` positions
    (first fit, longest first); a window longer than `capacity` has a row of
    its own. Rows come longest-first; within a row, indices keep that order."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    rows: List[List[int]] = []
    used: List[int] = []
    for index in order:
        size = lengths[index]
        for r, filled in enumerate(used):
            if filled + size <= capacity:
                rows[r].append(index)
                used[r] += size
                break
        else:
            rows.append([index])
            used.append(size)
    return rows


def packing_pays(
    sizes: Sequence[int], capacity: int = PACKED_ROW_POSITIONS, max_row: int = 10**9
) -> bool:
    """Whether packing windows of these sizes (specials included) saves at
    least a fifth of the positions padding would run. Otherwise padded rows
    cost about the same, and their plain mask lets attention skip the block
    mask (a batch of full 512-piece windows plus a short tail, say)."""
    rows = pack_rows(sizes, row_width(sizes, capacity, max_row))
    packed = len(rows) * max(sum(sizes[i] for i in row) for row in rows)
    return packed <= 0.8 * len(sizes) * max(sizes)


def packed_inputs(
    windows: Sequence[np.ndarray],
    special: SpecialTokens,
    layout: PackedLayout,
    causal: bool,
    device: torch.device,
    capacity: int = PACKED_ROW_POSITIONS,
) -> Tuple[Dict[str, torch.Tensor], List[Tuple[int, int]]]:
    """Model inputs holding `windows` (piece ids, without special tokens) packed
    into rows, and for each window its (row, first column)."""
    prefix = np.asarray(special.prefix, dtype=np.int64)
    suffix = np.asarray(special.suffix, dtype=np.int64)
    sizes = [len(w) + special.count for w in windows]
    rows = pack_rows(sizes, row_width(sizes, capacity, layout.max_row))
    width = max(sum(sizes[i] for i in row) for row in rows)
    input_ids = np.full((len(rows), width), special.pad_id, dtype=np.int64)
    positions = np.zeros((len(rows), width), dtype=np.int64)
    # Each window's positions carry its number; a padding position gets a
    # number of its own, so it attends to itself alone (a query that sees no
    # key at all would give NaN, and NaN times a zero weight is still NaN).
    owner = -1 - np.arange(width, dtype=np.int64)[None, :].repeat(len(rows), axis=0)
    placements: List[Tuple[int, int]] = [(0, 0)] * len(windows)
    for r, members in enumerate(rows):
        column = 0
        for index in members:
            size = sizes[index]
            piece_ids = np.concatenate([prefix, np.asarray(windows[index], np.int64), suffix])
            input_ids[r, column : column + size] = piece_ids
            positions[r, column : column + size] = np.arange(size)
            owner[r, column : column + size] = index
            placements[index] = (r, column)
            column += size
    same = owner[:, :, None] == owner[:, None, :]
    if causal:
        same &= np.tril(np.ones((width, width), dtype=bool))[None]
    if layout.mask_dims == 4:
        mask = torch.from_numpy(same[:, None])
    else:
        mask = torch.from_numpy(same.astype(np.int64))
    batch = {"input_ids": torch.from_numpy(input_ids), "attention_mask": mask}
    if layout.position_offset is not None:
        batch["position_ids"] = torch.from_numpy(positions + layout.position_offset)
    if special.uses_token_types:
        batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
    return {k: to_device(v, device) for k, v in batch.items()}, placements


def find_layout(
    model: torch.nn.Module,
    tokenizer: Any,
    special: SpecialTokens,
    causal: bool,
    content_length: int,
    device: torch.device,
) -> Optional[PackedLayout]:
    """The first layout under which the model's outputs for packed windows
    equal its outputs for the same windows padded, or None.

    The probe packs a short, a long and a middle window into one row (the
    long one up to 160 pieces, so a local-attention span shorter than that
    would show), and tries a 4-d then a 3-d mask, with positions from 0, from
    the padding index + 1, and none. No row wider than the probe's is packed
    later (`PackedLayout.max_row`).
    """
    text = "The quick brown fox jumps over the lazy dog near the river bank. " * 40
    pieces = list(tokenizer.backend_tokenizer.encode(text, add_special_tokens=False).ids)
    long = min(160, content_length, len(pieces))
    if long < 3:
        return None
    windows = [np.asarray(p) for p in (pieces[:3], pieces[:long], pieces[1:8])]
    width = sum(len(w) + special.count for w in windows)  # all three in one row
    accepted = forward_inputs(model)
    offsets: List[Optional[int]] = []
    if "position_ids" in accepted:
        offsets.append(0)
        pad = getattr(getattr(model, "config", None), "pad_token_id", None)
        if isinstance(pad, int) and pad >= 0:
            offsets.append(pad + 1)
    offsets.append(None)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            try:
                reference = model(**build_batch(windows, special, device)).logits.float()
            except Exception:  # inference will report what is wrong, in its words
                return None
            for mask_dims in (4, 3):
                for offset in offsets:
                    layout = PackedLayout(mask_dims, offset, width)
                    inputs, placements = packed_inputs(
                        windows, special, layout, causal, device, capacity=width
                    )
                    try:
                        logits = model(**inputs).logits.float()
                    except Exception:  # this layout is not one the forward takes
                        continue
                    if _agrees(reference, logits, windows, placements, special.count):
                        return layout
    finally:
        model.train(was_training)
    return None


def _agrees(
    reference: torch.Tensor,
    packed: torch.Tensor,
    windows: Sequence[np.ndarray],
    placements: Sequence[Tuple[int, int]],
    n_special: int,
) -> bool:
    for i, (window, (row, column)) in enumerate(zip(windows, placements)):
        size = len(window) + n_special
        alone = reference[i, :size]
        together = packed[row, column : column + size]
        if alone.shape != together.shape or not torch.isfinite(together).all():
            return False
        if (alone - together).abs().max().item() > _PROBE_TOLERANCE * max(
            1.0, alone.abs().max().item()
        ):
            return False
    return True
