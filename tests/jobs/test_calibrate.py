"""`python -m spacy_hf_tagger calibrate PIPELINE DEV OUTPUT_DIR`: the written
pipeline, the printed figures (checked against ECE computed here from what
each pipeline writes), the diagram, and the errors a person can make."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any, Callable, List, Tuple

import numpy as np
import pytest
import spacy
from spacy.tokens import Doc, DocBin, Span
from tiny_models import training_sentences

from spacy_hf_tagger.calibration.collect import collect
from spacy_hf_tagger.calibration.fitting import entity_scores
from spacy_hf_tagger.calibration.reliability import expected_calibration_error
from spacy_hf_tagger.cli import main

pytest.importorskip("scipy", reason="calibrate needs scipy (the `calibrate` extra)")
TYPES = ["PER", "LOC", "ORG"]


def _dev_docs(wrong_every: int = 3) -> List[Doc]:
    """The sentences the tiny model memorised, with the first gold entity of
    every `wrong_every`-th one given another type: the model is then sure of
    entities that are wrong, as a real one is on data unlike its training."""
    nlp = spacy.blank("en")
    docs = []
    for k, (text, spans) in enumerate(training_sentences()):
        doc = nlp.make_doc(text)
        ents = []
        for j, (start, end, label) in enumerate(spans):
            if j == 0 and k % wrong_every == 0:
                label = TYPES[(TYPES.index(label) + 1) % 3]
            ents.append(doc.char_span(start, end, label=label))
        doc.ents = ents
        docs.append(doc)
    return docs


def _write(docs: List[Doc], path: Path) -> Path:
    DocBin(docs=docs).to_disk(path)
    return path


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(_dev_docs(), tmp_path_factory.mktemp("calibrate") / "dev.spacy")


def _run(capsys: pytest.CaptureFixture[str], *args: Any) -> Tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(["calibrate", *map(str, args)])
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def _figure(pattern: str, out: str) -> Tuple[float, ...]:
    match = re.search(pattern, out)
    assert match, f"{pattern!r} not in:\n{out}"
    return tuple(float(g) for g in match.groups())


def _ece_of(nlp, docs: List[Doc]) -> Tuple[float, list]:
    """ECE of the entities `nlp` writes to its spans group, judged here."""
    scores, right, found = [], [], []
    for gold in docs:
        doc = nlp(gold.text)
        truth = {(e.start_char, e.end_char, e.label_) for e in gold.ents}
        group = doc.spans["hf_ents"]
        found.append([(s.start_char, s.end_char, s.label_) for s in doc.ents])
        for span, score in zip(group, group.attrs["scores"]):
            scores.append(score)
            right.append((span.start_char, span.end_char, span.label_) in truth)
    return expected_calibration_error(np.array(scores), np.array(right)), found


def test_calibrate_writes_the_pipeline_prints_ece_and_draws(
    model: Path, dev: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib (the `calibrate` extra)")
    out_dir, png = tmp_path / "calibrated", tmp_path / "plots" / "reliability.png"
    code, out, err = _run(capsys, model, dev, out_dir, "--eval", dev, "--plot", png)
    assert code == 0, err
    (temperature,) = _figure(r"temperature 1 -> ([\d.]+) \(fit: entity objective\)", out)
    assert temperature > 1.0  # the model is over-confident on this dev set
    before, after = _figure(r"dev .*\n.*ECE \(10 bins\): ([\d.]+) before -> ([\d.]+) after", out)
    assert after < before
    assert "25 docs, 56 gold entities, 56 predicted, 48 right" in out
    assert "0 decoded, 0 written, of 25" in out

    assert sorted(p.name for p in out_dir.iterdir()) == [
        "config.cfg", "hf_token_tagger", "meta.json", "tokenizer", "vocab"
    ]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"reliability diagram -> {png}" in out
    calibrated = spacy.load(out_dir)
    assert calibrated.get_pipe("hf_token_tagger").cfg["temperature"] == temperature
    plain = spacy.load(out_dir, config={"components.hf_token_tagger.temperature": 1.0})
    docs = _dev_docs()
    ece_before, ents_before = _ece_of(plain, docs)
    ece_after, ents_after = _ece_of(calibrated, docs)
    assert ents_after == ents_before
    assert (round(ece_before, 4), round(ece_after, 4)) == (before, after)
    eval_before, eval_after = _figure(
        r"eval .*\n.*ECE \(10 bins\): ([\d.]+) before -> ([\d.]+) after", out
    )
    assert (eval_before, eval_after) == (before, after)


def test_per_label_temperatures_and_the_token_objective(
    model: Path, dev: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, model, dev, tmp_path / "a", "--per-label")
    assert code == 0, err
    table = spacy.load(tmp_path / "a").get_pipe("hf_token_tagger").cfg["temperature"]
    assert sorted(table) == ["LOC", "O", "ORG", "PER"]
    assert all(0.01 <= t <= 100 for t in table.values())
    shown = ", ".join(f"{k} {t:g}" for k, t in table.items())
    assert f"temperature 1 -> {shown} (fit: entity objective)" in out

    code, out, err = _run(capsys, model, dev, tmp_path / "b", "--objective", "token")
    assert code == 0, err
    (t_token,) = _figure(r"temperature 1 -> ([\d.]+) \(fit: token objective\)", out)
    nll_before, nll_after = _figure(r"dev NLL: tokens ([\d.]+) -> ([\d.]+)", out)
    assert nll_after <= nll_before
    assert spacy.load(tmp_path / "b").get_pipe("hf_token_tagger").cfg["temperature"] == t_token


def test_a_saved_pipeline_with_two_taggers(
    model: Path, dev: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("hf_token_tagger", name="first", config={"model": str(model), "temperature": 2.0})
    nlp.add_pipe("hf_token_tagger", name="second", config={"model": str(model)})
    nlp.to_disk(tmp_path / "two")
    code, _, err = _run(capsys, tmp_path / "two", dev, tmp_path / "out")
    assert code == 1
    assert "2 hf_token_tagger components (['first', 'second']): name one with --component" in err
    code, out, err = _run(capsys, tmp_path / "two", dev, tmp_path / "out", "--component", "first")
    assert code == 0, err
    # The fit starts from the model's own probabilities, whatever T the pipeline had.
    (fitted,) = _figure(r"component first: temperature 2 -> ([\d.]+)", out)
    written = spacy.load(tmp_path / "out")
    assert written.get_pipe("first").cfg["temperature"] == fitted
    assert written.get_pipe("second").cfg["temperature"] == 1.0


def test_collect_judges_by_output_name_and_leaves_out_tokens_it_cannot_class(
    model: Path,
) -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("hf_token_tagger", config={"model": str(model), "label_map": {"LOC": "CITY"}})
    # Gold from another tokenizer: "Sar" + "ah" is one token to the pipeline.
    words = ["My", "name", "is", "Sar", "ah", "and", "I", "live", "in", "Paris", "."]
    spaces = [True, True, True, False, True, True, True, True, True, False, False]
    cut = Doc(nlp.vocab, words=words, spaces=spaces)
    cut.ents = [Span(cut, 3, 4, "PER"), Span(cut, 9, 10, "CITY")]
    # GPE is no label of the pipeline: its tokens cannot be scored.
    text = "He moved from Paris to London and then to Berlin."
    other = nlp.make_doc(text)
    other.ents = [
        other.char_span(text.index(city), text.index(city) + len(city), label=label)
        for city, label in (("Paris", "CITY"), ("London", "CITY"), ("Berlin", "GPE"))
    ]
    data = collect(nlp, "hf_token_tagger", [cut, other])
    assert cut.text == "My name is Sarah and I live in Paris."
    assert data.n_gold == 5
    # The tiny model never saw the second text: it calls "He" a place too.
    assert data.decoded == [
        ((11, 16, "PER"), (31, 36, "LOC")),
        ((0, 2, "LOC"), (14, 19, "LOC"), (23, 29, "LOC"), (42, 48, "LOC")),
    ]
    # Judged under the names the pipeline writes: Sarah is not "Sar".
    assert data.entities.correct.tolist() == [False, True, False, True, True, False]
    assert data.tokens_left_out == 2  # "Sarah", "Berlin"
    assert len(data.tokens) == (10 - 1) + (11 - 1)
    np.testing.assert_allclose(
        data.pipeline_scores, entity_scores(data.entities, None), rtol=0, atol=1e-12
    )


def test_mistakes_get_a_message(
    model: Path,
    dev: Path,
    tmp_path: Path,
    tiny_models: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fails(*args: Any) -> str:
        code, out, err = _run(capsys, *args)
        assert code == 1 and not out
        return " ".join(err.split())

    out = tmp_path / "out"
    assert "missing.spacy is not a file: give a .spacy file (DocBin)" in fails(
        model, tmp_path / "missing.spacy", out
    )
    (tmp_path / "junk.spacy").write_bytes(b"not a docbin")
    assert "junk.spacy could not be read as a .spacy file (DocBin)" in fails(
        model, tmp_path / "junk.spacy", out
    )
    bare = _write([spacy.blank("en").make_doc("No entities here.")], tmp_path / "bare.spacy")
    assert "holds 1 docs and no gold entities" in fails(model, bare, out)
    assert "--objective 'span': use one of token, entity" in fails(
        model, dev, out, "--objective", "span"
    )
    assert "OUTPUT_DIR" in fails(model, dev, model)
    upos = tiny_models("wordpiece-cased", labels=["NOUN", "VERB", "PROPN", "PUNCT", "X"])
    assert "is a tagging model (labels ['NOUN', 'VERB'" in fails(upos, dev, out)
    assert not out.exists()

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real_find_spec(name, *a),
    )
    assert (
        "--plot needs matplotlib, which is not installed: "
        "pip install 'spacy-hf-tagger[calibrate]'"
    ) in fails(model, dev, out, "--plot", tmp_path / "r.png")
