"""Label schemes: read a model's `id2label`, and decode token labels into spans.

Models name their labels in many ways (IOB1, IOB2, BIOES, BILOU, IO, plain
POS tags, hyphenated types such as ``B-person-actor``). Everything downstream
works on one normal form: for entity models each label is a ``(prefix, type)``
pair with prefix in ``B I E S O`` (BILOU's ``L``/``U`` read as ``E``/``S``);
for tagging models each label is a plain tag.

All functions here are pure, over numpy arrays and plain values, so they are
tested without a model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ..errors import LabelSchemeError

#: Universal POS tags (UD v2). A label set inside this one is written to `pos_`.
UPOS_TAGS = frozenset(
    "ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ SYM VERB X".split()
)

# A prefix letter, one separator, then the type. Split on the first separator
# only, so that types may carry hyphens ("B-person-actor" -> B, person-actor).
_ENTITY_LABEL = re.compile(r"^([BIESLU])[-_](.+)$")
_OUTSIDE = frozenset({"O", "o", "0"})
_PREFIX_NORMAL = {"B": "B", "I": "I", "E": "E", "S": "S", "L": "E", "U": "S"}

SCHEMES = ("iob", "bioes", "io", "tags")
# Prefixes as integers, for decoding over arrays.
_CODE = {"O": 0, "B": 1, "I": 2, "E": 3, "S": 4}


@dataclass(frozen=True)
class LabelScheme:
    """How to read one model's label ids.

    `kind` is "iob" (IOB1 and IOB2 decode the same way), "bioes" (also BILOU),
    "io" or "tags". For entity kinds, `prefixes[i]` is one of "B I E S O" and
    `types[i]` the entity type of label id `i` ("" for O); for "tags",
    `types[i]` is the tag and `prefixes` is all "".
    """

    kind: str
    labels: Tuple[str, ...]
    prefixes: Tuple[str, ...]
    types: Tuple[str, ...]
    entity_types: Tuple[str, ...] = field(default=())

    @property
    def is_entity(self) -> bool:
        return self.kind != "tags"

    @cached_property
    def prefix_codes(self) -> np.ndarray:
        """Each label's prefix as a small integer (`_CODE`), for array decoding."""
        return np.array([_CODE[p] for p in self.prefixes] or [0], dtype=np.int8)

    @cached_property
    def type_ids(self) -> np.ndarray:
        """Each label's type as an integer (-1 for none), for array decoding."""
        index = {t: k for k, t in enumerate(dict.fromkeys(self.types))}
        return np.array([index[t] if t else -1 for t in self.types] or [-1], dtype=np.int64)

    @cached_property
    def outside_id(self) -> Optional[int]:
        return self.label_index.get(("O", ""))

    @cached_property
    def outside_or_none(self) -> int:
        """`outside_id`, or -1 (read as "outside" by decoding) when there is no O."""
        return self.outside_id if self.outside_id is not None else -1

    @cached_property
    def label_index(self) -> Dict[Tuple[str, str], int]:
        """Label id of each (prefix, type) pair."""
        index: Dict[Tuple[str, str], int] = {}
        for i, key in enumerate(zip(self.prefixes, self.types)):
            index.setdefault(key, i)
        return index

    @cached_property
    def type_matrix(self) -> np.ndarray:
        """[n_labels, n_labels] 0/1: entry (i, j) is 1 when labels i and j share
        a type (O with O). `probs @ type_matrix` gives, for each label, the
        probability of its type whatever the prefix."""
        types = np.array(self.types, dtype=object)
        if not self.is_entity:
            return np.eye(len(self.labels), dtype=np.float32)
        return (types[:, None] == types[None, :]).astype(np.float32)

    def begin_to_inside(self) -> np.ndarray:
        """For each label id, the id of the label that continues it.

        A piece that starts in an earlier spaCy token cannot begin an entity in
        a later token; its B-/S- mass moves to the matching I-/E- label. Labels
        that have no continuation map to themselves.
        """
        index = self.label_index
        mapping = np.arange(len(self.labels))
        for i, (prefix, type_) in enumerate(zip(self.prefixes, self.types)):
            target = {"B": "I", "S": "E"}.get(prefix)
            if target is None:
                continue
            j = index.get((target, type_))
            if j is None and target == "E":
                j = index.get(("I", type_))
            if j is not None:
                mapping[i] = j
        return mapping


