"""Which spaCy tokens form one word in the eyes of a first-subword NER model.

Most token-classification checkpoints (CoNLL-2003 style) were trained with a
label on the first subword of each *word*, where "Collomb-Patton",
"KwaZulu-Natal" and "1." are single words; their later pieces carry untrained
noise. spaCy splits such words ("Collomb", "-", "Patton"; "1", "."), so reading
each spaCy token on its own turns that noise into broken or spurious
entities. Three repairs, measured on CoNLL-2003 test (see benchmarks/):

- tokens joined by an infix hyphen/slash with no space ("al-Boushi", "UK-US")
  form one word and take the label of its first token;
- a punctuation-only token glued to the token before it (the "." of "1.")
  cannot begin an entity;
- a token of separating punctuation only (brackets, quotes, `,;:.!?` and
  their CJK and full-width forms; not "$", "%", "#" or "&", which can belong
  to an entity) that shares a piece with its neighbour (the "(" of a piece
  "(Ch" in "(China)", the "," of "s," in "Blades,") is neither an entity's
  first nor its last token: the piece's label is about the word.

Pure functions over the text's characters, token char spans and trailing-space
flags.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from .char_classes import ALNUM, SEPARATING, CharClass
from .pieces import codepoints, whitespace_mask

INFIX_CONNECTORS = frozenset({"-", "–", "—", "/", "‐", "‑"})
CONNECTOR = CharClass(lambda c: c in INFIX_CONNECTORS)  # a table, not np.isin (`sentences`)


def alnum_mask(text: str) -> np.ndarray:
    """Boolean array, one entry per character of `text`: is it alphanumeric
    (`str.isalnum`)."""
    return ALNUM(codepoints(text))


class WordGroups(NamedTuple):
    """Per token: the first token of its word, whether it is punctuation glued
    to the token before it, and whether it is separating punctuation only."""

    starts: np.ndarray
    glued: np.ndarray
    separating: np.ndarray


def word_groups(
    text: str,
    token_starts: np.ndarray,
    token_ends: np.ndarray,
    spaces: np.ndarray,
    doc_starts: np.ndarray,
    is_space: Optional[np.ndarray] = None,
) -> WordGroups:
    """Word starts, glued and separating punctuation for the tokens of one or more docs.

    Tokens are char spans of `text` (docs joined in order); `spaces[i]` is
    True when token i is followed by whitespace and `doc_starts[i]` when it
    begins a doc, so no word or glue crosses from one doc into the next.
    Returns, per token, the index of the first token of its word (a word joins
    `a`, connector, `b` when the connector is glued to both and `a` ends, `b`
    starts, with a letter or digit), and whether it is punctuation glued to
    the token before it; and which tokens hold only separating punctuation.
    """
    n = len(token_starts)
    if n == 0:
        none = np.zeros(0, dtype=bool)
        return WordGroups(np.zeros(0, dtype=np.int64), none, none)
    starts = np.asarray(token_starts, dtype=np.int64)
    ends = np.asarray(token_ends, dtype=np.int64)
    spaces = np.asarray(spaces, dtype=bool)
    doc_starts = np.asarray(doc_starts, dtype=bool)
    codes = codepoints(text)
    alnum = ALNUM(codes)
    if is_space is None:
        is_space = whitespace_mask(text)
    nonempty = ends > starts
    n_chars = len(text)
    first = np.minimum(starts, max(n_chars - 1, 0))
    last = np.maximum(ends - 1, 0)
    if n_chars:
        first_alnum = nonempty & alnum[first]
        last_alnum = nonempty & alnum[last]
        connector = (ends - starts == 1) & CONNECTOR(codes[first])
        solid = np.concatenate(([0], np.cumsum(alnum | is_space)))
        punct_only = nonempty & (solid[ends] == solid[starts])
        other = np.concatenate(([0], np.cumsum(~SEPARATING(codes))))
        separating = nonempty & (other[ends] == other[starts])
    else:
        first_alnum = last_alnum = connector = punct_only = separating = np.zeros(n, dtype=bool)
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
    return WordGroups(word_start, glued, separating)
