"""`spacy-hf-tagger serve` as an operator runs it: one command, in the
foreground, answering on 127.0.0.1, then SIGTERM and a clean exit.

Why: the command must start its own local cluster when RAY_ADDRESS is unset,
serve the rows, and on SIGTERM delete its application, stop the cluster it
started and exit with 128 + 15, within bounded time (no orphaned server).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from http_json import free_port, post_json

pytest.importorskip("ray.serve", reason="Ray Serve not installed (pip install '.[serve]')")

START_LIMIT = 120.0
STOP_LIMIT = 60.0


def test_serve_runs_in_the_foreground_and_stops_cleanly_on_sigterm(tiny_models) -> None:
    model = tiny_models("wordpiece-cased", train_steps=100)
    port = free_port()
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: socket paths
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
    env.pop("RAY_ADDRESS", None)
    command = [sys.executable, "-m", "spacy_hf_tagger", "serve", str(model), "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--replicas", "1", "--num-cpus", "1", "--max-ongoing-requests", "32"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + START_LIMIT
        answer = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                body = {"text": "John Smith visited Berlin.", "id": 1}
                answer = post_json(port, body, timeout=10)
            except OSError:  # not listening yet
                answer = None
            # Serve's proxy listens before the application is deployed: 404 or 503 till then.
            if answer is not None and answer[0] not in (404, 503):
                break
            time.sleep(0.5)
        assert answer is not None, f"no answer within {START_LIMIT:.0f} s"
        status, row = answer
        assert status == 200, row
        assert isinstance(row, dict) and list(row) == ["id", "ents"] and row["id"] == 1

        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=STOP_LIMIT)
        assert process.returncode == 128 + signal.SIGTERM, output[-3000:]
        assert "Serving at http://127.0.0.1:" in output
        assert "SIGTERM: shutting down." in output
        with pytest.raises(OSError):
            post_json(port, {"text": "After the end."}, timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=STOP_LIMIT)
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.parametrize("preset", [None, "conn-failure"])
def test_haproxy_retries_what_a_dead_replica_never_answered(
    tmp_path, monkeypatch, preset
) -> None:
    """`--haproxy` turns Ray's HAProxy on and has it retry, on another replica,
    a request whose replica died before answering (Ray's default retries
    connection failures only: the client saw a dropped connection); an
    operator's own retry policy is kept."""
    from spacy_hf_tagger import cli
    from spacy_hf_tagger.serve import deployment, runner

    monkeypatch.delenv("RAY_SERVE_ENABLE_HA_PROXY", raising=False)
    if preset is None:
        monkeypatch.delenv(cli.HAPROXY_RETRY_ON_ENV, raising=False)
    else:
        monkeypatch.setenv(cli.HAPROXY_RETRY_ON_ENV, preset)
    seen = {}

    def fake_serve(app, **kwargs) -> int:
        seen.update(
            enabled=os.environ.get("RAY_SERVE_ENABLE_HA_PROXY"),
            retry_on=os.environ.get(cli.HAPROXY_RETRY_ON_ENV),
        )
        return 0

    monkeypatch.setattr(deployment, "build_app", lambda *args, **kwargs: object())
    monkeypatch.setattr(runner, "serve_until_stopped", fake_serve)
    with pytest.raises(SystemExit) as exit_info:  # build_app is faked: no model is read
        cli.main(["serve", str(tmp_path), "--haproxy"])
    assert exit_info.value.code == 0
    assert seen == {
        "enabled": "1",
        "retry_on": preset or "conn-failure empty-response response-timeout",
    }
