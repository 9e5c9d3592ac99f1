"""The Ray Serve deployment on a local Ray cluster (2 CPUs, 127.0.0.1, started here).

Why: an entity API for many clients must answer every request with the rows
`annotate` writes, batch concurrent requests in each replica, refuse what is
too large or too much (413, 503) quickly and without echoing the text, and
lose no more than the requests in flight when a replica dies, after which
every request succeeds again. Every wait here is bounded.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import signal
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest
from http_json import free_port, post_json
from job_rows import EXACT
from tiny_models import training_sentences

ray = pytest.importorskip("ray", reason="ray not installed (pip install '.[serve]')")
pytest.importorskip("ray.serve", reason="Ray Serve not installed (pip install '.[serve]')")
from ray import serve  # noqa: E402
from starlette.requests import Request  # noqa: E402

from spacy_hf_tagger.errors import RequestError  # noqa: E402
from spacy_hf_tagger.jobs.pipelines import load_pipeline  # noqa: E402
from spacy_hf_tagger.jobs.records import entity_rows  # noqa: E402
from spacy_hf_tagger.serve import Limits, build_app, ingress  # noqa: E402
from spacy_hf_tagger.serve.deployment import TaggerReplica  # noqa: E402

APP = "tagger"
MARKER = "Zebulon Quarrington-Vasquez"
LIMITS = Limits(max_text_chars=2000, max_texts=16, max_request_bytes=50_000)
REQUEST_TIMEOUT = 30.0
# bf16 (dtype="auto" on a CPU with native bf16) rounds scores by 1e-2 with the
# batch's neighbours (docs/speed.md#batch-invariance); float32 by 1e-6.
DTYPE = "float32"


@dataclass
class Server:
    port: int
    ray_tmp: Path
    ingress: str  # "haproxy" or "proxy"

    def post(
        self, body: Any, path: str = "/", timeout: float = REQUEST_TIMEOUT, **headers: str
    ) -> Tuple[int, Any]:
        """(status, JSON answer, or the text of a non-JSON one)."""
        return post_json(self.port, body, path, timeout, **headers)


@pytest.fixture(scope="module")
def model(tiny_models) -> Path:
    return tiny_models("wordpiece-cased", train_steps=100)


def haproxy_environment(ray_tmp: Path) -> Dict[str, str]:
    """What `serve` sets for Ray's HAProxy ingress, with its files in
    `ray_tmp` and its stats, metrics and fallback proxy on free ports (Ray's
    are fixed)."""
    environ: Dict[str, str] = {}
    ingress.use_haproxy(environ)
    files = ray_tmp / "haproxy"
    environ.update(
        RAY_SERVE_HAPROXY_CONFIG_FILE_LOC=str(files / "haproxy.cfg"),
        RAY_SERVE_HAPROXY_SOCKET_PATH=str(files / "admin.sock"),
        RAY_SERVE_HAPROXY_SERVER_STATE_BASE=str(files),
        RAY_SERVE_HAPROXY_SERVER_STATE_FILE=str(files / "server-state"),
        RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH=str(files / "metrics.sock"),
        RAY_SERVE_HAPROXY_STATS_PORT=str(free_port()),
        RAY_SERVE_HAPROXY_METRICS_PORT=str(free_port()),
        RAY_SERVE_FALLBACK_PROXY_HTTP_PORT=str(free_port()),
    )
    return environ


_MISSING_HAPROXY = ingress.haproxy_unavailable()
INGRESSES = [
    "haproxy" if _MISSING_HAPROXY is None else pytest.param(
        "haproxy", marks=pytest.mark.skip(reason=f"Ray's HAProxy ingress: {_MISSING_HAPROXY}")
    ),
    "proxy",
]


@pytest.fixture(scope="module", params=INGRESSES)
def server(request: pytest.FixtureRequest, model: Path) -> Iterator[Server]:
    """The deployment behind each ingress `serve` runs: Ray's HAProxy (the
    default where Ray has it) and Serve's Python proxy (`--no-haproxy`)."""
    # Its own temp folder: the privacy test reads every log of this cluster,
    # and no `ray start` cluster of the machine is joined. Short: socket paths.
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    environ = {"RAY_TMPDIR": str(ray_tmp)}
    if request.param == "haproxy":
        environ.update(haproxy_environment(ray_tmp))
    else:
        ingress.use_serves_proxy(environ)
    previous = {name: os.environ.get(name) for name in environ}
    # Read by the cluster's processes, which inherit this one's environment.
    os.environ.update(environ)
    port = free_port()
    try:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            _node_ip_address="127.0.0.1",
        )
        serve.start(
            http_options={"host": "127.0.0.1", "port": port, "request_timeout_s": REQUEST_TIMEOUT}
        )
        app = build_app(
            str(model),
            replicas=2,
            dtype=DTYPE,
            num_cpus=1,
            limits=LIMITS,
            max_batch_size=8,
            batch_wait_ms=20,
            max_ongoing_requests=16,
            max_queued_requests=64,
            health_check_period_s=1,
            health_check_timeout_s=10,
        )
        serve.run(app, name=APP, route_prefix="/")
        yield Server(port, ray_tmp, request.param)
    finally:
        serve.shutdown()
        ray.shutdown()
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def texts() -> List[str]:
    sentences = [" ".join(words) for words, _ in training_sentences()][:20]
    return [*sentences, "", "  ", f"{MARKER} met John Smith in Berlin.\nThen Paris."]


