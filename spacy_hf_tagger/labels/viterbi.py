"""The best label sequence per segment that the label scheme allows (Viterbi).

`predict_entities` reads each token's most probable label and repairs what the
scheme does not allow (`decoding="greedy"`). With `decoding="viterbi"` it
takes instead, in each segment, the sequence of entities the model's per-token
probabilities make most probable: `viterbi_label_ids` here. Pure numpy over
the probabilities of one batch's tokens; the loop runs over positions only,
each step one array operation over every segment still running (segments are
sorted by length, so the running ones are a prefix), states x states.

What "most probable" means, by scheme kind (`LabelScheme.kind`):

* "iob": IOB1 and IOB2 share their labels, and `id2label` cannot tell which a
  model was trained on. An IOB1 model says I-X where an entity begins, B-X
  only where it follows another X. So the score follows how the greedy path
  reads labels (conlleval): a token that begins an X entity after O, at a
  segment start or after another type scores log(P(B-X) + P(I-X)), both labels
  reading as a beginning there; one that begins a new X right after an X
  entity scores log P(B-X), the only label that reads so; continuing an X
  scores log P(I-X); O scores log P(O). That is the probability of every label
  sequence that decodes to the same entities, so the result is the most
  probable set of entities, under either training scheme, and no IOB1 entity
  is lost to a rule that I- cannot begin one. Output is IOB2 (B- where an
  entity begins). The strict IOB2 reading (I-X only after B-X or I-X, every
  token its own label's probability; ``iob="strict"``) is the setting
  `decoding="viterbi-iob2"`, for models trained on IOB2 labels (most hub NER
  models): +0.9 F1 on CoNLL-2003 with such a model, and it would drop an IOB1
  model's entities. `decoding="auto"` (the default) asks the model which it
  was trained on (`model.iob_probe`): the strict reading for IOB2, greedy
  otherwise (`resolve_decoding`).
* "bioes" (BILOU read as BIOES): strict. B-X and I-X go on with I-X or E-X;
  O, E-, S- and a segment start go on with O, B- or S-; a segment cannot end
  in B- or I-.
* "io" and "tags": nothing to constrain: each token's most probable label.

Tokens without a piece (`has_piece` False) have no prediction: they are left
out of the search, so their all-zero rows neither block nor favour a path,
and the tokens on either side of them meet as neighbours ("New", "York" of
"New  York"). They come out O, as in the greedy path, and `_fill_gaps` then
lets an entity run across them exactly as it does there. Nothing carries
across `segment_starts`: each segment is searched on its own.

Labels a scheme lacks (a type with I- but no B-, a BIOES set without E-) are
states the path cannot take. Should a segment have no allowed path at all
(e.g. a BIOES set without O, S- or E- for a type), it falls back to each
token's most probable label, which decoding then repairs as usual.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import List, Optional, Tuple

import numpy as np

from .schemes import LabelScheme

#: Values of the `decoding` setting. "auto" is settled per model before
#: decoding (`resolve_decoding`); the others are what `predict_entities` takes.
DECODINGS = ("auto", "greedy", "viterbi", "viterbi-iob2")
#: How a Viterbi search reads an IOB model: "conlleval" (the default, as the
#: greedy path reads labels, for IOB1 and IOB2 alike) or "strict" (IOB2 only).
IOB_READINGS = ("conlleval", "strict")

# Floor for probabilities of labels the model has: a float32 softmax can
# underflow to 0, and log(0) would make a label the model merely ruled out
# as impossible as one the scheme forbids.
_TINY = np.finfo(np.float64).tiny


@dataclass(frozen=True)
class Lattice:
    """The states of one scheme's search and which follow which.

    State k writes label id `labels[k]` (or the scheme's "outside") and scores
    P(label `columns[k]`) where it continues an entity of its own type
    ("same" predecessors), P(`columns[k]`) + P(`entry_columns[k]`) otherwise;
    -1 names no label (probability 0, the state is not taken).
    """

    labels: np.ndarray  # (K,) label id written
    columns: np.ndarray  # (K,) label id read, -1 none
    entry_columns: np.ndarray  # (K,) label id also read where it begins an entity, -1 none
    allowed: np.ndarray  # (K, K) bool: state j may follow state i
    start: np.ndarray  # (K,) bool: may begin a segment
    end: np.ndarray  # (K,) bool: may end a segment
    same: np.ndarray  # (K, K) bool: i and j are entity states of one type

    @property
    def reads_entries(self) -> bool:
        return bool((self.entry_columns >= 0).any())


@lru_cache(maxsize=64)
def lattice(scheme: LabelScheme, iob: str = "conlleval") -> Lattice:
    """The search's states for an "iob" or "bioes" scheme."""
    if iob not in IOB_READINGS:
        raise ValueError(f"iob={iob!r}: use one of {IOB_READINGS}")
    if scheme.kind == "iob":
        prefixes = ("B", "I")
    elif scheme.kind == "bioes":
        prefixes = ("B", "I", "E", "S")
    else:
        raise ValueError(f"no Viterbi lattice for a {scheme.kind!r} scheme")
    index = scheme.label_index
    outside = scheme.outside_or_none
    states: List[Tuple[str, str]] = [("O", "")]
    states += [(p, t) for t in scheme.entity_types for p in prefixes]
    n = len(states)
    columns = np.array([index.get(s, -1) for s in states], dtype=np.int64)
    entry = np.full(n, -1, dtype=np.int64)
    labels = columns.copy()
    labels[0] = outside
    if scheme.kind == "iob":
        for k, (prefix, type_) in enumerate(states):
            if prefix != "B":
                continue
            inside = index.get(("I", type_), -1)
            if iob == "conlleval":
                entry[k] = inside
            if columns[k] < 0:
                # No B-X label: where an X begins, I-X reads as the beginning.
                labels[k] = inside
    prefix_of = np.array([p for p, _ in states])
    type_of = np.array([t for _, t in states], dtype=object)
    same = (type_of[:, None] == type_of[None, :]) & (prefix_of != "O")[:, None]
    opens = np.isin(prefix_of, ("B", "I"))  # an entity that must go on
    goes_on = np.isin(prefix_of, ("I", "E"))  # continues the entity before it
    allowed = np.where(opens[:, None], same & goes_on[None, :], ~goes_on[None, :])
    if scheme.kind == "iob":
        # IOB: B- and I- may also end an entity (nothing marks the end).
        allowed = allowed | ~goes_on[None, :]
        end = np.ones(n, dtype=bool)
    else:
        end = ~opens
    start = ~goes_on
    return Lattice(labels, columns, entry, allowed, start, end, same)


def resolve_decoding(decoding: str, kind: str, iob_flavour: Optional[str] = None) -> str:
    """The decoding `decoding="auto"` stands for, given the scheme's `kind` and,
    for an "iob" scheme, what the model reads as trained on (`model.iob_probe`).

    An IOB2 model: "viterbi-iob2" (+0.9 to +1.9 F1 over greedy on the models
    measured). An IOB1 model, or one the probe cannot tell: "greedy", which
    reads either correctly; the conlleval search ("viterbi") was never better
    than greedy on the models measured (0.01 to 0.15 F1 below). BIOES/BILOU:
    "viterbi", which is strict, as the models' training labels always are. IO
    and tag sets: "greedy" (each token's best label; the search would give
    the same). Any value but "auto" is returned as it is.
    """
    if decoding != "auto":
        return decoding
    if kind == "iob":
        return "viterbi-iob2" if iob_flavour == "iob2" else "greedy"
    return "viterbi" if kind == "bioes" else "greedy"


def _log(p: np.ndarray, missing: np.ndarray) -> np.ndarray:
    out = np.log(np.maximum(p, _TINY))
    out[:, missing] = -np.inf
    return out


def _emissions(lat: Lattice, probs: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Log scores (tokens, states) where a state continues its type, and where
    it does not (begins an entity, or is O)."""
    # Column -1 reads the appended zeros: labels the scheme lacks.
    padded = np.concatenate([probs.astype(np.float64), np.zeros((len(probs), 1))], axis=1)
    own = padded[:, lat.columns]
    same = _log(own, lat.columns < 0)
    if not lat.reads_entries:
        return same, same
    entry = _log(own + padded[:, lat.entry_columns], (lat.columns < 0) & (lat.entry_columns < 0))
    return same, entry


def _segments(
    has_piece: np.ndarray, segment_starts: Optional[np.ndarray]
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The tokens with a piece (`kept`), and where each segment's run of them
    starts in `kept` and how long it is (segments without one are left out)."""
    n = len(has_piece)
    starts = np.zeros(n, dtype=bool) if segment_starts is None else segment_starts.astype(bool)
    segment = np.cumsum(starts)  # tokens before a first start share segment 0
    kept = np.flatnonzero(has_piece)
    seg = segment[kept]
    first = np.flatnonzero(np.concatenate(([True], seg[1:] != seg[:-1])))
    lengths = np.diff(np.concatenate((first, [len(kept)])))
    return kept, first, lengths


def best_paths(
    lat: Lattice, same: np.ndarray, entry: np.ndarray, first: np.ndarray, lengths: np.ndarray
) -> Tuple[np.ndarray, np.ndarray]:
    """The best state per position of every segment, and whether a segment had
    an allowed path. Segment s covers rows first[s] : first[s] + lengths[s] of
    the (positions, states) emission arrays."""
    n_states = len(lat.labels)
    order = np.argsort(-lengths, kind="stable")
    seg_len = lengths[order]
    seg_first = first[order]
    longest = int(seg_len[0])
    # Segments still running at position t: the first `running[t]` in this order.
    running = np.searchsorted(-seg_len, -np.arange(longest), side="left")
    transition = np.where(lat.allowed, 0.0, -np.inf)
    entering = ~lat.same & lat.allowed
    score = np.where(lat.start, 0.0, -np.inf)[None, :] + entry[seg_first]
    back = np.zeros(same.shape, dtype=np.int16 if n_states < 2**15 else np.int64)
    for t in range(1, longest):
        k = int(running[t])
        rows = seg_first[:k] + t
        cand = score[:k, :, None] + transition
        if lat.reads_entries:
            # The step's score depends on where it comes from: continuing its
            # own type or beginning an entity.
            cand += np.where(entering, entry[rows, None, :], same[rows, None, :])
            back[rows] = cand.argmax(axis=1)
            score[:k] = cand.max(axis=1)
        else:
            back[rows] = cand.argmax(axis=1)
            score[:k] = cand.max(axis=1) + same[rows]
    final = score + np.where(lat.end, 0.0, -np.inf)[None, :]
    current = final.argmax(axis=1)
    feasible_sorted = np.isfinite(final.max(axis=1))
    path = np.empty(len(same), dtype=np.int64)
    for t in range(longest - 1, 0, -1):
        k = int(running[t])
        rows = seg_first[:k] + t
        path[rows] = current[:k]
        current[:k] = back[rows, current[:k]]
    path[seg_first] = current
    feasible = np.empty(len(order), dtype=bool)
    feasible[order] = feasible_sorted
    return path, feasible


def viterbi_label_ids(
    scheme: LabelScheme,
    token_probs: np.ndarray,
    has_piece: np.ndarray,
    segment_starts: Optional[np.ndarray] = None,
    *,
    iob: str = "conlleval",
) -> np.ndarray:
    """Label id per token (as `token_probs.argmax(1)` would give, O where no
    piece covers a token): the best sequence the scheme allows in each
    segment. `segment_starts` marks the first token of each segment (None:
    one segment)."""
    n_tokens = len(token_probs)
    if n_tokens == 0:
        return np.zeros(0, dtype=np.int64)
    outside = scheme.outside_or_none
    argmax = np.where(has_piece, token_probs.argmax(axis=1), outside)
    if scheme.kind not in ("iob", "bioes"):
        return argmax
    lat = lattice(scheme, iob)
    kept, first, lengths = _segments(has_piece, segment_starts)
    out = np.full(n_tokens, outside, dtype=argmax.dtype)
    if len(kept) == 0:
        return out
    same, entry = _emissions(lat, token_probs[kept])
    path, feasible = best_paths(lat, same, entry, first, lengths)
    out[kept] = lat.labels[path]
    if not feasible.all():
        for s in np.flatnonzero(~feasible).tolist():
            rows = kept[first[s] : first[s] + lengths[s]]
            out[rows] = argmax[rows]
    return out
