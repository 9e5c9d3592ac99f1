"""Which spaCy tokens form one word in the eyes of a first-subword NER model.

Most token-classification checkpoints (CoNLL-2003 style) were trained with a
label on the first subword of each *word*, where "Collomb-Patton",
"KwaZulu-Natal" and "1." are single words; their later pieces carry untrained
noise. spaCy splits such words ("Collomb", "-", "Patton"; "1", "."), so reading
each spaCy token on its own turns that noise into broken or spurious
entities. Two repairs, measured on CoNLL-2003 test (see benchmarks/):

- tokens joined by an infix hyphen/slash with no space ("al-Boushi", "UK-US")
  form one word and take the label of its first token;
- a punctuation-only token glued to the token before it (the "." of "1.")
  cannot begin an entity.

Pure functions over the text's characters, token char spans and trailing-space
flags.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .pieces import codepoints, whitespace_mask

INFIX_CONNECTORS = frozenset({"-", "–", "—", "/", "‐", "‑"})
_CONNECTOR_CODES = np.array(sorted(ord(c) for c in INFIX_CONNECTORS), dtype=np.uint32)
_BMP = 0x10000
_ALNUM_TABLE: Optional[np.ndarray] = None


def _alnum_of(codepoints: np.ndarray) -> np.ndarray:
    global _ALNUM_TABLE
    if _ALNUM_TABLE is None:
        _ALNUM_TABLE = np.array([chr(c).isalnum() for c in range(_BMP)], dtype=bool)
    mask = _ALNUM_TABLE[np.minimum(codepoints, _BMP - 1)]
    for k in np.flatnonzero(codepoints >= _BMP).tolist():
        mask[k] = chr(int(codepoints[k])).isalnum()
    return mask


def alnum_mask(text: str) -> np.ndarray:
    """Boolean array, one entry per character of `text`: is it alphanumeric
    (`str.isalnum`)."""
    return _alnum_of(codepoints(text))


def word_groups(
    text: str,
    token_starts: np.ndarray,
    token_ends: np.ndarray,
    spaces: np.ndarray,
    doc_starts: np.ndarray,
    is_space: Optional[np.ndarray] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Word starts and glued punctuation for the tokens of one or more docs.

    Tokens are char spans of `text` (docs joined in order); `spaces[i]` is
    True when token i is followed by whitespace and `doc_starts[i]` when it
    begins a doc, so no word or glue crosses from one doc into the next.
    Returns, per token, the index of the first token of its word (a word joins
    `a`, connector, `b` when the connector is glued to both and `a` ends, `b`
    starts, with a letter or digit), and whether it is punctuation glued to
    the token before it.
    """
    n = len(token_starts)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
    starts = np.asarray(token_starts, dtype=np.int64)
    ends = np.asarray(token_ends, dtype=np.int64)
    spaces = np.asarray(spaces, dtype=bool)
    doc_starts = np.asarray(doc_starts, dtype=bool)
    codes = codepoints(text)
    alnum = _alnum_of(codes)
    if is_space is None:
        is_space = whitespace_mask(text)
    nonempty = ends > starts
    n_chars = len(text)
    first = np.minimum(starts, max(n_chars - 1, 0))
    last = np.maximum(ends - 1, 0)
    if n_chars:
        first_alnum = nonempty & alnum[first]
        last_alnum = nonempty & alnum[last]
        connector = (ends - starts == 1) & np.isin(codes[first], _CONNECTOR_CODES)
        solid = np.r_[0, np.cumsum(alnum | is_space)]
        punct_only = nonempty & (solid[ends] == solid[starts])
    else:
        first_alnum = last_alnum = connector = punct_only = np.zeros(n, dtype=bool)
    # Connector i joins i-1 and i+1 when glued to both, all in one doc.
    joins = np.zeros(n, dtype=bool)
    if n >= 3:
        middle = slice(1, n - 1)
        joins[middle] = (
            connector[middle]
            & ~spaces[:-2]
            & ~spaces[middle]
            & last_alnum[:-2]
            & first_alnum[2:]
            & ~doc_starts[middle]
            & ~doc_starts[2:]
        )
    attached = joins.copy()
    attached[1:] |= joins[:-1]
    word_start = np.maximum.accumulate(np.where(attached, 0, np.arange(n)))
    glued = np.zeros(n, dtype=bool)
    glued[1:] = punct_only[1:] & ~spaces[:-1] & ~doc_starts[1:]
    return word_start, glued
