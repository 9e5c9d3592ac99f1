"""Tiny, locally built Hugging Face token-classification models for the test suite.

Why this module exists: the plugin must cope with every tokenizer family a user may
point it at (WordPiece cased/uncased, byte-level BPE, SentencePiece-style Metaspace
Unigram/BPE), each with its own offset quirks and special tokens. Real checkpoints are
hundreds of megabytes and need the model hub, which the test machines cannot reach.
So every family is rebuilt here from scratch in well under a second: a ``tokenizers``
pipeline with the family's normaliser, pre-tokenizer, subword model and post-processor,
whose vocabulary is learned from a small built-in corpus (deterministically, see the
"Vocabulary learning" section), wrapped in the family's *fast* ``transformers``
tokenizer class, and a 2-layer model of the matching architecture, both written with
``save_pretrained`` (safetensors) so that loading goes through exactly the same
``Auto*.from_pretrained(folder)`` code path as a real model.

The vocabularies are deliberately small (a few hundred entries), so ordinary words are
split into several pieces and rare characters become unknown tokens; ``model_max_length``
is tiny (32 by default) so that long texts need windowing. ``model_max_length=None``
keeps the ``VERY_LARGE_INTEGER`` sentinel that many real tokenizers ship with, so code
has to fall back to ``config.max_position_embeddings`` (which, for RoBERTa-like models,
is two larger than the usable length because of the padding-index position offset).

With ``train_steps > 0`` the model is fine-tuned until it memorises
:func:`training_sentences`, which lets end-to-end tests assert real entities
("Sarah" = PER, "Paris" = LOC) instead of only shapes.

This module imports no pytest so that it can also be used from scripts and benchmarks.
"""

from __future__ import annotations

import copy
import inspect
import math
import re
import unicodedata
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
)
from transformers import (
    AlbertConfig,
    AlbertForTokenClassification,
    AlbertTokenizerFast,
    BertConfig,
    BertForTokenClassification,
    BertTokenizerFast,
    DebertaV2Config,
    DebertaV2ForTokenClassification,
    DebertaV2TokenizerFast,
    DistilBertConfig,
    DistilBertForTokenClassification,
    ElectraConfig,
    ElectraForTokenClassification,
    GPT2Config,
    GPT2ForTokenClassification,
    GPT2TokenizerFast,
    ModernBertConfig,
    ModernBertForTokenClassification,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaForTokenClassification,
    RobertaTokenizerFast,
    XLMRobertaConfig,
    XLMRobertaForTokenClassification,
    XLMRobertaTokenizerFast,
)

__all__ = [
    "ARCHITECTURES",
    "FAMILIES",
    "NER_LABELS",
    "build_tiny_model",
    "training_sentences",
    "word_piece_spans",
]

FAMILIES: tuple[str, ...] = (
    "wordpiece-cased",
    "wordpiece-uncased",
    "bpe-roberta",
    "sentencepiece-xlmr",
    "sentencepiece-deberta",
)

# Architectures beyond the five tokenizer families, each with the tokenizer it is
# commonly saved with: DistilBERT and ELECTRA next to a BERT WordPiece tokenizer (a
# fine-tune that reused the base model's tokenizer, which declares token_type_ids
# their forward refuses), ModernBERT with byte-level BPE and [CLS]/[SEP], ALBERT with
# SentencePiece Unigram, and GPT-2 for token classification: a decoder, no special
# tokens, no pad token, byte-level BPE without a prefix space.
ARCHITECTURES: tuple[str, ...] = ("distilbert", "modernbert", "electra", "albert", "gpt2")

NER_LABELS: list[str] = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]

# Number of usable token positions (special tokens included) when the caller asks
# for the ``VERY_LARGE_INTEGER`` sentinel; small so windowing is still exercised.
_SENTINEL_CAPACITY = 32

# Model size: big enough to memorise ~25 sentences in about 60 full-batch steps,
# small enough that a forward/backward pass over the whole set takes milliseconds.
_HIDDEN = 64
_LAYERS = 2
_HEADS = 2
_INTERMEDIATE = 128

# Target vocabulary sizes. Byte-level BPE spends 256 entries on its byte alphabet,
# so it gets more room to still learn a few hundred merges.
_VOCAB_SIZE = {
    "wordpiece-cased": 300,
    "wordpiece-uncased": 280,
    "bpe-roberta": 450,
    "sentencepiece-xlmr": 300,
    "sentencepiece-deberta": 250,
    "distilbert": 300,
    "modernbert": 450,
    "electra": 280,
    "albert": 300,
    "gpt2": 450,
}

_LEARNING_RATE = 3e-3

# Intra-op threads used while building. One, deliberately: matrices this small gain
# nothing from a second thread, and on a shared 2-core machine OpenMP spin-waiting made
# two-thread builds 5-10x slower (and erratic) whenever another process held a core.
_TORCH_THREADS = 1

