"""Where our component's time goes, and what it costs without a model.

`StageClock.attach(nlp)` wraps the functions each stage of the component
calls (as `component` and `model.forward` import them) with timers that count
*exclusive* time: a stage nested in another (the HF tokenizer inside the
alignment, batch building inside the forward loop) is taken out of its parent.
Whatever `nlp.pipe` spends outside every stage is "other".

`ReplayModel` stands in for the model: it returns the logits the real model
gave for the same inputs (recorded by `RecordingModel`), at once or after a
sleep, so the glue is timed alone ("glue-only": an infinitely fast device) or
against a device that takes a known time per call, with entities identical to
the real run.

Benchmark code only: it patches module attributes for the duration of a
`with` block and restores them.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from contextlib import ExitStack, contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple
from unittest import mock

import torch

STAGES = (
    "spaCy tokenizer",
    "HF tokenization",
    "sentence rule",
    "segments, alignment",
    "windows",
    "batch building",
    "forward",
    "softmax, transfer",
    "aggregation, decoding",
    "Viterbi",
    "writing",
    "other",
)


class StageClock:
    """Exclusive seconds per stage, over every call made while attached."""

    def __init__(self) -> None:
        self.seconds: Counter = Counter()
        self.calls: Counter = Counter()
        self._stack: List[List[float]] = []  # [start, child seconds]

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        frame = [time.perf_counter(), 0.0]
        self._stack.append(frame)
        try:
            yield
        finally:
            self._stack.pop()
            spent = time.perf_counter() - frame[0]
            self.seconds[name] += spent - frame[1]
            self.calls[name] += 1
            if self._stack:
                self._stack[-1][1] += spent

    def timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self.stage(name):
                return fn(*args, **kwargs)

        return wrapper

    def timed_iter(self, name: str, fn: Callable[..., Iterator[Any]]) -> Callable[..., Any]:
        """A generator function whose every step is timed (its consumer is not)."""

        def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            it = fn(*args, **kwargs)
            while True:
                with self.stage(name):
                    try:
                        item = next(it)
                    except StopIteration:
                        return
                yield item

        return wrapper

    @contextmanager
    def attach(self, nlp: Any, pipe_name: str = "hf_token_tagger") -> Iterator[StageClock]:
        """Time the stages of `nlp`'s component while the block runs."""
        from spacy_hf_tagger import component
        from spacy_hf_tagger.align import sentences
        from spacy_hf_tagger.labels import decoding
        from spacy_hf_tagger.model import forward

        patches: List[Tuple[Any, str, Any]] = [
            (forward, "encode_texts", self.timed("HF tokenization", forward.encode_texts)),
            (
                sentences,
                "rule_sentence_starts",
                self.timed("sentence rule", sentences.rule_sentence_starts),
            ),
            (forward, "encode_batch", self.timed("segments, alignment", forward.encode_batch)),
            (forward, "segment_windows", self.timed("windows", forward.segment_windows)),
            (component, "model_batches", self.timed_iter("batch building", forward.model_batches)),
            (
                component,
                "piece_probabilities",
                self.timed("softmax, transfer", forward.piece_probabilities),
            ),
        ]
        for name in ("aggregate_token_probs", "word_groups", "predict_entities", "predict_tags"):
            patches.append(
                (component, name, self.timed("aggregation, decoding", getattr(component, name)))
            )
        # With a Viterbi decoding (auto on IOB2 and BIOES models): the search
        # alone, out of "aggregation, decoding".
        patches.append(
            (decoding, "viterbi_label_ids", self.timed("Viterbi", decoding.viterbi_label_ids))
        )
        for name in ("write_entities", "write_tags", "split_by_doc"):
            patches.append((component, name, self.timed("writing", getattr(component, name))))
        pipe = nlp.get_pipe(pipe_name)
        loaded = pipe._ensure_loaded()
        original_runner = loaded.inference_model
        clock = self

        def timed_runner() -> Any:
            return _TimedModule(original_runner(), clock)

        with ExitStack() as stack:
            for owner, attr, value in patches:
                stack.enter_context(_patched(owner, attr, value))
            stack.enter_context(_patched(loaded, "inference_model", timed_runner))
            stack.enter_context(_patched(nlp, "tokenizer", _TimedTokenizer(nlp.tokenizer, self)))
            yield self

    def table(self, total_s: float, words: int) -> str:
        """The stages as rows: seconds, share of the total, words/s if it were alone."""
        counted = sum(self.seconds.values())
        seconds = dict(self.seconds)
        seconds["other"] = max(0.0, total_s - counted)
        lines = [f"  {'stage':<24} {'seconds':>8} {'share':>7} {'words/s alone':>14}"]
        for name in STAGES:
            s = seconds.get(name, 0.0)
            alone = f"{words / s:14.0f}" if s > 0 else f"{'-':>14}"
            lines.append(f"  {name:<24} {s:8.3f} {s / total_s:7.1%} {alone}")
        lines.append(f"  {'total':<24} {total_s:8.3f} {1:7.1%} {words / total_s:14.0f}")
        return "\n".join(lines)


