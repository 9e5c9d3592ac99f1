"""Entity P/R/F1 on CoNLL-2003 test: our component versus the model's own quality and peers.

One run prints one table, for each text rendering ("spaced", "natural"):

* ``ref``: the gold-word reference: the model fed the gold CoNLL words
  (``is_split_into_words=True``), the label of the first subword of each word
  (the model's own quality; 86.39 F1 on the full test set);
* ``ours``: ``spacy.blank("en")`` + ``hf_token_tagger``, spans from ``doc.ents``
  ("n/a" while the component is not available);
* ``transformers``: ``pipeline("token-classification", aggregation_strategy=S)``
  for each strategy S, and the best of them;
* ``shp``: spacy-huggingface-pipelines ``hf_token_pipe`` (aggregation "first").

With ``--decodings``, ours also reads the same forward (recorded in its run,
then replayed: their seconds are the component without the model) with each
decoding: ``auto`` (what it settles on for the model, and the IOB probe's
figures), ``greedy``, ``viterbi``, and ``viterbi-iob2`` (Viterbi reading IOB
as strict IOB2); the row of ours' own setting must equal ours.

With ``--o-bias 0,0.5,1,2,4``, ours also reads the same forward (replayed) with
each ``o_bias`` setting: one row each, the precision/recall curve printed with
the share of gold entities covered by predicted ones (``conll.covered``), a
flag unless recall rises with the bias, and with ``--plot PATH.png`` the
curves drawn (matplotlib, the ``plots`` extra).

Every row is scored by exact character spans ``(text_id, start, end, label)``.

    python benchmarks/accuracy.py                     # full test set, ~6 min on 2 cores
    python benchmarks/accuracy.py --limit 20 --only ref,transformers
    python benchmarks/accuracy.py --only ref,ours --decodings
    python benchmarks/accuracy.py --only ref,ours --o-bias 0,0.5,1,2,4 --plot pr.png
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from conll import (
    STYLES,
    UNITS,
    Document,
    RenderedText,
    Scores,
    Span,
    TextSpan,
    covered,
    decode_spans,
    gold_spans,
    read_conll,
    render_texts,
    render_words,
    score,
    word_spans_to_chars,
)

from spacy_hf_tagger.labels.viterbi import DECODINGS, resolve_decoding
from spacy_hf_tagger.model import torch_thread

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DEFAULT_DATA = SHARED / "data" / "conll2003" / "eng.testb"
DEFAULT_MODEL = SHARED / "models" / "minilm-conll03"

OURS_FACTORY = "hf_token_tagger"
SHP_FACTORY = "hf_token_pipe"
SYSTEMS = ("ref", "ours", "transformers", "shp")
STRATEGIES = ("first", "average", "max", "simple")

# The model's quality on gold words (its README); the reference must reproduce it.
REFERENCE_F1 = 86.39
REFERENCE_TOLERANCE = 0.05
# Our bar: F1 gap to the reference, on spaced and on natural text; documents
# whose sentences are joined by spaces rely on a sentencizer, which misses some
# boundaries (headlines without a full stop), so their bar is wider.
MAX_GAP = 0.5
MAX_GAP_SENTENCIZED = 1.0
# With a sentencizer: ours on each of its sentences given as a text of its own.
SPLIT_BY_HAND = "ours, split by hand"
# Running text (documents joined by spaces) with no segmenter before ours: the
# component's own sentence rule, within this much of spaCy's sentencizer, and
# this gap at most (CoNLL headlines and tables have no final mark to cut at).
MAX_GAP_RUNNING = 3.0
MAX_BELOW_SENTENCIZER = 0.2
NO_SEGMENTER = "ours, no rule (line)"
WITH_SENTENCIZER = "ours, sentencizer first"
# --decodings: ours' forward replayed, decoded each way (`predict_entities`);
# "auto" (the default) must stay at or above greedy on any model, and on
# CoNLL-2003 with minilm-conll03 gain this much over the reference.
MIN_AUTO_GAIN = 0.5


# ----------------------------------------------------------------- systems (shared)


# A bare model's or a peer's torch work (loading and calls) runs on the
# thread where ours runs its own (`spacy_hf_tagger.model.torch_thread`):
# every thread that runs torch holds an OpenMP team, and once two do, GNU
# OpenMP makes the idle workers of both sleep between parallel ops, so a bare
# model on the main thread and ours on its torch thread would slow each other
# down (a one-sentence forward 2.8x). On one thread, every system of a
# benchmark runs as it would alone in its process.
on_torch_thread = torch_thread.run


def ours_unavailable_reason() -> Optional[str]:
    """None when the ``hf_token_tagger`` factory can be used, else why not.

    Imports ``spacy_hf_tagger.component`` from this checkout when it exists; any
    error raised while importing it propagates (nothing is swallowed).
    """
    from spacy.language import Language

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if importlib.util.find_spec("spacy_hf_tagger") is None:
        return "package spacy_hf_tagger not found"
    if importlib.util.find_spec("spacy_hf_tagger.component") is None:
        return "spacy_hf_tagger.component does not exist yet"
    importlib.import_module("spacy_hf_tagger.component")
    if not Language.has_factory(OURS_FACTORY):
        return f"factory {OURS_FACTORY!r} is not registered"
    return None


def make_ours(model: str, config: Optional[Dict[str, object]] = None):
    """``spacy.blank("en")`` with our component (call ours_unavailable_reason first)."""
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe(OURS_FACTORY, config={"model": model, **(config or {})})
    return nlp


def ours_config(nlp) -> Dict[str, object]:
    """The component's resolved config block (for reporting stride/batch settings)."""
    block = nlp.config["components"].get(OURS_FACTORY, {})
    return {k: v for k, v in block.items() if k != "factory"}


