"""Annotate texts with a saved pipeline and write a displaCy HTML page.

    python scripts/annotate.py PIPELINE TEXTS.txt OUT.html

One text per line. Prints each text's entities with their scores.
"""

from __future__ import annotations

import sys
from pathlib import Path

import spacy
from spacy import displacy


def main(pipeline: str, texts_path: str, out_path: str) -> None:
    nlp = spacy.load(pipeline)
    texts = [t for t in Path(texts_path).read_text("utf8").splitlines() if t.strip()]
    docs = list(nlp.pipe(texts))
    for doc in docs:
        ents = ", ".join(f"{e.text} [{e.label_} {e._.hf_score:.2f}]" for e in doc.ents)
        print(f"{doc.text}\n    -> {ents or '(none)'}")
    html = displacy.render(docs, style="ent", page=True, jupyter=False)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    Path(out_path).write_text(html, "utf8")
    print(f"Wrote {out_path}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
