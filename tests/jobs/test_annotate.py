"""The corpus job: `python -m spacy_hf_tagger annotate PIPELINE INPUT OUTPUT`.

Formats in and out, ids, the errors file, config overrides, and `--resume`:
after a kill at any point (simulated at every byte of a half-written chunk,
and once for real with SIGKILL), the resumed OUTPUT equals an uninterrupted
run, with no record lost and none repeated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
import spacy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_models import training_sentences

from spacy_hf_tagger.errors import JobError
from spacy_hf_tagger.jobs.corpus import Checkpoint, job_paths, run_job

TEXTS = [text for text, _ in training_sentences()]


def rows(path: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf8").splitlines()]


def expected_ents(nlp, text: str) -> List[Dict[str, Any]]:
    doc = nlp(text)
    return [
        {"start": e.start_char, "end": e.end_char, "label": e.label_, "text": e.text}
        for e in doc.ents
    ]


def without_scores(ents: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "score"} for e in ents]


def test_txt_in_jsonl_out(nlp, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS[:5]) + "\n", "utf8")
    out = tmp_path / "out.jsonl"
    summary = run_job(nlp, source, out)
    got = rows(out)
    assert [r["id"] for r in got] == [1, 2, 3, 4, 5]
    for row, text in zip(got, TEXTS[:5]):
        assert without_scores(row["ents"]) == expected_ents(nlp, text)
        for ent in row["ents"]:
            assert text[ent["start"] : ent["end"]] == ent["text"]
            assert isinstance(ent["score"], float) and 0.0 < ent["score"] <= 1.0
    assert got[0]["ents"][0]["text"] == "Sarah"
    assert (summary.records, summary.errors) == (5, 0)
    assert summary.entities == sum(len(r["ents"]) for r in got)
    errors, progress = job_paths(out)
    assert not errors.exists()
    assert Checkpoint.read(progress).complete


def test_jsonl_ids_kept_columns_and_bad_lines(nlp, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    lines = [
        json.dumps({"doc_id": "a", "text": TEXTS[0], "lang": "en", "extra": 1}),
        "{not json",
        json.dumps({"doc_id": "b", "body": TEXTS[1]}),
        json.dumps({"doc_id": "c", "text": 42}),
        json.dumps(["a", "list"]),
        json.dumps({"text": TEXTS[2]}),
    ]
    source.write_bytes(("\n".join(lines) + "\n").encode("utf8") + b"\xff\xfe bad bytes\n")
    out = tmp_path / "out.jsonl"
    summary = run_job(nlp, source, out, id_key="doc_id", keep=["lang"])
    got = rows(out)
    assert [r["id"] for r in got] == ["a", 6]  # the line number where there is no id
    assert got[0]["lang"] == "en" and "extra" not in got[0]
    assert got[1]["lang"] is None
    assert without_scores(got[0]["ents"]) == expected_ents(nlp, TEXTS[0])
    errors, _ = job_paths(out)
    bad = rows(errors)
    assert [(b["line"], b["id"]) for b in bad] == [(2, 2), (3, "b"), (4, "c"), (5, 5), (7, 7)]
    reasons = [b["error"] for b in bad]
    assert reasons[0].startswith("invalid JSON")
    assert "no 'text' key" in reasons[1]
    assert "'text' is a int, not a string" == reasons[2]
    assert "not an object" in reasons[3]
    assert reasons[4].startswith("not valid UTF-8")
    assert (summary.records, summary.errors) == (7, 5)


def test_a_folder_of_inputs_in_sorted_order(nlp, tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text(TEXTS[1] + "\n", "utf8")
    (folder / "a.jsonl").write_text(json.dumps({"text": TEXTS[0]}) + "\n", "utf8")
    (folder / "sub" / "c.txt").write_text(TEXTS[2], "utf8")  # no final newline
    (folder / "notes.md").write_text("ignored", "utf8")
    out = tmp_path / "out.jsonl"
    run_job(nlp, folder, out)
    assert [r["id"] for r in rows(out)] == ["a.jsonl:1", "b.txt:1", "c.txt:1"]


def test_existing_output_needs_resume_or_overwrite(nlp, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text(TEXTS[0] + "\n", "utf8")
    out = tmp_path / "out.jsonl"
    run_job(nlp, source, out)
    with pytest.raises(JobError, match="--resume"):
        run_job(nlp, source, out)
    assert run_job(nlp, source, out, overwrite=True).records == 1
    # Resuming a complete job adds nothing.
    assert run_job(nlp, source, out, resume=True).records == 1
    assert len(rows(out)) == 1
    with pytest.raises(JobError, match="no checkpoint"):
        run_job(nlp, source, tmp_path / "other.jsonl", resume=True)
    with pytest.raises(ValueError, match=r"'\.csv'"):
        run_job(nlp, source, tmp_path / "out.csv")
    with pytest.raises(ValueError, match=r"'\.csv'"):
        (tmp_path / "in.csv").write_text("x", "utf8")
        run_job(nlp, tmp_path / "in.csv", tmp_path / "x.jsonl")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("resume")
    lines = []
    for i in range(23):
        if i % 7 == 3:
            lines.append("{broken")
        else:
            lines.append(json.dumps({"id": f"r{i}", "text": TEXTS[i % len(TEXTS)]}))
    path = folder / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", "utf8")
    return path


@pytest.fixture(scope="module")
def reference(nlp, corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, bytes]:
    out = tmp_path_factory.mktemp("reference") / "out.jsonl"
    run_job(nlp, corpus, out, chunk_size=5)
    errors, _ = job_paths(out)
    return {"output": out.read_bytes(), "errors": errors.read_bytes()}


@pytest.fixture(scope="module")
def checkpoints(nlp, corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> List[Checkpoint]:
    """The checkpoint after 0, 1, 2, ... chunks of 5 records, read while a run goes on."""
    folder = tmp_path_factory.mktemp("watched")
    seen: List[Checkpoint] = []  # the job writes the first, at 0 records, itself
    _, progress = job_paths(folder / "out.jsonl")
    original = Checkpoint.write

    def recording(self: Checkpoint, path: Path) -> None:
        original(self, path)
        if path == progress and not self.complete:
            seen.append(Checkpoint(**self.__dict__))

    Checkpoint.write = recording  # type: ignore[method-assign]
    try:
        run_job(nlp, corpus, folder / "out.jsonl", chunk_size=5)
    finally:
        Checkpoint.write = original  # type: ignore[method-assign]
    assert [c.records for c in seen] == [0, 5, 10, 15, 20, 23]
    return seen


def test_job_files_are_named_from_the_whole_output_name(nlp, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text(TEXTS[0] + "\n", "utf8")
    out = tmp_path / "out.jsonl"
    assert job_paths(out) == (
        tmp_path / "out.jsonl.errors.jsonl",
        tmp_path / "out.jsonl.progress.json",
    )
    assert job_paths(tmp_path / "out.parquet")[1] == tmp_path / "out.parquet.progress.json"
    run_job(nlp, source, out)
    assert Checkpoint.read(tmp_path / "out.jsonl.progress.json").complete


def test_a_job_started_by_an_earlier_version_resumes(nlp, tmp_path: Path) -> None:
    """Earlier versions named the checkpoint from OUTPUT without its suffix."""
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS[:3]) + "\n", "utf8")
    out = tmp_path / "out.jsonl"
    run_job(nlp, source, out)
    _, progress = job_paths(out)
    lines = out.read_bytes().splitlines(keepends=True)
    state = Checkpoint.read(progress)
    state.records, state.complete = 2, False  # as if killed after two records
    state.output_position = len(lines[0]) + len(lines[1])
    state.write(tmp_path / "out.progress.json")
    progress.unlink()
    summary = run_job(nlp, source, out, resume=True)
    assert (summary.resumed_from, summary.records) == (2, 3)
    assert out.read_bytes() == b"".join(lines)
    assert not (tmp_path / "out.progress.json").exists()
    assert Checkpoint.read(progress).complete


def test_a_checkpoint_without_its_output(nlp, tmp_path: Path) -> None:
    """A run that failed before its first record (e.g. a missing writer library)
    leaves a checkpoint of 0 records: the next run starts; one whose output
    went missing after records were done is refused with what happened."""
    source = tmp_path / "in.txt"
    source.write_text(TEXTS[0] + "\n" + TEXTS[1] + "\n", "utf8")
    out = tmp_path / "out.jsonl"
    _, progress = job_paths(out)
    Checkpoint().write(progress)
    assert run_job(nlp, source, out).records == 2
    out.unlink()
    for resume in (False, True):
        with pytest.raises(JobError, match=r"says 2 records were done, but its output .* not"):
            run_job(nlp, source, out, resume=resume)
    assert run_job(nlp, source, out, overwrite=True).records == 2
    assert len(rows(out)) == 2


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(chunks_done=st.integers(0, 5), extra_out=st.integers(0, 2000), extra_err=st.integers(0, 60))
def test_resume_after_a_kill_anywhere_equals_an_uninterrupted_run(
    nlp, corpus, reference, checkpoints, tmp_path_factory, chunks_done, extra_out, extra_err
) -> None:
    """A kill leaves the checkpoint of the last finished chunk and, after it,
    any prefix of the next chunk's rows in either file (written, not yet
    checkpointed). Rebuild exactly that state from a complete run, resume."""
    folder = tmp_path_factory.mktemp("killed")
    out = folder / "out.jsonl"
    errors, progress = job_paths(out)
    state = checkpoints[chunks_done]
    out.write_bytes(reference["output"][: state.output_position + extra_out])
    errors.write_bytes(reference["errors"][: state.errors_bytes + extra_err])
    Checkpoint(**state.__dict__).write(progress)
    summary = run_job(nlp, corpus, out, resume=True, chunk_size=5)
    assert out.read_bytes() == reference["output"]
    assert errors.read_bytes() == reference["errors"]
    assert (summary.records, summary.resumed_from, summary.errors) == (23, state.records, 3)


@pytest.mark.slow
def test_resume_after_a_real_sigkill(model: Path, tmp_path: Path) -> None:
    """The CLI itself, killed with SIGKILL mid-run, then resumed."""
    source = tmp_path / "in.txt"
    texts = [TEXTS[i % len(TEXTS)] for i in range(3000)]
    source.write_text("\n".join(texts) + "\n", "utf8")
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "spacy_hf_tagger", "annotate", str(model), str(source), str(out)]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, progress = job_paths(out)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if progress.exists() and Checkpoint.read(progress).records >= 1000:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the job ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = Checkpoint.read(progress).records
    assert 0 < killed_at < len(texts)
    done = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"resumed after record {killed_at}" in " ".join(done.stdout.split())
    got = rows(out)
    assert [r["id"] for r in got] == list(range(1, len(texts) + 1))
    nlp = spacy.blank("en")
    nlp.add_pipe("hf_token_tagger", config={"model": str(model)})
    for row, text in zip(got[:12], texts):
        assert without_scores(row["ents"]) == expected_ents(nlp, text)


def test_cli_overrides_and_summary(model: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS[:3]) + "\n", "utf8")
    out = tmp_path / "out.jsonl"
    cmd = [
        sys.executable, "-m", "spacy_hf_tagger", "annotate", str(model), str(source), str(out),
        "--components.hf_token_tagger.threshold", "1.0", "--dtype", "float32",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stdout.split())
    assert "3 records" in said and "0 entities" in said and "0 errors" in said
    assert [r["ents"] for r in rows(out)] == [[], [], []]  # threshold 1.0 drops every entity
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "--resume" in again.stdout + again.stderr
    bad = subprocess.run(
        [*cmd[:7], "--components.ner.x", "1", "--overwrite"], capture_output=True, text=True
    )
    assert bad.returncode == 1 and "components.hf_token_tagger.SETTING" in bad.stderr
