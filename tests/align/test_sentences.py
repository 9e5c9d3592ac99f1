"""Where segments start: sentence starts an earlier component set, and line
starts (`align.sentences`).

Why: sentence-trained models lose accuracy on windows that run across
sentences and lines, so windows, training examples and decoding all follow
these segments; a wrong start splits an entity or joins two sentences.
"""

from __future__ import annotations

import numpy as np
import pytest
import spacy

from spacy_hf_tagger.align.pieces import whitespace_mask
from spacy_hf_tagger.align.sentences import (
    LINE_BREAKS,
    line_break_starts,
    rule_sentence_starts,
    segment_starts,
    segment_starts_in_batch,
)

NLP = spacy.blank("en")


def test_line_break_starts_skip_whitespace_tokens():
    doc = NLP("Paris is big.\n\nBerlin too \n and Rome.\r\nEnd")
    starts = segment_starts(doc)
    assert [t.text for t, s in zip(doc, starts) if s] == ["Paris", "Berlin", "and", "End"]


def test_line_break_starts_restart_at_each_doc():
    # Two docs numbered as one sequence: "a\nb" and "c"; "c" starts its doc, not a line.
    text = "a\nbc"
    starts = np.array([0, 2, 3])
    ends = np.array([1, 3, 4])
    got = line_break_starts(text, starts, ends, doc_starts=np.array([True, False, True]))
    assert got.tolist() == [False, True, False]


def test_sentence_starts_from_a_sentencizer_and_lines():
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    doc = nlp("One here. Two there\nthree.")
    assert [t.text for t, s in zip(doc, segment_starts(doc)) if s] == ["One", "Two", "three"]


@pytest.mark.parametrize("brk", list(LINE_BREAKS))
def test_every_line_break_starts_a_line(brk: str) -> None:
    text = f"ab{brk}cd"
    starts, ends = np.array([0, 3]), np.array([2, 5])
    assert line_break_starts(text, starts, ends).tolist() == [False, True]


def test_a_break_inside_a_token_run_of_spaces_counts_once_for_the_next_solid_token() -> None:
    # Tokens: "a", " \n ", "b": the whitespace token never starts a line; "b" does.
    text = "a \n b"
    starts, ends = np.array([0, 1, 4]), np.array([1, 4, 5])
    got = line_break_starts(text, starts, ends)
    assert got.tolist() == [False, False, True]
    # The same with the whitespace mask given, as batches pass it.
    given = line_break_starts(text, starts, ends, is_space=whitespace_mask(text))
    assert given.tolist() == got.tolist()


def test_no_tokens_and_only_whitespace_tokens() -> None:
    empty = np.zeros(0, dtype=np.int64)
    assert line_break_starts("", empty, empty).tolist() == []
    assert line_break_starts(" \n ", np.array([0]), np.array([3])).tolist() == [False]


def test_segment_starts_of_a_doc() -> None:
    assert segment_starts(NLP("")).tolist() == []
    doc = NLP("Hello there\nnew line")
    assert [t.text for t in doc] == ["Hello", "there", "\n", "new", "line"]
    assert segment_starts(doc).tolist() == [True, False, False, True, False]
    assert segment_starts(doc).dtype == bool


def test_segment_starts_of_a_batch_restart_per_doc_and_read_sentence_starts() -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    first = nlp("One. Two")
    second = NLP("x\ny")  # no sentence starts set
    text = first.text + second.text
    starts = np.array([t.idx for t in first] + [len(first.text) + t.idx for t in second])
    ends = starts + np.array([len(t) for t in first] + [len(t) for t in second])
    doc_starts = np.array([True, False, False, True, False, False])
    got = segment_starts_in_batch([first, second], text, starts, ends, doc_starts, None)
    # "One" "." "Two" | "x" "\n" "y": sentencizer starts, doc start, line start.
    assert got.tolist() == [True, False, True, True, False, True]
    assert segment_starts(second).tolist() == [True, False, True]


# --- the sentence rule, for running text no component segmented ---------------------


