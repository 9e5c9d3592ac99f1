"""How a corpus job ends when it cannot go on: a read or a write that fails
(a full disk, a folder it cannot write, an input file gone), SIGINT/SIGTERM,
a closed stdout. Each ends in one line that says what failed, where, and how
to go on; `--resume` then completes the job with no record lost or repeated.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
from tiny_models import training_sentences

from spacy_hf_tagger.errors import JobInterrupted, JobIOError
from spacy_hf_tagger.jobs import corpus
from spacy_hf_tagger.jobs.corpus import Checkpoint, job_paths, run_job
from spacy_hf_tagger.jobs.pipelines import load_pipeline
from spacy_hf_tagger.jobs.sinks import JsonlSink
from spacy_hf_tagger.jobs.stopping import StopRequests

TEXTS = [text for text, _ in training_sentences()]
ENV = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}


@pytest.fixture(scope="module")
def nlp(model: Path):
    return load_pipeline(str(model), dtype="float32")


def rows(path: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf8").splitlines()]


def write_jsonl(path: Path, n: int, start: int = 0) -> None:
    lines = [
        json.dumps({"id": start + i, "text": TEXTS[(start + i) % len(TEXTS)]}) for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n", "utf8")


def reference_rows(nlp, source: Path, tmp: Path) -> List[Dict[str, Any]]:
    out = tmp / "reference.jsonl"
    run_job(nlp, source, out, chunk_size=10)  # the same batches as the runs compared
    return rows(out)


def cli(*args: str) -> List[str]:
    return [sys.executable, "-m", "spacy_hf_tagger", "annotate", *args]


def said(done: Any) -> str:
    """What the command printed, as one line (wasabi wraps long lines)."""
    return " ".join((done.stdout + done.stderr).split())


# ----------------------------------------------------------------- I/O failures


def test_a_full_disk_ends_in_one_line_and_resume_completes(
    nlp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "in.jsonl"
    write_jsonl(source, 40)
    expected = reference_rows(nlp, source, tmp_path)
    out = tmp_path / "out.jsonl"
    write = JsonlSink.write
    calls = {"output": 0}

    def fills_up(self: JsonlSink, rows: Any, docs: Any) -> None:
        if self._out.name == str(out):
            calls["output"] += 1
            if calls["output"] == 3:  # the third chunk: half of it reaches the disk
                self._out.write(b'{"id": 20, "ents"')
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write(self, rows, docs)

    monkeypatch.setattr(JsonlSink, "write", fills_up)
    with pytest.raises(JobIOError) as info:
        run_job(nlp, source, out, chunk_size=10)
    assert str(info.value) == (
        f"Writing {out} failed: No space left on device [ENOSPC]. 20 records are written "
        "and checkpointed: make room on that disk, then rerun the same command with "
        "--resume to complete the job."
    )
    monkeypatch.setattr(JsonlSink, "write", write)
    summary = run_job(nlp, source, out, chunk_size=10, resume=True)
    assert (summary.records, summary.resumed_from) == (40, 20)
    assert rows(out) == expected


def test_an_output_that_cannot_be_made_says_so_and_needs_no_resume(
    nlp, tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    write_jsonl(source, 3)
    (tmp_path / "a-file").write_text("", "utf8")
    out = tmp_path / "a-file" / "out.jsonl"
    with pytest.raises(JobIOError) as info:
        run_job(nlp, source, out)
    message = str(info.value)
    assert message.startswith(f"Writing {tmp_path / 'a-file'}")
    assert "[ENOTDIR]" in message or "[EEXIST]" in message
    assert message.endswith("then run the same command again.")
    assert "--resume" not in message


def test_an_input_file_gone_mid_run_names_it_and_resume_completes(
    nlp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", 15)
    write_jsonl(folder / "b.jsonl", 15, start=15)
    expected = reference_rows(nlp, folder, tmp_path)
    kept = (folder / "b.jsonl").read_bytes()
    out = tmp_path / "out.jsonl"
    real_docs = corpus.LocalAnnotator.__call__

    def deletes_b(self: Any, texts: Any) -> Any:  # after the first chunk is annotated
        (folder / "b.jsonl").unlink(missing_ok=True)
        return real_docs(self, texts)

    monkeypatch.setattr(corpus.LocalAnnotator, "__call__", deletes_b)
    with pytest.raises(JobIOError) as info:
        run_job(nlp, folder, out, chunk_size=10)
    assert str(info.value) == (
        f"Reading {folder / 'b.jsonl'} failed: No such file or directory [ENOENT]. 10 "
        "records are written and checkpointed: put it back where it was, then rerun the "
        "same command with --resume to complete the job."
    )
    monkeypatch.setattr(corpus.LocalAnnotator, "__call__", real_docs)
    (folder / "b.jsonl").write_bytes(kept)
    run_job(nlp, folder, out, chunk_size=10, resume=True)
    assert rows(out) == expected


def _mount_tmpfs(folder: Path, size: str) -> bool:
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return False
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
    )
    return done.returncode == 0


@pytest.mark.slow
def test_the_cli_on_a_real_full_disk(model: Path, tmp_path: Path) -> None:
    """A 64 KiB tmpfs fills up under OUTPUT: one line, no traceback, exit 1;
    grown, `--resume` completes it."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "64k"):
        pytest.skip("mounting a tmpfs needs root and CAP_SYS_ADMIN (a full disk is also injected)")
    try:
        source = tmp_path / "in.jsonl"
        write_jsonl(source, 1500)
        out = disk / "out.jsonl"
        cmd = cli(str(model), str(source), str(out), "--chunk-size", "100")
        done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
        assert done.returncode == 1, said(done)
        assert "Traceback" not in done.stderr
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        assert len(lines) == 1, lines
        assert "No space left on device [ENOSPC]" in said(done)
        assert "rerun the same command with --resume to complete the job" in said(done)
        subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
        again = subprocess.run([*cmd, "--resume"], env=ENV, capture_output=True, text=True)
        assert again.returncode == 0, said(again)
        assert [r["id"] for r in rows(out)] == list(range(1500))
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


