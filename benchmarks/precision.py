"""Reduced precision on CPU: words/s against the fp32 bare forward, and entity F1,
for our component at several `dtype` settings, in one run.

For each workload (``sentences``: the 3,453 CoNLL-2003 test sentences as texts;
``documents``: the 231 documents, sentences joined by "\\n"; natural text) this
times the fp32 floor (the bare model forward over our component's windows, as
in ``speed.py``) and ``nlp.pipe(texts)`` with our component at each dtype of
``--dtypes``, and scores each dtype's entities against gold (exact character
spans) and against the float32 run of our component (agreement).

Bars (issue "faster than the fp32 floor"): ``auto`` >= 2.0x the floor on a CPU
with native bf16 (avx512_bf16 or AMX), >= 0.85x elsewhere, F1 within 0.3 of
float32; ``int8`` >= 2.5x the floor, F1 within 0.5 of float32.

    python benchmarks/precision.py                      # float32, auto, int8
    python benchmarks/precision.py --dtypes float32,bfloat16 --workload sentences
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence
from typing import Dict, List, Optional

from accuracy import (
    DEFAULT_DATA,
    DEFAULT_MODEL,
    make_ours,
    on_torch_thread,
    ours_unavailable_reason,
    quiet_transformers,
    spacy_pipe_spans,
    versions_line,
)
from conll import UNITS, gold_spans, read_conll, render_texts, score
from speed import Floor, default_stride, words_per_s

BAR_BF16 = 2.0
BAR_NO_BF16 = 0.85
BAR_INT8 = 2.5
F1_TOLERANCE = {"auto": 0.3, "bfloat16": 0.3, "int8": 0.5}


def speed_bar(dtype: str, native_bf16: bool) -> Optional[float]:
    """The bar on ours/floor for a dtype, or None where the issue sets none."""
    if dtype == "int8":
        return BAR_INT8
    if dtype == "auto" or (dtype == "bfloat16" and native_bf16):
        return BAR_BF16 if native_bf16 else BAR_NO_BF16
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="CoNLL-2003 file (eng.testb)")
    ap.add_argument("--model", default=str(DEFAULT_MODEL), help="HF token-classification model")
    ap.add_argument("--dtypes", default="float32,auto,int8", help="comma-separated dtypes")
    ap.add_argument("--workload", default="both", choices=(*UNITS, "both"))
    ap.add_argument("--style", default="natural", choices=("spaced", "natural"))
    ap.add_argument("--limit", type=int, default=None, help="use only the first N documents")
    ap.add_argument("--repeat", type=int, default=1, help="time N rounds, keep the best")
    ap.add_argument("--batch-size", type=int, default=32, help="windows per floor batch")
    args = ap.parse_args(argv)

    reason = ours_unavailable_reason()
    if reason is not None:
        print(f"ours: n/a ({reason})")
        return 1
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from spacy_hf_tagger.model.precision import BF16_FLAGS, cpu_flags

    quiet_transformers()
    warnings.filterwarnings("ignore", message="Skipping annotation")
    flags = cpu_flags()
    native = sorted(flags & BF16_FLAGS)
    model_name = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line),
        "unknown CPU",
    )
    print(versions_line())
    print(
        f"CPU {model_name}; native bf16: {', '.join(native) or 'no'}; "
        f"vnni: {'yes' if flags & {'avx512_vnni', 'avx_vnni'} else 'no'}; "
        f"torch threads {torch.get_num_threads()}"
    )
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if "float32" not in dtypes:
        dtypes.insert(0, "float32")
    systems = {d: make_ours(args.model, {"dtype": d}) for d in dtypes}
    for d, nlp in systems.items():
        list(nlp.pipe(["Warm up in Paris."]))
        print(f"  ours dtype={d}: runs in {nlp.get_pipe('hf_token_tagger').precision.runs_in}")
    tok = AutoTokenizer.from_pretrained(args.model)
    cfg = AutoConfig.from_pretrained(args.model)
    max_length = min(tok.model_max_length, cfg.max_position_embeddings)
    floor = on_torch_thread(
        Floor, args.model, max_length, default_stride(max_length), (args.batch_size, None)
    )

    docs = read_conll(args.data)
    if args.limit is not None:
        docs = docs[: args.limit]
    fails: List[str] = []
    for unit in UNITS if args.workload == "both" else (args.workload,):
        texts = render_texts(docs, args.style, unit)
        raw = [t.text for t in texts]
        words = sum(t.n_words for t in texts)
        gold = gold_spans(texts)
        print(f"\n== {unit}: {len(raw)} texts, {words} words ({args.style})")
        on_torch_thread(floor.run, raw[:8])
        best: Dict[str, float] = {"floor": float("inf")}
        spans: Dict[str, list] = {}
        for r in range(args.repeat):
            best["floor"] = min(best["floor"], on_torch_thread(floor.run, raw))
            for d, nlp in systems.items():
                t0 = time.perf_counter()
                spans[d] = spacy_pipe_spans(nlp, texts)
                best[d] = min(best.get(d, float("inf")), time.perf_counter() - t0)
            print(f"  round {r + 1}/{args.repeat} done", flush=True)
        floor_wps = words_per_s(words, best["floor"])
        f1_fp32 = 100 * score(gold, spans["float32"]).micro.f1
        print(f"{'system':<16} {'words/s':>9} {'x floor':>8} {'F1':>7} {'agree':>7}  bar")
        print(f"{'floor (fp32)':<16} {floor_wps:9.0f} {1.0:8.2f} {'':>7} {'':>7}")
        for d in systems:
            wps = words_per_s(words, best[d])
            ratio = wps / floor_wps
            f1 = 100 * score(gold, spans[d]).micro.f1
            agree = 100 * score(spans["float32"], spans[d]).micro.f1
            notes = []
            bar = speed_bar(d, bool(native))
            if bar is not None:
                ok = ratio >= bar
                notes.append(f"speed >= {bar}x {'PASS' if ok else 'FAIL'}")
                if not ok:
                    fails.append(f"{unit}: dtype={d} {ratio:.2f}x the fp32 floor, bar {bar}x")
            tolerance = F1_TOLERANCE.get(d)
            if tolerance is not None:
                ok = f1_fp32 - f1 <= tolerance
                notes.append(f"F1 within {tolerance} of fp32 {'PASS' if ok else 'FAIL'}")
                if not ok:
                    fails.append(f"{unit}: dtype={d} F1 {f1:.2f} vs fp32 {f1_fp32:.2f}")
            row = f"ours {d:<11} {wps:9.0f} {ratio:8.2f} {f1:7.2f} {agree:7.2f}"
            print(f"{row}  {'; '.join(notes)}")
    print(f"\nverdict: {'FAIL' if fails else 'PASS'}")
    for f in fails:
        print(f"  - {f}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