def same_entities(got: List[Dict[str, Any]], want: List[Dict[str, Any]]) -> None:
    """Spans, labels and texts exactly; scores to float32 rounding: a replica's
    batches hold other texts than one `nlp.pipe` call's (other shapes, packing)."""
    assert [{k: e[k] for k in EXACT} for e in got] == [{k: e[k] for k in EXACT} for e in want]
    for a, b in zip(got, want):
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)


def stats_by_replica(wanted: int, limit_s: float = 20.0) -> Dict[int, Dict[str, Any]]:
    """Each replica's `stats()` (by process id), asking until `wanted` answered."""
    handle = serve.get_app_handle(APP)
    seen: Dict[int, Dict[str, Any]] = {}
    deadline = time.monotonic() + limit_s
    while len(seen) < wanted and time.monotonic() < deadline:
        stats = handle.stats.remote().result(timeout_s=10)
        seen[stats["pid"]] = stats
    return seen


def test_one_request_at_a_time_gets_exactly_the_row_of_nlp_pipe(
    server: Server, model: Path, texts: List[str]
) -> None:
    """A lone request is a batch of one: the row is `nlp.pipe([text])`'s, to the bit."""
    nlp = load_pipeline(str(model), dtype=DTYPE)
    for i, text in enumerate(texts):
        (doc,) = nlp.pipe([text])
        assert server.post({"text": text, "id": i}) == (200, {"id": i, "ents": entity_rows(doc)})
    assert any(entity_rows(doc) for doc in nlp.pipe(texts)), "no entity: nothing was compared"


def test_concurrent_requests_lists_and_handles_get_the_rows_of_nlp_pipe(
    server: Server, model: Path, texts: List[str]
) -> None:
    expected = [entity_rows(doc) for doc in load_pipeline(str(model), dtype=DTYPE).pipe(texts)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda i: server.post({"text": texts[i], "id": i}), range(len(texts)))
        )
    for i, (status, row) in enumerate(answers):
        assert status == 200, row
        assert list(row) == ["id", "ents"] and row["id"] == i
        same_entities(row["ents"], expected[i])
    listed = [*texts[:13], *texts[-3:]]  # 16: the test server's limit per request
    status, rows = server.post({"texts": [listed[0], {"text": listed[1], "id": "b"}, *listed[2:]]})
    assert status == 200
    assert [list(r) for r in rows[:3]] == [["ents"], ["id", "ents"], ["ents"]]
    assert rows[1]["id"] == "b"
    assert len(rows) == len(listed)
    for row, want in zip(rows, [*expected[:13], *expected[-3:]]):
        same_entities(row["ents"], want)
    assert server.post({"texts": []}) == (200, [])

    status, row = server.post({"text": texts[-1], "tokens": True})
    nlp = load_pipeline(str(model), dtype=DTYPE)
    doc = nlp(texts[-1])
    assert status == 200
    assert [(t["start"], t["end"], t["bio"]) for t in row["tokens"]] == [
        (t.idx, t.idx + len(t), t._.hf_bio) for t in doc
    ]

    handle = serve.get_app_handle(APP)
    row = handle.annotate.remote({"text": texts[0], "id": 7}).result(timeout_s=REQUEST_TIMEOUT)
    assert row["id"] == 7
    same_entities(row["ents"], expected[0])
    with pytest.raises(RequestError) as caught:
        handle.annotate.remote({"text": 5}).result(timeout_s=REQUEST_TIMEOUT)
    assert caught.value.status == 422