def is_upos(scheme: LabelScheme) -> bool:
    """A tag set inside the Universal POS tags is written to `token.pos_`."""
    return set(scheme.labels) <= UPOS_TAGS | {"_"}


def read_label_scheme(id2label: Mapping[int, str]) -> LabelScheme:
    """Infer the label scheme from a model config's `id2label`.

    Raises LabelSchemeError naming the labels when some look like entity labels
    and others like tags, or when ids are not 0..n-1.
    """
    if not id2label:
        raise LabelSchemeError(
            "The model config has no labels (`id2label` is empty). Use a "
            "token-classification checkpoint, or fine-tune with `spacy train`."
        )
    by_id = {int(i): str(label) for i, label in id2label.items()}
    ids = sorted(by_id)
    if ids != list(range(len(ids))):
        raise LabelSchemeError(
            f"The model's label ids are not 0..{len(ids) - 1}: {ids[:20]}. "
            "Fix `id2label` in the model's config.json."
        )
    labels = tuple(by_id[i] for i in ids)
    parsed: List[Optional[Tuple[str, str]]] = []
    for label in labels:
        if label in _OUTSIDE:
            parsed.append(("O", ""))
            continue
        match = _ENTITY_LABEL.match(label)
        parsed.append((_PREFIX_NORMAL[match.group(1)], match.group(2)) if match else None)

    entity_like = [lab for lab, p in zip(labels, parsed) if p is not None and p[0] != "O"]
    plain = [lab for lab, p in zip(labels, parsed) if p is None]
    if not entity_like:
        # A tag set: POS tags, or anything without entity prefixes.
        return LabelScheme("tags", labels, tuple("" for _ in labels), labels, ())
    if plain:
        raise LabelSchemeError(
            f"The model's labels mix entity labels ({entity_like[:5]}) with labels "
            f"that have no B-/I-/E-/S-/L-/U- prefix ({plain[:5]}), so they read "
            "neither as entities nor as tags. Rename them in the model's "
            "config.json `id2label` so that all read one way."
        )

    pairs = [p for p in parsed if p is not None]  # every label: none is plain here
    prefixes = tuple(prefix for prefix, _ in pairs)
    types = tuple(type_ for _, type_ in pairs)
    used = set(prefixes) - {"O"}
    if used & {"E", "S"}:
        kind = "bioes"
    elif used == {"I"}:
        kind = "io"
    else:
        kind = "iob"
    entity_types = tuple(sorted({t for t in types if t}))
    return LabelScheme(kind, labels, prefixes, types, entity_types)


class DecodedSpan(NamedTuple):
    """A decoded span over token indices [start, end).

    A tuple subclass, which the garbage collector keeps tracking (CPython
    untracks exact tuples only): measured, 5,697 of the 46,773 objects one
    pass over the 3,453 CoNLL test sentences promotes to the oldest
    generation; plain tuples would save about an eighth of those."""

    start: int
    end: int
    label: str
    score: float


def span_score(scores: Sequence[float]) -> float:
    """A span's score: the mean of its tokens' scores, skipping NaN (x != x:
    tokens without a prediction of their own); 0.0 when none has one."""
    values = [v for v in scores if v == v]
    return sum(values) / len(values) if values else 0.0


