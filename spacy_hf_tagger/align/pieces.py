"""Align subword pieces to spaCy tokens through character offsets.

Tokenizers report offsets that may include the space before a piece
(byte-level BPE, SentencePiece's "▁", DeBERTa): aligning those as they are
puts the piece on the previous token. So offsets are first trimmed to
non-whitespace, then mapped to the spaCy tokens they overlap. A piece may cover
several tokens ("can't" as one piece) and a token may hold several pieces;
tokens that no piece covers (whitespace tokens, characters the tokenizer
dropped) are reported so callers can label them "O".

Pure numpy functions, tested without a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

AGGREGATIONS = ("first", "average", "max")

# Every code point for which str.isspace() is True (all are below U+3001).
_SPACE_LIMIT = 0x3001
# One extra False entry at the end stands for every code point above the limit.
_SPACE_TABLE = np.array([chr(c).isspace() for c in range(_SPACE_LIMIT)] + [False], dtype=bool)


def codepoints(text: str) -> np.ndarray:
    """The code point of each character of `text`, as uint32."""
    # surrogatepass: lone surrogates are still one character each.
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def whitespace_mask(text: str) -> np.ndarray:
    """Boolean array, one entry per character of `text`: is it whitespace."""
    return _SPACE_TABLE[np.minimum(codepoints(text), _SPACE_LIMIT)]


def trim_offsets(
    offsets: np.ndarray, is_space: np.ndarray, bounds: Optional[np.ndarray] = None
) -> np.ndarray:
    """Shrink each (start, end) char span to exclude leading/trailing whitespace.

    Spans are first clipped to `bounds` (per-span (low, high) char limits,
    default the whole text). Spans that hold only whitespace, or are empty
    (special tokens), come back as (start, start): they cover nothing.
    """
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    n_chars = len(is_space)
    if len(offsets) == 0:
        return offsets.copy()
    if bounds is None:
        low, high = 0, n_chars
    else:
        low, high = bounds[:, 0], bounds[:, 1]
    starts = np.minimum(np.maximum(offsets[:, 0], low), high)
    ends = np.minimum(np.maximum(offsets[:, 1], low), high)
    if n_chars == 0:
        return np.stack([starts, starts], axis=1)
    nonempty = ends > starts
    # Most pieces start and end on a non-space character: only the others
    # (leading "▁"/"Ġ" spaces, whitespace-only pieces) need work.
    lead = nonempty & is_space[np.minimum(starts, n_chars - 1)]
    trail = nonempty & is_space[np.maximum(ends - 1, 0)]
    if not (lead.any() or trail.any()):
        empty = ~nonempty
        return np.stack([starts, np.where(empty, starts, ends)], axis=1)
    positions = np.arange(n_chars + 1)
    # next_solid[c]: first non-space position >= c; solid_end[e]: the largest
    # e' <= e with a non-space character just before it (0 if none).
    next_solid = np.minimum.accumulate(
        np.where(np.concatenate((~is_space, [True])), positions, n_chars)[::-1]
    )[::-1]
    solid_end = np.maximum.accumulate(np.where(np.concatenate(([False], ~is_space)), positions, 0))
    new_starts = np.minimum(next_solid[starts], ends)
    new_ends = np.maximum(solid_end[ends], new_starts)
    empty = new_ends <= new_starts
    new_starts = np.where(empty, starts, new_starts)
    new_ends = np.where(empty, starts, new_ends)
    return np.stack([new_starts, new_ends], axis=1)


def piece_token_ranges(
    trimmed: np.ndarray, token_starts: np.ndarray, token_ends: np.ndarray
) -> np.ndarray:
    """For each piece, the inclusive range [first, last] of spaCy tokens it overlaps.

    Pieces that overlap no token get (-1, -2) so that `last < first`.
    Token spans must be sorted and non-overlapping, as spaCy's are.
    """
    trimmed = np.asarray(trimmed, dtype=np.int64).reshape(-1, 2)
    starts, ends = trimmed[:, 0], trimmed[:, 1]
    # first token whose end is after the piece's start
    first = np.searchsorted(token_ends, starts, side="right")
    # last token whose start is before the piece's end
    last = np.searchsorted(token_starts, ends, side="left") - 1
    none = (ends <= starts) | (first > last)
    first = np.where(none, -1, first)
    last = np.where(none, -2, last)
    return np.stack([first, last], axis=1)


def attach_word_markers(
    ranges: np.ndarray,
    raw_ends: np.ndarray,
    starts: np.ndarray,
    piece_limits: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Give a piece that covers no token the first token of the word it begins;
    also return which pieces it gave one (the bare markers).

    Such a piece holds only whitespace or nothing: SentencePiece's bare "▁"
    or byte-level BPE's "Ġ" before a character they cannot merge with (CJK,
    emoji, rare symbols). It marks the start of the word that follows it
    directly, and models trained with a label on each word's first piece
    learned that word's label on it. It joins the next piece that covers a
    token when that piece's text starts where the marker ends (`starts`:
    trimmed starts; `raw_ends`: the markers' own offsets), within the same
    text (`piece_limits[p]`: one past the last piece of p's text). A "Ġ" that
    stands for an extra space ("Oslo␣␣in") is not followed directly by text
    and keeps covering nothing.
    """
    ranges = np.array(ranges, dtype=np.int64).reshape(-1, 2)
    n = len(ranges)
    covers = ranges[:, 1] >= ranges[:, 0]
    if n == 0 or covers.all():
        return ranges, np.zeros(n, dtype=bool)
    index = np.arange(n)
    # next_covering[p]: the first piece at or after p that covers a token.
    next_covering = np.minimum.accumulate(np.where(covers, index, n)[::-1])[::-1]
    target = np.minimum(next_covering, n - 1)
    markers = (
        ~covers
        & (next_covering < np.asarray(piece_limits))
        & (np.asarray(starts)[target] <= np.asarray(raw_ends))
    )
    first = ranges[target, 0]
    ranges[markers, 0] = first[markers]
    ranges[markers, 1] = first[markers]
    return ranges, markers


