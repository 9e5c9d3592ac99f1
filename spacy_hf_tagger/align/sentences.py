"""Where sentences start: from an earlier sentence component, at line breaks,
and by a light rule where neither says.

Most token classifiers on the hub were trained on single sentences. Fed a
window that runs across sentences and line breaks, they lose accuracy, so
windows (inference) and training examples (`training.batcher`) follow these
segments, and no entity crosses one. Pure functions over token char spans.

The rule (`rule_sentence_starts`) is for running text that arrives with no
sentence component before ours: a paragraph, a page, a record. It cuts where
spaCy's `sentencizer` would, after a token of sentence-final marks only
("." "?" "!" "。" "؟" "।" "…" and the rest of the sentencizer's list), at
the next token holding a letter or digit, and only when that token does not
begin lowercase ("approx. five" stays whole). Abbreviations are the
tokenizer's: spaCy keeps "Dr.", "U.S.", "e.g." one token by the language's
exceptions, so no mark stands alone there. It cuts for the model's input
only; `doc.sents` stays unset.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from spacy.attrs import SENT_START
from spacy.tokens import Doc

from .char_classes import LOWERCASE, PUNCTUATION, SENTENCE_FINAL, CharClass
from .pieces import codepoints, whitespace_mask

# Characters that end a line for str.splitlines().
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
# A table lookup (2.7 µs on a 48-character sentence): `np.isin` took 13 µs,
# whatever the text's size, which a single short sentence's call notices.
LINE_BREAK = CharClass(lambda c: c in LINE_BREAKS)


def line_break_starts(
    text: str,
    token_starts: np.ndarray,
    token_ends: np.ndarray,
    doc_starts: Optional[np.ndarray] = None,
    is_space: Optional[np.ndarray] = None,
) -> np.ndarray:
    """True on each token that begins a new line: a line break lies between it
    and the last non-whitespace token before it (in the same doc).

    Whitespace tokens never begin a line; they stay with the text before them.
    `doc_starts` marks the first token of each doc when several docs' tokens
    are numbered as one sequence (`batch.EncodedBatch`); their chars are then
    offsets into the joined `text`. `is_space` is `whitespace_mask(text)`, when
    already at hand.
    """
    n = len(token_starts)
    out = np.zeros(n, dtype=bool)
    if n == 0:
        return out
    chars = codepoints(text)
    breaks = np.concatenate(([0], np.cumsum(LINE_BREAK(chars))))
    spaces = np.concatenate(
        ([0], np.cumsum(whitespace_mask(text) if is_space is None else is_space))
    )
    length = token_ends - token_starts
    solid = (spaces[token_ends] - spaces[token_starts]) < length
    first = np.zeros(n, dtype=bool) if doc_starts is None else np.array(doc_starts, dtype=bool)
    first[0] = True
    idx = np.flatnonzero(solid)
    if len(idx) == 0:
        return out
    # For each solid token, the end of the solid token before it, unless a doc
    # starts in between (then it begins its doc's first line).
    doc_id = np.cumsum(first) - 1
    prev = np.concatenate(([-1], idx[:-1]))
    same_doc = (prev >= 0) & (doc_id[np.maximum(prev, 0)] == doc_id[idx])
    prev_end = np.where(same_doc, token_ends[np.maximum(prev, 0)], token_starts[idx])
    out[idx] = same_doc & (breaks[token_starts[idx]] - breaks[prev_end] > 0)
    return out


def rule_sentence_starts(
    text: str,
    token_starts: np.ndarray,
    token_ends: np.ndarray,
    doc_starts: np.ndarray,
    is_space: Optional[np.ndarray] = None,
    line_starts: Optional[np.ndarray] = None,
) -> np.ndarray:
    """True on each token where the rule (see the module) begins a sentence.

    Tokens are char spans of `text` (docs joined in order, `doc_starts`
    marking each doc's first token); no cut is made across docs. A list's
    enumerator at the start of a line is no sentence: no cut after a mark
    glued to a line's first word of up to three characters ("1. Jesper
    Ronnback", "b. Oslo", "IV. Results"), lines starting at `line_starts`
    (default: each doc's start). Within a line, "(Sweden) 2. Andrei" is cut
    as the sentencizer cuts it: on CoNLL-2003's result lists, sparing such
    numbers cost 0.2-0.3 F1 (benchmarks/README.md)."""
    n = len(token_starts)
    out = np.zeros(n, dtype=bool)
    if n == 0 or not text:
        return out
    starts = np.asarray(token_starts, dtype=np.int64)
    ends = np.asarray(token_ends, dtype=np.int64)
    codes = codepoints(text)
    space = whitespace_mask(text) if is_space is None else is_space
    final_chars = np.concatenate(([0], np.cumsum(SENTENCE_FINAL(codes))))
    marks = np.concatenate(([0], np.cumsum(PUNCTUATION(codes) | space)))
    length = ends - starts
    final = (length > 0) & (final_chars[ends] - final_chars[starts] == length)
    word = np.flatnonzero((length > 0) & (marks[ends] - marks[starts] < length))
    if len(word) < 2:
        return out
    # Between consecutive word tokens, in one doc: a token of final marks.
    finals_before = np.concatenate(([0], np.cumsum(final)))
    doc_id = np.cumsum(np.asarray(doc_starts, dtype=bool)) - 1
    prev, this = word[:-1], word[1:]
    cut = (finals_before[this] - finals_before[prev + 1] > 0) & (doc_id[prev] == doc_id[this])
    cut &= ~LOWERCASE(codes[starts[this]])
    line = np.cumsum(np.asarray(doc_starts if line_starts is None else line_starts, dtype=bool))
    word_line = line[word]
    opens_line = np.concatenate(([True], word_line[1:] != word_line[:-1]))[:-1]
    enumerator = opens_line & (length[prev] <= 3) & (ends[prev] == starts[prev + 1])
    out[this[cut & ~enumerator]] = True
    return out


def segment_starts_in_batch(
    docs: Sequence[Doc],
    text: str,
    token_starts: np.ndarray,
    token_ends: np.ndarray,
    doc_starts: np.ndarray,
    is_space: Optional[np.ndarray],
    sentence_rule: bool = False,
) -> np.ndarray:
    """True on the first token of every doc, line, and sentence an earlier
    component set, over the flat token sequence of a batch of `docs`; with
    `sentence_rule`, also where the rule begins a sentence in a doc that has
    no sentences from an earlier component."""
    starts = doc_starts | line_break_starts(text, token_starts, token_ends, doc_starts, is_space)
    ruled = (
        rule_sentence_starts(text, token_starts, token_ends, doc_starts, is_space, starts)
        if sentence_rule
        else None
    )
    base = 0
    for doc in docs:
        if len(doc) and doc.has_annotation("SENT_START"):
            starts[base : base + len(doc)] |= doc.to_array(SENT_START) == 1
        elif ruled is not None:
            starts[base : base + len(doc)] |= ruled[base : base + len(doc)]
        base += len(doc)
    return starts


def segment_starts(doc: Doc) -> np.ndarray:
    """True on each token that begins a segment of `doc`: a sentence start set
    by an earlier component (sentencizer, senter, parser), or a line start.
    The first token is always a start."""
    n = len(doc)
    if n == 0:
        return np.zeros(0, dtype=bool)
    from spacy.attrs import IDX, LENGTH

    spans = doc.to_array([IDX, LENGTH]).astype(np.int64)
    first = np.zeros(n, dtype=bool)
    first[0] = True
    starts, ends = spans[:, 0], spans[:, 0] + spans[:, 1]
    return segment_starts_in_batch([doc], doc.text, starts, ends, first, None)
