"""What a killed replica costs the clients of ``spacy-hf-tagger serve``.

``serve --replicas 2 --num-cpus 1`` on a local Ray cluster, behind each
ingress (Ray's HAProxy, the default where Ray has it, and Serve's proxy with
``--no-haproxy``). Each round sends ``--requests`` requests of 4 sentences
from ``--clients`` threads (urllib, a connection per request); once
``--clients`` of them have been answered, one replica's process gets SIGKILL.
The round waits for every answer, then for Serve's replacement replica, and
the next round kills again. Printed per ingress: the requests answered 200,
those answered 5xx (the issue's "clear 5xx"), those whose connection was
dropped with no answer, and those that hung past the timeout (none may).

    python benchmarks/serve_faults.py --data ../shared/data/conll2003/eng.testb \\
        --model ../shared/models/minilm-conll03 --kills 10
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, Optional, Sequence

from accuracy import DEFAULT_DATA, DEFAULT_MODEL, versions_line
from conll import read_conll, render_texts
from serve import free_port, save_pipeline, start_ray_server, stop, wait_until_up

REPLICA_TITLE = "ServeReplica:spacy-hf-tagger"
TIMEOUT_S = 60.0


def replica_pids() -> List[int]:
    """The live replica processes of this machine (Ray names them by title)."""
    found = subprocess.run(["pgrep", "-f", REPLICA_TITLE], capture_output=True, text=True)
    return sorted(int(pid) for pid in found.stdout.split())


def post(url: str, texts: Sequence[str]) -> str:
    """"200", "5xx", "4xx", "dropped" (the connection ended with no answer) or "hung"."""
    request = urllib.request.Request(
        url, data=json.dumps({"texts": list(texts)}).encode(),
        headers={"content-type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            response.read()
            return str(response.status)
    except urllib.error.HTTPError as err:
        return f"{err.code // 100}xx"
    except TimeoutError:
        return "hung"
    except OSError as err:
        return "hung" if isinstance(getattr(err, "reason", None), TimeoutError) else "dropped"


def wait_for_replicas(url: str, texts: Sequence[str], gone: int, limit_s: float = 120) -> None:
    """Until two replicas run, `gone` not among them, and a request succeeds."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        pids = replica_pids()
        if len(pids) == 2 and gone not in pids and post(url, texts) == "200":
            return
        time.sleep(0.5)
    raise SystemExit(f"no second replica within {limit_s:.0f} s of the kill")


def kill_rounds(url: str, texts: Sequence[str], args: argparse.Namespace) -> Counter[str]:
    import os
    import signal

    totals: Counter[str] = Counter()
    for round_ in range(args.kills):
        wait_for_replicas(url, texts, gone=-1)
        victim = replica_pids()[0]
        with ThreadPoolExecutor(args.clients) as pool:
            futures = [pool.submit(post, url, texts) for _ in range(args.requests)]
            deadline = time.monotonic() + 60
            while sum(f.done() for f in futures) < args.clients and time.monotonic() < deadline:
                time.sleep(0.005)
            os.kill(victim, signal.SIGKILL)
            statuses = Counter(f.result() for f in futures)
        totals.update(statuses)
        print(f"    kill {round_ + 1}: {dict(sorted(statuses.items()))}", flush=True)
        wait_for_replicas(url, texts, gone=victim)
    return totals


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--kills", type=int, default=10, help="replica kills per ingress")
    ap.add_argument("--requests", type=int, default=80, help="requests around each kill")
    ap.add_argument("--clients", type=int, default=8, help="requests in flight")
    ap.add_argument("--ingress", choices=("both", "haproxy", "proxy"), default="both")
    args = ap.parse_args(argv)


    if replica_pids():
        raise SystemExit(f"replicas already run on this machine ({REPLICA_TITLE}): stop them")
    print(versions_line())
    rendered = render_texts(read_conll(args.data), "natural", "sentences")
    texts = [r.text for r in rendered[:4]]
    ingresses = ("haproxy", "proxy") if args.ingress == "both" else (args.ingress,)
    print(
        f"{args.kills} kills per ingress; {args.requests} requests of {len(texts)} sentences "
        f"around each, {args.clients} at a time"
    )
    work = Path(tempfile.mkdtemp(prefix="flt", dir="/tmp"))  # short: Ray's socket paths
    results = {}
    try:
        pipeline = save_pipeline(args.model, work / "pipeline")
        for name in ingresses:
            port = free_port()
            extra = ["--haproxy"] if name == "haproxy" else ["--no-haproxy"]
            process, url = start_ray_server(pipeline, port, 2, work / f"ray-{name}", extra)
            try:
                wait_until_up(url, process)
                print(f"  {name}:", flush=True)
                results[name] = kill_rounds(url, texts, args)
            finally:
                stop(process)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'ingress':<8} {'200':>5} {'5xx':>5} {'dropped':>8} {'hung':>5} other")
    ok = True
    for name, totals in results.items():
        other = {k: v for k, v in totals.items() if k not in ("200", "5xx", "dropped", "hung")}
        print(
            f"{name:<8} {totals['200']:>5} {totals['5xx']:>5} {totals['dropped']:>8} "
            f"{totals['hung']:>5} {other or ''}"
        )
        ok = ok and not (totals["dropped"] or totals["hung"] or other)
    print("every failure a clear 5xx, none hung: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