def test_concurrent_requests_meet_in_batches(server: Server, texts: List[str]) -> None:
    before = {pid: Counter(s["batch_sizes"]) for pid, s in stats_by_replica(2).items()}
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda t: server.post({"text": t})[0], texts * 4))
    assert statuses == [200] * len(statuses)
    after = stats_by_replica(2)
    assert len(after) == 2, "both replicas should have answered"
    sizes: Counter[int] = Counter()
    for pid, stats in after.items():
        sizes.update(Counter(stats["batch_sizes"]) - before.get(pid, Counter()))
    assert sum(size * n for size, n in sizes.items()) == len(statuses)
    assert max(sizes) > 1, f"no batch held more than one text: {dict(sizes)}"
    assert max(sizes) <= 8  # max_batch_size


def test_limits_are_413_and_422_with_messages_without_the_text(server: Server) -> None:
    cases = [
        ({"text": MARKER * 80}, 413, "the request has a text of 2,160 characters, over this"),
        ({"texts": [MARKER] * 17}, 413, "the request has 17 texts, over this server's limit of 16"),
        ({"texts": [MARKER * 70] * 30}, 413, "the request body has over 50,000 bytes"),
        (b'{"text": "' + MARKER.encode(), 422, "the body is not JSON (Unterminated string"),
        ({"texts": [MARKER, {"id": 3}]}, 422, "texts[1]: no 'text' key (keys: ['id'])"),
    ]
    for body, status, message in cases:
        got_status, answer = server.post(body)
        assert got_status == status, answer
        assert list(answer) == ["error"]
        assert message in answer["error"], answer["error"]
        assert "Zebulon" not in answer["error"]
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}/")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT)
    assert caught.value.code == 405


def test_a_request_past_its_timeout_gets_408(server: Server, texts: List[str]) -> None:
    started = time.monotonic()
    status, _ = server.post({"texts": texts[:16]}, **{"x-request-timeout-seconds": "0.001"})
    assert status == 408
    assert time.monotonic() - started < 10


def test_overload_is_refused_with_503_quickly(server: Server, model: Path) -> None:
    tight = build_app(
        str(model),
        num_cpus=0,
        max_batch_size=1,
        max_ongoing_requests=1,
        max_queued_requests=1,
        limits=LIMITS,
    )
    serve.run(tight, name="tight", route_prefix="/tight")
    try:
        slow = {"texts": ["John Smith visited Berlin and Paris. " * 50] * 16}

        def timed(_: int) -> Tuple[int, float]:
            started = time.monotonic()
            status, _answer = server.post(slow, path="/tight")
            return status, time.monotonic() - started

        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(timed, range(12)))
        statuses = Counter(status for status, _ in results)
        assert set(statuses) <= {200, 503}, statuses
        assert statuses[503] >= 1 and statuses[200] >= 1, statuses
        assert max(seconds for status, seconds in results if status == 503) < 5.0
    finally:
        serve.delete("tight")