def decode_spans(
    scheme: LabelScheme,
    label_ids: np.ndarray,
    scores: np.ndarray,
    breaks: Optional[np.ndarray] = None,
) -> List[DecodedSpan]:
    """Turn per-token label ids into entity spans, repairing invalid sequences.

    The repair is deterministic and follows conlleval: an I-/E- of type X that
    does not continue an open X entity starts a new one; B-/S- always start a
    new entity; E-/S- close the entity they belong to. IOB1 and IOB2 decode
    identically under this rule. The span score is the mean of its tokens'
    label probabilities (NaN scores, for tokens no piece covers, are skipped).
    No span runs across a token marked in `breaks` (the first token of each
    doc, when several docs are decoded at once).
    """
    if not scheme.is_entity:
        raise ValueError("decode_spans needs an entity label scheme, not a tag set")
    n = len(label_ids)
    if n == 0:
        return []
    ids = np.asarray(label_ids, dtype=np.int64)
    codes, type_ids = scheme.prefix_codes, scheme.type_ids
    # Negative ids mark tokens outside any entity (schemes without an O label).
    outside = ids < 0
    prefix = np.where(outside, _CODE["O"], codes[np.maximum(ids, 0)])
    type_ = np.where(outside, -1, type_ids[np.maximum(ids, 0)])
    # Token i continues the entity open after token i-1 when it is an I-/E-
    # of the open type; an entity is open after a B-/I- (E-/S- close theirs).
    continues = np.zeros(n, dtype=bool)
    continues[1:] = (
        ((prefix[1:] == _CODE["I"]) | (prefix[1:] == _CODE["E"]))
        & ((prefix[:-1] == _CODE["B"]) | (prefix[:-1] == _CODE["I"]))
        & (type_[1:] == type_[:-1])
    )
    if breaks is not None:
        continues &= ~np.asarray(breaks, dtype=bool)
    starts = np.flatnonzero((prefix != _CODE["O"]) & ~continues)
    if not len(starts):
        return []
    # Each entity runs up to the next token that does not continue one.
    stops = np.flatnonzero(~continues)
    ends = np.append(stops, n)[np.searchsorted(stops, starts, side="right")]
    # Mean of the known scores (NaN: a token without a prediction of its own),
    # each entity summed on its own, so a doc's scores do not depend on the
    # docs decoded with it.
    values = np.asarray(scores, dtype=np.float64)
    known = ~np.isnan(values)
    bounds = np.empty(2 * len(starts), dtype=np.int64)
    bounds[0::2], bounds[1::2] = starts, ends
    padded = np.append(np.where(known, values, 0.0), 0.0)
    sums = np.add.reduceat(padded, bounds)[0::2]
    counts = np.add.reduceat(np.append(known, False).astype(np.int64), bounds)[0::2]
    means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    labels = scheme.types
    first_ids = ids[starts].tolist()
    return [
        DecodedSpan(s, e, labels[i], m)
        for s, e, i, m in zip(starts.tolist(), ends.tolist(), first_ids, means.tolist())
    ]


def spans_of_tags(tags: Sequence[str]) -> List[Tuple[int, int, str]]:
    """Entity spans (start, end, type) of a sentence's tag strings (IOB1, IOB2,
    BIOES, BILOU): `decode_spans` under the scheme the tags themselves make, so
    gold data and predictions decode by the one conlleval rule."""
    names = sorted(set(tags) | {"O"})
    scheme = read_label_scheme(dict(enumerate(names)))
    if not scheme.is_entity:
        plain = [name for name in names if name not in _OUTSIDE]
        if not plain:
            return []
        raise LabelSchemeError(
            f"Tags {plain[:5]} have no B-/I-/E-/S-/L-/U- prefix, so they cannot be read "
            "as entities. Use IOB or BIOES tags (e.g. B-PER, I-PER)."
        )
    index = {name: i for i, name in enumerate(names)}
    ids = np.array([index[tag] for tag in tags], dtype=np.int64)
    spans = decode_spans(scheme, ids, np.zeros(len(ids)))
    return [(span.start, span.end, span.label) for span in spans]


def spans_to_iob(n_tokens: int, spans: Sequence[Tuple[int, int, str]]) -> List[str]:
    """IOB2 strings for `n_tokens` tokens from non-overlapping (start, end, label) spans."""
    tags = ["O"] * n_tokens
    for start, end, label in spans:
        tags[start] = f"B-{label}"
        for i in range(start + 1, end):
            tags[i] = f"I-{label}"
    return tags


def iob_labels(entity_types: Sequence[str]) -> List[str]:
    """The IOB2 label list ("O" first) for entity types, as training creates it."""
    labels = ["O"]
    for type_ in entity_types:
        labels.extend((f"B-{type_}", f"I-{type_}"))
    return labels


def map_types(
    types: Sequence[str], label_map: Mapping[str, str], ignore: Sequence[str]
) -> Dict[str, Optional[str]]:
    """Resolve each model type to its output name, or None when it is ignored.

    `ignore` may name a type either as the model calls it or after `label_map`.
    """
    ignored = set(ignore)
    resolved: Dict[str, Optional[str]] = {}
    for type_ in types:
        out = label_map.get(type_, type_)
        resolved[type_] = None if (type_ in ignored or out in ignored) else out
    return resolved
