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

Pure functions over token texts and trailing-space flags.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

INFIX_CONNECTORS = frozenset({"-", "–", "—", "/", "‐", "‑"})


def word_starts(texts: Sequence[str], spaces: Sequence[bool]) -> np.ndarray:
    """For each token, the index of the first token of the word it belongs to.

    `spaces[i]` is True when token i is followed by whitespace. A word joins
    `a`, connector, `b` when the connector is glued to both and `a` ends, `b`
    starts, with a letter or digit.
    """
    n = len(texts)
    start = np.arange(n)
    i = 1
    while i + 1 < n:
        left, connector, right = texts[i - 1], texts[i], texts[i + 1]
        if (
            connector in INFIX_CONNECTORS
            and not spaces[i - 1]
            and not spaces[i]
            and left[-1:].isalnum()
            and right[:1].isalnum()
        ):
            start[i] = start[i - 1]
            start[i + 1] = start[i - 1]
            i += 2
        else:
            i += 1
    return start


def glued_punctuation(texts: Sequence[str], spaces: Sequence[bool]) -> np.ndarray:
    """Tokens made only of punctuation and glued to the token before them."""
    out = np.zeros(len(texts), dtype=bool)
    for i in range(1, len(texts)):
        text = texts[i]
        if not spaces[i - 1] and text and not any(c.isalnum() or c.isspace() for c in text):
            out[i] = True
    return out