@pytest.mark.slow
def test_verbose_shows_the_traceback(model: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    write_jsonl(source, 2)
    (tmp_path / "a-file").write_text("", "utf8")
    out = tmp_path / "a-file" / "out.jsonl"
    quiet = subprocess.run(
        cli(str(model), str(source), str(out)), env=ENV, capture_output=True, text=True
    )
    loud = subprocess.run(
        cli(str(model), str(source), str(out), "--verbose"), env=ENV, capture_output=True, text=True
    )
    assert quiet.returncode == 1 and "Traceback" not in quiet.stderr
    assert f"Writing {tmp_path / 'a-file'}" in said(quiet)
    assert loud.returncode != 0 and "Traceback" in loud.stderr and "JobIOError" in loud.stderr


@pytest.mark.slow
def test_a_closed_stdout_still_completes_the_job(model: Path, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    write_jsonl(source, 5)
    out = tmp_path / "out.jsonl"
    read, write = os.pipe()
    os.close(read)  # `annotate ... | head -0`: nobody reads stdout
    try:
        done = subprocess.run(
            cli(str(model), str(source), str(out)),
            env=ENV,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    finally:
        os.close(write)
    assert done.returncode == 0, done.stderr
    assert "Done (stdout was closed)" in done.stderr and "Traceback" not in done.stderr
    assert [r["id"] for r in rows(out)] == list(range(5))


# --------------------------------------------------------------------- signals


def test_a_first_signal_finishes_the_chunk_a_second_stops_at_once(
    nlp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process: the handlers `StopRequests` installs, fired from inside the
    job (as the kernel would, between two bytecodes of the annotating thread)."""
    source = tmp_path / "in.jsonl"
    write_jsonl(source, 50)
    expected = reference_rows(nlp, source, tmp_path)
    real = corpus.LocalAnnotator.__call__
    seen = {"chunks": 0}
    plan: Dict[int, List[int]] = {}

    def signalling(self: Any, texts: Any) -> Any:
        seen["chunks"] += 1
        for number in plan.get(seen["chunks"], []):
            signal.raise_signal(number)
        return real(self, texts)

    monkeypatch.setattr(corpus.LocalAnnotator, "__call__", signalling)
    # Whatever the handlers were before (pytest's, or another test's), they are
    # what each job must put back.
    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    out = tmp_path / "out.jsonl"
    plan = {2: [signal.SIGTERM]}  # during the second chunk: it is finished, then stop
    with pytest.raises(JobInterrupted) as info:
        run_job(nlp, source, out, chunk_size=10, stop=StopRequests())
    _, progress = job_paths(out)
    assert info.value.signal_number == signal.SIGTERM
    assert str(info.value) == (
        f"Stopped by SIGTERM after 20 records, written and checkpointed in {progress}: "
        "rerun the same command with --resume to complete the job."
    )
    assert len(rows(out)) == 20
    assert signal.getsignal(signal.SIGTERM) is before[signal.SIGTERM]  # handlers put back
    assert signal.getsignal(signal.SIGINT) is before[signal.SIGINT]

    seen["chunks"], plan = 0, {2: [signal.SIGINT, signal.SIGINT]}  # resumed at 20
    with pytest.raises(JobInterrupted) as info:
        run_job(nlp, source, out, chunk_size=10, resume=True, stop=StopRequests())
    assert info.value.signal_number == signal.SIGINT
    assert "Stopped by SIGINT after 30 records" in str(info.value)  # the 2nd chunk dropped
    assert signal.getsignal(signal.SIGINT) is before[signal.SIGINT]

    monkeypatch.setattr(corpus.LocalAnnotator, "__call__", real)
    summary = run_job(nlp, source, out, chunk_size=10, resume=True, stop=StopRequests())
    assert (summary.records, summary.resumed_from) == (50, 30)
    assert rows(out) == expected


def test_the_command_ignores_signals_once_it_has_stopped() -> None:
    """The CLI's requests (`ignore_after_stop`): after a stop, a repeated Ctrl-C
    while the process exits does nothing (it printed a KeyboardInterrupt
    traceback from torch's exit handlers); without a stop the handlers are
    put back."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        with StopRequests(ignore_after_stop=True) as stop:
            pass
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
        with StopRequests(ignore_after_stop=True) as stop:
            signal.raise_signal(signal.SIGINT)
        assert stop.signal_number == signal.SIGINT
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        signal.raise_signal(signal.SIGINT)  # nothing happens
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])


def _wait_for_checkpoint(progress: Path, records: int, proc: subprocess.Popen) -> Optional[int]:
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        try:
            done = Checkpoint.read(progress).records if progress.exists() else -1
        except Exception:  # replaced while read
            done = -1
        if done >= records:
            return done
        time.sleep(0.01)
    return None


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_cli_stopped_by_signals_at_random_points_resumes_whole(
    model: Path, tmp_path: Path, seed: int
) -> None:
    """SIGINT, SIGTERM or two SIGINTs at a random point of a run of small chunks:
    exit 128 + the signal, one line saying how far it got and to --resume, and
    the resumed OUTPUT has every record once, in order."""
    rng = random.Random(seed)
    n = 2000
    source = tmp_path / "in.jsonl"
    write_jsonl(source, n)
    out = tmp_path / "out.jsonl"
    _, progress = job_paths(out)
    cmd = cli(str(model), str(source), str(out), "--chunk-size", "40", "--dtype", "float32")
    signals = [[signal.SIGINT], [signal.SIGTERM], [signal.SIGINT, signal.SIGINT]][seed]
    proc = subprocess.Popen(
        cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    at = _wait_for_checkpoint(progress, rng.randrange(0, n // 2, 40), proc)
    assert at is not None, "the job ended before the signal"
    time.sleep(rng.uniform(0, 0.3))
    for number in signals:
        proc.send_signal(number)
        time.sleep(rng.uniform(0, 0.05))
    stdout, stderr = proc.communicate(timeout=120)
    stopped_at = Checkpoint.read(progress).records
    if proc.returncode == 0:  # the signals came after the last chunk
        assert stopped_at == n
    else:
        text = " ".join((stdout + stderr).split())
        assert proc.returncode == 128 + signals[-1], text
        assert "Traceback" not in stderr
        name = signal.Signals(signals[-1]).name
        assert (
            f"Stopped by {name} after {stopped_at:,} records, written and checkpointed in "
            f"{progress}: rerun the same command with --resume to complete the job."
        ) in text
        assert at <= stopped_at < n
        assert [r["id"] for r in rows(out)][: stopped_at] == list(range(stopped_at))
        done = subprocess.run([*cmd, "--resume"], env=ENV, capture_output=True, text=True)
        assert done.returncode == 0, said(done)
    assert [r["id"] for r in rows(out)] == list(range(n))