def test_a_replica_killed_under_load_costs_only_requests_in_flight(
    server: Server, texts: List[str]
) -> None:
    victim = min(stats_by_replica(2))
    body = {"texts": texts[:4]}

    def request(_: int) -> Tuple[int, float]:
        started = time.monotonic()
        try:
            status, _answer = server.post(body)
        except OSError:  # a connection reset counts as a failure, a hang as a timeout
            status = -1
        return status, time.monotonic() - started

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(request, i) for i in range(80)]
        deadline = time.monotonic() + 30
        while sum(f.done() for f in futures) < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(victim, signal.SIGKILL)
        results = [f.result(timeout=REQUEST_TIMEOUT + 10) for f in futures]
    statuses = Counter(status for status, _ in results)
    print(f"statuses of the 80 requests around the kill: {dict(statuses)}")  # -s shows it
    assert set(statuses) <= {200, 500, 502, 503}, statuses
    assert statuses[200] >= 40, statuses
    assert max(seconds for _, seconds in results) < REQUEST_TIMEOUT

    # The replica comes back (a new process), then every request succeeds.
    deadline = time.monotonic() + 60
    replicas: Dict[int, Dict[str, Any]] = {}
    while time.monotonic() < deadline:
        replicas = stats_by_replica(2, limit_s=5)
        if len(replicas) == 2 and victim not in replicas:
            break
        time.sleep(0.5)
    assert len(replicas) == 2 and victim not in replicas, sorted(replicas)
    with ThreadPoolExecutor(8) as pool:
        after = list(pool.map(lambda _: server.post(body)[0], range(40)))
    assert after == [200] * 40