def drop_missing_shp(systems: List[str]) -> List[str]:
    """Without spacy-huggingface-pipelines (it needs transformers < 5), its rows
    print as n/a instead of stopping the run."""
    import importlib.util

    if "shp" in systems and importlib.util.find_spec("spacy_huggingface_pipelines") is None:
        print(
            "shp: n/a (spacy-huggingface-pipelines is not installed; it needs "
            'transformers < 5: pip install -e ".[peers]" in a transformers 4 environment)'
        )
        return [s for s in systems if s != "shp"]
    return systems


def make_shp(model: str, config: Optional[Dict[str, object]] = None):
    """``spacy.blank("en")`` with spacy-huggingface-pipelines' ``hf_token_pipe``."""
    import spacy
    import spacy_huggingface_pipelines  # noqa: F401  (registers hf_token_pipe)

    nlp = spacy.blank("en")
    cfg: Dict[str, object] = {"model": model, "aggregation_strategy": "first"}
    cfg.update(config or {})
    nlp.add_pipe(SHP_FACTORY, config=cfg)
    return nlp


def make_hf_pipeline(model: str, strategy: str, stride: Optional[int]):
    """transformers' token-classification pipeline on CPU.

    ``stride`` (window overlap) makes it process texts longer than the model's
    maximum length in overlapping windows instead of truncating them.
    """
    from transformers import pipeline

    return pipeline(
        "token-classification",
        model=model,
        aggregation_strategy=strategy,
        stride=stride,
        device=-1,
    )


def quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message="You seem to be using the pipelines sequentially")
    warnings.filterwarnings("ignore", message="Length of IterableDataset")


def versions_line() -> str:
    from importlib.metadata import PackageNotFoundError, version

    import spacy
    import torch
    import transformers

    try:
        shp = version("spacy-huggingface-pipelines")
    except PackageNotFoundError:
        shp = "not installed"
    return (
        f"python {sys.version.split()[0]}, torch {torch.__version__} "
        f"(threads {torch.get_num_threads()}), transformers {transformers.__version__}, "
        f"spacy {spacy.__version__}, spacy-huggingface-pipelines {shp}"
    )


# ------------------------------------------------------------------------- predictors


def reference_sentence_spans(
    docs: Sequence[Document], model_path: str, batch_size: int = 64
) -> List[List[Span]]:
    """Predicted entity spans (over word indices) for every sentence, in corpus order.

    Gold words in, ``is_split_into_words=True``, the label of the first subword of
    each word; words with no subword get "O". No truncation: every sentence must
    fit the model.
    """
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForTokenClassification.from_pretrained(model_path).eval()
    id2label = model.config.id2label
    limit = min(tok.model_max_length, model.config.max_position_embeddings)

    sentences = [[w for w, _ in sent] for doc in docs for sent in doc]
    enc = tok(sentences, is_split_into_words=True, truncation=False)
    labels: List[List[str]] = [["O"] * len(s) for s in sentences]
    for i, pred in enumerate(argmax_per_piece(model, enc["input_ids"], limit, batch_size)):
        seen = set()
        for pos, word in enumerate(enc.word_ids(i)):
            if word is None or word in seen:
                continue
            seen.add(word)
            labels[i][word] = id2label[pred[pos]]
    return [decode_spans(tags) for tags in labels]


def recipe_reference_spans(
    docs: Sequence[Document], model_path: str, style: str, recipe: str, batch_size: int = 64
) -> List[List[Span]]:
    """Like `reference_sentence_spans`, on each sentence rendered as `style`
    text: per gold word, the label at the piece the training `recipe` labelled
    (`recipe_models.labelled_pieces`). The model's own quality on the text ours
    reads, whichever piece its training script labelled."""
    from recipe_models import labelled_pieces
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForTokenClassification.from_pretrained(model_path).eval()
    id2label = model.config.id2label
    limit = min(tok.model_max_length, model.config.max_position_embeddings)
    rendered = [
        render_words([w for w, _ in sent], style)  # type: ignore[arg-type]
        for doc in docs
        for sent in doc
    ]
    enc = tok([text for text, _ in rendered], return_offsets_mapping=True)
    labels: List[List[str]] = [["O"] * len(spans) for _, spans in rendered]
    for i, pred in enumerate(argmax_per_piece(model, enc["input_ids"], limit, batch_size)):
        pieces = tok.convert_ids_to_tokens(enc["input_ids"][i])
        chosen = labelled_pieces(pieces, enc["offset_mapping"][i], rendered[i][1], recipe)
        for word, k in enumerate(chosen):
            if k is not None:
                labels[i][word] = id2label[pred[k]]
    return [decode_spans(tags) for tags in labels]


