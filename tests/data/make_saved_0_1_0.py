"""How tests/data/saved_0_1_0 and saved_0_1_0_expected.json were made.

Documentation, not part of the test suite (pytest collects only ``test_*.py``).
The fixture must come from the 0.1.0 release code, not from whatever the working
tree holds, so the script is run from a checkout of that release::

    git worktree add /tmp/release ac326ae
    mkdir -p /tmp/release/tests/data
    cp tests/data/make_saved_0_1_0.py /tmp/release/tests/data/
    cd /tmp/release
    # the release's entry points (an editable install of a newer tree may name
    # modules the release does not have): a plain install of the release
    python -m pip install --no-deps --no-build-isolation --target /tmp/release_site .
    PYTHONPATH=/tmp/release:/tmp/release_site python tests/data/make_saved_0_1_0.py \\
        --release-root /tmp/release --out <repo>/tests/data
    git worktree remove --force /tmp/release; rm -rf /tmp/release_site

``PYTHONPATH`` puts the release's ``spacy_hf_tagger`` ahead of an editable install
(``--release-root`` makes the script check that it did), and its package metadata
(entry points: the factory, the scorer) ahead of the installed one. ``tiny_models``
is imported from the ``tests/`` folder next to this script, so from the release
checkout too.

Steps: build a tiny trained WordPiece BIO entity model with the release's
``tests/tiny_models.py`` (seed 0, deterministic), build ``blank("en")`` +
``entity_ruler`` + ``hf_token_tagger``, run it once, ``nlp.to_disk``; then, in a
fresh process, ``spacy.load`` the saved folder and record its output on TEXTS.
Only public API is used: spaCy finds the factory through its entry point.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import spacy

RELEASE = "0.1.0"
COMMIT = "ac326ae"
PIPELINE_DIR = "saved_0_1_0"
EXPECTED_FILE = "saved_0_1_0_expected.json"
MODEL_NAME = "tiny-wordpiece-ner"  # relative: the saved config.cfg names no real folder

# Settings given to hf_token_tagger; the test checks they survive in nlp.config.
TAGGER_CONFIG = {
    "model": MODEL_NAME,
    "dtype": "float32",
    "device": "cpu",
    "label_map": {"PER": "PERSON"},
    "threshold": 0.7,
    "errors": "ignore",
}
RULER_PATTERNS = [{"label": "GPE", "pattern": "Paris"}]

# Written for this fixture. A long text (several windows: the tiny tokenizer has
# model_max_length 32), punctuation glued to words, an empty string, newlines, and
# "Paris", which the entity_ruler labels GPE before the model sees it.
TEXTS = [
    "Sarah flew from London to New York with Maria Garcia.",
    "Emma and Liam met Peter in Rome on Monday, then John Smith drove them from "
    "Lyon to Marseille, where Anna Müller of Initech and Bob Jones of Acme Corp. "
    "waited near the old harbour until David called from Berlin to say that the "
    "Red Cross office in Vienna would stay open late.",
    "Hi,Sarah!Meet John(Smith)in Berlin...ok?Initech's-office:Munich;Globex/Zürich",
    "",
    "John Smith\nvisited Berlin.\n\nAcme Corp. hired Anna\nin Vienna.",
    "Lisa lives in Paris, but Tom works for Microsoft in Seattle.",
]


def _r(value):
    return None if value is None else round(float(value), 5)


def _check_release(release_root: Path | None) -> None:
    spec = importlib.util.find_spec("spacy_hf_tagger")
    origin = Path(spec.origin).resolve() if spec and spec.origin else None
    print(f"spacy_hf_tagger from {origin}", file=sys.stderr)
    for group in ("spacy_factories", "spacy_scorers"):
        for entry in importlib.metadata.entry_points(group=group):
            if entry.value.startswith("spacy_hf_tagger"):
                print(f"entry point {entry.name} = {entry.value}", file=sys.stderr)
    if release_root is not None and (
        origin is None or release_root.resolve() not in origin.parents
    ):
        sys.exit(f"spacy_hf_tagger is {origin}, not from {release_root}: set PYTHONPATH")


def build(out: Path, work: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tiny_models import NER_LABELS, build_tiny_model

    home = Path.cwd()
    os.chdir(work)  # MODEL_NAME is relative to the working folder
    try:
        build_tiny_model("wordpiece-cased", Path(MODEL_NAME), NER_LABELS, train_steps=100, seed=0)
        nlp = spacy.blank("en")
        ruler = nlp.add_pipe("entity_ruler")
        ruler.add_patterns(RULER_PATTERNS)
        nlp.add_pipe("hf_token_tagger", config=TAGGER_CONFIG)
        list(nlp.pipe(TEXTS))  # loads the model from MODEL_NAME and runs it once
    finally:
        os.chdir(home)
    target = out / PIPELINE_DIR
    if target.exists():
        shutil.rmtree(target)
    nlp.to_disk(target)


def record(out: Path) -> None:
    nlp = spacy.load(out / PIPELINE_DIR)
    spans_key = nlp.config["components"]["hf_token_tagger"]["spans_key"]
    docs = []
    for text in TEXTS:
        doc = nlp(text)
        group = doc.spans[spans_key] if spans_key in doc.spans else []
        group_scores = group.attrs.get("scores", [None] * len(group)) if group else []
        docs.append(
            {
                "text": text,
                "ents": [[e.start_char, e.end_char, e.label_, _r(e._.hf_score)] for e in doc.ents],
                "bio": [t._.hf_bio for t in doc],
                "token_scores": [_r(t._.hf_score) for t in doc],
                "spans": [
                    [s.start_char, s.end_char, s.label_, _r(score)]
                    for s, score in zip(group, group_scores)
                ],
            }
        )
    expected = {
        "release": RELEASE,
        "commit": COMMIT,
        "made_by": "tests/data/make_saved_0_1_0.py",
        "pipeline": PIPELINE_DIR,
        "pipe_names": list(nlp.pipe_names),
        "tagger_config": TAGGER_CONFIG,
        "spans_key": spans_key,
        "docs": docs,
    }
    text = json.dumps(expected, indent=1, ensure_ascii=False) + "\n"
    (out / EXPECTED_FILE).write_text(text, encoding="utf8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="tests/data of the repository")
    parser.add_argument("--release-root", type=Path, help="the release checkout on PYTHONPATH")
    parser.add_argument("--step", choices=["all", "record"], default="all")
    args = parser.parse_args()
    out = args.out.resolve()
    _check_release(args.release_root)
    if args.step == "all":
        with tempfile.TemporaryDirectory() as work:
            build(out, Path(work))
        # Expected output comes from the saved folder, loaded in a fresh process.
        command = [sys.executable, str(Path(__file__).resolve()), "--out", str(out)]
        if args.release_root is not None:
            command += ["--release-root", str(args.release_root)]
        subprocess.run([*command, "--step", "record"], check=True)
    else:
        record(out)


if __name__ == "__main__":
    main()