class _TimedTokenizer:
    def __init__(self, tokenizer: Any, clock: StageClock) -> None:
        self._tokenizer = tokenizer
        self._clock = clock

    def __call__(self, text: str) -> Any:
        with self._clock.stage("spaCy tokenizer"):
            return self._tokenizer(text)

    def pipe(self, texts: Any, batch_size: int = 1000) -> Iterator[Any]:
        for text in texts:
            yield self(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)


class _TimedModule:
    """The model as `piece_probabilities` calls it, with its calls timed as "forward"."""

    def __init__(self, module: Any, clock: StageClock) -> None:
        self._module = module
        self._clock = clock
        self.training = False

    def __call__(self, **inputs: Any) -> Any:
        with self._clock.stage("forward"):
            return self._module(**inputs)

    def eval(self) -> _TimedModule:
        return self


@contextmanager
def _patched(owner: Any, attr: str, value: Any) -> Iterator[None]:
    had = attr in vars(owner) if hasattr(owner, "__dict__") else True
    old = getattr(owner, attr)
    setattr(owner, attr, value)
    try:
        yield
    finally:
        if had:
            setattr(owner, attr, old)
        else:
            delattr(owner, attr)


# ------------------------------------------------------------------- stub models


def _key(inputs: Dict[str, torch.Tensor]) -> Tuple[Any, ...]:
    return tuple(
        (name, tuple(t.shape), t.cpu().numpy().tobytes()) for name, t in sorted(inputs.items())
    )


class _Output:
    __slots__ = ("logits",)

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits


class RecordingModel:
    """Runs the real model and keeps its logits for every distinct input."""

    def __init__(self, module: Any, store: Dict[Tuple[Any, ...], torch.Tensor]) -> None:
        self._module = module
        self._store = store
        self.training = False

    def __call__(self, **inputs: torch.Tensor) -> Any:
        out = self._module(**inputs)
        self._store[_key(inputs)] = out.logits.detach().clone()
        return out

    def eval(self) -> RecordingModel:
        return self


class ReplayModel:
    """Returns the recorded logits for the same inputs, after sleeping
    `delay_per_position` seconds for each padded position of the call.

    A device's forward time grows with the positions it computes, not with the
    number of calls: cut the same text into more, smaller calls and the device
    total stays about the same. The sleep releases the GIL as a device's
    forward does, so glue running in another thread meanwhile is what
    overlapping buys."""

    def __init__(
        self, store: Dict[Tuple[Any, ...], torch.Tensor], delay_per_position: float = 0.0
    ) -> None:
        self._store = store
        self.delay_per_position = delay_per_position
        self.training = False
        self.calls = 0
        self.positions = 0
        self.missing = 0

    def __call__(self, **inputs: torch.Tensor) -> Any:
        self.calls += 1
        self.positions += inputs["input_ids"].numel()
        logits = self._store.get(_key(inputs))
        if logits is None:  # an input never seen: logits of the right shape
            self.missing += 1
            ids = inputs["input_ids"]
            n_labels = next(iter(self._store.values())).shape[-1] if self._store else 2
            logits = torch.zeros((*ids.shape, n_labels))
        if self.delay_per_position:
            time.sleep(self.delay_per_position * inputs["input_ids"].numel())
        return _Output(logits)

    def eval(self) -> ReplayModel:
        return self


@contextmanager
def accelerator_path() -> Iterator[None]:
    """Run the component as it runs on an accelerator, whose work is not
    routed through the torch thread (`torch_thread.run_for`): the replay
    stands for a device. Routed, the tiny torch ops around each replayed call
    wake the torch thread's OpenMP worker, which then spins on a core the
    glue needs (measured: overlap 1.20-1.34x on 2 cores, bar 1.6x)."""
    from spacy_hf_tagger.model import torch_thread

    with mock.patch.dict(os.environ, {torch_thread.ENV_SWITCH: "0"}):
        yield


@contextmanager
def model_replaced(nlp: Any, make: Callable[[Any], Any], pipe_name: str = "hf_token_tagger"):
    """Run `nlp`'s component with `make(real_runner)` in place of its model."""
    loaded = nlp.get_pipe(pipe_name)._ensure_loaded()
    runner = loaded.inference_model()
    with _patched(loaded, "inference_model", lambda: make(runner)):
        yield


def record_logits(
    nlp: Any, texts: List[str]
) -> Tuple[Dict[Tuple[Any, ...], torch.Tensor], List[Any]]:
    """The logits of every forward call `nlp.pipe(texts)` makes, and its docs."""
    store: Dict[Tuple[Any, ...], torch.Tensor] = {}
    with model_replaced(nlp, lambda runner: RecordingModel(runner, store)):
        docs = list(nlp.pipe(texts))
    return store, docs


def entity_spans(docs: List[Any]) -> List[Tuple[Tuple[int, int, str], ...]]:
    return [tuple((e.start_char, e.end_char, e.label_) for e in doc.ents) for doc in docs]


def run_pipe(nlp: Any, texts: List[str]) -> Tuple[float, List[Any]]:
    t0 = time.perf_counter()
    docs = list(nlp.pipe(texts))
    return time.perf_counter() - t0, docs


def stage_breakdown(nlp: Any, texts: List[str]) -> Tuple[float, StageClock, Optional[Any]]:
    """One timed `nlp.pipe(texts)` with the stage clock attached."""
    clock = StageClock()
    with clock.attach(nlp):
        total, docs = run_pipe(nlp, texts)
    return total, clock, docs
