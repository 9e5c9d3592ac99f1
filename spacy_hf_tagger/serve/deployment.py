"""The Ray Serve deployment: each replica loads the pipeline once and batches
the texts of concurrent requests into one `nlp.pipe` call.

Why this shape:

- The pipeline is loaded inside the replica from its name or path (as
  `annotate --engine ray` does), never pickled from the driver.
- `@serve.batch` gathers texts (one per item, so a request of 50 texts and 50
  requests of one text batch alike) for up to `batch_wait_ms` after the first;
  the batch runs on one worker thread of the replica, so its event loop stays
  free to take requests and answer health checks while the model runs, and
  the texts that arrive meanwhile make the next batch.
- A batch that fails is run again one text at a time, so only the request
  holding the text that fails gets the error (500, with the exception type).
- The health check runs a fixed probe text through the pipeline unless a
  batch succeeded since the last check or one is running: a replica whose
  model cannot run is restarted by Serve, and a busy one is neither slowed by
  probes nor restarted for being busy (a probe would wait behind a long
  batch past Serve's timeout). Only a batch running longer than
  `STUCK_BATCH_S` fails the check.
- An error that is not the request's fault answers 500 with the exception's
  type alone: Serve's own handler would log the exception's message, which a
  library may fill with the text.
- Nothing here logs or raises a request's text: errors name positions,
  counts and exception types.
- Behind Ray's HAProxy ingress every answer closes its connection. HAProxy
  keeps idle connections to each replica and reuses them; when a replica
  dies, a request HAProxy had just sent on such a connection gets its
  client's connection closed without any answer (for a reused connection
  HAProxy cannot tell whether the server got the request, so it leaves the
  retry to the client). On a fresh connection the same failure is retried
  on another replica when HAProxy had the whole request before it sent it
  (its condition for a retry), else answered 502 (Serve's error page turns
  it into 500). HAProxy keeps its own connections to the clients
  alive; the replica's cost is a connection per request (figures in
  docs/serving.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Union

try:
    from ray import serve
    from ray.serve import Application
    from starlette.requests import Request
    from starlette.responses import JSONResponse
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "spacy_hf_tagger.serve needs Ray Serve: pip install 'spacy-hf-tagger[serve]'"
    ) from error

from spacy.tokens import Doc

from ..errors import RequestError
from ..jobs.pipelines import lift_length_limit, load_pipeline
from .bodies import DEFAULT_LIMITS, Limits, Query, parse_query, read_json, response_row, too_large
from .ingress import behind_haproxy

logger = logging.getLogger(__name__)

# Not a user's text: what the health check annotates when no batch ran.
PROBE_TEXT = "Health check of the pipeline."
DEPLOYMENT_NAME = "HFTagger"
# A batch running longer than this fails the health check: the replica is
# taken as stuck (the longest batch, 32 texts of 100,000 characters, runs in
# about a minute on one CPU core at float32).
STUCK_BATCH_S = 600.0


@dataclass(frozen=True)
class _Failed:
    """A text the pipeline raised on, by the exception's type alone."""

    error: str


