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

from .pieces import (
    TokenAlignment,
    align_pieces,
    attach_word_markers,
    piece_token_ranges,
    trim_offsets,
    whitespace_mask,
)
from .sentences import segment_starts_in_batch

# How much of a doc the model sees at once: a sentence (from an earlier
# component, a line, or the rule), a line or an earlier component's sentence,
# or the whole doc.
CONTEXTS = ("sentence", "line", "document")


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
    # True on the first token of each segment (sentence, line, doc): no entity
    # crosses one.
    segment_starts: np.ndarray
    # The model's inputs are cut along these: (doc, first piece, end piece),
    # piece indices within the doc; each is windowed on its own.
    segments: List[Tuple[int, int, int]]
    # Each piece's characters in `text`, trimmed of whitespace (`trim_offsets`):
    # where the model's entities begin and end (`labels.char_spans`).
    piece_spans: Optional[np.ndarray] = None

    @property
    def n_pieces(self) -> int:
        return int(self.piece_bounds[-1])

    @property
    def n_tokens(self) -> int:
        return int(self.token_bounds[-1])


def encode_batch(
    docs: Sequence[Doc],
    tokenize: Callable[[List[str]], Sequence[Tuple[np.ndarray, np.ndarray]]],
    context: str = "sentence",
    running_in_first: bool = True,
) -> EncodedBatch:
    """Tokenize `docs` into pieces and align the pieces to the docs' tokens.

    `tokenize` maps texts to (piece ids, char offsets) per text. Segments start
    at each doc, line and sentence an earlier component set; with `context`
    "sentence", also where `sentences.rule_sentence_starts` cuts a doc that has
    no sentences. With "sentence" or "line", each segment is tokenized and
    seen by the model on its own, exactly as if it were a text of its own (a
    byte-level BPE tokenizer, say, marks a line's first word as it marks a
    text's first word); with "document", each doc is tokenized and seen whole.
    `running_in_first`: which piece a token is read through (`align_pieces`).
    """
    if context not in CONTEXTS:
        raise ValueError(f"context={context!r}: use one of {CONTEXTS}")
    texts = [doc.text for doc in docs]
    text = "".join(texts)
    is_space = whitespace_mask(text)
    char_base = np.concatenate(([0], np.cumsum([len(t) for t in texts]))).astype(np.int64)
    n_tokens = np.array([len(doc) for doc in docs], dtype=np.int64)
    token_bounds = np.concatenate(([0], np.cumsum(n_tokens))).astype(np.int64)

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
    doc_starts = np.zeros(int(token_bounds[-1]), dtype=bool)
    doc_starts[token_bounds[:-1][n_tokens > 0]] = True
    segment_starts = segment_starts_in_batch(
        docs, text, token_starts, token_ends, doc_starts, is_space, context == "sentence"
    )

    # What the tokenizer sees: (doc, first char, end char), chars in `text`.
    if context != "document":
        spans = _segment_spans(token_starts, token_ends, segment_starts, token_bounds, is_space)
    else:
        spans = [(i, int(char_base[i]), int(char_base[i + 1])) for i, t in enumerate(texts) if t]
    encoded = tokenize([text[s:e] for _, s, e in spans])
    span_pieces = np.array([len(ids) for ids, _ in encoded], dtype=np.int64)
    span_docs = np.array([d for d, _, _ in spans], dtype=np.int64)
    n_pieces = np.bincount(span_docs, weights=span_pieces, minlength=len(docs)).astype(np.int64)
    piece_bounds = np.concatenate(([0], np.cumsum(n_pieces))).astype(np.int64)
    span_bounds = np.concatenate(([0], np.cumsum(span_pieces))).astype(np.int64)
    # Spans come in doc order: doc i owns spans first_span[i]:first_span[i + 1].
    first_span = np.searchsorted(span_docs, np.arange(len(docs) + 1)).tolist()
    span_bounds_list = span_bounds.tolist()
    empty = np.zeros(0, dtype=np.int64)
    piece_ids: List[np.ndarray] = []
    segments: List[Tuple[int, int, int]] = []
    for doc_index in range(len(docs)):
        lo, hi = first_span[doc_index], first_span[doc_index + 1]
        if lo == hi:
            piece_ids.append(empty)
            continue
        ids = [np.asarray(encoded[k][0], dtype=np.int64) for k in range(lo, hi)]
        piece_ids.append(ids[0] if len(ids) == 1 else np.concatenate(ids))
        base = span_bounds_list[lo]
        segments += [
            (doc_index, span_bounds_list[k] - base, span_bounds_list[k + 1] - base)
            for k in range(lo, hi)
            if span_bounds_list[k + 1] > span_bounds_list[k]
        ]

    if span_bounds[-1]:
        span_start = np.array([s for _, s, _ in spans], dtype=np.int64)
        offsets = np.concatenate([offsets.reshape(-1, 2) for _, offsets in encoded])
        offsets = offsets.astype(np.int64) + np.repeat(span_start, span_pieces)[:, None]
        # Clip each piece to its own span, so it can only meet that span's tokens.
        span_end = np.array([e for _, _, e in spans], dtype=np.int64)
        limits = np.stack(
            [np.repeat(span_start, span_pieces), np.repeat(span_end, span_pieces)], axis=1
        )
        trimmed = trim_offsets(offsets, is_space, limits)
        raw_ends = np.minimum(np.maximum(offsets[:, 1], limits[:, 0]), limits[:, 1])
    else:
        trimmed = np.zeros((0, 2), dtype=np.int64)
        raw_ends = np.zeros(0, dtype=np.int64)
    ranges, markers = attach_word_markers(
        piece_token_ranges(trimmed, token_starts, token_ends),
        raw_ends,
        trimmed[:, 0],
        np.repeat(span_bounds[1:], span_pieces),
    )
    alignment = align_pieces(ranges, int(token_bounds[-1]), markers, running_in_first)
    # A line break the tokenizer dropped (BERT removes a form feed) can fall
    # inside a piece of a doc seen whole: the model saw one word there, and no
    # entity boundary goes inside a piece.
    segment_starts &= doc_starts | ~alignment.tied_tokens()
    return EncodedBatch(
        piece_ids=piece_ids,
        alignment=alignment,
        piece_bounds=piece_bounds,
        token_bounds=token_bounds,
        text=text,
        is_space=is_space,
        token_starts=token_starts,
        token_ends=token_ends,
        token_idx=token_idx,
        spaces=spaces,
        doc_starts=doc_starts,
        segment_starts=segment_starts,
        segments=segments,
        piece_spans=trimmed,
    )