# (text, [(entity text, label type), ...]) with entities listed in order of
# appearance; character offsets are computed from this table so that they can never
# drift out of sync with the text. Every entity lines up with spaCy's English
# tokenizer boundaries (checked in tests), e.g. "Acme Corp." keeps its period because
# spaCy keeps "Corp." as one token.
_ANNOTATED: list[tuple[str, list[tuple[str, str]]]] = [
    ("My name is Sarah and I live in Paris.", [("Sarah", "PER"), ("Paris", "LOC")]),
    ("John Smith visited Berlin last May.", [("John Smith", "PER"), ("Berlin", "LOC")]),
    ("Acme Corp. hired Maria Garcia in 2021.", [("Acme Corp.", "ORG"), ("Maria Garcia", "PER")]),
    (
        "Sarah flew from London to New York on Monday.",
        [("Sarah", "PER"), ("London", "LOC"), ("New York", "LOC")],
    ),
    ("The U.S.-led talks in Geneva ended early.", [("Geneva", "LOC")]),
    (
        "Peter can't find the Globex office in Zürich.",
        [("Peter", "PER"), ("Globex", "ORG"), ("Zürich", "LOC")],
    ),
    (
        "Anna Müller joined Initech in Munich.",
        [("Anna Müller", "PER"), ("Initech", "ORG"), ("Munich", "LOC")],
    ),
    ("Kenji moved to 東京 in 1999.", [("Kenji", "PER"), ("東京", "LOC")]),
    ("David works at Google in London.", [("David", "PER"), ("Google", "ORG"), ("London", "LOC")]),
    ("Emma and Liam met in Rome.", [("Emma", "PER"), ("Liam", "PER"), ("Rome", "LOC")]),
    ("The United Nations met in Vienna on 3 June.", [("United Nations", "ORG"), ("Vienna", "LOC")]),
    ("Acme Corp is based in Chicago.", [("Acme Corp", "ORG"), ("Chicago", "LOC")]),
    (
        "Dr. Alice Brown spoke at Stanford University.",
        [("Alice Brown", "PER"), ("Stanford University", "ORG")],
    ),
    ("Is Paris bigger than Madrid?", [("Paris", "LOC"), ("Madrid", "LOC")]),
    (
        "Mohammed left Cairo for Dubai in 2019.",
        [("Mohammed", "PER"), ("Cairo", "LOC"), ("Dubai", "LOC")],
    ),
    (
        "Microsoft and Apple opened offices in Seattle.",
        [("Microsoft", "ORG"), ("Apple", "ORG"), ("Seattle", "LOC")],
    ),
    ("Call Sarah at 555-0199 before 5 p.m.", [("Sarah", "PER")]),
    ("Olga's sister lives in São Paulo.", [("Olga", "PER"), ("São Paulo", "LOC")]),
    (
        "Bob Jones, CEO of Initech, lives in Austin.",
        [("Bob Jones", "PER"), ("Initech", "ORG"), ("Austin", "LOC")],
    ),
    ("We drove 300 km from Lyon to Marseille.", [("Lyon", "LOC"), ("Marseille", "LOC")]),
    (
        "Wayne Enterprises is run by Bruce Wayne.",
        [("Wayne Enterprises", "ORG"), ("Bruce Wayne", "PER")],
    ),
    ("Nobody went to the meeting.", []),
    (
        "Lisa and Tom can't stay in Paris after July.",
        [("Lisa", "PER"), ("Tom", "PER"), ("Paris", "LOC")],
    ),
    ("The Red Cross sent aid to Haiti.", [("Red Cross", "ORG"), ("Haiti", "LOC")]),
    (
        "Sarah Connor met John in Los Angeles.",
        [("Sarah Connor", "PER"), ("John", "PER"), ("Los Angeles", "LOC")],
    ),
]

# Unlabelled text that only feeds tokenizer training: numbers, punctuation,
# contractions, hyphenated compounds and a little non-ASCII, so that the learned
# vocabularies look like (very small) real ones. Characters that occur only once in
# the whole corpus (e.g. "東", "京", "ñ") are left out of the WordPiece/BPE alphabets
# on purpose, so those families produce unknown tokens.
_EXTRA_CORPUS: list[str] = [
    "The quick brown fox jumps over the lazy dog.",
    "It's a state-of-the-art, well-known U.S.-led initiative.",
    "I can't believe it's already 10:30 on 12/05/2024!",
    "Prices rose 3.5% to $1,200.00 in the third quarter.",
    "She said: \"Don't worry, we'll be fine.\"",
    "The café in Zürich serves naïve coffee; the crème brûlée is great.",
    "Mr. and Mrs. Smith arrived at 9 a.m. with 2 kids.",
    "Email us at info@example.com or call +1 (555) 123-4567.",
    "Is this the real life? Is this just fantasy?",
    "Twenty-one people attended the event in New York City.",
    "The company reported record profits and hired new staff.",
    "They won't go there again, won't they?",
    "A long-term plan was signed by both sides in Geneva.",
    "El niño weather patterns affect crops every few years.",
    "Our office is on the 4th floor, room 402-B.",
    "He moved from Paris to London and then to Berlin.",
    "Reading, writing and arithmetic are the basics.",
    "The meeting ended early because nobody was ready.",
    "Visitors to Zürich and Geneva often take the train.",
    "Numbers like 1, 22, 333 and 4444 appear in tables.",
]


# Entities that begin or end inside a whitespace-delimited word (issue 27): a
# Korean name with its particle, a Turkish suffix after an apostrophe, glued
# identifiers, text that lost its spaces, Japanese and Chinese without spaces.
# Offsets are per character, so a model trained on every piece learns where
# inside a word the name stops. Their tokenizers learn no merge across an
# entity's edge (`_corpus`), so a piece never straddles one.
_SUBTOKEN_ANNOTATED: list[tuple[str, list[tuple[str, str]]]] = [
    ("김태웅이고 서울에 산다.", [("김태웅", "PER"), ("서울", "LOC")]),
    ("박지민은 부산에서 왔다.", [("박지민", "PER"), ("부산", "LOC")]),
    ("Ankara'dan İstanbul'a gittim.", [("Ankara", "LOC"), ("İstanbul", "LOC")]),
    ("#AngelaMerkel visited Paris.", [("AngelaMerkel", "PER"), ("Paris", "LOC")]),
    ("MerkelvisitedParis yesterday.", [("Merkel", "PER"), ("Paris", "LOC")]),
    ("Write to MariaGarcia@Initech today.", [("MariaGarcia", "PER"), ("Initech", "ORG")]),
    ("安倍晋三は東京に行った。", [("安倍晋三", "PER"), ("東京", "LOC")]),
    ("习近平访问了北京。", [("习近平", "PER"), ("北京", "LOC")]),
    ("Sarah lives in Berlin.", [("Sarah", "PER"), ("Berlin", "LOC")]),
    ("Nobody went there.", []),
]
# Training sets by name (`build_tiny_model(data=...)`).
DATA_SETS: tuple[str, ...] = ("default", "subtoken")