class TaggerReplica:
    """One replica: the pipeline, its batching, its limits (see the module)."""

    def __init__(
        self,
        pipeline: str,
        *,
        lang: str = "en",
        overrides: Optional[Dict[str, Any]] = None,
        device: Optional[str] = None,
        dtype: Optional[str] = None,
        limits: Limits = DEFAULT_LIMITS,
        max_batch_size: int = 32,
        batch_wait_ms: float = 5.0,
        threads: Optional[int] = None,
    ) -> None:
        if threads is not None:
            import torch

            # One forward runs at a time per replica: it gets the replica's CPUs.
            torch.set_num_threads(threads)
        self.nlp = load_pipeline(pipeline, lang, overrides, device=device, dtype=dtype)
        self.length_limit = lift_length_limit(self.nlp)
        self.limits = limits
        self.batch_sizes: Counter[int] = Counter()
        self._ran_since_check = False
        self._batch_started: Optional[float] = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="hf-tagger-batch")
        self._headers = {"connection": "close"} if behind_haproxy() else None
        self._annotate.set_max_batch_size(max_batch_size)
        self._annotate.set_batch_wait_timeout_s(batch_wait_ms / 1000)
        self.nlp(PROBE_TEXT)  # load the model before the first request

    # ------------------------------------------------------------- batching

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _annotate(self, texts: List[str]) -> List[Union[Doc, _Failed]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._pipe, texts)

    def _pipe(self, texts: List[str]) -> List[Union[Doc, _Failed]]:
        self.batch_sizes[len(texts)] += 1
        self._batch_started = time.monotonic()
        try:
            try:
                docs: List[Union[Doc, _Failed]] = list(
                    self.nlp.pipe(texts, batch_size=len(texts))
                )
            except Exception as err:
                logger.warning(
                    "a batch of %d texts failed (%s); annotating each alone",
                    len(texts),
                    type(err).__name__,
                )
                docs = [self._one(text, position) for position, text in enumerate(texts)]
                if all(isinstance(doc, _Failed) for doc in docs):
                    return docs
            self._ran_since_check = True
            return docs
        finally:
            self._batch_started = None

    def _one(self, text: str, position: int) -> Union[Doc, _Failed]:
        try:
            return self.nlp(text)
        except Exception as err:
            logger.warning("text %d of a batch failed alone (%s)", position, type(err).__name__)
            return _Failed(type(err).__name__)

    async def _answer(self, query: Query) -> Any:
        docs = await asyncio.gather(*(self._annotate(r.text) for r in query.records))
        rows = []
        for record, doc in zip(query.records, docs):
            if isinstance(doc, _Failed):
                where = f"texts[{record.position}]" if query.many else "the text"
                raise RequestError(
                    500,
                    f"the pipeline failed on {where} ({doc.error}); the replica's log has "
                    "the exception type. Other texts are not affected.",
                )
            rows.append(response_row(record, doc, query.tokens))
        return rows if query.many else rows[0]

    # ------------------------------------------------------------ interfaces

    async def annotate(self, request: Dict[str, Any]) -> Any:
        """For deployment handles: `request` as the HTTP body would be
        (`{"text": ..., "id": ...}` or `{"texts": [...]}`, `"tokens": true`
        optional); the row, or the list of rows. Raises `RequestError` (any
        other error as one of status 500, by its type alone)."""
        try:
            return await self._answer(parse_query(request, self.limits, self.length_limit))
        except RequestError:
            raise
        except Exception as err:
            raise _internal_error(err) from None

    async def __call__(self, request: Request) -> JSONResponse:
        try:
            if request.method != "POST":
                raise RequestError(
                    405, f"{request.method} is not served: POST a JSON body to this route."
                )
            body = await _read_body(request, self.limits)
            query = parse_query(read_json(body, self.limits), self.limits, self.length_limit)
            return JSONResponse(await self._answer(query), headers=self._headers)
        except RequestError as err:
            failure = err
        except Exception as err:
            failure = _internal_error(err)
        return JSONResponse(
            {"error": failure.message}, status_code=failure.status, headers=self._headers
        )

    def stats(self) -> Dict[str, Any]:
        """This replica's process id and how many batches of each size it ran
        (Serve's `serve_actual_batch_size` metric has them per deployment)."""
        sizes = dict(self.batch_sizes)  # one copy: the batch thread adds sizes
        return {
            "pid": os.getpid(),
            "batch_sizes": sizes,
            "texts": sum(size * n for size, n in sizes.items()),
        }

    async def check_health(self) -> None:
        """Serve calls this every `health_check_period_s`; raising restarts the replica."""
        started = self._batch_started
        if started is not None:
            running = time.monotonic() - started
            if running <= STUCK_BATCH_S:
                return  # the model is running: busy, not broken
            raise RuntimeError(
                f"a batch has run for {running:.0f} s (over {STUCK_BATCH_S:.0f} s): "
                "the replica looks stuck."
            )
        if self._ran_since_check:
            self._ran_since_check = False
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self.nlp, PROBE_TEXT)
        except Exception as err:
            raise RuntimeError(
                f"the pipeline cannot annotate the health-check text ({type(err).__name__}): "
                "the model cannot run in this replica."
            ) from None


