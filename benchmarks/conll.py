"""CoNLL-2003 reading, rendering to text and span scoring for the benchmarks.

Everything here is pure (no model, no spaCy) and works on plain Python values:

* :func:`read_conll` reads a CoNLL-2003 file (``word POS chunk NER``, IOB1,
  ``-DOCSTART-`` lines between documents, blank lines between sentences) into
  documents of sentences of ``(word, tag)``.
* :func:`decode_spans` turns a tag sequence into entity spans with the conlleval
  rule (a span starts at ``B-X``, or at ``I-X`` when the previous token's type is
  not ``X``), so IOB1 and IOB2 decode the same way. It is deliberately a second,
  independent writing of the rule the package owns (``labels.schemes``): the
  benchmarks score the package and its peers, so their gold spans and their
  scoring must not come from the code under test.
* :func:`render_sentence` / :func:`render_texts` build the evaluation texts,
  either "spaced" (tokens joined by single spaces) or "natural" (punctuation
  attached as written), one text per document (sentences joined by ``"\\n"``) or
  one text per sentence, each with the character offsets of every CoNLL word and
  the gold entities as exact character spans.
* :func:`score` computes micro and per-type precision/recall/F1 over exact
  ``(text_id, start, end, label)`` spans; :func:`covered`, the share of gold
  entities whose every character lies inside predicted entities of any type
  (what redacting them needs).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Tuple

Style = Literal["spaced", "natural"]
Unit = Literal["documents", "sentences"]

STYLES: Tuple[Style, ...] = ("spaced", "natural")
UNITS: Tuple[Unit, ...] = ("documents", "sentences")

# (word, tag)
Token = Tuple[str, str]
Sentence = Tuple[Token, ...]
Document = Tuple[Sentence, ...]
# (start, end, label): token indices [start, end) or character offsets [start, end)
Span = Tuple[int, int, str]
# (text_id, start_char, end_char, label)
TextSpan = Tuple[int, int, int, str]

DOCSTART = "-DOCSTART-"

# Tokens written with no space before them in "natural" text (compared lower-cased).
NO_SPACE_BEFORE = frozenset(
    {
        ",",
        ".",
        ":",
        ";",
        "!",
        "?",
        ")",
        "]",
        "}",
        "%",
        "'",
        "'s",
        "n't",
        "'re",
        "'ve",
        "'ll",
        "'d",
        "'m",
    }
)
# Tokens written with no space after them in "natural" text.
NO_SPACE_AFTER = frozenset({"(", "[", "{", "$"})
# Tokens after which an unpaired first double quote is taken to be a closing one.
_CLOSE_QUOTE_CONTEXT = frozenset({",", ".", "?", "!", "...", ";"})
DOUBLE_QUOTE = '"'


# --------------------------------------------------------------------------- reading


def parse_conll(lines: Iterable[str]) -> list[Document]:
    """Parse CoNLL-2003 lines into documents of sentences of ``(word, tag)``.

    The word is the first column and the tag the last. ``-DOCSTART-`` lines start
    a new document; blank (or whitespace-only) lines end a sentence. A file that
    has no ``-DOCSTART-`` line gives one document.
    """
    docs: list[Document] = []
    sentences: list[Sentence] = []
    current: list[Token] = []
    for raw in lines:
        cols = raw.split()
        if not cols:
            if current:
                sentences.append(tuple(current))
                current = []
            continue
        if cols[0] == DOCSTART:
            if current:
                sentences.append(tuple(current))
                current = []
            if sentences:
                docs.append(tuple(sentences))
                sentences = []
            continue
        if len(cols) < 2:
            raise ValueError(f"CoNLL line without a tag column: {raw!r}")
        current.append((cols[0], cols[-1]))
    if current:
        sentences.append(tuple(current))
    if sentences:
        docs.append(tuple(sentences))
    return docs


def read_conll(path: str | Path) -> list[Document]:
    """Read a CoNLL-2003 file (see :func:`parse_conll`)."""
    with open(path, encoding="utf-8") as f:
        return parse_conll(f)


def count_words(docs: Sequence[Document]) -> int:
    """Number of CoNLL tokens ("words") in ``docs``."""
    return sum(len(sent) for doc in docs for sent in doc)


# -------------------------------------------------------------------------- decoding


def split_tag(tag: str) -> tuple[str, str]:
    """``"B-PER"`` -> ``("B", "PER")``; ``"O"`` -> ``("O", "")``.

    The type is split off at the first hyphen only, so hyphenated types survive.
    """
    if tag == "O":
        return "O", ""
    if "-" not in tag:
        return "I", tag
    prefix, _, label = tag.partition("-")
    return prefix, label


def decode_spans(tags: Sequence[str]) -> list[Span]:
    """Entity spans ``(start, end_exclusive, label)`` over token indices.

    conlleval rule: a span starts at ``B-X`` or ``S-X``, or at ``I-X``/``E-X`` when
    the previous token's type is not ``X``; it runs while the following tokens are
    ``I-X``/``E-X``. Works for IOB1 and IOB2 (and tolerates BIOES).
    """
    spans: list[Span] = []
    start = -1
    label = ""
    for i, tag in enumerate(tags):
        prefix, typ = split_tag(tag)
        continues = start >= 0 and typ == label and prefix in ("I", "E")
        if continues:
            continue
        if start >= 0:
            spans.append((start, i, label))
            start, label = -1, ""
        if prefix != "O":
            start, label = i, typ
    if start >= 0:
        spans.append((start, len(tags), label))
    return spans


# ------------------------------------------------------------------------- rendering


def _quote_roles(words: Sequence[str]) -> list[bool]:
    """For each double quote in ``words`` (in order): True if it opens, False if it closes.

    Quotes alternate within the sentence. When the sentence holds an odd number of
    them (a quotation spanning sentences), the first one is taken to close if it is
    the last token or follows sentence punctuation (``said . "``), else to open.
    """
    positions = [i for i, w in enumerate(words) if w == DOUBLE_QUOTE]
    if not positions:
        return []
    first_opens = True
    if len(positions) % 2 == 1:
        p = positions[0]
        if p == len(words) - 1 or (p > 0 and words[p - 1] in _CLOSE_QUOTE_CONTEXT):
            first_opens = False
    return [(k % 2 == 0) == first_opens for k in range(len(positions))]


def natural_spaces(words: Sequence[str]) -> list[bool]:
    """``spaces[i]``: whether a space is written between ``words[i-1]`` and ``words[i]``.

    ``spaces[0]`` is always False. Rules: no space before ``, . : ; ! ? ) ] } %``,
    ``'`` (closing quote or possessive), ``'s n't 're 've 'll 'd 'm`` and closing
    double quotes; no space after ``( [ { $`` and opening double quotes. Hyphens and
    other tokens keep their spaces.
    """
    roles = iter(_quote_roles(words))
    opens: list[bool | None] = [next(roles) if w == DOUBLE_QUOTE else None for w in words]
    spaces = [False] * len(words)
    for i in range(1, len(words)):
        word, prev = words[i], words[i - 1]
        no_before = word.lower() in NO_SPACE_BEFORE or opens[i] is False
        no_after = prev in NO_SPACE_AFTER or opens[i - 1] is True
        spaces[i] = not (no_before or no_after)
    return spaces


def render_words(words: Sequence[str], style: Style) -> tuple[str, list[tuple[int, int]]]:
    """Join ``words`` into one line of text; also return each word's character span."""
    if style == "spaced":
        spaces = [i > 0 for i in range(len(words))]
    elif style == "natural":
        spaces = natural_spaces(words)
    else:
        raise ValueError(f"unknown style {style!r}: use one of {STYLES}")
    parts: list[str] = []
    offsets: list[tuple[int, int]] = []
    pos = 0
    for word, space in zip(words, spaces):
        if space:
            parts.append(" ")
            pos += 1
        parts.append(word)
        offsets.append((pos, pos + len(word)))
        pos += len(word)
    return "".join(parts), offsets


@dataclass(frozen=True)
class RenderedText:
    """One evaluation text with its CoNLL words and gold entities.

    ``sentences[k]`` holds, for sentence ``k`` of this text, the CoNLL words and
    their ``(start, end)`` character offsets in ``text``. ``gold`` holds the gold
    entities as ``(start_char, end_char, label)``.
    """

    text: str
    sentences: tuple[tuple[tuple[str, ...], tuple[tuple[int, int], ...]], ...]
    gold: tuple[Span, ...]

    @property
    def n_words(self) -> int:
        return sum(len(words) for words, _ in self.sentences)


def render_sentence_group(
    sentences: Sequence[Sentence], style: Style, sep: str = "\n"
) -> RenderedText:
    """Render sentences into one text joined by ``sep`` (default one sentence per line)."""
    lines: list[str] = []
    sent_info: list[tuple[tuple[str, ...], tuple[tuple[int, int], ...]]] = []
    gold: list[Span] = []
    base = 0
    for sent in sentences:
        words = tuple(w for w, _ in sent)
        line, offsets = render_words(words, style)
        shifted = tuple((s + base, e + base) for s, e in offsets)
        sent_info.append((words, shifted))
        for start, end, label in decode_spans([t for _, t in sent]):
            gold.append((shifted[start][0], shifted[end - 1][1], label))
        lines.append(line)
        base += len(line) + len(sep)
    return RenderedText(text=sep.join(lines), sentences=tuple(sent_info), gold=tuple(gold))


def render_texts(
    docs: Sequence[Document], style: Style, unit: Unit, sep: str = "\n"
) -> list[RenderedText]:
    """One text per document (231 for eng.testb; sentences joined by ``sep``) or
    one per sentence (3,453)."""
    if unit == "documents":
        return [render_sentence_group(doc, style, sep) for doc in docs]
    if unit == "sentences":
        return [render_sentence_group([sent], style) for doc in docs for sent in doc]
    raise ValueError(f"unknown unit {unit!r}: use one of {UNITS}")


def gold_spans(texts: Sequence[RenderedText]) -> list[TextSpan]:
    """All gold entities as ``(text_id, start_char, end_char, label)``."""
    return [(i, s, e, label) for i, t in enumerate(texts) for s, e, label in t.gold]


def word_spans_to_chars(
    text: RenderedText, sentence_index: int, spans: Iterable[Span]
) -> list[Span]:
    """Map word-index spans of one sentence of ``text`` to character spans."""
    offsets = text.sentences[sentence_index][1]
    return [(offsets[s][0], offsets[e - 1][1], label) for s, e, label in spans]


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class PRF:
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        denom = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denom if denom else 0.0


@dataclass(frozen=True)
class Scores:
    micro: PRF
    per_type: dict[str, PRF]


def score(gold: Iterable[TextSpan], pred: Iterable[TextSpan]) -> Scores:
    """Micro and per-type P/R/F1 over exact ``(text_id, start, end, label)`` spans."""
    gold_set, pred_set = set(gold), set(pred)
    tp_set = gold_set & pred_set
    labels = sorted({s[3] for s in gold_set | pred_set})
    per_type = {
        label: PRF(
            tp=sum(1 for s in tp_set if s[3] == label),
            fp=sum(1 for s in pred_set - gold_set if s[3] == label),
            fn=sum(1 for s in gold_set - pred_set if s[3] == label),
        )
        for label in labels
    }
    micro = PRF(tp=len(tp_set), fp=len(pred_set - gold_set), fn=len(gold_set - pred_set))
    return Scores(micro=micro, per_type=per_type)


def covered(gold: Iterable[TextSpan], pred: Iterable[TextSpan]) -> float:
    """The share of gold entities all of whose characters lie inside predicted
    entities, of any type and any boundaries: what a user who redacts them
    needs, where exact-span recall counts "east London" for "London" a miss."""
    inside: dict[int, set[int]] = {}
    for text_id, start, end, _ in pred:
        inside.setdefault(text_id, set()).update(range(start, end))
    gold = list(gold)
    hits = sum(
        1
        for text_id, start, end, _ in gold
        if inside.get(text_id, set()).issuperset(range(start, end))
    )
    return hits / len(gold) if gold else 0.0
