"""The spaCy CLI end to end: assemble, package (and install), convert + evaluate.

Why: users meet the component through `spacy assemble/package/evaluate` and the
shipped configs, each in a fresh interpreter that finds the factory and scorer
only through entry points. These tests run the real commands as subprocesses
on tiny models (and, where ../shared exists, on the real CoNLL-2003 model).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
import venv
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest
import spacy
from spacy.training import Corpus
from tiny_models import training_sentences

from spacy_hf_tagger.labels.schemes import UPOS_TAGS
from spacy_hf_tagger.training.convert import convert_file

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TRAIN_STEPS = 100
UPOS = sorted(UPOS_TAGS)

# A few sentences in CoNLL-U, with UPOS; SpaceAfter=No and a multiword range line.
CONLLU = """\
# sent_id = 1
# text = Sarah lives in Paris.
1\tSarah\tSarah\tPROPN\tNNP\t_\t2\tnsubj\t_\t_
2\tlives\tlive\tVERB\tVBZ\t_\t0\troot\t_\t_
3\tin\tin\tADP\tIN\t_\t4\tcase\t_\t_
4\tParis\tParis\tPROPN\tNNP\t_\t2\tobl\t_\tSpaceAfter=No
5\t.\t.\tPUNCT\t.\t_\t2\tpunct\t_\t_

# sent_id = 2
# text = Peter can't find the office.
1\tPeter\tPeter\tPROPN\tNNP\t_\t4\tnsubj\t_\t_
2-3\tcan't\t_\t_\t_\t_\t_\t_\t_\t_
2\tca\tcan\tAUX\tMD\t_\t4\taux\t_\tSpaceAfter=No
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
4\tfind\tfind\tVERB\tVB\t_\t0\troot\t_\t_
5\tthe\tthe\tDET\tDT\t_\t6\tdet\t_\t_
6\toffice\toffice\tNOUN\tNN\t_\t4\tobj\t_\tSpaceAfter=No
7\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

# sent_id = 3
# text = Emma and Liam met in Rome.
1\tEmma\tEmma\tPROPN\tNNP\t_\t4\tnsubj\t_\t_
2\tand\tand\tCCONJ\tCC\t_\t3\tcc\t_\t_
3\tLiam\tLiam\tPROPN\tNNP\t_\t1\tconj\t_\t_
4\tmet\tmeet\tVERB\tVBD\t_\t0\troot\t_\t_
5\tin\tin\tADP\tIN\t_\t6\tcase\t_\t_
6\tRome\tRome\tPROPN\tNNP\t_\t4\tobl\t_\tSpaceAfter=No
7\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

"""


def cli_env(threads: Optional[int] = 1) -> Dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run(
    args: Sequence[str],
    *,
    cwd: Path = REPO,
    env: Optional[Dict[str, str]] = None,
    timeout: int = 600,
    check: bool = True,
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert proc.returncode == 0, (
            f"{' '.join(map(str, args))} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
        )
    return proc


def spacy_cli(*args: object, **kwargs) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "spacy", *map(str, args)], **kwargs)


def write_iob(path: Path) -> None:
    """The tiny models' training sentences as CoNLL-2003-like columns (word ... NER)."""
    nlp = spacy.blank("en")
    lines: List[str] = ["-DOCSTART- -X- -X- O", ""]
    for text, ents in training_sentences():
        doc = nlp.make_doc(text)
        doc.ents = [doc.char_span(s, e, label=label) for s, e, label in ents]
        for token in doc:
            if token.is_space:
                continue
            tag = token.ent_iob_ if token.ent_iob_ == "O" else f"{token.ent_iob_}-{token.ent_type_}"
            lines.append(f"{token.text} _ _ {tag}")
        lines.append("")
    path.write_text("\n".join(lines) + "\n", "utf8")


@pytest.fixture(scope="module")
def ner_model(tiny_models) -> Path:
    return tiny_models("wordpiece-cased", train_steps=TRAIN_STEPS)