def _annotate(text: str, entities: list[tuple[str, str]]) -> list[tuple[int, int, str]]:
    """Turn ``(entity text, type)`` pairs into character spans, searching left to right.

    Searching from the end of the previous match keeps repeated surface forms (two
    "Sarah"s, say) attached to the right occurrence.
    """
    spans: list[tuple[int, int, str]] = []
    cursor = 0
    for surface, label in entities:
        start = text.find(surface, cursor)
        if start < 0:
            raise ValueError(f"entity {surface!r} not found in {text!r} after {cursor}")
        end = start + len(surface)
        spans.append((start, end, label))
        cursor = end
    return spans


def training_sentences(data: str = "default") -> list[tuple[str, list[tuple[int, int, str]]]]:
    """Return the labelled sentences the tiny models memorise when trained
    (`data`: one of DATA_SETS).

    Each item is ``(text, [(start_char, end_char, label_type), ...])``; label types are
    the bare ``PER``/``LOC``/``ORG`` (no IOB prefix), matching spaCy entity labels. A
    fresh list is returned on every call so callers can mutate it safely.
    """
    table = _SUBTOKEN_ANNOTATED if data == "subtoken" else _ANNOTATED
    return [(text, _annotate(text, ents)) for text, ents in table]


def _corpus(data: str = "default") -> list[str]:
    """All text the tokenizers are trained on: the labelled sentences plus extras.

    For "subtoken", each sentence is cut at its entities' edges, so no merge
    is learned across one (the runtime tokenizer still sees whole words)."""
    if data != "subtoken":
        return [text for text, _ in _ANNOTATED] + list(_EXTRA_CORPUS)
    fragments = []
    for text, spans in training_sentences("subtoken"):
        edges = sorted({0, len(text), *(e for s, t, _ in spans for e in (s, t))})
        fragments += [text[a:b] for a, b in zip(edges[:-1], edges[1:]) if text[a:b].strip()]
    # Twice: WordPiece leaves characters seen once out of its alphabet.
    return fragments * 2 + [text for text, _ in _ANNOTATED] + list(_EXTRA_CORPUS)


# --- Vocabulary learning -----------------------------------------------------------
#
# The ``tokenizers`` trainers are not deterministic: WordPiece and Unigram training
# (and BPE with ``limit_alphabet``) break ties through hash-map iteration order, which
# is randomised per process, so two runs give different vocabularies. Tests must be
# reproducible, so vocabularies are learned here with a small, deterministic BPE
# (ties broken by the pair's text) and loaded into the ``tokenizers`` models directly.
# The runtime tokenizers are still the real Rust ``tokenizers`` objects.

Word = tuple[str, ...]


def _pretokenized_words(tok: Tokenizer, corpus: list[str]) -> list[str]:
    """Run the tokenizer's own normaliser and pre-tokenizer over the corpus.

    Learning on exactly what the runtime model will see keeps the vocabulary honest
    (lowercased for uncased BERT, "▁"-prefixed for Metaspace, byte-mapped for
    byte-level BPE).
    """
    words: list[str] = []
    for line in corpus:
        text = tok.normalizer.normalize_str(line) if tok.normalizer is not None else line
        if tok.pre_tokenizer is not None:
            words.extend(piece for piece, _ in tok.pre_tokenizer.pre_tokenize_str(text))
        else:
            words.extend(text.split())
    return words


def _char_counts(words: list[str]) -> dict[str, int]:
    """How often each character occurs across the pre-tokenized words."""
    counts: dict[str, int] = {}
    for word in words:
        for char in word:
            counts[char] = counts.get(char, 0) + 1
    return counts


def _learn_merges(
    word_counts: dict[Word, int],
    max_merges: int,
    join: Callable[[str, str], str],
    allowed: Callable[[str, str], bool] = lambda left, right: True,
) -> list[tuple[str, str]]:
    """Deterministic BPE: repeatedly merge the most frequent adjacent symbol pair.

    Ties are broken by the pair's text, so the result depends only on the corpus.
    Pairs seen once are never merged, which keeps rare words split into pieces.
    ``allowed`` can veto pairs (see :func:`_same_script_class`).
    """
    words = dict(word_counts)
    merges: list[tuple[str, str]] = []
    while len(merges) < max_merges:
        pair_counts: dict[tuple[str, str], int] = {}
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                if allowed(*pair):
                    pair_counts[pair] = pair_counts.get(pair, 0) + count
        if not pair_counts:
            break
        best, best_count = min(pair_counts.items(), key=lambda item: (-item[1], item[0]))
        if best_count < 2:
            break
        merges.append(best)
        merged = join(*best)
        new_words: dict[Word, int] = {}
        for word, count in words.items():
            symbols: list[str] = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    symbols.append(merged)
                    i += 2
                else:
                    symbols.append(word[i])
                    i += 1
            key = tuple(symbols)
            new_words[key] = new_words.get(key, 0) + count
        words = new_words
    return merges


