"""Convert CoNLL/IOB and CoNLL-U files to `.spacy` training data, one Doc per sentence.

    python -m spacy_hf_tagger convert iob  IN.conll OUT.spacy
    python -m spacy_hf_tagger convert conllu IN.conllu OUT.spacy

`iob`: one token per line, the word in the first column and the NER tag in the
last (space- or tab-separated; CoNLL-2003, WNUT-17, NCBI-disease); blank lines
end sentences; `-DOCSTART-` lines are skipped. IOB1 and IOB2 both decode
with the conlleval rule. `conllu`: syntactic words (integer ids) with UPOS
and XPOS; `SpaceAfter=No` gives the spacing (comment lines, `# text =`
included, are not read).
spaCy's own `spacy convert -c ner` groups whole documents into one Doc, which
is the wrong unit for batching sentences, hence this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, List, Tuple

from spacy.tokens import Doc, DocBin, Span
from spacy.vocab import Vocab

from ..labels.schemes import spans_of_tags

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


def iob_docs(path: Path, vocab: Vocab) -> Iterator[Doc]:
    for sentence in read_iob(path):
        words = [w for w, _ in sentence]
        doc = Doc(vocab, words=words, spaces=[True] * (len(words) - 1) + [False])
        doc.ents = [Span(doc, s, e, label=t) for s, e, t in spans_of_tags([t for _, t in sentence])]
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


FORMATS = ("iob", "conllu")


def convert_file(file_format: str, source: Path, output: Path, limit: int = 0) -> int:
    """Write the sentences of `source` (the first `limit`, 0 = all) to `output`
    as a DocBin; return how many were written."""
    if file_format not in FORMATS:
        raise ValueError(f"format {file_format!r} is not known: use one of {FORMATS}.")
    vocab = Vocab()
    docs = (iob_docs if file_format == "iob" else conllu_docs)(source, vocab)
    bin_ = DocBin(store_user_data=False)
    n = 0
    for doc in docs:
        bin_.add(doc)
        n += 1
        if limit and n >= limit:
            break
    output.parent.mkdir(parents=True, exist_ok=True)
    bin_.to_disk(output)
    return n
