"""No text of a document or an entity in a log record, a warning, an exception
or stderr: users tag personal data, and logs travel further than outputs.

Each check runs a real path with texts holding a unique marker and looks for
the marker (and the entity texts) in everything the package said.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest
import spacy

from spacy_hf_tagger.errors import AnnotationConflictError

MARKER = "Qzxjvmarker"
# The trained tiny model finds Sarah (PER) and Paris (LOC) here; a rule says
# Paris is a GPE first, so the model's LOC is lost and reported.
TEXT = f"My name is Sarah and I live in Paris. {MARKER}"
PRIVATE = ("Sarah", "Paris", MARKER)
TinyModelFactory = Callable[..., Path]


@pytest.fixture(scope="module")
def model_dir(tiny_models: TinyModelFactory) -> Path:
    return tiny_models("wordpiece-cased", train_steps=100)


def _ruler_nlp(model: Path, **cfg: object) -> spacy.language.Language:
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([{"label": "GPE", "pattern": "Paris"}])
    nlp.add_pipe("hf_token_tagger", config={"model": str(model), **cfg})
    return nlp


def _assert_private(said: str) -> None:
    for secret in PRIVATE:
        assert secret not in said, f"{secret!r} leaked into: {said[:300]}"


def _everything_said(
    run: Callable[[], object], caplog: pytest.LogCaptureFixture
) -> tuple[str, List[warnings.WarningMessage]]:
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    said = "\n".join([r.getMessage() for r in caplog.records] + [str(w.message) for w in caught])
    return said, caught


def test_conflict_warning_names_offsets_and_labels_not_texts(
    model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    nlp = _ruler_nlp(model_dir, annotate=["ents"], errors="warn")
    said, caught = _everything_said(lambda: list(nlp.pipe([TEXT, TEXT])), caplog)
    conflicts = [w for w in caught if "overlap entities set by an earlier" in str(w.message)]
    assert conflicts, "the conflict must still be reported"
    message = str(conflicts[0].message)
    assert "doc 0 chars 31-36 (LOC)" in message
    assert "doc 1 chars 31-36 (LOC)" in message
    _assert_private(said)


def test_conflict_error_names_offsets_and_labels_not_texts(model_dir: Path) -> None:
    nlp = _ruler_nlp(model_dir, annotate=["ents"], errors="raise")
    with pytest.raises(AnnotationConflictError) as info:
        nlp(TEXT)
    assert "chars 31-36 (LOC)" in str(info.value)
    _assert_private(str(info.value))


def _annotate_cli(
    model: Path, folder: Path, *options: str, env: Optional[Dict[str, str]] = None
) -> Path:
    """Run `annotate` on good records, bad records (a number as text, no text
    key, broken JSON holding the marker) and records whose entity a rule took
    first (the conflict warning); check what it printed and every file it
    wrote beside OUTPUT; return OUTPUT."""
    nlp = _ruler_nlp(model, annotate=["ents"], errors="warn")
    pipeline = folder / "pipeline"
    nlp.to_disk(pipeline)
    lines = [
        json.dumps({"id": "a", "text": TEXT}),
        json.dumps({"id": "b", "text": 42}),
        json.dumps({"id": "c", "body": TEXT}),
        '{"id": "d", "text": "' + MARKER + " Sarah",
        json.dumps({"id": "e", "text": TEXT}),
    ]
    source = folder / "in.jsonl"
    source.write_text("\n".join(lines) + "\n", "utf8")
    out = folder / "out.jsonl"
    cli = [sys.executable, "-m", "spacy_hf_tagger", "annotate", str(pipeline), str(source)]
    done = subprocess.run(
        [*cli, str(out), *options],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "5 records" in " ".join(done.stdout.split())
    _assert_private(done.stdout + done.stderr)
    assert MARKER in out.read_text("utf8")
    beside = [p for p in folder.iterdir() if p.is_file() and p not in (source, out)]
    assert {p.name for p in beside} >= {"out.jsonl.errors.jsonl", "out.jsonl.progress.json"}
    for path in beside:
        _assert_private(path.read_text("utf8", errors="replace"))
    return out


def test_the_annotate_cli_keeps_texts_in_its_output_only(model_dir: Path, tmp_path: Path) -> None:
    """stdout, stderr and the errors file name ids and reasons; the texts are
    in the output alone."""
    _annotate_cli(model_dir, tmp_path)


def test_the_ray_engine_keeps_texts_in_its_output_only(model_dir: Path, tmp_path: Path) -> None:
    """`annotate --engine ray`: the same, and Ray's logs of the run, where
    what an actor warns (the conflict warning) and logs ends up.

    The CLI starts a local cluster of its own (RAY_ADDRESS unset) and Ray
    keeps that cluster's logs under RAY_TMPDIR: pointed at a fresh folder,
    the run never joins another cluster (tests/jobs/test_ray.py's, or one of
    `ray start`, which Ray finds under its temp folder) and its logs are
    these alone. /tmp, not tmp_path: Ray's socket paths must fit in 107 bytes.
    """
    pytest.importorskip("ray", reason="ray not installed (pip install '.[ray]')")
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
    env.pop("RAY_ADDRESS", None)
    try:
        _annotate_cli(model_dir, tmp_path, "--engine", "ray", "--workers", "1", env=env)
        (session,) = (ray_tmp / "ray").glob("session_2*")
        logs = [p for p in (session / "logs").rglob("*") if p.is_file()]
        said = {p: p.read_text("utf8", errors="replace") for p in logs}
        warned = [p.name for p, text in said.items() if "overlap entities set by an" in text]
        assert warned and all(name.startswith("worker-") for name in warned), warned
        for path, text in said.items():
            assert not any(secret in text for secret in PRIVATE), path
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_the_presidio_engine_logs_no_text(
    model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip(
        "presidio_analyzer", reason="presidio-analyzer not installed (pip install '.[presidio]')"
    )
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    from spacy_hf_tagger.presidio import HFTaggerNlpEngine

    pipeline = tmp_path / "pipeline"
    _ruler_nlp(model_dir, errors="warn").to_disk(pipeline)
    configuration = {
        "nlp_engine_name": "hf_tagger",
        "models": [{"lang_code": "en", "model_name": str(pipeline)}],
    }
    provider = NlpEngineProvider(nlp_engines=(HFTaggerNlpEngine,), nlp_configuration=configuration)
    analyzer = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])
    results: list = []
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results.extend(analyzer.analyze(text=TEXT, language="en"))
    assert any(TEXT[r.start : r.end] == "Sarah" for r in results)
    # Presidio's own log records are its business; ours, and every warning, are ours.
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("spacy_hf_tagger")]
    _assert_private("\n".join(ours + [str(w.message) for w in caught]))