def _segment_spans(
    token_starts: np.ndarray,
    token_ends: np.ndarray,
    segment_starts: np.ndarray,
    token_bounds: np.ndarray,
    is_space: np.ndarray,
) -> List[Tuple[int, int, int]]:
    """(doc, first char, end char) of each segment's text, from its first to its
    last non-whitespace token; whitespace between segments is left out, as it
    would be from sentences given one by one."""
    if len(token_starts) == 0:
        return []
    spaces = np.concatenate(([0], np.cumsum(is_space)))
    solid = (spaces[token_ends] - spaces[token_starts]) < (token_ends - token_starts)
    segment = np.cumsum(segment_starts) - 1
    ids = segment[solid]
    if len(ids) == 0:
        return []
    first = np.flatnonzero(solid)[np.concatenate(([True], ids[1:] != ids[:-1]))]
    last = np.flatnonzero(solid)[np.concatenate((ids[1:] != ids[:-1], [True]))]
    doc_of = np.searchsorted(token_bounds, first, side="right") - 1
    return list(zip(doc_of.tolist(), token_starts[first].tolist(), token_ends[last].tolist()))


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
    # Brackets, quotes, commas... sharing a piece with a neighbour: never an
    # entity's first or last token (`align.words`, `labels.decoding`).
    edge_punct: Optional[np.ndarray] = None
    # The model's label probabilities per piece (`labels.char_spans`).
    piece_probs: Optional[np.ndarray] = None

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