@dataclass
class TokenAlignment:
    """Piece↔token pairs: pair k links piece `piece[k]` to token `token[k]`.

    `continues[k]` is True when the piece started in an earlier token, so it
    may only continue an entity in this one, never begin it. Pairs are sorted
    by token; a token's first pair is the piece it is read through (see
    `align_pieces`), then the others.
    """

    piece: np.ndarray
    token: np.ndarray
    continues: np.ndarray
    n_tokens: int
    # marker[k]: piece[k] is a bare word marker ("▁"/"Ġ" alone) attached to the
    # word it begins; None: no piece is.
    marker: Optional[np.ndarray] = None

    def tokens_with_pieces(self) -> np.ndarray:
        mask = np.zeros(self.n_tokens, dtype=bool)
        mask[self.token] = True
        return mask

    def shares_piece_with_neighbour(self) -> np.ndarray:
        """Tokens that share a piece with the token before or after them (the
        piece starts in one and runs into the other)."""
        runs_in = np.zeros(self.n_tokens, dtype=bool)
        runs_in[self.token[self.continues]] = True
        return runs_in | np.concatenate((runs_in[1:], [False]))

    def tied_tokens(self) -> np.ndarray:
        """Tokens covered only by a piece that started in an earlier token.

        Such a token cannot be split from the previous one by an entity
        boundary: the boundary would fall inside a piece.
        """
        starts = np.zeros(self.n_tokens, dtype=bool)
        starts[self.token[~self.continues]] = True
        return self.tokens_with_pieces() & ~starts


def align_pieces(
    ranges: np.ndarray,
    n_tokens: int,
    markers: Optional[np.ndarray] = None,
    running_in_first: bool = True,
) -> TokenAlignment:
    """Expand piece token ranges into piece↔token pairs, sorted by token.

    `markers`: per piece, whether it is a bare word marker attached to the word
    after it (`attach_word_markers`). `running_in_first`: a token's first pair
    is the piece holding its first character, the one running in from an
    earlier token when there is one (entity models: "China" of "(China)" is
    read through "(Ch", where a word-trained model put its label); otherwise
    the first piece that starts in it (tag models: every token has a tag of
    its own, which a piece shared with the token before cannot carry)."""
    ranges = np.asarray(ranges, dtype=np.int64).reshape(-1, 2)
    counts = np.maximum(ranges[:, 1] - ranges[:, 0] + 1, 0)
    piece = np.repeat(np.arange(len(ranges)), counts)
    if len(piece) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return TokenAlignment(empty, empty, np.zeros(0, dtype=bool), n_tokens)
    group_start = np.repeat(np.cumsum(counts) - counts, counts)
    offset_in_piece = np.arange(len(piece)) - group_start
    token = ranges[piece, 0] + offset_in_piece
    continues = offset_in_piece > 0
    order = np.lexsort((piece, ~continues if running_in_first else continues, token))
    pair_marker = None
    if markers is not None and np.any(markers):
        pair_marker = np.asarray(markers, dtype=bool)[piece[order]]
    return TokenAlignment(piece[order], token[order], continues[order], n_tokens, pair_marker)


