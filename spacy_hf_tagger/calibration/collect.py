"""Run a pipeline over gold docs and keep what a fit and an ECE read.

Each gold doc's text goes through the pipeline's own tokenizer and the
components before ours, as in use; our component then predicts, writes, and
decodes its raw entities (`HFTokenTagger.decode_entities(raw=True)`), and
entities are judged against gold by character offsets and label, so a
pipeline that tokenizes differently from the gold data is judged fairly.

Tokens get a gold class (an entity type under the pipeline's output name, or
O) when every character of the token has the same one; a token cut by a gold
boundary, or inside a gold entity whose label the pipeline never outputs, is
left out of the token data and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from spacy.language import Language
from spacy.tokens import Doc
from spacy.util import minibatch

from ..labels.decoding import split_by_doc
from ..labels.schemes import LabelScheme, map_types
from .fitting import EntityData, TokenData

# One char-level class for "no gold entity here", one for "a label we cannot score".
_OUTSIDE_CLASS = 0
_UNKNOWN_CLASS = -1
# (start char, end char, label) of each span of a doc.
CharSpans = Tuple[Tuple[int, int, str], ...]


@dataclass(frozen=True)
class Collected:
    """What one pipeline did on one gold set.

    `entities`: its decoded entities (those it outputs under some name), with
    `pipeline_scores` the scores it gave them (through its own `temperature`);
    `tokens`: tokens with a gold class; `decoded[i]` / `written[i]`: doc i's
    decoded entities (start char, end char, model type) and what it wrote
    (`doc.ents`, then the spans group), for comparing two pipelines.
    """

    tokens: TokenData
    entities: EntityData
    pipeline_scores: np.ndarray
    decoded: List[CharSpans]
    written: List[Tuple[CharSpans, CharSpans]]
    n_gold: int
    tokens_left_out: int

    @property
    def n_docs(self) -> int:
        return len(self.decoded)


def _token_classes(
    doc: Doc, gold: Sequence[Tuple[int, int, str]], class_of: Dict[str, int]
) -> np.ndarray:
    """Each token's gold class index, or -1 where it has none (see module)."""
    chars = np.full(len(doc.text), _OUTSIDE_CLASS, dtype=np.int64)
    for start, end, label in gold:
        chars[start:end] = class_of.get(label, _UNKNOWN_CLASS)
    out = np.full(len(doc), _UNKNOWN_CLASS, dtype=np.int64)
    for i, token in enumerate(doc):
        span = chars[token.idx : token.idx + len(token)]
        if len(span) and (span == span[0]).all():
            out[i] = span[0]
    return out


def _char_spans(doc: Doc, spans: Iterable[Tuple[int, int, str]]) -> CharSpans:
    """Token spans [start, end) as character spans."""
    return tuple(
        (doc[start].idx, doc[end - 1].idx + len(doc[end - 1]), label) for start, end, label in spans
    )


def _class_table(
    scheme: LabelScheme, out_names: Mapping[str, Optional[str]]
) -> Tuple[Dict[str, int], np.ndarray]:
    """The gold classes tokens are scored on: class 0 is O, then one per
    output name, made of every label whose type has that name (label_map may
    give two types one name); and their label columns [n_classes, n_labels]."""
    names = sorted({n for n in out_names.values() if n is not None})
    class_of = {n: k + 1 for k, n in enumerate(names)}
    types = np.array(scheme.types, dtype=object)
    classes = np.zeros((len(names) + 1, len(scheme.labels)))
    classes[_OUTSIDE_CLASS] = np.array(scheme.prefixes, dtype=object) == "O"
    for type_, out in out_names.items():
        if out is not None:
            classes[class_of[out]] += types == type_
    return class_of, classes