@pytest.fixture(scope="module")
def assembled(ner_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("assemble") / "ner"
    spacy_cli(
        "assemble",
        "configs/ner_inference.cfg",
        out,
        "--components.hf_token_tagger.model",
        ner_model,
    )
    return out


# --- assemble -------------------------------------------------------------------------


def test_assemble_ner_inference_config(assembled, ner_model):
    nlp = spacy.load(assembled)
    assert nlp.pipe_names == ["entity_ruler", "hf_token_tagger"]
    comp_dir = assembled / "hf_token_tagger"
    assert (comp_dir / "model" / "model.safetensors").is_file()
    cfg = json.loads((comp_dir / "cfg.json").read_text("utf8"))
    assert cfg["model"] == str(ner_model)
    assert cfg["annotate"] == ["ents", "spans"]

    # The ruler's example patterns work, and its entities survive the model.
    doc = nlp("Explosion AI makes spaCy.")
    ents = [(e.text, e.label_) for e in doc.ents]
    assert ("Explosion AI", "ORG") in ents
    assert ("spaCy", "PRODUCT") in ents
    # The (memorising) model still labels what the rules don't cover.
    doc = nlp("My name is Sarah and I live in Paris.")
    assert [(e.text, e.label_) for e in doc.ents] == [("Sarah", "PER"), ("Paris", "LOC")]
    assert [t._.hf_bio for t in doc][3] == "B-PER"
    assert [s.text for s in doc.spans["hf_ents"]] == ["Sarah", "Paris"]


# --- package --------------------------------------------------------------------------


@dataclass
class Packaged:
    wheel: Path
    by_spacy: bool  # False: spaCy could not build it, built here with pip instead
    spacy_output: str


@pytest.fixture(scope="module")
def packaged(assembled, tmp_path_factory) -> Packaged:
    root = tmp_path_factory.mktemp("package")
    pkgs = root / "packages"
    pkgs.mkdir()
    args = ["package", assembled, pkgs, "--name", "tinytest", "--version", "0.0.1"]
    proc = spacy_cli(*args, "--build", "wheel", "--force", check=False)
    output = proc.stdout + proc.stderr
    wheels = sorted(pkgs.glob("en_tinytest-0.0.1/dist/*.whl"))
    if proc.returncode == 0 and wheels:
        return Packaged(wheels[0], True, output)
    # Build the same package directory without a wheel, then the wheel with pip, offline.
    spacy_cli(*args, "--build", "none", "--force")
    dist = root / "dist"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--no-cache-dir",
            "-w",
            dist,
            pkgs / "en_tinytest-0.0.1",
        ]
    )
    return Packaged(next(dist.glob("en_tinytest-0.0.1-*.whl")), False, output)


def test_spacy_package_builds_a_wheel(packaged):
    """Needs `wheel` (a dependency: spaCy refuses --build wheel without wheel or build)."""
    assert packaged.by_spacy, packaged.spacy_output[-2000:]
    assert packaged.wheel.name == "en_tinytest-0.0.1-py3-none-any.whl"


def test_packaged_wheel_loads_in_a_fresh_venv(packaged, tmp_path):
    assert importlib.util.find_spec("en_tinytest") is None  # not in this environment
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=False, symlinks=os.name != "nt").create(
        env_dir
    )
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site_dir = Path(
        run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
        ).stdout.strip()
    )
    # Make this environment's packages (spaCy, torch, the plugin: an editable install
    # whose .pth hook must run, hence addsitedir) visible behind the venv's own.
    here = sysconfig.get_paths()
    dirs = dict.fromkeys([here["purelib"], here["platlib"]])
    (site_dir / "_parent_env.pth").write_text(
        "".join(f"import site; site.addsitedir({d!r})\n" for d in dirs), "utf8"
    )
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "--no-deps",
            "--no-index",
            "--no-cache-dir",
            packaged.wheel,
        ]
    )
    script = (
        "import json, spacy, en_tinytest\n"
        "nlp = spacy.load('en_tinytest')\n"
        "docs = nlp.pipe(['My name is Sarah and I live in Paris.', 'Explosion AI makes spaCy.'])\n"
        "print(json.dumps({'file': en_tinytest.__file__, 'pipes': nlp.pipe_names,\n"
        "  'ents': [[e.text, e.label_] for doc in docs for e in doc.ents]}))\n"
    )
    out = run([python, "-c", script], cwd=tmp_path).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert Path(result["file"]).resolve().is_relative_to(env_dir.resolve())
    assert result["pipes"] == ["entity_ruler", "hf_token_tagger"]
    assert result["ents"] == [
        ["Sarah", "PER"],
        ["Paris", "LOC"],
        ["Explosion AI", "ORG"],
        ["spaCy", "PRODUCT"],
    ]