async def _read_body(request: Request, limits: Limits) -> bytes:
    """The body, refused with 413 as soon as it is over the limit (by its
    Content-Length, else while reading)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_request_bytes:
        raise too_large(int(declared), limits)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_request_bytes:
            raise too_large(size, limits)
        chunks.append(chunk)
    return b"".join(chunks)


TaggerDeployment = serve.deployment(name=DEPLOYMENT_NAME)(TaggerReplica)


def build_app(
    pipeline: str,
    *,
    replicas: int = 1,
    lang: str = "en",
    overrides: Optional[Dict[str, Any]] = None,
    device: Optional[str] = None,
    dtype: Optional[str] = None,
    limits: Limits = DEFAULT_LIMITS,
    max_batch_size: int = 32,
    batch_wait_ms: float = 5.0,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    max_ongoing_requests: int = 64,
    max_queued_requests: int = 256,
    autoscaling: Optional[Dict[str, Any]] = None,
    health_check_period_s: float = 10.0,
    health_check_timeout_s: float = 30.0,
) -> Application:
    """The Serve application for `pipeline` (what `annotate` takes: an
    installed pipeline or a folder every node can read, or a model folder or
    hub id), for `serve.run(app, route_prefix="/")`.

    Each replica gets `num_cpus` CPUs (torch uses that many threads) and
    `num_gpus` GPUs, takes `max_ongoing_requests` requests at a time, and
    each caller (Serve's HTTP proxy, a handle; behind HAProxy, the replica
    itself) queues at most `max_queued_requests` more before answering 503.
    `autoscaling` is Serve's `autoscaling_config` (min_replicas, max_replicas,
    target_ongoing_requests, ...) and replaces `replicas`."""
    if max_batch_size < 1 or batch_wait_ms < 0:
        raise ValueError(
            f"max_batch_size must be at least 1 and batch_wait_ms at least 0, got "
            f"{max_batch_size} and {batch_wait_ms}."
        )
    if max_ongoing_requests < max_batch_size:
        raise ValueError(
            f"max_ongoing_requests {max_ongoing_requests} is below max_batch_size "
            f"{max_batch_size}: a replica would never hold a full batch of one-text requests; "
            "raise the first or lower the second."
        )
    if replicas < 1 and not autoscaling:
        raise ValueError(f"replicas must be at least 1, got {replicas}.")
    options: Dict[str, Any] = {
        "ray_actor_options": {"num_cpus": num_cpus, "num_gpus": num_gpus},
        "max_ongoing_requests": max_ongoing_requests,
        "max_queued_requests": max_queued_requests,
        "health_check_period_s": health_check_period_s,
        "health_check_timeout_s": health_check_timeout_s,
    }
    if autoscaling:
        options["autoscaling_config"] = dict(autoscaling)
    else:
        options["num_replicas"] = replicas
    return TaggerDeployment.options(**options).bind(
        pipeline,
        lang=lang,
        overrides=overrides,
        device=device,
        dtype=dtype,
        limits=limits,
        max_batch_size=max_batch_size,
        batch_wait_ms=batch_wait_ms,
        threads=max(1, int(num_cpus)),
    )


def _internal_error(err: Exception) -> RequestError:
    """A 500 for an error that is not the request's fault, logged and
    answered by its type alone (its message may hold the text)."""
    logger.error("a request failed inside the replica (%s)", type(err).__name__)
    return RequestError(
        500,
        f"the replica failed on this request ({type(err).__name__}); its log has the "
        "exception type.",
    )
