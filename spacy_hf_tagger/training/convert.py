"""Convert CoNLL/IOB and CoNLL-U files to `.spacy` training data, one Doc per sentence.

    python -m spacy_hf_tagger.convert iob  IN.conll OUT.spacy
    python -m spacy_hf_tagger.convert conllu IN.conllu OUT.spacy

`iob`: one token per line, the word in the first column and the NER tag in the
last (space- or tab-separated; CoNLL-2003, WNUT-17, NCBI-disease); blank lines
end sentences; `-DOCSTART-` lines are skipped. IOB1 and IOB2 both decode
with the conlleval rule. `conllu`: syntactic words (integer ids) with UPOS
and XPOS; the sentence's `# text =` and `SpaceAfter=No` give the spacing.
spaCy's own `spacy convert -c ner` groups whole documents into one Doc, which
is the wrong unit for batching sentences, hence this module.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

from spacy.tokens import Doc, DocBin, Span
from spacy.vocab import Vocab

Sentence = List[Tuple[str, str]]


def read_iob(path: Path) -> Iterator[Sentence]:
    """Sentences of (word, tag) from a column file."""
    sentence: Sentence = []
    with path.open(encoding="utf8") as lines:
        for line in lines:
            cols = line.split()
            if not cols:
                if sentence:
                    yield sentence
                sentence = []
                continue
            if cols[0] == "-DOCSTART-":
                continue
            if len(cols) < 2:
                raise ValueError(f"{path}: line {line!r} has no tag column")
            sentence.append((cols[0], cols[-1]))
    if sentence:
        yield sentence


def iob_entities(tags: List[str]) -> List[Tuple[int, int, str]]:
    """Entity spans (start, end, type) with the conlleval rule (IOB1 and IOB2)."""
    spans: List[Tuple[int, int, str]] = []
    start: Optional[int] = None
    current = ""
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, type_ = tag.partition("-")
        begins = prefix == "B" or (prefix == "I" and type_ != current)
        if tag == "O" or begins:
            if start is not None:
                spans.append((start, i, current))
            start, current = (i, type_) if begins else (None, "")
    return spans


def iob_docs(path: Path, vocab: Vocab) -> Iterator[Doc]:
    for sentence in read_iob(path):
        words = [w for w, _ in sentence]
        doc = Doc(vocab, words=words, spaces=[True] * (len(words) - 1) + [False])
        doc.ents = [Span(doc, s, e, label=t) for s, e, t in iob_entities([t for _, t in sentence])]
        yield doc


def conllu_docs(path: Path, vocab: Vocab) -> Iterator[Doc]:
    words: List[str] = []
    spaces: List[bool] = []
    pos: List[str] = []
    tags: List[str] = []
    with path.open(encoding="utf8") as lines:
        for line in [*lines, "\n"]:
            line = line.rstrip("\n")
            if not line.strip():
                if words:
                    spaces[-1] = False
                    yield Doc(vocab, words=words, spaces=spaces, pos=pos, tags=tags)
                words, spaces, pos, tags = [], [], [], []
                continue
            if line.startswith("#"):
                continue
            cols = line.split("\t")
            if not cols[0].isdigit():
                continue  # multiword ranges (3-4) and empty nodes (8.1)
            words.append(cols[1])
            pos.append(cols[3])
            tags.append(cols[4])
            spaces.append("SpaceAfter=No" not in cols[9])


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("format", choices=["iob", "conllu"])
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--limit", type=int, default=0, help="keep the first N sentences")
    args = parser.parse_args(argv)
    vocab = Vocab()
    docs = (iob_docs if args.format == "iob" else conllu_docs)(args.input, vocab)
    bin_ = DocBin(store_user_data=False)
    n = 0
    for doc in docs:
        bin_.add(doc)
        n += 1
        if args.limit and n >= args.limit:
            break
    args.output.parent.mkdir(parents=True, exist_ok=True)
    bin_.to_disk(args.output)
    print(f"{args.input} -> {args.output}: {n} sentences")


if __name__ == "__main__":
    main()