def _read_markers_with_their_word(
    out: np.ndarray, pair_probs: np.ndarray, alignment: TokenAlignment, boundary: np.ndarray
) -> None:
    """For "first": a token whose first piece is a bare word marker gets the
    mean of the marker's and the next piece's probabilities.

    Training recipes disagree on which of the two carries a word's label: one
    built on `word_ids()` labels the marker (the word's first piece) and never
    the piece after it; one built on offsets labels the first piece with text
    and never the marker. Nothing in a checkpoint says which, and the output
    its training never saw is noise. Measured on small CoNLL models trained each
    way (benchmarks/README.md) and tiny memorising ones of four marker families
    (tests/test_word_markers.py): the marker alone fails offset-trained models
    (10.4 F1 on spaced CoNLL), the next piece alone word_ids-trained ones; the
    mean is at least as good as the better of the two on both, with no threshold.
    """
    first, second = marker_pairs(alignment, boundary)
    out[alignment.token[first]] = (pair_probs[first] + pair_probs[second]) / 2


def marker_pairs(alignment: TokenAlignment, boundary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pair indices (marker, the piece after it) of the tokens whose first pair
    (`boundary`: each token's first pair) is a bare marker followed, in the same
    token, by a piece that starts there."""
    marker, token = alignment.marker, alignment.token
    if marker is None:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    second = boundary + 1
    inside = second < len(token)
    first, second = boundary[inside], second[inside]
    pair = (
        marker[first]
        & (token[second] == token[first])
        & ~marker[second]
        & ~alignment.continues[second]
    )
    return first[pair], second[pair]


def aggregate_token_probs(
    piece_probs: np.ndarray,
    alignment: TokenAlignment,
    method: str,
    continuation: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Probabilities per spaCy token from the probabilities of its pieces.

    - "first": the token's first pair (`align_pieces`): for entity models the
      piece that holds the token's first character, the word's first piece to
      a model trained on words (when it ran in from an earlier token, as "(Ch"
      does into "China" of "(China)", with its begin-mass moved to the
      continuation); when that piece is a bare word marker, the mean of it
      and the piece after it;
    - "average": the mean over all pieces that overlap the token;
    - "max": the piece with the most confident prediction.

    `continuation` maps each label id to its continuation label (B→I, S→E):
    a piece that ran in from an earlier token has its begin-mass moved there.
    Rows of tokens with no piece are all zero.
    """
    if method not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {method!r}")
    n_labels = piece_probs.shape[1] if piece_probs.ndim == 2 else 0
    out = np.zeros((alignment.n_tokens, n_labels), dtype=np.float32)
    if len(alignment.piece) == 0:
        return out
    pair_probs = piece_probs[alignment.piece]
    if continuation is not None and alignment.continues.any():
        moved = np.zeros_like(pair_probs[alignment.continues])
        np.add.at(moved.T, continuation, pair_probs[alignment.continues].T)
        pair_probs[alignment.continues] = moved
    token = alignment.token
    # Pairs are sorted by token, each token's first-character piece first.
    boundary = np.flatnonzero(np.concatenate(([True], token[1:] != token[:-1])))
    group_tokens = token[boundary]
    if method == "first":
        out[group_tokens] = pair_probs[boundary]
        if alignment.marker is not None:
            _read_markers_with_their_word(out, pair_probs, alignment, boundary)
    elif method == "average":
        sums = np.add.reduceat(pair_probs, boundary, axis=0)
        counts = np.diff(np.concatenate((boundary, [len(token)])))
        out[group_tokens] = sums / counts[:, None]
    else:
        confidence = pair_probs.max(axis=1)
        order = np.lexsort((-confidence, token))
        best = order[np.searchsorted(token[order], group_tokens, side="left")]
        out[group_tokens] = pair_probs[best]
    return out
