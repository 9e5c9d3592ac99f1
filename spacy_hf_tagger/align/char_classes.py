"""Classes of characters, looked up for a whole text at once.

Alignment and segmentation ask the same kind of question of every character
of a batch's text (is it a letter or digit, separating punctuation, a
sentence's final mark, lowercase). `str` methods and `unicodedata` answer one
character at a time; a table over the Basic Multilingual Plane, built on first
use, answers a numpy array of code points in one indexing, and the rare
characters beyond it are asked one by one.
"""

from __future__ import annotations

import unicodedata
from typing import Callable, Optional

import numpy as np

_BMP = 0x10000


class CharClass:
    """A predicate over characters, applied to arrays of code points."""

    def __init__(self, predicate: Callable[[str], bool]) -> None:
        self.predicate = predicate
        self._table: Optional[np.ndarray] = None

    def table(self) -> np.ndarray:
        if self._table is None:
            self._table = np.array([self.predicate(chr(c)) for c in range(_BMP)], dtype=bool)
        return self._table

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        """One bool per code point of `codes` (uint32, as `pieces.codepoints`)."""
        mask = self.table()[np.minimum(codes, _BMP - 1)]
        for k in np.flatnonzero(codes >= _BMP).tolist():
            mask[k] = self.predicate(chr(int(codes[k])))
        return mask


ALNUM = CharClass(str.isalnum)

# Punctuation that separates words and never belongs to a name at its edge:
# opening/closing brackets and quotes (Unicode Ps, Pe, Pi, Pf), ASCII quotes,
# and clause and sentence punctuation.
_SEPARATING_CATEGORIES = frozenset({"Ps", "Pe", "Pi", "Pf"})
_SEPARATING_CHARS = frozenset("'\"`,;:.!?\u2026\u3001\u3002\uff0c\uff1b\uff1a\uff01\uff1f\uff0e")
SEPARATING = CharClass(
    lambda c: unicodedata.category(c) in _SEPARATING_CATEGORIES or c in _SEPARATING_CHARS
)

PUNCTUATION = CharClass(lambda c: unicodedata.category(c).startswith("P"))

LOWERCASE = CharClass(str.islower)


def _sentence_final_chars() -> frozenset:
    """The marks that end a sentence in the scripts spaCy's sentencizer knows
    (full stops, question and exclamation marks: Latin, CJK, Arabic,
    Devanagari, Armenian, Ethiopic...), and the ellipsis."""
    from spacy.pipeline.sentencizer import Sentencizer

    return frozenset(c for c in Sentencizer.default_punct_chars if len(c) == 1) | {"\u2026"}


SENTENCE_FINAL = CharClass(lambda c: c in _SENTENCE_FINAL)
_SENTENCE_FINAL = _sentence_final_chars()