# --- convert + evaluate ---------------------------------------------------------------


def test_convert_iob_and_evaluate_entities(assembled, tmp_path):
    iob = tmp_path / "tiny.iob"
    write_iob(iob)
    corpus = tmp_path / "tiny.spacy"
    run([sys.executable, "-m", "spacy_hf_tagger", "convert", "iob", iob, corpus])
    metrics = tmp_path / "metrics.json"
    spacy_cli("evaluate", assembled, corpus, "--output", metrics)
    scores = json.loads(metrics.read_text("utf8"))
    for key in ("ents_p", "ents_r", "ents_f"):
        assert isinstance(scores[key], float), key
    assert set(scores["ents_per_type"]) == {"PER", "LOC", "ORG"}
    # The model memorised these sentences: re-joined with spaces they stay easy.
    assert scores["ents_f"] > 0.8, scores


@pytest.fixture(scope="module")
def upos_model(tiny_models) -> Path:
    return tiny_models("wordpiece-cased", labels=UPOS)


def test_assemble_tagger_convert_conllu_and_evaluate_pos(upos_model, tmp_path):
    out = tmp_path / "tagger"
    spacy_cli(
        "assemble",
        "configs/tagger_inference.cfg",
        out,
        "--components.hf_token_tagger.model",
        upos_model,
    )
    conllu = tmp_path / "tiny.conllu"
    conllu.write_text(CONLLU, "utf8")
    corpus = tmp_path / "tiny.spacy"
    convert_file("conllu", conllu, corpus)  # the CLI itself: the iob test
    # What `spacy evaluate` does (its CLI is run in the iob test): Corpus + nlp.evaluate.
    nlp = spacy.load(out)
    examples = list(Corpus(corpus)(nlp))
    assert [len(eg.reference) for eg in examples] == [5, 7, 7]
    scores = nlp.evaluate(examples)
    # The score is exactly the share of tokens whose predicted pos_ is the gold one.
    predicted = [nlp(eg.reference.text) for eg in examples]
    pairs = [
        (p.pos_, g.pos_) for doc, eg in zip(predicted, examples) for p, g in zip(doc, eg.reference)
    ]
    assert scores["pos_acc"] == pytest.approx(sum(p == g for p, g in pairs) / len(pairs))
    assert scores.get("ents_f") is None
    doc = nlp("Sarah lives in Paris.")
    assert all(t.pos_ in UPOS_TAGS for t in doc)
    assert [t._.hf_bio for t in doc] == [t.pos_ for t in doc]


# --- the real model on CoNLL-2003 test (../shared) -------------------------------------

REFERENCE_F1 = 86.39  # minilm-conll03 on gold words, from ../shared/models/README.md


@pytest.mark.shared
def test_minilm_conll03_testb_entity_f1(shared_dir, tmp_path):
    model = shared_dir / "models" / "minilm-conll03"
    testb = shared_dir / "data" / "conll2003" / "eng.testb"
    if not model.is_dir() or not testb.is_file():
        pytest.skip(f"needs {model} and {testb}")
    corpus = tmp_path / "testb.spacy"
    convert_file("iob", testb, corpus)
    out = tmp_path / "ner"
    spacy_cli(
        "assemble", "configs/ner_inference.cfg", out, "--components.hf_token_tagger.model", model
    )
    # What `spacy evaluate` does (its CLI is run in the iob test), without another process.
    # The default decode (auto: strict IOB2 for this IOB2 model) must gain 0.5 F1
    # on the model's own quality; greedy must stay within 0.5 of it (alignment).
    f1 = {}
    for decoding in ("auto", "greedy"):
        nlp = spacy.load(out, config={"components": {"hf_token_tagger": {"decoding": decoding}}})
        f1[decoding] = nlp.evaluate(Corpus(corpus)(nlp))["ents_f"] * 100
    print(f"minilm-conll03 eng.testb ents_f = {f1} (gold-word reference {REFERENCE_F1})")
    assert f1["auto"] >= REFERENCE_F1 + 0.5, f1
    assert abs(f1["greedy"] - REFERENCE_F1) <= 0.5, f1