def _apply_merges(
    word: Word, ranks: dict[tuple[str, str], int], join: Callable[[str, str], str]
) -> Word:
    """Segment one word with learned merges (lowest rank first), as BPE does."""
    symbols = list(word)
    while len(symbols) > 1:
        candidates = [
            (ranks[pair], i) for i, pair in enumerate(zip(symbols, symbols[1:])) if pair in ranks
        ]
        if not candidates:
            break
        _, i = min(candidates)
        symbols[i : i + 2] = [join(symbols[i], symbols[i + 1])]
    return tuple(symbols)


def _char_class(char: str) -> Optional[str]:
    """Coarse Unicode class of a character; ``None`` for the "▁" word marker."""
    if char == "▁":
        return None
    category = unicodedata.category(char)
    if category[0] in "LM":
        return "letter"
    if category[0] == "N":
        return "number"
    return "other"


def _same_script_class(left: str, right: str) -> bool:
    """Allow a merge only when the characters meeting at the seam are of one class.

    SentencePiece (``split_by_unicode_script``) never builds pieces such as "le." that
    glue letters to punctuation; without this rule the tiny corpus, full of
    sentence-final names, would learn them and every "Seattle." would tokenize into a
    piece straddling the spaCy tokens "Seattle" and ".". The "▁" marker joins anything.
    """
    seam = (_char_class(left[-1]), _char_class(right[0]))
    return None in seam or seam[0] == seam[1]


def _concat(left: str, right: str) -> str:
    """Merge rule for plain BPE symbols."""
    return left + right


def _wordpiece_join(left: str, right: str) -> str:
    """Merge rule for WordPiece symbols: the right part loses its "##" prefix."""
    return left + right[2:] if right.startswith("##") else left + right


def _bpe_vocab(
    specials: list[str],
    alphabet: list[str],
    merges: list[tuple[str, str]],
    join: Callable[[str, str], str],
) -> dict[str, int]:
    """Assemble ids: special tokens first, then the alphabet, then merges in order."""
    vocab: dict[str, int] = {}
    for token in [*specials, *alphabet, *(join(a, b) for a, b in merges)]:
        vocab.setdefault(token, len(vocab))
    return vocab


# SentencePiece's nmt_nfkc charsmap turns tabs and newlines into plain spaces, so real
# XLM-R/DeBERTa-v3 give "\n" no piece of its own (it only separates words). NFKC alone
# keeps them, which would make them unknown pieces instead; this restores the real
# behaviour. One character in, one out, so offsets are unaffected.
_CONTROL_WHITESPACE_TO_SPACE = normalizers.Replace(Regex(r"[\t\n\r\f\v]"), " ")


def _wordpiece_tokenizer(family: str, corpus: list[str]) -> PreTrainedTokenizerFast:
    """BERT-style WordPiece, cased or uncased (lowercase + strip accents).

    Characters seen only once in the corpus stay out of the alphabet, so words holding
    them become a single ``[UNK]`` just as in real BERT (CJK characters are split into
    one word each by the normaliser, so each gets its own ``[UNK]``).
    """
    uncased = family == "wordpiece-uncased"
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(vocab={"[UNK]": 0}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=True,
        strip_accents=uncased,
        lowercase=uncased,
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words = _pretokenized_words(tok, corpus)
    chars = {char for char, count in _char_counts(words).items() if count >= 2}
    word_counts: dict[Word, int] = {}
    for word in words:
        if all(char in chars for char in word):
            key = (word[0], *(f"##{char}" for char in word[1:]))
            word_counts[key] = word_counts.get(key, 0) + 1
    alphabet = sorted(chars) + sorted(f"##{char}" for char in chars)
    budget = _VOCAB_SIZE[family] - len(specials) - len(alphabet)
    merges = _learn_merges(word_counts, budget, _wordpiece_join)
    vocab = _bpe_vocab(specials, alphabet, merges, _wordpiece_join)
    tok.model = models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100)
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.add_special_tokens(specials)
    return BertTokenizerFast(
        tokenizer_object=tok,
        do_lower_case=uncased,
        strip_accents=uncased,
        tokenize_chinese_chars=True,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
    )


def _roberta_tokenizer(family: str, corpus: list[str]) -> PreTrainedTokenizerFast:
    """RoBERTa-style byte-level BPE with ``add_prefix_space=True`` and trimmed offsets.

    Special-token ids follow roberta-base (``<s>``=0, ``<pad>``=1, ``</s>``=2,
    ``<unk>``=3, ``<mask>`` appended last): the pad id of 1 is what makes RoBERTa's
    position ids start at 2, hence ``max_position_embeddings = max_length + 2``. The
    full 256-symbol byte alphabet means nothing is ever unknown; non-ASCII characters
    instead split into byte pieces that share one character's offsets.
    """
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    words = _pretokenized_words(tok, corpus)
    word_counts: dict[Word, int] = {}
    for word in words:
        word_counts[tuple(word)] = word_counts.get(tuple(word), 0) + 1
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    budget = _VOCAB_SIZE[family] - len(specials) - len(alphabet)
    merges = _learn_merges(word_counts, budget, _concat)
    vocab = _bpe_vocab(specials, alphabet, merges, _concat)
    tok.model = models.BPE(vocab=vocab, merges=merges)
    tok.decoder = decoders.ByteLevel()
    # Positional: tokenizers renamed the `cls` keyword to `cls_token` in 0.22.
    tok.post_processor = processors.RobertaProcessing(
        ("</s>", vocab["</s>"]),
        ("<s>", vocab["<s>"]),
        trim_offsets=True,
        add_prefix_space=True,
    )
    tok.add_special_tokens([*specials, AddedToken("<mask>", lstrip=True, special=True)])
    return RobertaTokenizerFast(
        tokenizer_object=tok,
        add_prefix_space=True,
        trim_offsets=True,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
    )


