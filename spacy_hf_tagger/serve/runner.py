"""`spacy-hf-tagger serve`: start the deployment, stay in the foreground, and
shut down cleanly on SIGINT or SIGTERM.

On the cluster in `RAY_ADDRESS` (`ray start --head` on one machine, `ray
start --address=HEAD:6379` on the others) the replicas spread over its nodes;
without it, Ray joins a cluster `ray start` began on this machine, else
starts a local one. On exit the command deletes its own application and
disconnects, which also stops a cluster it started.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType
from typing import Any, Callable, Dict, Optional

import ray
from ray import serve
from ray.serve import Application
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..jobs.stopping import STOP_SIGNALS, signal_name
from .ingress import behind_haproxy, ingress_name

APP_NAME = "spacy-hf-tagger"


@ray.remote(num_cpus=0)
def _behind_haproxy_there() -> bool:
    """`behind_haproxy`, in a process of the cluster (its environment is the
    one the cluster got at its start)."""
    return behind_haproxy()


def cluster_runs_haproxy(timeout_s: float = 30.0) -> Optional[bool]:
    """Whether Serve runs the HAProxy ingress on the connected cluster, as
    Serve reads it: from the environment its head node got at `ray start` (a
    cluster this process started got this process's), which is not always
    this process's own. None when the cluster did not answer."""
    try:
        heads = [
            node["NodeID"]
            for node in ray.nodes()
            if node.get("Alive") and "node:__internal_head__" in node.get("Resources", {})
        ]
        task = _behind_haproxy_there
        if heads:
            strategy = NodeAffinitySchedulingStrategy(heads[0], soft=True)
            task = task.options(scheduling_strategy=strategy)
        return bool(ray.get(task.remote(), timeout=timeout_s))
    except Exception:  # a name in a message is not worth a server that runs
        return None


def serve_until_stopped(
    app: Application,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    request_timeout_s: Optional[float] = 60.0,
    say: Callable[[str], None] = print,
    stop: Optional[threading.Event] = None,
    haproxy: Optional[bool] = None,
) -> int:
    """Run `app` at http://host:port/ until SIGINT/SIGTERM (or `stop` is set,
    for callers that are not the main thread); returns the signal's number
    (0 when `stop` ended it). `request_timeout_s` bounds each HTTP request
    end to end (408 past it). `haproxy` True or False: refuse (ValueError)
    to serve on a cluster that runs the other ingress."""
    stop = stop or threading.Event()
    received: Dict[str, int] = {}

    def handle(number: int, frame: Optional[FrameType]) -> None:
        received.setdefault("signal", number)
        stop.set()

    address = os.environ.get("RAY_ADDRESS") or None
    started = False
    connected_here = not ray.is_initialized()
    previous: Dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for number in STOP_SIGNALS:
            previous[number] = signal.signal(number, handle)
    try:
        if not ray.is_initialized():
            ray.init(address=address)
        # ray.init installs handlers of its own in the driver: ours again.
        if previous:
            for number in STOP_SIGNALS:
                signal.signal(number, handle)
        runs_haproxy = cluster_runs_haproxy()
        if haproxy is not None and runs_haproxy is not None and haproxy != runs_haproxy:
            raise ValueError(
                f"the Ray cluster runs {ingress_name(runs_haproxy)}, not "
                f"{ingress_name(haproxy)}: its nodes' environment at `ray start` decides "
                "(RAY_SERVE_ENABLE_HA_PROXY=1 for HAProxy); leave out --haproxy/--no-haproxy "
                "to serve behind what it runs."
            )
        behind = "the cluster's ingress" if runs_haproxy is None else ingress_name(runs_haproxy)
        started = True
        serve.start(
            http_options={"host": host, "port": port, "request_timeout_s": request_timeout_s}
        )
        if not stop.is_set():
            serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
            where = ray.get_runtime_context().gcs_address
            say(
                f"Serving at http://{host}:{port}/ behind {behind} "
                f"(Ray cluster {where}); Ctrl-C or SIGTERM stops it."
            )
        while not stop.wait(0.5):
            pass
        if "signal" in received:
            say(f"{signal_name(received['signal'])}: shutting down.")
    finally:
        # A second signal during the shutdown is ignored: the shutdown is already under way.
        for number in previous:
            signal.signal(number, signal.SIG_IGN)
        try:
            if started and ray.is_initialized():
                serve.delete(APP_NAME)
        finally:
            # Stops a cluster this command started (Serve's proxy and
            # controller with it); from a cluster it joined, it disconnects.
            if connected_here and ray.is_initialized():
                ray.shutdown()
            for number, handler in previous.items():
                signal.signal(number, handler)
        sys.stdout.flush()
    return received.get("signal", 0)