def collect(
    nlp: Language, name: str, gold_docs: Iterable[Doc], batch_size: int = 256
) -> Collected:
    """Run `nlp` up to and including component `name` over the texts of
    `gold_docs` (docs with gold `ents`), `batch_size` docs at a time."""
    tagger = nlp.get_pipe(name)
    scheme = tagger.label_scheme
    settings = tagger.settings
    spans_key: Optional[str] = settings.spans_key if "spans" in tagger.annotate else None
    out_names = map_types(scheme.entity_types, settings.label_map, settings.ignore_labels)
    class_of, classes = _class_table(scheme, out_names)
    types = np.array(scheme.types, dtype=object)
    type_columns = {t: (types == t).astype(np.float64) for t in scheme.entity_types}
    before = nlp.pipe_names[: nlp.pipe_names.index(name)]

    token_rows: List[np.ndarray] = []
    token_gold: List[np.ndarray] = []
    entity_rows: List[np.ndarray] = []
    entity_owner: List[np.ndarray] = []
    entity_columns: List[np.ndarray] = []
    correct: List[bool] = []
    pipeline_scores: List[float] = []
    decoded_all: List[CharSpans] = []
    written_all: List[Tuple[CharSpans, CharSpans]] = []
    n_gold = 0
    left_out = 0
    for chunk in minibatch(gold_docs, size=batch_size):
        gold = [tuple((e.start_char, e.end_char, e.label_) for e in g.ents) for g in chunk]
        n_gold += sum(len(g) for g in gold)
        with nlp.select_pipes(enable=before):
            docs = list(nlp.pipe(g.text for g in chunk))
        predictions = tagger.predict(docs)
        raw, _ = tagger.decode_entities(predictions, raw=True)
        tagger.set_annotations(docs, predictions)
        bounds = predictions.encoded.token_bounds.tolist()
        has_piece = predictions.has_piece
        probs = predictions.token_probs
        per_doc = split_by_doc(raw, predictions.encoded.token_bounds)
        for i, (doc, doc_raw) in enumerate(zip(docs, per_doc)):
            lo, hi = bounds[i], bounds[i + 1]
            token_class = _token_classes(doc, gold[i], class_of)
            keep = has_piece[lo:hi] & (token_class >= 0)
            keep &= classes[np.maximum(token_class, 0)].any(axis=1)
            left_out += int(has_piece[lo:hi].sum() - keep.sum())
            token_rows.append(probs[lo:hi][keep])
            token_gold.append(token_class[keep])
            gold_set = set(gold[i])
            decoded = []
            for start, end, type_, score in doc_raw.spans:
                (char_span,) = _char_spans(doc, [(start, end, type_)])
                decoded.append(char_span)
                out = out_names[type_]
                if out is None:
                    continue
                rows = probs[lo + start : lo + end][has_piece[lo + start : lo + end]]
                entity_rows.append(rows)
                entity_owner.append(np.full(len(rows), len(correct), dtype=np.int64))
                entity_columns.append(type_columns[type_])
                correct.append((char_span[0], char_span[1], out) in gold_set)
                pipeline_scores.append(score)
            decoded_all.append(tuple(decoded))
            ents = _char_spans(doc, ((e.start, e.end, e.label_) for e in doc.ents))
            group = doc.spans.get(spans_key, []) if spans_key is not None else []
            spans = _char_spans(doc, ((s.start, s.end, s.label_) for s in group))
            written_all.append((ents, spans))

    n_labels = len(scheme.labels)
    tokens = TokenData(
        np.concatenate(token_rows) if token_rows else np.zeros((0, n_labels), np.float32),
        np.concatenate(token_gold) if token_gold else np.zeros(0, np.int64),
        classes,
    )
    entities = EntityData(
        np.concatenate(entity_rows) if entity_rows else np.zeros((0, n_labels), np.float32),
        np.concatenate(entity_owner) if entity_owner else np.zeros(0, np.int64),
        np.array(entity_columns).reshape(len(correct), n_labels),
        np.array(correct, dtype=bool),
    )
    return Collected(
        tokens,
        entities,
        np.array(pipeline_scores, dtype=np.float64),
        decoded_all,
        written_all,
        n_gold,
        left_out,
    )