def _xlmr_tokenizer(family: str, corpus: list[str]) -> PreTrainedTokenizerFast:
    """XLM-R-style SentencePiece Unigram behind a Metaspace pre-tokenizer.

    Mirrors what ``transformers``' ``XLMRobertaConverter`` produces: an NFKC-like
    normaliser (standing in for the precompiled charsmap), right strip, runs of spaces
    replaced with "▁", Metaspace with ``prepend_scheme="always"``, and the fairseq id
    layout ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3 with ``<mask>`` last.

    The Unigram pieces are the deterministic BPE pieces, scored by their log
    frequency in the BPE-segmented corpus; Viterbi decoding over those scores then
    segments text the way a (small) SentencePiece Unigram model would. Every corpus
    character is kept, so only characters never seen become ``<unk>``.
    """
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.NFKC(),
            _CONTROL_WHITESPACE_TO_SPACE,
            normalizers.Strip(left=False, right=True),
            normalizers.Replace(Regex(" {2,}"), "▁"),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    words = _pretokenized_words(tok, corpus)
    alphabet = sorted(_char_counts(words))
    word_counts: dict[Word, int] = {}
    for word in words:
        word_counts[tuple(word)] = word_counts.get(tuple(word), 0) + 1
    budget = _VOCAB_SIZE[family] - len(specials) - len(alphabet)
    merges = _learn_merges(word_counts, budget, _concat, _same_script_class)
    ranks = {pair: rank for rank, pair in enumerate(merges)}
    piece_counts: dict[str, int] = {char: 1 for char in alphabet}  # add-one smoothing
    for word, count in word_counts.items():
        for piece in _apply_merges(word, ranks, _concat):
            piece_counts[piece] = piece_counts.get(piece, 0) + count
    for left, right in merges:
        piece_counts.setdefault(left + right, 1)
    total = sum(piece_counts.values())
    scored = sorted(
        ((piece, math.log(count / total)) for piece, count in piece_counts.items()),
        key=lambda item: (-item[1], item[0]),
    )
    vocab = [(special, 0.0) for special in specials] + scored
    tok.model = models.Unigram(vocab=vocab, unk_id=specials.index("<unk>"), byte_fallback=False)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    tok.add_special_tokens([*specials, AddedToken("<mask>", lstrip=True, special=True)])
    return XLMRobertaTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
    )