def test_serve_reads_the_ingress_from_the_cluster_and_refuses_the_other_one(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster `ray start` began runs what its environment gave it, whatever
    `serve`'s own says: `serve` names that one, and refuses to serve when
    told to use the other."""
    from spacy_hf_tagger.serve.runner import cluster_runs_haproxy, serve_until_stopped

    haproxy = server.ingress == "haproxy"
    monkeypatch.setenv(ingress.ENABLE_ENV, "0" if haproxy else "1")  # serve's, not the cluster's
    assert cluster_runs_haproxy() is haproxy
    said: List[str] = []
    runs, asked = ingress.ingress_name(haproxy), ingress.ingress_name(not haproxy)
    with pytest.raises(ValueError, match=f"the Ray cluster runs {runs}, not {asked}"):
        app = build_app("no pipeline is loaded")
        serve_until_stopped(app, haproxy=not haproxy, say=said.append)
    assert said == [] and ray.is_initialized()  # nothing served; the cluster was not stopped
    assert serve.status().applications[APP].status == "RUNNING"


def test_clients_keep_their_connection_behind_either_ingress(server: Server) -> None:
    """Behind HAProxy the replicas close their connections to it, not HAProxy
    its connections to the clients."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=REQUEST_TIMEOUT)
    try:
        sockets = []
        for i in range(3):
            body = json.dumps({"text": "John Smith visited Berlin.", "id": i})
            connection.request("POST", "/", body, {"content-type": "application/json"})
            response = connection.getresponse()
            assert (response.status, json.loads(response.read())["id"]) == (200, i)
            assert response.getheader("connection", "keep-alive").lower() != "close"
            sockets.append(connection.sock)
        assert sockets[0] is not None and sockets == [sockets[0]] * 3
    finally:
        connection.close()


def test_ray_logs_never_hold_a_request_text(server: Server) -> None:
    """Every file Ray wrote for this cluster (replica, proxy and controller
    logs included), after the requests above, refused ones too."""
    files = [p for p in server.ray_tmp.rglob("*") if p.is_file()]
    assert any("replica" in p.name for p in files), "no replica log found: nothing was checked"
    for path in files:
        if path.suffix in (".log", ".out", ".err", ".txt", ".json"):
            assert MARKER.encode() not in path.read_bytes(), path


def http_request(body: Any) -> Request:
    """A POST of `body` (bytes as they are, anything else as JSON) as Serve hands it over."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))],
    }

    async def receive() -> Dict[str, Any]:
        return {"type": "http.request", "body": data, "more_body": False}

    return Request(scope, receive)


@pytest.mark.parametrize("haproxy", [True, False], ids=["haproxy", "proxy"])
def test_behind_haproxy_every_answer_closes_its_connection(
    model: Path, monkeypatch: pytest.MonkeyPatch, haproxy: bool
) -> None:
    """HAProxy reuses its idle connections to a replica, and a request it sends
    on one just as the replica dies gets its client's connection dropped
    without an answer; on a connection of its own the request is retried or
    answered 502. Serve's proxy holds the client connections itself: no header."""
    if haproxy:
        monkeypatch.setenv(ingress.ENABLE_ENV, "1")
    else:
        monkeypatch.delenv(ingress.ENABLE_ENV, raising=False)
    replica = TaggerReplica(str(model), threads=1)

    async def answer(query: Any) -> Dict[str, Any]:  # @serve.batch runs only in a replica
        return {"ents": []}

    monkeypatch.setattr(replica, "_answer", answer)
    for body, status in (({"text": "John Smith visited Berlin."}, 200), (b'{"text": ', 422)):
        response = asyncio.run(replica(http_request(body)))
        assert response.status_code == status, response.body
        assert response.headers.get("connection") == ("close" if haproxy else None)


def test_the_health_check_fails_when_the_model_cannot_run(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    replica = TaggerReplica(str(model), threads=1)
    asyncio.run(replica.check_health())  # probes: the model runs
    component = replica.nlp.get_pipe("hf_token_tagger")

    def broken(*args: Any, **kwargs: Any) -> Optional[Any]:
        raise RuntimeError("CUDA error: device lost")

    monkeypatch.setattr(component, "_forward", broken)
    with pytest.raises(RuntimeError, match=r"cannot annotate the health-check text \(Runtime"):
        asyncio.run(replica.check_health())


def test_a_busy_replica_is_healthy_and_only_a_stuck_batch_fails_the_check(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe would wait behind a long batch past Serve's timeout: while a
    batch runs, the check answers at once, unless the batch runs past
    STUCK_BATCH_S."""
    from spacy_hf_tagger.serve import deployment

    replica = TaggerReplica(str(model), threads=1)
    component = replica.nlp.get_pipe("hf_token_tagger")
    forward = component._forward

    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(1.5)
        return forward(*args, **kwargs)

    monkeypatch.setattr(component, "_forward", slow)
    with ThreadPoolExecutor(1) as pool:
        batch = pool.submit(replica._pipe, ["John Smith lives in Berlin."] * 4)
        while replica._batch_started is None and not batch.done():
            time.sleep(0.01)
        started = time.perf_counter()
        asyncio.run(replica.check_health())
        assert time.perf_counter() - started < 0.5  # answered, not queued behind the batch
        monkeypatch.setattr(deployment, "STUCK_BATCH_S", 0.0)
        time.sleep(0.05)
        with pytest.raises(RuntimeError, match=r"a batch has run for \d+ s .*looks stuck"):
            asyncio.run(replica.check_health())
        docs = batch.result(timeout=30)
    assert [len(doc.ents) for doc in docs] == [2, 2, 2, 2]
    assert replica._batch_started is None


def test_a_text_that_fails_the_pipeline_fails_alone_and_errors_hold_no_text(
    model: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from spacy_hf_tagger.serve import deployment

    replica = TaggerReplica(str(model), threads=1)
    component = replica.nlp.get_pipe("hf_token_tagger")
    annotate = component.set_annotations

    def refuse_marker(docs: Any, predictions: Any) -> None:
        if any(MARKER in doc.text for doc in docs):
            raise ValueError(f"cannot write {MARKER}")
        annotate(docs, predictions)

    monkeypatch.setattr(component, "set_annotations", refuse_marker)
    texts = ["John Smith lives in Berlin.", f"{MARKER} lives in Paris.", "Anna met Bob."]
    with caplog.at_level("DEBUG"):
        out = replica._pipe(texts)
    assert [type(doc).__name__ for doc in out] == ["Doc", "_Failed", "Doc"]
    assert out[1] == deployment._Failed("ValueError")
    assert [(e.text, e.label_) for e in out[0].ents] == [("John Smith", "PER"), ("Berlin", "LOC")]

    # An error outside the pipeline's own (here: building the row) is a 500
    # by its type alone, on the handle path too.
    def broken_row(*args: Any, **kwargs: Any) -> Any:
        raise KeyError(MARKER)

    monkeypatch.setattr(component, "set_annotations", annotate)
    monkeypatch.setattr(deployment, "response_row", broken_row)
    monkeypatch.setattr(
        TaggerReplica, "_answer", lambda self, query: deployment.response_row(query, None, False)
    )
    with caplog.at_level("DEBUG"), pytest.raises(RequestError) as raised:
        asyncio.run(replica.annotate({"text": MARKER}))
    assert raised.value.status == 500
    assert "KeyError" in raised.value.message and MARKER not in raised.value.message
    assert MARKER not in caplog.text