def argmax_per_piece(
    model, rows: Sequence[Sequence[int]], limit: int, batch_size: int
) -> List[List[int]]:
    """The model's label id at every piece of each row (no truncation: every
    row must fit the model), rows batched by length."""
    import torch

    lengths = [len(row) for row in rows]
    longest = max(lengths, default=0)
    assert longest <= limit, f"a sentence has {longest} subwords > model max {limit}"
    pad = model.config.pad_token_id or 0
    out: List[List[int]] = [[] for _ in rows]
    order = sorted(range(len(rows)), key=lambda i: lengths[i])
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            idx = order[b : b + batch_size]
            width = max(lengths[i] for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                ids[row, : lengths[i]] = torch.tensor(rows[i])
                mask[row, : lengths[i]] = 1
            pred = model(input_ids=ids, attention_mask=mask).logits.argmax(-1).tolist()
            for row, i in enumerate(idx):
                out[i] = pred[row][: lengths[i]]
    return out


def reference_to_texts(
    texts: Sequence[RenderedText], sentence_spans: Sequence[Sequence[Span]]
) -> List[TextSpan]:
    """Place per-sentence word spans (corpus order) onto the rendered texts."""
    out: List[TextSpan] = []
    k = 0
    for text_id, text in enumerate(texts):
        for s in range(len(text.sentences)):
            for start, end, label in word_spans_to_chars(text, s, sentence_spans[k]):
                out.append((text_id, start, end, label))
            k += 1
    assert k == len(sentence_spans), "sentence count mismatch between texts and reference"
    return out


def _more_confident(marker, text):
    """Per token, the row of whichever piece has the higher top probability."""
    import numpy as np

    return np.where((marker.max(1) >= text.max(1))[:, None], marker, text)


MARKER_READINGS: Dict[str, Callable[[Any, Any], Any]] = {
    "mean": lambda marker, text: (marker + text) / 2,
    "marker": lambda marker, text: marker,
    "next": lambda marker, text: text,
    "confident": _more_confident,
}


def use_marker_reading(name: str) -> None:
    """Replace the component's reading of a word that begins with a bare marker."""
    from spacy_hf_tagger.align import pieces as alignment

    pick = MARKER_READINGS[name]

    def read(out, pair_probs, pairs, boundary) -> None:
        first, second = alignment.marker_pairs(pairs, boundary)
        out[pairs.token[first]] = pick(pair_probs[first], pair_probs[second])

    alignment._read_markers_with_their_word = read


@contextmanager
def forced_decoding(decoding: str) -> Iterator[None]:
    """Make the component decode with `decoding` whatever its setting says."""
    from spacy_hf_tagger import component

    original = component.predict_entities

    def decode(*args: Any, **kwargs: Any) -> Any:
        return original(*args, **{**kwargs, "decoding": decoding})

    component.predict_entities = decode
    try:
        yield
    finally:
        component.predict_entities = original


def model_recorded(nlp, store: Dict):
    """Keep the logits of every forward call of `nlp`'s component in `store`."""
    from stages import RecordingModel, model_replaced

    return model_replaced(nlp, lambda runner: RecordingModel(runner, store))


def auto_decoding(nlp) -> tuple[str, str]:
    """What `decoding="auto"` settles on for `nlp`'s model, and why (the IOB
    probe's figures, read from the real model: replays leave it alone)."""
    pipe = nlp.get_pipe(OURS_FACTORY)
    scheme = pipe.label_scheme
    if scheme.kind != "iob":
        return resolve_decoding("auto", scheme.kind), f"a {scheme.kind} scheme"
    probe = pipe._ensure_loaded().iob_probe()
    return resolve_decoding("auto", scheme.kind, probe.flavour), f"reads as {probe.describe()}"


def decoding_rows(nlp, style: str, texts: Sequence[RenderedText], store: Dict) -> List[Row]:
    """Ours on `texts` with each of DECODINGS ("auto": what it settles on for
    this model), the model replayed from `store`."""
    from stages import ReplayModel, model_replaced

    out = []
    for decoding in DECODINGS:
        forced, why = auto_decoding(nlp) if decoding == "auto" else (decoding, "")
        replay = ReplayModel(store)
        with model_replaced(nlp, lambda runner, replay=replay: replay), forced_decoding(forced):
            pred, secs = timed(lambda: spacy_pipe_spans(nlp, texts))
        note = "forward replayed: seconds without the model"
        if why:
            note = f"= {forced}: {why}; {note}"
        if replay.missing:
            note += f"; {replay.missing} forward calls NOT recorded (zeros)"
        out.append(Row(f"ours, {decoding}", style, score(gold_spans(texts), pred), secs, note))
    return out


def o_bias_rows(
    model: str,
    config: Dict[str, object],
    style: str,
    texts: Sequence[RenderedText],
    store: Dict,
    biases: Sequence[float],
) -> List[Row]:
    """Ours on `texts` with each `o_bias` setting (a pipeline of its own,
    `config` otherwise), the model replayed from `store`."""
    from stages import ReplayModel, model_replaced

    out = []
    for bias in biases:
        nlp = make_ours(model, {**config, "o_bias": bias})
        replay = ReplayModel(store)
        with model_replaced(nlp, lambda runner, replay=replay: replay):
            pred, secs = timed(lambda nlp=nlp: spacy_pipe_spans(nlp, texts))
        note = "forward replayed"
        if replay.missing:
            note += f"; {replay.missing} forward calls NOT recorded (zeros)"
        row = Row(f"ours, o_bias={bias:g}", style, score(gold_spans(texts), pred), secs, note)
        row.covered = covered(gold_spans(texts), pred)
        out.append(row)
    return out


def parse_biases(value: str) -> List[float]:
    """--o-bias "0,0.5,1": the values, in increasing order."""
    try:
        biases = sorted({float(v) for v in value.split(",") if v.strip()})
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"--o-bias {value!r}: numbers separated by commas"
        ) from error
    if not biases:
        raise argparse.ArgumentTypeError("--o-bias needs at least one number")
    return biases