def _deberta_tokenizer(family: str, corpus: list[str]) -> PreTrainedTokenizerFast:
    """DeBERTa-v3-style Metaspace tokenizer with ``[CLS]``/``[SEP]`` specials.

    Normaliser and post-processor follow ``transformers``' ``DebertaV2Converter``
    (strip both sides, NFKC, squeeze spaces). The subword model is BPE rather than
    Unigram on purpose: XLM-R already covers Metaspace + Unigram, and this way the
    suite also meets Metaspace + BPE with a limited alphabet (characters seen only once
    are left out, and runs of unknown characters fuse into one ``[UNK]``).
    Ids follow deberta-v3: ``[PAD]``=0, ``[CLS]``=1, ``[SEP]``=2, ``[UNK]``=3.
    """
    specials = ["[PAD]", "[CLS]", "[SEP]", "[UNK]"]
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Strip(left=True, right=True),
            normalizers.NFKC(),
            _CONTROL_WHITESPACE_TO_SPACE,
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    words = _pretokenized_words(tok, corpus)
    chars = {char for char, count in _char_counts(words).items() if count >= 2}
    word_counts: dict[Word, int] = {}
    for word in words:
        if all(char in chars for char in word):
            word_counts[tuple(word)] = word_counts.get(tuple(word), 0) + 1
    alphabet = sorted(chars)
    budget = _VOCAB_SIZE[family] - len(specials) - len(alphabet)
    merges = _learn_merges(word_counts, budget, _concat, _same_script_class)
    vocab = _bpe_vocab(specials, alphabet, merges, _concat)
    tok.model = models.BPE(vocab=vocab, merges=merges, unk_token="[UNK]", fuse_unk=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.add_special_tokens([*specials, AddedToken("[MASK]", special=True)])
    return DebertaV2TokenizerFast(
        tokenizer_object=tok,
        do_lower_case=False,
        split_by_punct=False,
        bos_token="[CLS]",
        eos_token="[SEP]",
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
    )


def _byte_bpe_model(
    tok: Tokenizer, family: str, corpus: list[str], specials: list[str]
) -> dict[str, int]:
    """Learn a byte-level BPE vocabulary for `tok` (its pre-tokenizer set) and install it."""
    words = _pretokenized_words(tok, corpus)
    word_counts: dict[Word, int] = {}
    for word in words:
        word_counts[tuple(word)] = word_counts.get(tuple(word), 0) + 1
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    budget = _VOCAB_SIZE[family] - len(specials) - len(alphabet)
    merges = _learn_merges(word_counts, budget, _concat)
    vocab = _bpe_vocab(specials, alphabet, merges, _concat)
    tok.model = models.BPE(vocab=vocab, merges=merges)
    tok.decoder = decoders.ByteLevel()
    return vocab


def _modernbert_tokenizer(family: str, corpus: list[str]) -> PreTrainedTokenizerFast:
    """ModernBERT-style: byte-level BPE (no prefix space), [CLS] $A [SEP], offsets
    that keep the leading space (trimmed by us), and a generic fast tokenizer class
    that declares token_type_ids, which ModernBERT's forward does not take."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    vocab = _byte_bpe_model(tok, family, corpus, specials)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.add_special_tokens(specials)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        unk_token="[UNK]",
        mask_token="[MASK]",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def _gpt2_tokenizer(family: str, corpus: list[str]) -> PreTrainedTokenizerFast:
    """GPT-2: byte-level BPE without a prefix space (the first word has no "Ġ"), no
    template (no special tokens around a text) and no pad token."""
    specials = ["<|endoftext|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    _byte_bpe_model(tok, family, corpus, specials)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens(specials)
    return GPT2TokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        add_prefix_space=False,
    )


def _albert_tokenizer(family: str, corpus: list[str]) -> PreTrainedTokenizerFast:
    """ALBERT: SentencePiece Unigram behind Metaspace (as XLM-R) with [CLS]/[SEP]."""
    xlmr = _xlmr_tokenizer(family, corpus).backend_tokenizer
    vocab = [(piece, score) for piece, score in _unigram_pieces(xlmr)]
    specials = ["<pad>", "<unk>", "[CLS]", "[SEP]"]
    pieces = [(sp, 0.0) for sp in specials] + [
        (piece, score) for piece, score in vocab if piece not in ("<s>", "<pad>", "</s>", "<unk>")
    ]
    tok = Tokenizer(models.Unigram(vocab=pieces, unk_id=1, byte_fallback=False))
    tok.normalizer = xlmr.normalizer
    tok.pre_tokenizer = xlmr.pre_tokenizer
    tok.decoder = xlmr.decoder
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    tok.add_special_tokens([*specials, AddedToken("[MASK]", lstrip=True, special=True)])
    return AlbertTokenizerFast(
        tokenizer_object=tok,
        do_lower_case=False,
        keep_accents=True,
        bos_token="[CLS]",
        eos_token="[SEP]",
        unk_token="<unk>",
        sep_token="[SEP]",
        pad_token="<pad>",
        cls_token="[CLS]",
        mask_token="[MASK]",
    )


def _unigram_pieces(tok: Tokenizer) -> list[tuple[str, float]]:
    """(piece, score) of a Unigram tokenizer, in id order."""
    import json

    return [tuple(item) for item in json.loads(tok.to_str())["model"]["vocab"]]  # type: ignore[misc]


_TOKENIZER_BUILDERS: dict[str, Callable[[str, list[str]], PreTrainedTokenizerFast]] = {
    "wordpiece-cased": _wordpiece_tokenizer,
    "wordpiece-uncased": _wordpiece_tokenizer,
    "bpe-roberta": _roberta_tokenizer,
    "sentencepiece-xlmr": _xlmr_tokenizer,
    "sentencepiece-deberta": _deberta_tokenizer,
    "distilbert": lambda family, corpus: _wordpiece_tokenizer("wordpiece-cased", corpus),
    "modernbert": _modernbert_tokenizer,
    "electra": lambda family, corpus: _wordpiece_tokenizer("wordpiece-uncased", corpus),
    "albert": _albert_tokenizer,
    "gpt2": _gpt2_tokenizer,
}


def _make_config(
    family: str,
    tokenizer: PreTrainedTokenizerFast,
    labels: list[str],
    capacity: int,
) -> PretrainedConfig:
    """Build a tiny config of the family's architecture.

    ``capacity`` is the number of tokens (special tokens included) one window may hold.
    RoBERTa and XLM-R need two extra position rows because their position ids start at
    ``pad_token_id + 1`` = 2, exactly like the real checkpoints (512 usable, 514 rows).
    """
    id2label = dict(enumerate(labels))
    label2id = {label: i for i, label in enumerate(labels)}
    common = {
        "vocab_size": len(tokenizer),
        "hidden_size": _HIDDEN,
        "num_hidden_layers": _LAYERS,
        "num_attention_heads": _HEADS,
        "intermediate_size": _INTERMEDIATE,
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "pad_token_id": tokenizer.pad_token_id,
        "id2label": id2label,
        "label2id": label2id,
    }
    if family.startswith("wordpiece"):
        return BertConfig(max_position_embeddings=capacity, type_vocab_size=2, **common)
    if family == "bpe-roberta":
        return RobertaConfig(
            max_position_embeddings=capacity + 2,
            type_vocab_size=1,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **common,
        )
    if family == "sentencepiece-xlmr":
        return XLMRobertaConfig(
            max_position_embeddings=capacity + 2,
            type_vocab_size=1,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **common,
        )
    if family == "sentencepiece-deberta":
        # DeBERTa-v3 layout: relative attention only, no absolute position input and
        # no token-type embeddings.
        return DebertaV2Config(
            max_position_embeddings=capacity,
            type_vocab_size=0,
            relative_attention=True,
            position_buckets=16,
            max_relative_positions=-1,
            pos_att_type=["p2c", "c2p"],
            position_biased_input=False,
            norm_rel_ebd="layer_norm",
            share_att_key=True,
            layer_norm_eps=1e-7,
            **common,
        )
    if family == "distilbert":
        return DistilBertConfig(
            vocab_size=len(tokenizer),
            dim=_HIDDEN,
            n_layers=_LAYERS,
            n_heads=_HEADS,
            hidden_dim=_INTERMEDIATE,
            max_position_embeddings=capacity,
            pad_token_id=tokenizer.pad_token_id,
            id2label=id2label,
            label2id=label2id,
        )
    if family == "electra":
        return ElectraConfig(embedding_size=32, max_position_embeddings=capacity, **common)
    if family == "albert":
        return AlbertConfig(embedding_size=32, max_position_embeddings=capacity, **common)
    if family == "modernbert":
        return ModernBertConfig(
            vocab_size=len(tokenizer),
            hidden_size=_HIDDEN,
            num_hidden_layers=_LAYERS,
            num_attention_heads=_HEADS,
            intermediate_size=_INTERMEDIATE,
            max_position_embeddings=capacity,
            local_attention=16,
            global_attn_every_n_layers=2,
            pad_token_id=tokenizer.pad_token_id,
            cls_token_id=tokenizer.cls_token_id,
            sep_token_id=tokenizer.sep_token_id,
            bos_token_id=tokenizer.cls_token_id,
            eos_token_id=tokenizer.sep_token_id,
            id2label=id2label,
            label2id=label2id,
        )
    if family == "gpt2":
        return GPT2Config(
            vocab_size=len(tokenizer),
            n_embd=_HIDDEN,
            n_layer=_LAYERS,
            n_head=_HEADS,
            n_inner=_INTERMEDIATE,
            n_positions=capacity,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            id2label=id2label,
            label2id=label2id,
        )
    raise ValueError(f"unknown family {family!r}")


_MODEL_CLASSES: dict[str, type[PreTrainedModel]] = {
    "wordpiece-cased": BertForTokenClassification,
    "wordpiece-uncased": BertForTokenClassification,
    "bpe-roberta": RobertaForTokenClassification,
    "sentencepiece-xlmr": XLMRobertaForTokenClassification,
    "sentencepiece-deberta": DebertaV2ForTokenClassification,
    "distilbert": DistilBertForTokenClassification,
    "modernbert": ModernBertForTokenClassification,
    "electra": ElectraForTokenClassification,
    "albert": AlbertForTokenClassification,
    "gpt2": GPT2ForTokenClassification,
}


def _tag_for(label_type: str, begin: bool, label2id: dict[str, int]) -> int:
    """Pick the label id for a piece inside an entity of ``label_type``.

    IOB2 (``B-X``/``I-X``) is used when the label set has it; a bare ``X`` label is
    accepted too, so callers can train with non-IOB label sets. Anything the label set
    cannot express falls back to ``O``.
    """
    prefixed = f"{'B' if begin else 'I'}-{label_type}"
    if prefixed in label2id:
        return label2id[prefixed]
    if label_type in label2id:
        return label2id[label_type]
    return label2id["O"]


def word_piece_spans(
    text: str, offsets: list[tuple[int, int]], special_mask: list[int]
) -> list[Optional[tuple[int, int]]]:
    """The character span each piece stands for when labelling words.

    A piece holding only whitespace (a bare "▁" before "東京") or nothing marks the
    start of the word right after it, so it takes the span of the next piece with
    text when that text starts where the marker ends, as training with word ids does
    for real models. Special tokens, and markers not followed directly by text (the
    "Ġ" of an extra space), get ``None``.
    """
    following: Optional[tuple[int, int]] = None
    spans: list[Optional[tuple[int, int]]] = [None] * len(offsets)
    for k in range(len(offsets) - 1, -1, -1):
        if special_mask[k]:
            following = None
            continue
        start, end = offsets[k]
        content = text[start:end]
        if content.strip():
            lead = len(content) - len(content.lstrip())
            following = (start + lead, end)
            spans[k] = following
        elif following is not None and following[0] <= end:
            spans[k] = following
    return spans


# How a training script chose the pieces it labels ("recipes" of hub checkpoints):
# "all": every piece of a word; "word_ids": the first piece of each word, as
# `word_ids()` gives it (a bare "▁"/"Ġ" marker when the word starts with one);
# "offsets": the first piece of each word whose own text starts the word (a bare
# marker is never labelled, so its output is never trained).
RECIPES: tuple[str, ...] = ("all", "word_ids", "offsets")
# How entity labels are written when training: "iob2" (B- on every entity's first
# piece) or "iob1" (I- there, B- only for an entity right after one of its type).
TAGGINGS: tuple[str, ...] = ("iob2", "iob1")
_WORD = re.compile(r"\w+|[^\w\s]")


def _labelled_pieces(
    text: str, offsets: list[tuple[int, int]], spans: list[Optional[tuple[int, int]]], recipe: str
) -> list[bool]:
    """Which pieces a training recipe labels (words: runs of letters/digits, or
    one other non-space character, as CoNLL-style word lists have them)."""
    if recipe == "all":
        return [span is not None for span in spans]
    word_of = {}
    for index, match in enumerate(_WORD.finditer(text)):
        for char in range(match.start(), match.end()):
            word_of[char] = index
    seen: set[int] = set()
    out = []
    for (start, end), span in zip(offsets, spans):
        own_text = bool(text[start:end].strip())
        eligible = span is not None and (recipe == "word_ids" or own_text)
        word = word_of.get(span[0]) if span is not None else None
        out.append(eligible and word is not None and word not in seen)
        if out[-1]:
            seen.add(word)
    return out


def _piece_labels(
    text: str,
    offsets: list[tuple[int, int]],
    special_mask: list[int],
    spans: list[tuple[int, int, str]],
    label2id: dict[str, int],
    recipe: str = "all",
    tagging: str = "iob2",
) -> list[int]:
    """Label subwords from character spans (`tagging`: IOB2 or IOB1); -100 for
    specials/padding and the pieces the `recipe` leaves out.

    A piece belongs to an entity when its span (see :func:`word_piece_spans`) overlaps
    the entity's characters, so a leading-space-inclusive offset like Metaspace's
    " Paris" still counts. In IOB2 the first overlapping piece gets ``B-``; in IOB1
    only when the entity directly follows one of its type (only spaces between),
    else ``I-``, as CoNLL-2003's own files have it.
    """
    labels: list[int] = []
    started: set[int] = set()
    piece_spans = word_piece_spans(text, offsets, special_mask)
    labelled = _labelled_pieces(text, offsets, piece_spans, recipe)
    for span, keep in zip(piece_spans, labelled):
        if span is None or not keep:
            labels.append(-100)
            continue
        start, end = span
        tag = label2id["O"]
        for index, (ent_start, ent_end, label_type) in enumerate(spans):
            if start < ent_end and end > ent_start:
                begin = index not in started
                if tagging == "iob1":
                    before = spans[index - 1] if index else None
                    begin = begin and (
                        before is not None
                        and before[2] == label_type
                        and not text[before[1] : ent_start].strip()
                    )
                tag = _tag_for(label_type, begin, label2id)
                started.add(index)
                break
        labels.append(tag)
    return labels


def _train(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    capacity: int,
    steps: int,
    recipe: str = "all",
    tagging: str = "iob2",
    data: str = "default",
) -> None:
    """Fine-tune ``model`` in place until it memorises :func:`training_sentences`,
    labelling the pieces `recipe` names (see RECIPES) in `tagging` (see TAGGINGS).

    Full-batch AdamW on ~25 short sentences (about 60 steps suffice; the longest needs
    27 tokens, so with the default capacity of 32 every sentence is one window). The
    model stays in ``eval()`` mode while training: dropout off makes memorisation fast
    and the result deterministic for a given seed, while the saved config keeps
    realistic dropout for callers that train.
    """
    label2id: dict[str, int] = dict(model.config.label2id)
    if "O" not in label2id:
        raise ValueError("training needs an 'O' label in the label set")
    sentences = training_sentences(data)
    if tokenizer.pad_token is None:  # GPT-2: pad with any id, the mask hides it
        tokenizer = copy.deepcopy(tokenizer)
        tokenizer.pad_token = tokenizer.eos_token
    # Long sentences (or a tiny ``model_max_length``) are cut into overlapping windows
    # exactly as inference would see them, so any usable capacity can still be trained.
    encoded = tokenizer(
        [text for text, _ in sentences],
        padding=True,
        truncation=True,
        max_length=capacity,
        stride=max(0, (capacity - 3) // 4),
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        return_tensors="pt",
    )
    label_rows: list[list[int]] = []
    for row, sentence in enumerate(encoded["overflow_to_sample_mapping"].tolist()):
        offsets = [(int(s), int(e)) for s, e in encoded["offset_mapping"][row].tolist()]
        special = encoded["special_tokens_mask"][row].tolist()
        text, spans = sentences[sentence]
        label_rows.append(_piece_labels(text, offsets, special, spans, label2id, recipe, tagging))
    labels = torch.tensor(label_rows, dtype=torch.long)
    labels[encoded["attention_mask"] == 0] = -100
    accepted = inspect.signature(model.forward).parameters
    inputs = {
        key: value
        for key, value in encoded.items()
        if key in ("input_ids", "attention_mask", "token_type_ids") and key in accepted
    }
    optimizer = torch.optim.AdamW(model.parameters(), lr=_LEARNING_RATE, weight_decay=0.0)
    model.eval()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model(**inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
    model.eval()


def build_tiny_model(
    family: str,
    out_dir: Path,
    labels: list[str] = NER_LABELS,
    *,
    model_max_length: Optional[int] = 32,
    train_steps: int = 0,
    seed: int = 0,
    recipe: str = "all",
    tagging: str = "iob2",
    data: str = "default",
) -> Path:
    """Build, optionally train, and save a tiny token-classification model.

    ``out_dir`` receives ``config.json``, ``model.safetensors`` and the fast tokenizer
    files, so ``AutoTokenizer.from_pretrained(out_dir)`` and
    ``AutoModelForTokenClassification.from_pretrained(out_dir)`` work offline.
    ``labels`` become ``config.id2label``/``label2id`` in the given order.

    ``model_max_length`` is written to the tokenizer (special tokens included); ``None``
    keeps the ``VERY_LARGE_INTEGER`` sentinel so callers must fall back to
    ``config.max_position_embeddings`` (32 usable positions, plus 2 for RoBERTa/XLM-R).
    ``train_steps > 0`` fine-tunes the model on :func:`training_sentences`; about 60
    steps memorise them (100 leaves a margin) in a few seconds on one CPU core,
    with entity labels written in ``tagging`` (``TAGGINGS``: IOB2 or IOB1);
    ``data`` names the sentences (``DATA_SETS``; "subtoken": entities inside words).
    Vocabularies are learned deterministically and all randomness comes from ``seed``
    (drawn from a forked RNG, so the caller's global torch RNG is untouched): the same
    arguments give byte-identical files. Returns ``out_dir``.
    """
    if family not in _TOKENIZER_BUILDERS:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES + ARCHITECTURES}")
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; expected one of {RECIPES}")
    if tagging not in TAGGINGS:
        raise ValueError(f"unknown tagging {tagging!r}; expected one of {TAGGINGS}")
    if len(set(labels)) != len(labels) or not labels:
        raise ValueError(f"labels must be non-empty and unique, got {labels!r}")
    if model_max_length is not None and model_max_length < 4:
        raise ValueError("model_max_length must leave room for special tokens and text")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    capacity = _SENTINEL_CAPACITY if model_max_length is None else model_max_length

    if data not in DATA_SETS:
        raise ValueError(f"unknown data set {data!r}; expected one of {DATA_SETS}")
    tokenizer = _TOKENIZER_BUILDERS[family](family, _corpus(data))
    if model_max_length is not None:
        tokenizer.model_max_length = model_max_length

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(_TORCH_THREADS)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            config = _make_config(family, tokenizer, list(labels), capacity)
            model = _MODEL_CLASSES[family](config)
            if train_steps > 0:
                _train(model, tokenizer, capacity, train_steps, recipe, tagging, data)
        model.eval()
        with _no_progress_bars():
            model.save_pretrained(out_dir, safe_serialization=True)
    finally:
        torch.set_num_threads(previous_threads)
    tokenizer.save_pretrained(out_dir)
    return out_dir


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """transformers 5 draws a progress bar for every save; builds are not news."""
    from transformers.utils import logging as hf_logging

    active = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if active:
            hf_logging.enable_progress_bar()
