"""Cut long piece sequences into overlapping windows, and merge them back.

A model sees at most `max_length` subwords. Texts are never truncated: they
are cut into windows of at most `content_length` pieces that overlap by
`stride` pieces, and every piece keeps the prediction of the window where it
has the most context on both sides (the middle of each overlap is the cut).
Windows are then packed into length-sorted batches under a subword budget so
padding stays small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np


def plan_windows(
    n_pieces: int, content_length: int, stride: int, causal: bool = False
) -> np.ndarray:
    """Window bounds as an (k, 4) array: start, end, keep_start, keep_end.

    [start, end) is what the model sees; [keep_start, keep_end) is the part
    whose predictions are kept. The kept parts tile [0, n_pieces) exactly.
    A piece in an overlap is kept from the window where it has the most
    context on both sides; for a `causal` (decoder) model, which sees only
    what comes before, from the earlier window, where it has more of that.
    """
    if content_length < 1:
        raise ValueError(f"content_length must be positive, got {content_length}")
    if not 0 <= stride < content_length:
        raise ValueError(
            f"stride (window overlap) must be at least 0 and below the window's "
            f"content length {content_length}, got {stride}"
        )
    if n_pieces <= 0:
        return np.zeros((0, 4), dtype=np.int64)
    if n_pieces <= content_length:
        return np.array([[0, n_pieces, 0, n_pieces]], dtype=np.int64)
    step = content_length - stride
    starts = list(range(0, n_pieces - content_length, step))
    # The last window ends exactly at the end, so it is full and has context.
    starts.append(n_pieces - content_length)
    starts_arr = np.array(sorted(set(starts)), dtype=np.int64)
    ends_arr = starts_arr + content_length
    if causal:
        cuts = ends_arr[:-1]
    else:
        # Piece p goes to window i rather than i+1 while its right context in i
        # (end_i - 1 - p) is at least its left context in i+1 (p - start_{i+1}).
        cuts = (ends_arr[:-1] - 1 + starts_arr[1:]) // 2 + 1
    keep_starts = np.concatenate(([0], cuts))
    keep_ends = np.concatenate((cuts, [n_pieces]))
    return np.stack([starts_arr, ends_arr, keep_starts, keep_ends], axis=1)


@dataclass(frozen=True)
class Window:
    """One model input: the pieces [start, end) of text `text_index`."""

    text_index: int
    start: int
    end: int
    keep_start: int
    keep_end: int

    @property
    def length(self) -> int:
        return self.end - self.start


def kept_positions(
    windows: Sequence[Window],
    placements: Sequence[Tuple[int, int]],
    width: int,
    n_prefix: int,
    piece_bounds: np.ndarray,
) -> Tuple[np.ndarray, np.ndarray]:
    """Where one batch's kept pieces are, as two aligned index arrays: the
    piece (into all pieces of the batch of texts, `piece_bounds` per text) and
    its flat position in the batch's output (`row * width + column`), for
    windows placed at `placements` (row, first column) after `n_prefix`
    special tokens.

    Computed once per batch where the inputs are built, so reading a forward
    call's output is one gather and one scatter, with no loop over windows in
    the thread that feeds the device (training lays its targets out with the
    same arrays).
    """
    n = len(windows)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    bounds = np.fromiter(
        (v for w in windows for v in (w.text_index, w.start, w.keep_start, w.keep_end)),
        dtype=np.int64,
        count=4 * n,
    ).reshape(n, 4)
    text_index, start, keep_start, keep_end = bounds.T
    where = np.asarray(placements, dtype=np.int64).reshape(n, 2)
    counts = keep_end - keep_start
    piece_start = np.asarray(piece_bounds, dtype=np.int64)[text_index] + keep_start
    position_start = where[:, 0] * width + where[:, 1] + n_prefix + keep_start - start
    within = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(
        np.cumsum(counts) - counts, counts
    )
    return np.repeat(piece_start, counts) + within, np.repeat(position_start, counts) + within


def make_windows(
    piece_counts: Sequence[int], content_length: int, stride: int, causal: bool = False
) -> List[Window]:
    """All windows of all texts, in text order."""
    return segment_windows(
        [(i, 0, n) for i, n in enumerate(piece_counts)], content_length, stride, causal
    )


def segment_windows(
    segments: Sequence[Tuple[int, int, int]],
    content_length: int,
    stride: int,
    causal: bool = False,
) -> List[Window]:
    """Windows over segments `(text_index, first piece, end piece)`: a segment
    that fits is one window; a longer one is cut into overlapping windows
    that never reach into the next segment."""
    windows: List[Window] = []
    for text_index, first, end_piece in segments:
        plan = plan_windows(end_piece - first, content_length, stride, causal) + first
        for start, end, keep_start, keep_end in plan.tolist():
            windows.append(Window(text_index, start, end, keep_start, keep_end))
    return windows


def plan_batches(
    lengths: Sequence[int],
    batch_size: int,
    max_batch_pieces: int,
    batch_overhead: Optional[int] = None,
) -> Iterator[List[int]]:
    """Group window indices into batches, longest first, by length.

    A batch holds at most `batch_size` windows and at most `max_batch_pieces`
    padded positions (rows × longest row), but always at least one window.
    Sorting by length keeps padding small; the order is stable, so equal
    inputs give equal batches.

    Without `batch_overhead`, consecutive windows fill each batch in turn.
    With it, the sorted windows are split where that minimises padded
    positions plus `batch_overhead` per batch: where lengths spread out (the
    long tail of a corpus, or a training batch of 32 random sentences, over
    half padding when run whole) a batch is cut short rather than padded.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    if batch_overhead is not None:
        yield from _split_least_padding(
            order, lengths, batch_size, max_batch_pieces, batch_overhead
        )
        return
    batch: List[int] = []
    longest = 0
    for index in order:
        length = max(lengths[index], 1)
        if batch and (
            len(batch) >= batch_size or (len(batch) + 1) * max(longest, length) > max_batch_pieces
        ):
            yield batch
            batch, longest = [], 0
        batch.append(index)
        longest = max(longest, length)
    if batch:
        yield batch


def _split_least_padding(
    order: List[int],
    lengths: Sequence[int],
    batch_size: int,
    max_batch_pieces: int,
    batch_overhead: int,
) -> Iterator[List[int]]:
    """Cut the longest-first `order` into contiguous batches of least total cost.

    Dynamic programme over cut points: cost[j] is the cheapest way to batch the
    first j windows, each batch costing rows × its first (longest) length plus
    `batch_overhead`.
    """
    sizes = [max(lengths[i], 1) for i in order]
    n = len(sizes)
    cost = [0] * (n + 1)
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        # A batch of the single window j-1 is always allowed.
        cost[j] = cost[j - 1] + sizes[j - 1] + batch_overhead
        cut[j] = j - 1
        for i in range(j - 2, max(j - batch_size, 0) - 1, -1):
            rows = j - i
            if rows * sizes[i] > max_batch_pieces:
                break
            value = cost[i] + rows * sizes[i] + batch_overhead
            if value < cost[j]:
                cost[j], cut[j] = value, i
    bounds = []
    j = n
    while j > 0:
        bounds.append((cut[j], j))
        j = cut[j]
    for i, j in reversed(bounds):
        yield order[i:j]