def o_bias_curve(rows: Sequence[Row], style: str) -> List[tuple[float, float, float, float]]:
    """(o_bias, precision %, recall %, covered %) of the `ours, o_bias=` rows of `style`."""
    prefix = "ours, o_bias="
    return [
        (
            float(r.system[len(prefix) :]),
            100 * r.scores.micro.precision,
            100 * r.scores.micro.recall,
            100 * (r.covered or 0.0),
        )
        for r in rows
        if r.system.startswith(prefix) and r.style == style and r.scores is not None
    ]


def spacy_pipe_spans(nlp, texts: Sequence[RenderedText]) -> List[TextSpan]:
    """Run ``nlp.pipe`` and read ``doc.ents`` as character spans."""
    out: List[TextSpan] = []
    for text_id, doc in enumerate(nlp.pipe([t.text for t in texts])):
        assert doc.text == texts[text_id].text
        out.extend((text_id, e.start_char, e.end_char, e.label_) for e in doc.ents)
    return out


def sentence_by_sentence_spans(nlp, texts: Sequence[RenderedText]) -> List[TextSpan]:
    """Split each text with the pipeline's own sentence boundaries, run every
    sentence as a text of its own, and place the entities back on the text.

    What a user gets who splits documents into sentences themselves (with the
    same segmenter): the component's document mode should match it, so what
    separates both from the reference is the segmenter's, not the component's.
    """
    segmenter = nlp.get_pipe("sentencizer")
    pieces: List[tuple[int, int]] = []  # (text id, char offset of the sentence)
    sentences: List[str] = []
    for text_id, text in enumerate(texts):
        for sent in segmenter(nlp.make_doc(text.text)).sents:
            if sent.text.strip():
                pieces.append((text_id, sent.start_char))
                sentences.append(sent.text)
    out: List[TextSpan] = []
    for (text_id, base), doc in zip(pieces, nlp.pipe(sentences)):
        out.extend((text_id, base + e.start_char, base + e.end_char, e.label_) for e in doc.ents)
    return out


def segmenter_rows(
    model: str, styles: Sequence[str], texts_by_style: Dict[str, Sequence[RenderedText]]
) -> List[Row]:
    """Ours without its sentence rule, after spaCy's sentencizer, and on the
    sentencizer's sentences one by one: what a segmenter is worth on the texts."""
    line = make_ours(model, {"context": "line"})
    sentencized = make_ours(model, {"context": "sentence"})
    sentencized.add_pipe("sentencizer", first=True)
    out = []
    for name, nlp, run, note in (
        (NO_SEGMENTER, line, spacy_pipe_spans, "context=line: lines and earlier sentences only"),
        (WITH_SENTENCIZER, sentencized, spacy_pipe_spans, "spaCy's sentencizer before ours"),
        (SPLIT_BY_HAND, sentencized, sentence_by_sentence_spans, "its sentences one by one"),
    ):
        list(nlp.pipe(["Warm up in Paris."]))
        for style in styles:
            texts = texts_by_style[style]
            pred, secs = timed(lambda texts=texts, nlp=nlp, run=run: run(nlp, texts))
            out.append(Row(name, style, score(gold_spans(texts), pred), secs, note))
    return out


def hf_pipeline_spans(pipe, texts: Sequence[RenderedText], batch_size: int) -> List[TextSpan]:
    """Run a transformers pipeline over all texts; spans from ``entity_group``."""
    results = pipe([t.text for t in texts], batch_size=batch_size)
    out: List[TextSpan] = []
    for text_id, ents in enumerate(results):
        out.extend((text_id, int(e["start"]), int(e["end"]), e["entity_group"]) for e in ents)
    return out


# ---------------------------------------------------------------------------- report


class Row:
    def __init__(
        self, system: str, style: str, scores: Optional[Scores], seconds: float, note: str = ""
    ) -> None:
        self.system = system
        self.style = style
        self.scores = scores
        self.seconds = seconds
        self.note = note
        # The share of gold entities inside predicted ones (`conll.covered`), where measured.
        self.covered: Optional[float] = None

    @property
    def f1(self) -> Optional[float]:
        return None if self.scores is None else 100 * self.scores.micro.f1


