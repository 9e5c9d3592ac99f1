"""Words per second on CPU: our component versus the bare model and peers, in one process.

For each workload (``documents``: the 231 CoNLL-2003 test documents as texts,
sentences joined by "\\n"; ``sentences``: the 3,453 sentences as texts;
``long``: one text of all test documents, repeated up to 50,000 words; spaced
rendering) this times, with the same model:

* ``floor``: the bare model forward (``torch.inference_mode``, fp32) over the
  windows our component would see: each line of each text (our default
  context, "sentence"; with ``--context document`` each text) tokenized without
  special tokens, cut into windows of at most ``max_length - 2`` subwords
  overlapping by at least ``--stride`` (the component's plan: the last window
  ends at the text's end), plus [CLS]/[SEP], sorted by length, padded batches of
  ``--batch-size`` windows. Its words/s counts the forward passes only; the
  total including tokenization and batching is printed too;
* ``ours``: ``nlp.pipe(texts)`` with ``spacy.blank("en")`` + ``hf_token_tagger``
  (includes spaCy's tokenizer);
* ``transformers``: ``pipeline("token-classification", aggregation_strategy="first",
  stride=--stride)`` called on the list of texts with ``batch_size=--batch-size``;
* ``shp``: spacy-huggingface-pipelines ``hf_token_pipe`` (aggregation "first",
  its other settings at their defaults) through ``nlp.pipe(texts)``.

Words are CoNLL tokens. Each system is warmed up on a few texts first; with
``--repeat N`` the systems are timed round-robin N times and the best time is
kept. Bars: ours >= 0.85x floor, >= 1.5x transformers, > spacy-hf-pipelines;
and a word of the long document costs ours <= 1.15x a word of the sentences.

    python benchmarks/speed.py --workload both --repeat 3
    python benchmarks/speed.py --workload all --only floor,ours
    python benchmarks/speed.py --workload sentences --limit 40 --only floor,transformers
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import stages
from accuracy import (
    DEFAULT_DATA,
    DEFAULT_MODEL,
    drop_missing_shp,
    make_hf_pipeline,
    make_ours,
    make_shp,
    on_torch_thread,
    ours_config,
    ours_unavailable_reason,
    quiet_transformers,
    versions_line,
)
from conll import UNITS, read_conll, render_texts

from spacy_hf_tagger.labels.viterbi import DECODINGS

SYSTEMS = ("floor", "ours", "transformers", "shp")
BAR_FLOOR = 0.9
BAR_GLUE = 10.0
BAR_OVERLAP = 1.6
BAR_TRANSFORMERS = 1.5
BAR_LONG = 1.15
LONG_WORDS = 50_000
WORKLOADS = (*UNITS, "long")
# Config keys of our component worth printing next to its timing.
OURS_KEYS = (
    "device",
    "dtype",
    "max_length",
    "stride",
    "batch_size",
    "max_batch_subwords",
    "aggregation",
)


# ----------------------------------------------------------------------------- floor


def window_starts(n_pieces: int, width: int, stride: int) -> List[int]:
    """Start offsets of the windows over ``n_pieces`` subwords (the component's plan).

    One window when the text fits; otherwise windows of exactly ``width`` pieces
    every ``width - stride`` pieces, the last one ending exactly at the end.
    """
    if n_pieces <= 0:
        return []
    if n_pieces <= width:
        return [0]
    starts = set(range(0, n_pieces - width, width - stride))
    starts.add(n_pieces - width)
    return sorted(starts)


def make_windows(
    token_ids: Sequence[Sequence[int]], max_length: int, stride: int, cls_id: int, sep_id: int
) -> List[List[int]]:
    """Cut each text's subwords into windows of <= max_length - 2 pieces overlapping by
    at least ``stride``, each wrapped in [CLS] ... [SEP]. Empty texts give no window."""
    width = max_length - 2
    if not 0 <= stride < width:
        raise ValueError(f"--stride must be in [0, {width}) for max length {max_length}")
    return [
        [cls_id, *ids[start : start + width], sep_id]
        for ids in token_ids
        for start in window_starts(len(ids), width, stride)
    ]


def default_stride(max_length: int) -> int:
    """The component's default overlap: a quarter of the window's text, at most 128."""
    return min((max_length - 2) // 4, 128)


def pad_batches(
    windows: Sequence[Sequence[int]],
    batch_size: int,
    pad_id: int,
    max_positions: Optional[int] = None,
) -> list:
    """Padded ``(input_ids, attention_mask)`` tensors of at most ``batch_size`` windows
    and ``max_positions`` padded positions, longest first (as the component does:
    the largest buffers are allocated once, first)."""
    import torch

    ordered = sorted(windows, key=len, reverse=True)
    chunks: List[List[Sequence[int]]] = []
    for w in ordered:
        if chunks and len(chunks[-1]) < batch_size and (
            max_positions is None or (len(chunks[-1]) + 1) * len(chunks[-1][0]) <= max_positions
        ):
            chunks[-1].append(w)
        else:
            chunks.append([w])
    batches = []
    for chunk in chunks:
        width = len(chunk[0])
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, w in enumerate(chunk):
            ids[row, : len(w)] = torch.tensor(w, dtype=torch.long)
            mask[row, : len(w)] = 1
        batches.append((ids, mask))
    return batches


def parse_batch_shape(text: str) -> Tuple[int, Optional[int]]:
    """"64" -> 64 windows a batch; "256/4096" -> at most 256 windows and 4,096
    padded positions."""
    windows, _, positions = text.partition("/")
    return int(windows), (int(positions) if positions else None)


def shape_name(shape: Tuple[int, Optional[int]]) -> str:
    return str(shape[0]) if shape[1] is None else f"{shape[0]}/{shape[1]}"


def at_precision(model, runs_in: str):
    """The bare model in the precision ours runs in: cast weights for bf16/fp16,
    torch's dynamic int8 of every linear layer for int8."""
    import torch

    if runs_in == "int8":
        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    if runs_in in ("bfloat16", "float16"):
        return model.to(getattr(torch, runs_in))
    return model


class Floor:
    """The bare model forward over our component's windows (per line, with
    `split_lines`: our "sentence" context on texts with no sentence component)."""

    def __init__(
        self,
        model_path: str,
        max_length: int,
        stride: int,
        batch_size: Tuple[int, Optional[int]],
        split_lines: bool = True,
        runs_in: str = "float32",
    ) -> None:
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(model_path)
        model = AutoModelForTokenClassification.from_pretrained(model_path).eval()
        self.model = at_precision(model, runs_in)
        self.runs_in = runs_in
        self.max_length = max_length
        self.stride = stride
        self.batch_size = batch_size
        self.split_lines = split_lines
        self.last_prep_s = 0.0
        self.n_windows = 0
        self.n_subwords = 0

    def prepare(self, texts: Sequence[str]) -> list:
        if self.split_lines:
            texts = [line.strip() for text in texts for line in text.splitlines()]
            texts = [line for line in texts if line]
        ids = self.tok(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
        windows = make_windows(
            ids, self.max_length, self.stride, self.tok.cls_token_id, self.tok.sep_token_id
        )
        self.n_windows = len(windows)
        self.n_subwords = sum(len(x) for x in ids)
        return pad_batches(windows, self.batch_size[0], self.tok.pad_token_id, self.batch_size[1])

    def forward(self, batches: list) -> float:
        """Seconds spent in the forward passes alone."""
        import torch

        t0 = time.perf_counter()
        with torch.inference_mode():
            for ids, mask in batches:
                self.model(input_ids=ids, attention_mask=mask)
        return time.perf_counter() - t0

    def run(self, texts: Sequence[str]) -> float:
        """Tokenize, window, pad and forward; returns forward-only seconds and keeps the
        preparation time in ``last_prep_s``."""
        t0 = time.perf_counter()
        batches = self.prepare(texts)
        self.last_prep_s = time.perf_counter() - t0
        return self.forward(batches)


# --------------------------------------------------------------------------- harness


@dataclass
class Timing:
    system: str
    best_s: float = float("inf")
    best_total_s: float = float("inf")  # floor only: including tokenization/batching
    best_batch: str = ""  # floor only: the batch shape of its best time
    note: str = ""


def words_per_s(words: int, seconds: float) -> float:
    return words / seconds if seconds > 0 else float("nan")


def run_workload(
    name: str,
    texts: Sequence[str],
    words: int,
    runners: Dict[str, Callable[[Sequence[str]], None]],
    floor: Optional[Floor],
    repeat: int,
    warmup: int,
    floor_batch_sizes: Sequence[Tuple[int, Optional[int]]] = ((32, None),),
) -> Dict[str, Timing]:
    """Time every system `repeat` times round-robin; keep each one's best. The
    floor is timed at each of `floor_batch_sizes` and keeps its best too."""
    timings: Dict[str, Timing] = {s: Timing(s) for s in runners}
    if floor is not None:
        timings = {"floor": Timing("floor"), **timings}
        on_torch_thread(floor.run, texts[:warmup])
    for fn in runners.values():
        fn(texts[:warmup])
    for r in range(repeat):
        for system in timings:
            if system == "floor":
                assert floor is not None
                for size in floor_batch_sizes:
                    floor.batch_size = size
                    fwd = on_torch_thread(floor.run, texts)
                    t = timings["floor"]
                    if fwd < t.best_s:
                        t.best_s, t.best_batch = fwd, shape_name(size)
                    t.best_total_s = min(t.best_total_s, fwd + floor.last_prep_s)
                    print(
                        f"  [{name}] run {r + 1}/{repeat} floor, batch "
                        f"{shape_name(size):<8} {fwd:6.2f}s "
                        f"{words_per_s(words, fwd):9.0f} words/s",
                        flush=True,
                    )
                continue
            t0 = time.perf_counter()
            runners[system](texts)
            secs = time.perf_counter() - t0
            timings[system].best_s = min(timings[system].best_s, secs)
            print(
                f"  [{name}] run {r + 1}/{repeat} {system:<13} {secs:8.2f}s "
                f"{words_per_s(words, secs):9.0f} words/s",
                flush=True,
            )
    return timings


def report(
    name: str, n_texts: int, words: int, timings: Dict[str, Timing], floor: Optional[Floor]
) -> List[str]:
    """Print the workload's table and verdicts; return FAIL lines."""
    print(f"\n== {name}: {n_texts} texts, {words} words", end="")
    if floor is not None:
        print(
            f", {floor.n_subwords} subwords, {floor.n_windows} windows "
            f"(max length {floor.max_length}, stride {floor.stride})",
            end="",
        )
    print()
    print(f"{'system':<16} {'seconds':>9} {'words/s':>10}  note")
    wps: Dict[str, float] = {}
    for s, t in timings.items():
        wps[s] = words_per_s(words, t.best_s)
        print(f"{s:<16} {t.best_s:9.2f} {wps[s]:10.0f}  {t.note}")
        if s == "floor":
            print(f"{'':<16} {'':>9} {'':>10}  best at batch size {t.best_batch}")
            total = wps["floor (total)"] = words_per_s(words, t.best_total_s)
            print(
                f"{'floor (total)':<16} {t.best_total_s:9.2f} {total:10.0f}  "
                "incl. tokenization, windowing, padding"
            )
    fails: List[str] = []
    if "ours" in wps:
        checks = (
            ("floor", BAR_FLOOR, ">="),
            ("transformers", BAR_TRANSFORMERS, ">="),
            ("shp", 1.0, ">"),
        )
        for peer, bar, op in checks:
            if peer not in wps:
                continue
            ratio = wps["ours"] / wps[peer]
            ok = ratio >= bar if op == ">=" else ratio > bar
            verdict = "PASS" if ok else "FAIL"
            print(f"ours/{peer:<13} {ratio:6.2f}x  (bar {op} {bar}x): {verdict}")
            if not ok:
                fails.append(f"{name}: ours/{peer} {ratio:.2f}x, bar {op} {bar}x")
        if "floor (total)" in wps:
            # For reading, not a verdict: the bar above holds ours to the
            # forward alone; a user running the bare model pays its tokenizer
            # too, and the glue-only bar reads the floor so.
            ratio = wps["ours"] / wps["floor (total)"]
            print(f"ours/floor (total) {ratio:4.2f}x  (the floor with its tokenizer; no bar)")
    return fails


def glue_report(
    name: str, nlp, texts: Sequence[str], words: int, floor_total_wps: Optional[float], repeat: int
) -> List[str]:
    """Ours by stage; ours with the model replaced by a replay of its logits
    (glue-only); and that replay sleeping as long as the glue takes, one after
    the other and overlapped. Returns FAIL lines."""
    texts = list(texts)
    pipe = nlp.get_pipe("hf_token_tagger")
    total, clock, real_docs = stages.stage_breakdown(nlp, texts)
    print(f"\n-- [{name}] ours by stage (one run, {pipe.precision.runs_in}):")
    print(clock.table(total, words))
    store, _ = stages.record_logits(nlp, texts)
    replay = stages.ReplayModel(store)
    expected = stages.entity_spans(real_docs)
    glue_s = float("inf")
    with stages.model_replaced(nlp, lambda runner: replay), stages.accelerator_path():
        for _ in range(repeat):
            secs, docs = stages.run_pipe(nlp, texts)
            glue_s = min(glue_s, secs)
    same = stages.entity_spans(docs) == expected
    calls = max(1, replay.calls // repeat)
    positions = max(1, replay.positions // repeat)
    fails: List[str] = []
    glue_wps = words_per_s(words, glue_s)
    line = f"glue-only        {glue_s:9.2f} {glue_wps:10.0f}  model replaced by a replay"
    print(f"{line} of its logits ({calls} calls); entities identical: {same}")
    if not same:
        fails.append(f"{name}: glue-only run changed entities")
    if floor_total_wps:
        ratio = glue_wps / floor_total_wps
        verdict = "PASS" if ratio >= BAR_GLUE else "FAIL"
        print(
            f"glue-only/floor (total) {ratio:6.2f}x  (bar >= {BAR_GLUE}x, floor incl. "
            f"tokenization): {verdict}"
        )
        if verdict == "FAIL":
            fails.append(f"{name}: glue-only {ratio:.2f}x the floor, bar >= {BAR_GLUE}x")
    # A device as slow as our glue: run one after the other, the two add up;
    # overlapped, the glue hides behind the device. Overlapped chunks can be
    # smaller (other batches): their logits are recorded too.
    replay.delay_per_position = glue_s / positions
    settings = pipe.settings
    try:
        pipe.settings = settings.replace(overlap=True)
        overlapped_store, overlapped_docs = stages.record_logits(nlp, texts)
        store.update(overlapped_store)
    finally:
        pipe.settings = settings
    timing: Dict[bool, float] = {}
    outputs: Dict[bool, list] = {}
    try:
        with stages.model_replaced(nlp, lambda runner: replay), stages.accelerator_path():
            for _ in range(repeat):
                for overlap in (False, True):
                    pipe.settings = settings.replace(overlap=overlap)
                    secs, docs = stages.run_pipe(nlp, texts)
                    timing[overlap] = min(timing.get(overlap, float("inf")), secs)
                    outputs[overlap] = stages.entity_spans(docs)
    finally:
        pipe.settings = settings
    ratio = timing[False] / timing[True]
    # Each as the real model gives in that mode (in bf16, overlapped chunks can
    # round differently: docs/speed.md#batch-invariance).
    same = outputs[True] == stages.entity_spans(overlapped_docs) and outputs[False] == expected
    if stages.entity_spans(overlapped_docs) != expected:
        differ = sum(a != b for a, b in zip(stages.entity_spans(overlapped_docs), expected))
        print(f"(the real model, overlapped chunks: {differ} texts' entities differ)")
    ok = ratio >= BAR_OVERLAP and same
    print(
        f"device sleeping {replay.delay_per_position * 1e6:.2f} µs a padded position "
        f"({glue_s / calls * 1000:.2f} ms a call of the plain run: as long as the glue): "
        f"one after the other {words_per_s(words, timing[False]):.0f} words/s, overlapped "
        f"{words_per_s(words, timing[True]):.0f} words/s = {ratio:.2f}x (bar >= "
        f"{BAR_OVERLAP}x), entities identical: {same}: {'PASS' if ok else 'FAIL'}"
    )
    if not ok:
        fails.append(f"{name}: overlap {ratio:.2f}x (entities identical: {same})")
    return fails


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="CoNLL-2003 file (eng.testb)")
    ap.add_argument("--model", default=str(DEFAULT_MODEL), help="HF token-classification model")
    ap.add_argument(
        "--workload",
        default="both",
        choices=(*WORKLOADS, "both", "all"),
        help="both = documents and sentences; all = also the 50,000-word document",
    )
    ap.add_argument(
        "--context",
        default=None,
        choices=("sentence", "document"),
        help="our component's context setting (default: its own default, sentence)",
    )
    ap.add_argument(
        "--decoding",
        default=None,
        choices=DECODINGS,
        help="our component's decoding setting (default: its own default); the stage "
        "table shows the Viterbi search in a row of its own",
    )
    ap.add_argument("--limit", type=int, default=None, help="use only the first N documents")
    ap.add_argument("--repeat", type=int, default=1, help="time N rounds, keep the best")
    ap.add_argument(
        "--only",
        default=",".join(SYSTEMS),
        help=f"comma-separated systems out of {','.join(SYSTEMS)}",
    )
    ap.add_argument(
        "--stride",
        type=int,
        default=None,
        help="window overlap in subwords for the floor and transformers' pipeline "
        "(default: our component's configured stride; when that is null, "
        "its rule min((max_length - 2) // 4, 128) = 127 for 512)",
    )
    ap.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="window length incl. [CLS]/[SEP] (default: the model's maximum)",
    )
    ap.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="windows per floor batch; transformers pipeline batch size",
    )
    ap.add_argument(
        "--shp-batch-size",
        type=int,
        default=None,
        help="pass batch_size to spacy-hf-pipelines' inner HF pipeline "
        "(default: its own default, unbatched)",
    )
    ap.add_argument("--warmup", type=int, default=8, help="texts each system sees first")
    ap.add_argument(
        "--dtype",
        default=None,
        help="our component's dtype (default: its own, auto); the floor runs in the "
        "precision ours resolves it to",
    )
    ap.add_argument(
        "--floor-batch-sizes",
        default="32,64,256/4096",
        help="the floor is timed at each of these batch shapes and keeps its best: N "
        "windows a batch, or N/P for at most N windows and P padded positions (what "
        "ours picks at bf16 on a CPU with AMX)",
    )
    ap.add_argument(
        "--no-glue",
        action="store_true",
        help="skip the stage breakdown, the glue-only and the overlap rows",
    )
    args = ap.parse_args(argv)

    systems = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in systems if s not in SYSTEMS]
    if bad:
        ap.error(f"--only: unknown {bad}; choose from {list(SYSTEMS)}")
    systems = drop_missing_shp(systems)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")

    import torch
    from transformers import AutoConfig, AutoTokenizer

    quiet_transformers()
    warnings.filterwarnings("ignore", message="Skipping annotation")
    print(versions_line())
    print(f"torch threads {torch.get_num_threads()} (interop {torch.get_num_interop_threads()})")

    tok = AutoTokenizer.from_pretrained(args.model)
    cfg = AutoConfig.from_pretrained(args.model)
    model_max = min(tok.model_max_length, cfg.max_position_embeddings)
    max_length = args.max_length or model_max

    runners: Dict[str, Callable[[Sequence[str]], None]] = {}
    notes: Dict[str, str] = {}
    nlp = None
    runs_in = "float32"
    stride = args.stride
    if "ours" in systems:
        reason = ours_unavailable_reason()
        if reason is not None:
            print(f"ours: n/a ({reason})")
        else:
            ours_conf: Dict[str, object] = {}
            if args.context:
                ours_conf["context"] = args.context
            if args.decoding:
                ours_conf["decoding"] = args.decoding
            if args.dtype:
                ours_conf["dtype"] = args.dtype
            nlp = make_ours(args.model, ours_conf)
            runs_in = nlp.get_pipe("hf_token_tagger").precision.runs_in
            print(f"ours runs in {runs_in}: {nlp.get_pipe('hf_token_tagger').precision.reason}")
            ocfg = ours_config(nlp)
            notes["ours"] = ", ".join(f"{k}={ocfg[k]}" for k in OURS_KEYS if k in ocfg)
            if stride is None and isinstance(ocfg.get("stride"), int):
                stride = int(ocfg["stride"])  # type: ignore[arg-type]
            runners["ours"] = lambda texts, nlp=nlp: _consume(nlp.pipe(texts))
    if stride is None:
        stride = default_stride(max_length)
    floor = (
        on_torch_thread(
            Floor,
            args.model,
            max_length,
            stride,
            (args.batch_size, None),
            args.context != "document",
            runs_in=runs_in,
        )
        if "floor" in systems
        else None
    )
    floor_sizes = [parse_batch_shape(x) for x in args.floor_batch_sizes.split(",") if x.strip()]
    if "transformers" in systems:
        pipe = on_torch_thread(make_hf_pipeline, args.model, "first", stride)
        runners["transformers"] = lambda texts, pipe=pipe: on_torch_thread(
            lambda: _consume(pipe(list(texts), batch_size=args.batch_size))
        )
        notes["transformers"] = f"aggregation first, batch {args.batch_size}, stride {stride}"
    if "shp" in systems:
        shp_conf: Dict[str, object] = {}
        if args.shp_batch_size is not None:
            shp_conf["kwargs"] = {"batch_size": args.shp_batch_size}
        nlp_shp = on_torch_thread(make_shp, args.model, shp_conf)
        c = nlp_shp.config["components"]["hf_token_pipe"]
        runners["shp"] = lambda texts, nlp=nlp_shp: on_torch_thread(_consume, nlp.pipe(texts))
        notes["shp"] = f"aggregation first, stride {c['stride']}, kwargs {dict(c['kwargs'])}"

    docs = read_conll(args.data)
    if args.limit is not None:
        docs = docs[: args.limit]
    workloads = {"both": UNITS, "all": WORKLOADS}.get(args.workload, (args.workload,))
    fails: List[str] = []
    per_word: Dict[str, float] = {}
    t_all = time.perf_counter()
    for unit in workloads:
        texts, words = workload_texts(docs, unit)
        print(f"\n-- workload {unit}: {len(texts)} texts, {words} words", flush=True)
        timings = run_workload(
            unit, texts, words, runners, floor, args.repeat, args.warmup, floor_sizes
        )
        for s, t in timings.items():
            t.note = notes.get(
                s, f"forward only, {runs_in}, inference_mode" if s == "floor" else ""
            )
        fails += report(unit, len(texts), words, timings, floor)
        if nlp is not None and not args.no_glue:
            floor_total = (
                words_per_s(words, timings["floor"].best_total_s) if "floor" in timings else None
            )
            fails += glue_report(unit, nlp, texts, words, floor_total, args.repeat)
        if "ours" in timings:
            per_word[unit] = timings["ours"].best_s / words
    if "long" in per_word and "sentences" in per_word:
        ratio = per_word["long"] / per_word["sentences"]
        verdict = "PASS" if ratio <= BAR_LONG else "FAIL"
        print(
            f"\nours, a word of the long document / a word of the sentences: {ratio:.2f}x "
            f"(bar <= {BAR_LONG}x): {verdict}"
        )
        if verdict == "FAIL":
            fails.append(f"long document: {ratio:.2f}x the per-word time of sentences")
    if "ours" not in runners:
        verdict = "n/a (our component did not run)"
    else:
        verdict = "FAIL" if fails else "PASS"
    print(f"\nverdict: {verdict}")
    for f in fails:
        print(f"  - {f}")
    print(f"total time {time.perf_counter() - t_all:.1f}s")
    return 1 if fails else 0


def workload_texts(docs, unit: str) -> tuple[List[str], int]:
    """The texts of a workload and their number of CoNLL words."""
    if unit != "long":
        rendered = render_texts(docs, "spaced", unit)
        return [t.text for t in rendered], sum(t.n_words for t in rendered)
    rendered = render_texts(docs, "spaced", "documents")
    lines: List[str] = []
    words = 0
    while words < LONG_WORDS:
        for t in rendered:
            lines.append(t.text)
            words += t.n_words
            if words >= LONG_WORDS:
                break
    return ["\n".join(lines)], words


def _consume(it) -> None:
    for _ in it:
        pass


if __name__ == "__main__":
    sys.exit(main())
