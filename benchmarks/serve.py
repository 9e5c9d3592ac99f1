"""Ray Serve replicas against the single-process thread server, over HTTP.

Two servers of the same pipeline, on the same cores, one after the other:

* ``threads``: ``examples/serve_fastapi.py`` under uvicorn, one process, the
  pipeline shared by FastAPI's threads (torch uses every core);
* ``ray``: ``spacy-hf-tagger serve --replicas R --num-cpus 1`` (default 2
  replicas of 1 CPU each), a local Ray cluster started by the command, HTTP
  through its default ingress where Ray has it: Ray's HAProxy (C) passes HTTP
  straight to the replicas (``RAY_SERVE_ENABLE_HA_PROXY``);
* ``ray-proxy``: the same with ``--no-haproxy``: HTTP through Serve's Python
  proxy actor.

The same client drives both: ``--clients`` concurrent connections (aiohttp),
each posting one sentence at a time ({"text": ...}) from a shared queue of the
CoNLL-2003 test sentences (natural rendering). Rounds alternate the servers
and each keeps its best round; we report requests/s, words/s, and the p50/p99
latency of that round, and the ratios to the thread server.

Bars (2 cores): ray >= 0.8x the thread server's requests/s and p99 <= 2x its
p99 (the verdict is on ``serve`` as it runs by default; ``ray-proxy`` is shown
against the same bars). Two cores leave the replicas nothing the thread server does not have;
what the replicas add is room: with more machines, requests/s grows with the
replicas (each batches on its own cores) up to what the HTTP proxies pass.

    python benchmarks/serve.py --data ../shared/data/conll2003/eng.testb \\
        --model ../shared/models/minilm-conll03
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from accuracy import DEFAULT_DATA, DEFAULT_MODEL, versions_line
from conll import read_conll, render_texts
from threads import percentile

ROOT = Path(__file__).resolve().parents[1]
BAR_THROUGHPUT = 0.8
BAR_P99 = 2.0


@dataclass
class Round:
    seconds: float
    latencies: List[float]
    failures: int

    def rate(self, n: int) -> float:
        return n / self.seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def drive(url: str, texts: Sequence[str], clients: int) -> Round:
    """Every text once, `clients` requests in flight at a time."""
    import aiohttp

    queue: asyncio.Queue[str] = asyncio.Queue()
    for text in texts:
        queue.put_nowait(text)
    latencies: List[float] = []
    failures = 0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        while True:
            try:
                text = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            start = time.perf_counter()
            async with session.post(url, json={"text": text}) as response:
                await response.read()
                if response.status != 200:
                    failures += 1
            latencies.append(time.perf_counter() - start)

    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        seconds = time.perf_counter() - start
    return Round(seconds, latencies, failures)


def wait_until_up(url: str, process: subprocess.Popen, limit_s: float = 300) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with status {process.returncode} before answering")
        request = urllib.request.Request(
            url,
            data=json.dumps({"text": "Warm up."}).encode(),
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {limit_s:.0f} s")


def stop(process: subprocess.Popen, limit_s: float = 60) -> float:
    """SIGTERM, then the seconds until the process exited (SIGKILL past the limit)."""
    start = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return time.monotonic() - start


def save_pipeline(model: str, folder: Path) -> Path:
    """A blank English pipeline with our component for `model`, saved: what
    every server of a benchmark loads."""
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("hf_token_tagger", config={"model": model})
    nlp.to_disk(folder)
    return folder


def start_threads_server(pipeline: Path, port: int) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "SPACY_PIPELINE": str(pipeline), "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable, "-m", "uvicorn", "examples.serve_fastapi:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=ROOT, env=env), f"http://127.0.0.1:{port}/ents"


def start_ray_server(
    pipeline: Path, port: int, replicas: int, ray_tmp: Path, extra: Sequence[str]
) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp), "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    command = [
        sys.executable, "-m", "spacy_hf_tagger", "serve", str(pipeline),
        "--replicas", str(replicas), "--num-cpus", "1", "--port", str(port), *extra,
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=ROOT, env=env), f"http://127.0.0.1:{port}/"


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--limit", type=int, default=2000, help="first N sentences")
    ap.add_argument("--clients", type=int, default=16, help="requests in flight")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2, help="rounds; each server keeps its best")
    ap.add_argument(
        "--ray-arg",
        action="append",
        default=[],
        help="extra argument for `serve` (repeatable), e.g. --ray-arg=--batch-wait-ms=2",
    )
    args = ap.parse_args(argv)


    print(versions_line())
    rendered = render_texts(read_conll(args.data), "natural", "sentences")[: args.limit]
    texts = [r.text for r in rendered]
    words = sum(r.n_words for r in rendered)
    print(
        f"{len(texts)} sentences, {words} words; {args.clients} clients; "
        f"ray: {args.replicas} replicas x 1 CPU {' '.join(args.ray_arg)}; "
        f"{os.cpu_count()} cores; best of {args.repeat}"
    )
    work = Path(tempfile.mkdtemp(prefix="srv", dir="/tmp"))  # short: Ray's socket paths
    try:
        # Both servers load the same saved pipeline folder.
        pipeline = save_pipeline(args.model, work / "pipeline")
        names = ("threads", "ray", "ray-proxy")
        best = {name: Round(float("inf"), [], 0) for name in names}
        for _ in range(args.repeat):
            for name in names:
                port = free_port()
                if name == "threads":
                    process, url = start_threads_server(pipeline, port)
                else:
                    extra = [*args.ray_arg, *(["--no-haproxy"] if name == "ray-proxy" else [])]
                    process, url = start_ray_server(
                        pipeline, port, args.replicas, work / "ray", extra
                    )
                try:
                    wait_until_up(url, process)
                    asyncio.run(drive(url, texts[:200], args.clients))  # warm up
                    result = asyncio.run(drive(url, texts, args.clients))
                finally:
                    stopped_s = stop(process)
                print(
                    f"  {name:<8} {result.rate(len(texts)):7.1f} requests/s, p50 "
                    f"{percentile(result.latencies, 50) * 1000:6.1f} ms, p99 "
                    f"{percentile(result.latencies, 99) * 1000:6.1f} ms, "
                    f"{result.failures} failed; stopped in {stopped_s:.1f} s "
                    f"(exit {process.returncode})"
                )
                if result.seconds < best[name].seconds:
                    best[name] = result
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"{'server':<12} {'requests/s':>10} {'words/s':>8} {'p50 ms':>7} {'p99 ms':>7} failed")
    for name, result in best.items():
        print(
            f"{name:<12} {result.rate(len(texts)):>10.1f} {result.rate(words):>8.0f} "
            f"{percentile(result.latencies, 50) * 1000:>7.1f} "
            f"{percentile(result.latencies, 99) * 1000:>7.1f} {result.failures}"
        )
    verdict = {}
    for name in names[1:]:
        ratio = best["threads"].seconds / best[name].seconds
        p99_ratio = percentile(best[name].latencies, 99) / percentile(best["threads"].latencies, 99)
        passed = ratio >= BAR_THROUGHPUT and p99_ratio <= BAR_P99 and not best[name].failures
        verdict[name] = passed
        print(
            f"{name} / threads: {ratio:.2f}x requests/s (bar >= {BAR_THROUGHPUT}x), p99 "
            f"{p99_ratio:.2f}x (bar <= {BAR_P99}x): {'PASS' if passed else 'FAIL'}"
        )
    return 0 if verdict["ray"] else 1  # the bars are on serve as it runs by default


if __name__ == "__main__":
    sys.exit(main())