class RowLog(List[Row]):
    """The table's rows; each one appended is also reported on stderr as it is done."""

    def append(self, row: Row) -> None:
        super().append(row)
        f1 = "n/a" if row.f1 is None else f"{row.f1:.2f}"
        print(
            f"  .. {row.system} [{row.style}] F1 {f1} ({row.seconds:.1f}s)",
            file=sys.stderr,
            flush=True,
        )


def format_table(rows: Sequence[Row], types: Sequence[str]) -> str:
    head = (
        f"{'system':<24} {'text':<8} {'P':>6} {'R':>6} {'F1':>6} "
        + " ".join(f"{t:>6}" for t in types)
        + f" {'sec':>6}  note"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        if r.scores is None:
            cells = f"{'n/a':>6} {'n/a':>6} {'n/a':>6} " + " ".join(f"{'':>6}" for _ in types)
        else:
            m = r.scores.micro
            per = " ".join(
                f"{100 * r.scores.per_type[t].f1:6.2f}" if t in r.scores.per_type else f"{'':>6}"
                for t in types
            )
            cells = f"{100 * m.precision:6.2f} {100 * m.recall:6.2f} {100 * m.f1:6.2f} {per}"
        lines.append(f"{r.system:<24} {r.style:<8} {cells} {r.seconds:6.1f}  {r.note}")
    return "\n".join(lines)


def print_diff(
    texts: Sequence[RenderedText],
    ref: Sequence[TextSpan],
    ours: Sequence[TextSpan],
    style: str,
    limit: int,
) -> None:
    """Spans only the reference found ("ref") or only ours found ("ours"), with gold marks."""
    gold = set(gold_spans(texts))
    only_ref, only_ours = set(ref) - set(ours), set(ours) - set(ref)
    print(
        f"\n[{style}] spans only in ref: {len(only_ref)}, only in ours: {len(only_ours)} "
        f"(showing up to {limit}; * = gold)"
    )
    tagged = sorted([(s, "ref ") for s in only_ref] + [(s, "ours") for s in only_ours])
    for (tid, start, end, label), who in tagged[:limit]:
        text = texts[tid].text
        ctx = text[max(0, start - 30) : start] + "[" + text[start:end] + "]" + text[end : end + 30]
        mark = "*" if (tid, start, end, label) in gold else " "
        print(f"  {who} {mark} {label:<5} text {tid:>5} {start:>5}-{end:<5} {ctx!r}")


def timed(fn: Callable[[], List[TextSpan]]) -> tuple[List[TextSpan], float]:
    t0 = time.perf_counter()
    spans = fn()
    return spans, time.perf_counter() - t0


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="CoNLL-2003 file (eng.testb)")
    ap.add_argument("--model", default=str(DEFAULT_MODEL), help="HF token-classification model")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N documents")
    ap.add_argument(
        "--only",
        default=",".join(SYSTEMS),
        help=f"comma-separated systems out of {','.join(SYSTEMS)}",
    )
    ap.add_argument("--styles", default=",".join(STYLES), help="renderings: spaced,natural")
    ap.add_argument(
        "--unit",
        default="sentences",
        choices=UNITS,
        help="one text per sentence (default) or per document",
    )
    ap.add_argument(
        "--join",
        default="newline",
        choices=("newline", "space"),
        help='with --unit documents: sentences joined by "\\n" (default) or " "',
    )
    ap.add_argument(
        "--segmenters",
        action="store_true",
        help="also run ours without its sentence rule (context=line) and after spaCy's "
        "sentencizer, and the sentencizer's sentences one by one",
    )
    ap.add_argument(
        "--sentencizer",
        action="store_true",
        help="put spaCy's sentencizer before our component (sentence boundaries from it)",
    )
    ap.add_argument(
        "--context",
        default=None,
        choices=("sentence", "line", "document"),
        help="our component's context setting (default: its own default)",
    )
    ap.add_argument(
        "--strategies",
        default=",".join(STRATEGIES),
        help="transformers aggregation strategies to run",
    )
    ap.add_argument(
        "--stride",
        type=int,
        default=128,
        help="window overlap given to transformers' pipeline (texts over the "
        "model max length are windowed, not truncated)",
    )
    ap.add_argument(
        "--recipe",
        default=None,
        choices=("word_ids", "offsets"),
        help="the reference reads, on the same text as ours, the piece this training "
        "recipe labelled (benchmarks/recipe_models.py) instead of gold words' first piece",
    )
    ap.add_argument(
        "--marker-reading",
        default=None,
        choices=tuple(MARKER_READINGS),
        help="how ours reads a word that begins with a bare marker (default: the "
        "component's own, the mean); for measuring the alternatives",
    )
    ap.add_argument(
        "--decodings",
        action="store_true",
        help="also decode ours' forward (replayed) greedy, viterbi and viterbi-iob2 "
        "(strict IOB2, a measurement hook), each a row",
    )
    ap.add_argument(
        "--decoding",
        default=None,
        choices=DECODINGS,
        help="our component's decoding setting (default: its own default)",
    )
    ap.add_argument(
        "--o-bias",
        type=parse_biases,
        default=None,
        metavar="B1,B2,...",
        help="also decode ours' forward (replayed) with each o_bias setting, each a row; "
        "print the precision/recall curve and flag recall that does not rise",
    )
    ap.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="PATH.png",
        help="with --o-bias: save the precision/recall curve as a PNG (needs matplotlib)",
    )
    ap.add_argument("--batch-size", type=int, default=32, help="transformers pipeline batch")
    ap.add_argument("--per-type", action="store_true", help="also print TP/FP/FN per type")
    ap.add_argument(
        "--diff",
        type=int,
        default=0,
        metavar="N",
        help="print up to N spans where ours and the reference disagree",
    )
    args = ap.parse_args(argv)

    systems = [s.strip() for s in args.only.split(",") if s.strip()]
    styles = [s.strip() for s in args.styles.split(",") if s.strip()]
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    for name, given, allowed in (
        ("--only", systems, SYSTEMS),
        ("--styles", styles, STYLES),
        ("--strategies", strategies, STRATEGIES),
    ):
        bad = [x for x in given if x not in allowed]
        if bad:
            ap.error(f"{name}: unknown {bad}; choose from {list(allowed)}")
    if args.plot is not None and not args.o_bias:
        ap.error("--plot draws the --o-bias curve: give --o-bias too")
    if args.o_bias and "ours" not in systems:
        ap.error("--o-bias decodes ours: keep ours in --only")
    systems = drop_missing_shp(systems)
    if args.marker_reading is not None:
        use_marker_reading(args.marker_reading)
    ref_row = f"ref (same text, {args.recipe})" if args.recipe else "ref (gold words, first)"

    quiet_transformers()
    print(versions_line())
    docs = read_conll(args.data)
    if args.limit is not None:
        docs = docs[: args.limit]
    n_sent = sum(len(d) for d in docs)
    n_words = sum(len(s) for d in docs for s in d)
    texts_by_style: Dict[str, List[RenderedText]] = {
        style: render_texts(docs, style, args.unit, "\n" if args.join == "newline" else " ")
        for style in styles
    }
    first = texts_by_style[styles[0]]
    print(
        f"data {args.data}: {len(docs)} documents, {n_sent} sentences, {n_words} words, "
        f"{len(gold_spans(first))} gold entities; {len(first)} texts (one per "
        f"{args.unit[:-1]}"
        + (f", sentences joined by {args.join}" if args.unit == "documents" else "")
        + (", sentencizer before ours" if args.sentencizer else "")
        + ")"
    )
    print(f"model {args.model}\n")

    rows = RowLog()
    ours_decoding: Optional[str] = None
    preds: Dict[tuple[str, str], List[TextSpan]] = {}
    t_start = time.perf_counter()

    if "ref" in systems:
        t0 = time.perf_counter()
        if not args.recipe:
            sent_spans = reference_sentence_spans(docs, args.model)
        secs = time.perf_counter() - t0
        for style in styles:
            texts = texts_by_style[style]
            if args.recipe:
                t0 = time.perf_counter()
                sent_spans = recipe_reference_spans(docs, args.model, style, args.recipe)
                secs = time.perf_counter() - t0
            pred = reference_to_texts(texts, sent_spans)
            preds[("ref", style)] = pred
            rows.append(
                Row(
                    ref_row,
                    style,
                    score(gold_spans(texts), pred),
                    secs,
                    "each sentence as its own text"
                    if args.recipe
                    else "same model forward for both renderings",
                )
            )

    if "ours" in systems:
        reason = ours_unavailable_reason()
        if reason is not None:
            for style in styles:
                rows.append(Row("ours (hf_token_tagger)", style, None, 0.0, reason))
        else:
            ours_settings: Dict[str, object] = {}
            if args.context:
                ours_settings["context"] = args.context
            if args.decoding:
                ours_settings["decoding"] = args.decoding
            nlp = make_ours(args.model, ours_settings)
            if args.sentencizer:
                nlp.add_pipe("sentencizer", first=True)
            list(nlp.pipe(["Warm up in Paris."]))  # loads the model outside the timing
            cfg = ours_config(nlp)
            note = ", ".join(
                f"{k}={cfg[k]}" for k in ("context", "stride", "aggregation") if k in cfg
            )
            note += f", decoding={cfg.get('decoding')}"
            ours_decoding = cfg.get("decoding")
            for style in styles:
                texts = texts_by_style[style]
                store: Dict = {}
                record = args.decodings or args.o_bias
                recording = model_recorded(nlp, store) if record else nullcontext()
                with recording:
                    pred, secs = timed(lambda texts=texts: spacy_pipe_spans(nlp, texts))
                preds[("ours", style)] = pred
                rows.append(
                    Row("ours (hf_token_tagger)", style, score(gold_spans(texts), pred), secs, note)
                )
                for row in decoding_rows(nlp, style, texts, store) if args.decodings else ():
                    rows.append(row)
                if args.o_bias:
                    for row in o_bias_rows(
                        args.model, ours_settings, style, texts, store, args.o_bias
                    ):
                        rows.append(row)
            if args.sentencizer and args.unit == "documents":
                for style in styles:
                    texts = texts_by_style[style]
                    pred, secs = timed(lambda texts=texts: sentence_by_sentence_spans(nlp, texts))
                    rows.append(
                        Row(
                            SPLIT_BY_HAND,
                            style,
                            score(gold_spans(texts), pred),
                            secs,
                            "the sentencizer's sentences, each run as a text",
                        )
                    )

    if "ours" in systems and args.segmenters and ours_unavailable_reason() is None:
        rows += segmenter_rows(args.model, styles, texts_by_style)

    if "transformers" in systems:
        for strategy in strategies:
            pipe = make_hf_pipeline(args.model, strategy, args.stride)
            for style in styles:
                texts = texts_by_style[style]
                pred, secs = timed(
                    lambda texts=texts, pipe=pipe: hf_pipeline_spans(pipe, texts, args.batch_size)
                )
                rows.append(
                    Row(
                        f"transformers {strategy}",
                        style,
                        score(gold_spans(texts), pred),
                        secs,
                        f"batch {args.batch_size}, stride {args.stride}",
                    )
                )
        for style in styles:
            cands = [r for r in rows if r.system.startswith("transformers ") and r.style == style]
            best = max(cands, key=lambda r: r.f1 or 0.0)
            rows.append(Row("transformers best", style, best.scores, 0.0, best.system.split()[-1]))

    if "shp" in systems:
        nlp_shp = make_shp(args.model)
        shp_cfg = nlp_shp.config["components"][SHP_FACTORY]
        for style in styles:
            texts = texts_by_style[style]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                pred, secs = timed(lambda texts=texts: spacy_pipe_spans(nlp_shp, texts))
            skipped = sum("Skipping annotation" in str(w.message) for w in caught)
            failed = sum("Unable to process" in str(w.message) for w in caught)
            note = f"stride {shp_cfg['stride']}, skipped {skipped} unalignable"
            if failed:
                note += f", {failed} failed texts/batches"
            rows.append(
                Row("spacy-hf-pipelines first", style, score(gold_spans(texts), pred), secs, note)
            )

    types = sorted({t for r in rows if r.scores for t in r.scores.per_type})
    print(format_table(rows, types))

    if args.per_type:
        print("\nper type TP/FP/FN:")
        for r in rows:
            if r.scores is not None:
                cells = "  ".join(f"{t} {p.tp}/{p.fp}/{p.fn}" for t, p in r.scores.per_type.items())
                print(f"  {r.system:<24} {r.style:<8} {cells}")

    if args.diff:
        for style in styles:
            if ("ref", style) in preds and ("ours", style) in preds:
                print_diff(
                    texts_by_style[style],
                    preds[("ref", style)],
                    preds[("ours", style)],
                    style,
                    args.diff,
                )

    # ------------------------------------------------------------------ gaps and flags
    print()
    flags: List[str] = []
    by = {(r.system, r.style): r for r in rows}
    full = args.limit is None and Path(args.data).name == "eng.testb"
    spaced_documents = args.unit == "documents" and args.join == "space" and args.sentencizer
    for style in styles:
        ref = by.get((ref_row, style))
        ours = by.get(("ours (hf_token_tagger)", style))
        trf = by.get(("transformers best", style))
        shp = by.get(("spacy-hf-pipelines first", style))
        if ref is not None and full and style == styles[0] and args.model == str(DEFAULT_MODEL):
            ok = abs(ref.f1 - REFERENCE_F1) <= REFERENCE_TOLERANCE  # type: ignore[operator]
            msg = (
                f"reference F1 {ref.f1:.2f} vs model README {REFERENCE_F1} "
                f"(tolerance {REFERENCE_TOLERANCE}): {'OK' if ok else 'MISMATCH'}"
            )
            print(msg)
            if not ok:
                flags.append(msg)
        if ref is not None and ours is not None:
            if ours.f1 is None:
                print(f"[{style}] gap ref - ours: n/a ({ours.note})")
            else:
                gap = ref.f1 - ours.f1  # type: ignore[operator]
                running = args.unit == "documents" and args.join == "space"
                bar = (
                    MAX_GAP_SENTENCIZED
                    if spaced_documents
                    else MAX_GAP_RUNNING
                    if running
                    else MAX_GAP
                )
                verdict = "PASS" if gap <= bar else "FAIL"
                print(f"[{style}] gap ref - ours: {gap:+.2f} F1 (bar <= {bar}): {verdict}")
                if verdict == "FAIL":
                    flags.append(f"{style}: ours is {gap:.2f} F1 below the reference")
        with_sentencizer = by.get((WITH_SENTENCIZER, style))
        if args.segmenters and ref is not None and ours is not None and with_sentencizer:
            gap = ref.f1 - ours.f1  # type: ignore[operator]
            below = with_sentencizer.f1 - ours.f1  # type: ignore[operator]
            ok = gap <= MAX_GAP_RUNNING and below <= MAX_BELOW_SENTENCIZER
            print(
                f"[{style}] running text: gap {gap:+.2f} F1 (bar <= {MAX_GAP_RUNNING}), "
                f"sentencizer first - ours {below:+.2f} F1 (bar <= {MAX_BELOW_SENTENCIZER}): "
                f"{'PASS' if ok else 'FAIL'}"
            )
            if not ok:
                flags.append(f"{style}: the sentence rule misses its bars")
        for decoding in DECODINGS if args.decodings else ():
            row = by.get((f"ours, {decoding}", style))
            if row is None or ref is None:
                continue
            print(f"[{style}] gap ref - {row.system}: {ref.f1 - row.f1:+.2f} F1")  # type: ignore[operator]
            if "NOT recorded" in row.note:
                flags.append(f"{style}: {row.system} replayed forward calls never recorded")
            same = ours is not None and ours.f1 is not None and ours.note.endswith(f"={decoding}")
            if same and abs(row.f1 - ours.f1) > 1e-9:  # type: ignore[operator]
                flags.append(f"{style}: {decoding} on the replayed forward differs from ours")
        auto, greedy = by.get(("ours, auto", style)), by.get(("ours, greedy", style))
        if auto is not None and greedy is not None and ref is not None:
            over_greedy = auto.f1 - greedy.f1  # type: ignore[operator]
            over_ref = auto.f1 - ref.f1  # type: ignore[operator]
            conll = full and args.model == str(DEFAULT_MODEL)
            print(
                f"[{style}] ours, auto - greedy: {over_greedy:+.2f} F1 (bar >= 0); "
                f"auto - ref: {over_ref:+.2f} F1" + (f" (bar >= +{MIN_AUTO_GAIN})" if conll else "")
            )
            if over_greedy < 0:
                flags.append(f"{style}: auto decoding is {-over_greedy:.2f} F1 below greedy")
            if conll and over_ref < MIN_AUTO_GAIN:
                flags.append(f"{style}: auto decoding gains {over_ref:+.2f} F1 over the reference")
        by_hand = by.get((SPLIT_BY_HAND, style))
        if by_hand is not None and ours is not None and ref is not None:
            print(
                f"[{style}] of that gap, the segmenter's (ref - {SPLIT_BY_HAND}): "
                f"{ref.f1 - by_hand.f1:+.2f} F1; the component's (by hand - ours): "  # type: ignore[operator]
                f"{by_hand.f1 - ours.f1:+.2f} F1"  # type: ignore[operator]
            )
        for peer in (trf, shp):
            if ref is not None and peer is not None and peer.f1 is not None:
                print(f"[{style}] gap ref - {peer.system}: {ref.f1 - peer.f1:+.2f} F1")  # type: ignore[operator]
            if ours is not None and ours.f1 is not None and peer is not None and peer.f1:
                if ours.f1 < peer.f1:
                    flags.append(
                        f"{style}: ours ({ours.f1:.2f}) below {peer.system} ({peer.f1:.2f})"
                    )
    if args.o_bias:
        curves = {}
        print(
            "\nprecision / recall over o_bias (ours, forward replayed; covered: gold "
            "entities inside predicted ones, any type):"
        )
        print(f"  {'text':<8} {'o_bias':>6} {'P':>6} {'R':>6} {'F1':>6} {'covered':>7}  entities")
        for style in styles:
            curve = o_bias_curve(rows, style)
            curves[style] = curve
            for bias, prec, rec, cov in curve:
                m = by[(f"ours, o_bias={bias:g}", style)].scores.micro  # type: ignore[union-attr]
                print(
                    f"  {style:<8} {bias:>6g} {prec:6.2f} {rec:6.2f} {100 * m.f1:6.2f} "
                    f"{cov:7.2f}  {m.tp + m.fp}"
                )
            for name, k in (("recall", 2), ("covered", 3)):
                values = [point[k] for point in curve]
                rising = all(b > a for a, b in zip(values, values[1:]))
                print(f"  [{style}] {name} rises with o_bias: {'PASS' if rising else 'FAIL'}")
                if not rising and name == "recall":
                    flags.append(f"{style}: recall does not rise over o_bias {args.o_bias}")
            notes = [by[(f"ours, o_bias={point[0]:g}", style)].note for point in curve]
            if any("NOT recorded" in note for note in notes):
                flags.append(f"{style}: o_bias rows replayed forward calls never recorded")
        if args.plot is not None:
            from pr_curve import plot_pr_curve

            plot_pr_curve(
                curves,
                args.plot,
                f"{Path(args.model).name}, {Path(args.data).name}: precision against recall "
                "as o_bias grows",
                f"one text per {args.unit[:-1]}, decoding={ours_decoding}, "
                f"{len(gold_spans(first))} gold entities",
            )
            print(f"  curves saved to {args.plot}")
    if not full:
        print("(subset or other data: the 86.39 reference check applies to the full test set)")
    print(f"\nflags: {'none' if not flags else ''}")
    for f in flags:
        print(f"  - {f}")
    print(f"total time {time.perf_counter() - t_start:.1f}s")
    return 1 if flags else 0


if __name__ == "__main__":
    sys.exit(main())
