"""A batch of docs, numbered as one sequence of pieces and one of tokens.

Alignment, aggregation and decoding run once per batch over these flat
arrays instead of once per doc: for short texts (one sentence each) the
fixed cost of each numpy call, paid per doc, outweighed the work. Doc `i`
owns tokens `token_bounds[i]:token_bounds[i + 1]` and pieces
`piece_bounds[i]:piece_bounds[i + 1]`; no piece is aligned to a token of
another doc, and decoding restarts at every `doc_starts` token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union, overload

import numpy as np
from spacy.attrs import IDX, LENGTH, SPACY
from spacy.tokens import Doc

from .alignment import (
    TokenAlignment,
    align_pieces,
    attach_word_markers,
    piece_token_ranges,
    trim_offsets,
    whitespace_mask,
)


@dataclass
class EncodedBatch:
    """Docs' pieces (per doc) and their alignment to tokens (across the batch)."""

    piece_ids: List[np.ndarray]
    alignment: TokenAlignment
    piece_bounds: np.ndarray
    token_bounds: np.ndarray
    text: str
    is_space: np.ndarray
    token_starts: np.ndarray
    token_ends: np.ndarray
    token_idx: np.ndarray
    spaces: np.ndarray
    doc_starts: np.ndarray  # True on the first token of each doc

    @property
    def n_pieces(self) -> int:
        return int(self.piece_bounds[-1])

    @property
    def n_tokens(self) -> int:
        return int(self.token_bounds[-1])


def encode_batch(
    docs: Sequence[Doc],
    tokenize: Callable[[List[str]], Sequence[Tuple[np.ndarray, np.ndarray]]],
) -> EncodedBatch:
    """Tokenize `docs` into pieces and align the pieces to the docs' tokens.

    `tokenize` maps texts to (piece ids, char offsets) per text.
    """
    texts = [doc.text for doc in docs]
    encoded = tokenize(texts)
    text = "".join(texts)
    is_space = whitespace_mask(text)
    char_base = np.r_[0, np.cumsum([len(t) for t in texts])].astype(np.int64)
    n_pieces = np.array([len(ids) for ids, _ in encoded], dtype=np.int64)
    n_tokens = np.array([len(doc) for doc in docs], dtype=np.int64)
    piece_bounds = np.r_[0, np.cumsum(n_pieces)].astype(np.int64)
    token_bounds = np.r_[0, np.cumsum(n_tokens)].astype(np.int64)

    if token_bounds[-1]:
        arrays = np.concatenate(
            [doc.to_array([IDX, LENGTH, SPACY]) for doc in docs if len(doc)]
        ).astype(np.int64)
        token_idx = arrays[:, 0]
        token_starts = token_idx + np.repeat(char_base[:-1], n_tokens)
        token_ends = token_starts + arrays[:, 1]
        spaces = arrays[:, 2].astype(bool)
    else:
        token_idx = token_starts = token_ends = np.zeros(0, dtype=np.int64)
        spaces = np.zeros(0, dtype=bool)

    if piece_bounds[-1]:
        piece_base = np.repeat(char_base[:-1], n_pieces)
        offsets = np.concatenate([offsets.reshape(-1, 2) for _, offsets in encoded])
        offsets = offsets.astype(np.int64) + piece_base[:, None]
        # Clip each piece to its own doc, so it can only meet that doc's tokens.
        limits = np.stack([piece_base, np.repeat(char_base[1:], n_pieces)], axis=1)
        trimmed = trim_offsets(offsets, is_space, limits)
        raw_ends = np.minimum(np.maximum(offsets[:, 1], limits[:, 0]), limits[:, 1])
    else:
        trimmed = np.zeros((0, 2), dtype=np.int64)
        raw_ends = np.zeros(0, dtype=np.int64)
    ranges = attach_word_markers(
        piece_token_ranges(trimmed, token_starts, token_ends),
        raw_ends,
        trimmed[:, 0],
        np.repeat(piece_bounds[1:], n_pieces),
    )
    doc_starts = np.zeros(int(token_bounds[-1]), dtype=bool)
    doc_starts[token_bounds[:-1][n_tokens > 0]] = True
    return EncodedBatch(
        piece_ids=[ids for ids, _ in encoded],
        alignment=align_pieces(ranges, int(token_bounds[-1])),
        piece_bounds=piece_bounds,
        token_bounds=token_bounds,
        text=text,
        is_space=is_space,
        token_starts=token_starts,
        token_ends=token_ends,
        token_idx=token_idx,
        spaces=spaces,
        doc_starts=doc_starts,
    )


@dataclass
class BatchPrediction:
    """Model output for a batch, per token across the batch.

    Indexing gives one doc's (token probabilities, has-piece mask, tied
    mask), the shape `predict` has always returned per doc.
    """

    token_probs: np.ndarray
    has_piece: np.ndarray
    tied: np.ndarray
    encoded: EncodedBatch
    word_starts: Optional[np.ndarray] = None
    glued: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.encoded.token_bounds) - 1

    @overload
    def __getitem__(self, i: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    @overload
    def __getitem__(self, i: slice) -> List[Tuple[np.ndarray, np.ndarray, np.ndarray]]: ...

    def __getitem__(self, i: Union[int, slice]) -> Any:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(f"doc {i} out of range for a batch of {len(self)}")
        i %= len(self)
        lo, hi = int(self.encoded.token_bounds[i]), int(self.encoded.token_bounds[i + 1])
        return self.token_probs[lo:hi], self.has_piece[lo:hi], self.tied[lo:hi]