def rule_cuts(text: str, lang: str = "en") -> list:
    """The tokens where the rule starts a sentence, in a blank `lang` doc."""
    doc = spacy.blank(lang).make_doc(text)
    spans = np.array([(t.idx, t.idx + len(t)) for t in doc], dtype=np.int64).reshape(-1, 2)
    first = np.zeros(len(doc), dtype=bool)
    first[:1] = True
    starts = rule_sentence_starts(text, spans[:, 0], spans[:, 1], first)
    return [t.text for t, start in zip(doc, starts) if start]


@pytest.mark.parametrize(
    ("text", "cuts"),
    [
        # Abbreviations the language's tokenizer keeps whole: no mark stands alone.
        ("Dr. Smith met U.S. forces, e.g. in Oslo.", []),
        ("Call Sarah before 5 p.m. Then call Bob.", []),  # a miss, not a wrong cut
        # Decimals and initials; a cut before an initial that begins a sentence.
        ("It rose 3.5 percent. J. R. R. Tolkien wrote it.", ["J."]),
        # Quotes and brackets after a full stop stay with their sentence.
        ('He said "Go." Then (at noon.) We left.', ["Then", "We"]),
        ("It costs approx. five euros.", []),  # lowercase next: no cut
        ("Wait... What? Really… Yes!", ["What", "Really", "Yes"]),
        ("EU rejects German call to boycott British lamb", []),  # no mark at all
        ("ST. LOUIS beat 3. Boston", ["Boston"]),  # a line's short first word is no sentence
        ("क्या हाल है। ठीक है।", ["ठीक"]),  # Devanagari danda, no case
        ("هل أنت بخير؟ نعم.", ["نعم"]),  # Arabic question mark
    ],
)
def test_the_rule_cuts_where_a_sentence_begins(text: str, cuts: list) -> None:
    assert rule_cuts(text) == cuts


def test_the_rule_cuts_at_cjk_full_stops() -> None:
    assert rule_cuts("我住在北京。他住在上海。", "zh") == ["他"]
    assert rule_cuts("東京に行った！大阪も？はい", "zh") == ["大", "は"]


def test_the_rule_spares_enumerators_at_a_line_start_and_never_crosses_docs() -> None:
    text = "1. Jesper Ronnback\nb. Oslo. Next one"
    doc = NLP.make_doc(text)
    spans = np.array([(t.idx, t.idx + len(t)) for t in doc], dtype=np.int64)
    first = np.eye(1, len(doc), dtype=bool)[0]
    lines = line_break_starts(text, spans[:, 0], spans[:, 1]) | first
    got = rule_sentence_starts(text, spans[:, 0], spans[:, 1], first, line_starts=lines)
    assert [t.text for t, s in zip(doc, got) if s] == ["Next"]
    # Two docs, "End." | "Next": the doc start is a start already, the rule adds none.
    text = "End.Next"
    starts, ends = np.array([0, 3, 4]), np.array([3, 4, 8])
    got = rule_sentence_starts(text, starts, ends, np.array([True, False, True]))
    assert got.tolist() == [False, False, False]


def test_segment_starts_use_the_rule_only_where_no_component_set_sentences() -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    sentenced = NLP("One; two. Three")
    for token in sentenced:  # an earlier component's verdict: one sentence
        token.is_sent_start = token.i == 0
    plain = NLP("Four. Five")
    docs = [sentenced, plain]
    text = "".join(d.text for d in docs)
    starts = np.array([t.idx for t in sentenced] + [len(sentenced.text) + t.idx for t in plain])
    ends = starts + np.array([len(t) for d in docs for t in d])
    doc_starts = np.array([True, False, False, False, False, True, False, False])
    got = segment_starts_in_batch(docs, text, starts, ends, doc_starts, None, sentence_rule=True)
    assert got.tolist() == [True, False, False, False, False, True, False, True]
    without = segment_starts_in_batch(docs, text, starts, ends, doc_starts, None)
    assert without.tolist() == [True, False, False, False, False, True, False, False]
