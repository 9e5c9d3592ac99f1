"""The model's entities at exact character offsets, whatever spaCy's tokens are.

Decoding reads one prediction per spaCy token, so an entity can only begin or
end where a token does. In Korean (`김태웅이고`: the name `김태웅` and the
particle `이고` in one token), Turkish (`Ankara'dan`), glued identifiers
(`AngelaMerkel`) or text that lost its spaces (`MerkelvisitedParis`), the
model's pieces say more than the token: its entity ends inside the token.

The character entities refine the token-level decoding, never replace it:

- a token read as one *cell* per piece start (pieces trimmed of whitespace,
  clipped to the token; several pieces starting at one character, as
  byte-level pieces of one character do, are one cell) is *varying* when the
  model's best type differs between its cells; every other token stays one
  element with the label the token-level decoding gave it;
- a varying token's cells take their own piece's best label (after `o_bias`
  and `label_map`/`ignore_labels`); inside one token a cell of the same type
  as the cell before it continues that entity whatever its prefix (a `B-` on
  a later piece of one word is the noise of word-trained models, not a second
  name glued to the first), and a piece that ran in from the token before
  never begins one;
- entities are the runs of the elements, in text order, under IOB2 rules.

So without a varying token the character entities are exactly the decoded
entities (same label, same score) at their tokens' character offsets. An
entity with a varying element is scored by the mean over its elements (token
scores as decoded, for cells the piece's probability of the type, calibrated
where `temperature` is set) and kept when that passes `threshold`.

`snap_to_tokens` is the one rule by which a character entity with an edge
inside a token becomes a token span (doc.ents without `split_tokens`).

Numpy over the batch's alignment arrays; nothing runs per token in Python
unless a token is varying.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .recall import Threshold, bias_outside
from .schemes import LabelScheme

# One entity at exact character offsets: (start_char, end_char, label, score)
# (a tuple, as a DocBin gives it back).
CharEntity = Tuple[int, int, str, float]


@dataclass
class PieceCells:
    """The batch's tokens cut at their pieces' starts (batch character offsets).

    Cell `c` is `start[c]:end[c]` of token `token[c]`, read through piece
    `piece[c]`; `own_end[c]` is where that piece's text ends (before any
    character the tokenizer dropped). A token's first cell starts at the
    token, its last ends with it. `continues[c]`: the piece began in an
    earlier token.
    """

    token: np.ndarray
    piece: np.ndarray
    start: np.ndarray
    end: np.ndarray
    own_end: np.ndarray
    continues: np.ndarray
    first_of_token: np.ndarray
    last_of_token: np.ndarray


def piece_cells(
    pair_piece: np.ndarray,
    pair_token: np.ndarray,
    pair_continues: np.ndarray,
    pair_marker: Optional[np.ndarray],
    piece_spans: np.ndarray,
    token_starts: np.ndarray,
    token_ends: np.ndarray,
) -> PieceCells:
    """Cells from the alignment's piece↔token pairs (sorted by token, each
    token's pieces in text order) and the pieces' trimmed character spans."""
    piece = np.asarray(pair_piece, dtype=np.int64)
    token = np.asarray(pair_token, dtype=np.int64)
    ts, te = token_starts[token], token_ends[token]
    start = np.maximum(piece_spans[piece, 0], ts)
    end = np.minimum(piece_spans[piece, 1], te)
    valid = end > start
    if pair_marker is not None:
        valid &= ~np.asarray(pair_marker, dtype=bool)
    piece, token, start, end = piece[valid], token[valid], start[valid], end[valid]
    continues = np.asarray(pair_continues, dtype=bool)[valid]
    n = len(token)
    first = np.ones(n, dtype=bool)
    if n:
        first[1:] = token[1:] != token[:-1]
    new_cell = first.copy()
    if n:
        new_cell[1:] |= start[1:] > start[:-1]
    cells = np.flatnonzero(new_cell)
    own_end = np.maximum.reduceat(end, cells) if n else end
    token, piece, start = token[cells], piece[cells], start[cells]
    continues, first = continues[cells], first[cells]
    start = np.where(first, token_starts[token], start)
    last = np.ones(len(cells), dtype=bool)
    if len(cells):
        last[:-1] = token[1:] != token[:-1]
    next_start = np.concatenate((start[1:], [0])) if len(cells) else start
    cell_end = np.where(last, token_ends[token], next_start)
    return PieceCells(
        token, piece, start, cell_end, np.minimum(own_end, cell_end), continues, first, last
    )


@dataclass
class TypeTables:
    """Label ids of the model mapped to the names written (`label_map`,
    `ignore_labels`): `names[k]` is name id k; `label_name[label]` its
    label's name id (-1: O or dropped), `label_begins[label]` whether it
    begins an entity (B-, S-); `name_columns[:, k]` marks the labels of name
    k, the last column those of none (what "outside" means here)."""

    names: List[str]
    name_index: Dict[str, int]
    label_name: np.ndarray
    label_begins: np.ndarray
    name_columns: np.ndarray

    @classmethod
    def build(
        cls, scheme: LabelScheme, type_names: Mapping[str, Optional[str]], extra: Sequence[str] = ()
    ) -> TypeTables:
        names: List[str] = []
        index: Dict[str, int] = {}
        for name in [*(type_names.get(t, t) for t in scheme.entity_types), *extra]:
            if name is not None and name not in index:
                index[name] = len(names)
                names.append(name)
        n_labels = len(scheme.labels)
        label_name = np.full(n_labels, -1, dtype=np.int64)
        for k, (prefix, type_) in enumerate(zip(scheme.prefixes, scheme.types)):
            name = type_names.get(type_, type_) if prefix != "O" and type_ else None
            if name is not None:
                label_name[k] = index[name]
        begins = np.array([p in ("B", "S") for p in scheme.prefixes] or [False], dtype=bool)
        columns = np.zeros((n_labels, len(names) + 1), dtype=np.float64)
        columns[np.arange(n_labels), np.where(label_name >= 0, label_name, len(names))] = 1.0
        return cls(names, index, label_name, begins[:n_labels], columns)


@dataclass
class CharEntities:
    """A batch's entities at exact character offsets, per doc (doc offsets),
    and what writing needs when one has an edge inside a token."""

    per_doc: List[List[CharEntity]]
    # Per doc: does an entity start or end inside a token.
    inside: List[bool]
    # Entities of varying tokens the threshold removed.
    below_threshold: int
    cells: PieceCells
    # The model's probabilities per piece, and how scores read them (`name_probs`).
    piece_probs: np.ndarray = field(repr=False)
    tables: TypeTables
    calibrate: Optional[Callable[[np.ndarray], np.ndarray]]
    # The batch's tokens (batch offsets), docs and doc offsets, as decoded.
    token_starts: np.ndarray = field(repr=False)
    token_ends: np.ndarray = field(repr=False)
    token_bounds: np.ndarray = field(repr=False)
    char_base: np.ndarray = field(repr=False)

    def doc_tokens(self, doc_index: int) -> Tuple[np.ndarray, np.ndarray, int]:
        """Doc `doc_index`'s token starts and ends (doc offsets), as decoded,
        and where the doc begins in the batch text."""
        lo, hi = int(self.token_bounds[doc_index]), int(self.token_bounds[doc_index + 1])
        base = int(self.char_base[lo]) if hi > lo else 0
        return self.token_starts[lo:hi] - base, self.token_ends[lo:hi] - base, base

    def name_probs(self, cells: np.ndarray, names: Sequence[Optional[str]]) -> np.ndarray:
        """Per cell, the probability its piece gives the name (None: outside)."""
        index = self.tables.name_index
        ids = np.array([-1 if n is None else index.get(n, -1) for n in names], dtype=np.int64)
        return _name_probs(
            self.piece_probs, self.cells.piece[cells], ids, self.tables, self.calibrate
        )


def _token_level(
    spans: Sequence[Tuple[int, int, str, float]], n_tokens: int, index: Mapping[str, int]
) -> Tuple[np.ndarray, np.ndarray]:
    """Per token: the name id of the decoded entity it is in (-1: none), and
    whether it begins one."""
    name = np.full(n_tokens, -1, dtype=np.int64)
    begins = np.zeros(n_tokens, dtype=bool)
    if spans:
        starts = np.array([s for s, _, _, _ in spans], dtype=np.int64)
        ends = np.array([e for _, e, _, _ in spans], dtype=np.int64)
        ids = np.array([index[label] for _, _, label, _ in spans], dtype=np.int64)
        lengths = ends - starts
        positions = np.repeat(
            starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths
        ) + np.arange(int(lengths.sum()))
        name[positions] = np.repeat(ids, lengths)
        begins[starts] = True
    return name, begins


def _thresholds(
    threshold: Threshold, type_names: Mapping[str, Optional[str]], tables: TypeTables
) -> np.ndarray:
    """One threshold per name: per model type, the lowest of the types a name
    stands for."""
    if not isinstance(threshold, Mapping):
        return np.full(len(tables.names), float(threshold))
    out = np.full(len(tables.names), np.inf)
    for type_, name in type_names.items():
        if name is not None and name in tables.name_index:
            k = tables.name_index[name]
            out[k] = min(out[k], float(threshold.get(type_, 0.0)))
    return np.where(np.isinf(out), 0.0, out)


def char_entities(
    *,
    scheme: LabelScheme,
    type_names: Mapping[str, Optional[str]],
    spans: Sequence[Tuple[int, int, str, float]],
    token_scores: Sequence[Optional[float]],
    cells: PieceCells,
    piece_probs: np.ndarray,
    token_starts: np.ndarray,
    token_ends: np.ndarray,
    token_bounds: np.ndarray,
    char_base: np.ndarray,
    segment_starts: Optional[np.ndarray],
    threshold: Threshold,
    o_bias: float = 0.0,
    calibrate: Optional[Callable[[np.ndarray], np.ndarray]] = None,
) -> CharEntities:
    """The batch's character entities, per doc.

    `spans` and `token_scores` are the token-level decoding over the batch's
    tokens (`decoding.predict_entities`); `piece_probs` the model's label
    probabilities per piece; scores read them through `calibrate` where
    given (row by row: only the rows needed are calibrated). `char_base[t]`
    is where token t's doc begins in the batch text. See the module's docstring for the rules.
    """
    n_tokens = len(token_starts)
    n_docs = len(token_bounds) - 1
    tables = TypeTables.build(scheme, type_names, [label for _, _, label, _ in spans])
    counts = np.bincount(cells.token, minlength=n_tokens) if n_tokens else np.zeros(0, np.int64)
    multi_cell = np.flatnonzero(counts[cells.token] > 1) if len(cells.token) else cells.token
    varying = np.zeros(n_tokens, dtype=bool)
    cell_label = np.zeros(0, dtype=np.int64)
    if len(multi_cell):
        probs = piece_probs[cells.piece[multi_cell]]
        if o_bias and scheme.outside_id is not None:
            probs = bias_outside(probs, scheme.outside_id, o_bias)
        cell_label = probs.argmax(axis=1)
        names = tables.label_name[cell_label]
        first = np.maximum.accumulate(
            np.where(cells.first_of_token[multi_cell], np.arange(len(multi_cell)), 0)
        )
        differs = names != names[first]
        varying[cells.token[multi_cell][differs]] = True
    doc_of_token = np.repeat(np.arange(n_docs), np.diff(token_bounds))
    if not varying.any():
        per_doc: List[List[CharEntity]] = [[] for _ in range(n_docs)]
        for start, end, label, score in spans:
            base = int(char_base[start])
            per_doc[int(doc_of_token[start])].append(
                (
                    int(token_starts[start]) - base,
                    int(token_ends[end - 1]) - base,
                    label,
                    float(score),
                )
            )
        inside, below = [False] * n_docs, 0
    else:
        per_doc, inside, below = _with_varying_tokens(
            tables=tables,
            type_names=type_names,
            spans=spans,
            token_scores=token_scores,
            cells=cells,
            multi_cell=multi_cell,
            cell_label=cell_label,
            varying=varying,
            piece_probs=piece_probs,
            calibrate=calibrate,
            token_starts=token_starts,
            token_ends=token_ends,
            doc_of_token=doc_of_token,
            char_base=char_base,
            segment_starts=segment_starts,
            threshold=threshold,
            n_docs=n_docs,
        )
    return CharEntities(
        per_doc,
        inside,
        below,
        cells,
        piece_probs,
        tables,
        calibrate,
        token_starts,
        token_ends,
        token_bounds,
        char_base,
    )


def _with_varying_tokens(
    *,
    tables: TypeTables,
    type_names: Mapping[str, Optional[str]],
    spans: Sequence[Tuple[int, int, str, float]],
    token_scores: Sequence[Optional[float]],
    cells: PieceCells,
    multi_cell: np.ndarray,
    cell_label: np.ndarray,
    varying: np.ndarray,
    piece_probs: np.ndarray,
    calibrate: Optional[Callable[[np.ndarray], np.ndarray]],
    token_starts: np.ndarray,
    token_ends: np.ndarray,
    doc_of_token: np.ndarray,
    char_base: np.ndarray,
    segment_starts: Optional[np.ndarray],
    threshold: Threshold,
    n_docs: int,
) -> Tuple[List[List[CharEntity]], List[bool], int]:
    """`char_entities` where some token is varying: runs over the elements
    (whole tokens, and the cells of varying tokens). Returns the entities per
    doc, whether each doc has an edge inside a token, and how many the
    threshold removed."""
    n_tokens = len(token_starts)
    token_name, token_begins = _token_level(spans, n_tokens, tables.name_index)
    # Elements: every token that is not varying, and each cell of one that is.
    whole = np.flatnonzero(~varying)
    label_of_cell = np.full(len(cells.token), -1, dtype=np.int64)
    label_of_cell[multi_cell] = cell_label
    split_cells = np.flatnonzero(varying[cells.token])
    c_label = label_of_cell[split_cells]
    c_name = tables.label_name[c_label]
    c_token = cells.token[split_cells]
    # Inside a token, the same type continues; a piece running in never begins.
    same_as_before = np.zeros(len(split_cells), dtype=bool)
    if len(split_cells):
        same_as_before[1:] = (c_token[1:] == c_token[:-1]) & (c_name[1:] == c_name[:-1])
    c_begins = tables.label_begins[c_label] & ~same_as_before & ~cells.continues[split_cells]
    c_scores = _name_probs(piece_probs, cells.piece[split_cells], c_name, tables, calibrate)
    scores_array = np.array([np.nan if s is None else s for s in token_scores], dtype=np.float64)
    el_token = np.concatenate((whole, c_token))
    el_start = np.concatenate((token_starts[whole], cells.start[split_cells]))
    el_end = np.concatenate(
        (
            token_ends[whole],
            np.where(
                cells.last_of_token[split_cells], cells.end[split_cells], cells.own_end[split_cells]
            ),
        )
    )
    el_name = np.concatenate((token_name[whole], c_name))
    el_begins = np.concatenate((token_begins[whole], c_begins))
    el_score = np.concatenate((scores_array[whole], c_scores))
    el_first = np.concatenate((np.ones(len(whole), dtype=bool), cells.first_of_token[split_cells]))
    el_is_cell = np.concatenate(
        (np.zeros(len(whole), dtype=bool), np.ones(len(split_cells), dtype=bool))
    )
    order = np.lexsort((el_start, el_token))
    (el_token, el_start, el_end, el_name, el_begins, el_score, el_first, el_is_cell) = (
        a[order]
        for a in (el_token, el_start, el_end, el_name, el_begins, el_score, el_first, el_is_cell)
    )
    # Where the token-level decoding forbids an entity to run on.
    breaks = np.zeros(n_tokens, dtype=bool)
    if n_tokens:
        breaks[np.concatenate(([0], np.flatnonzero(doc_of_token[1:] != doc_of_token[:-1]) + 1))] = (
            True
        )
    if segment_starts is not None:
        breaks |= np.asarray(segment_starts, dtype=bool)
    previous = np.concatenate(([-1], el_name[:-1]))
    entity = el_name >= 0
    starts = entity & (el_begins | (el_name != previous) | (el_first & breaks[el_token]))
    continues_next = np.concatenate((entity[1:] & ~starts[1:], [False]))
    first = np.flatnonzero(starts)
    last = np.flatnonzero(entity & ~continues_next)
    run_of = np.cumsum(starts) - 1
    run_cells = np.bincount(run_of[entity], weights=el_is_cell[entity], minlength=len(first))
    # Elements without a score of their own (no piece) count for nothing.
    scored = entity & ~np.isnan(el_score)
    sums = np.bincount(run_of[scored], weights=el_score[scored], minlength=len(first))
    counted = np.bincount(run_of[scored], minlength=len(first))
    run_score = np.where(counted > 0, sums / np.maximum(counted, 1), 0.0)
    limits = _thresholds(threshold, type_names, tables)
    # A run of whole tokens only is a decoded span when it starts and ends
    # with one: it keeps that span's score.
    decoded = {s: (e, float(score)) for s, e, _, score in spans}
    per_doc: List[List[CharEntity]] = [[] for _ in range(n_docs)]
    inside = [False] * n_docs
    below = 0
    for k, (i, j) in enumerate(zip(first.tolist(), last.tolist())):
        name = int(el_name[i])
        token = int(el_token[i])
        end_token = int(el_token[j]) + 1
        if run_cells[k] == 0 and decoded.get(token, (-1, 0.0))[0] == end_token:
            score = decoded[token][1]
        else:
            score = float(run_score[k])
            if score < limits[name]:
                below += 1
                continue
        doc = int(doc_of_token[token])
        base = int(char_base[token])
        start, end = int(el_start[i]), int(el_end[j])
        if start != token_starts[token] or end != token_ends[end_token - 1]:
            inside[doc] = True
        per_doc[doc].append((start - base, end - base, tables.names[name], score))
    return per_doc, inside, below


def _name_probs(
    piece_probs: np.ndarray,
    pieces: np.ndarray,
    names: np.ndarray,
    tables: TypeTables,
    calibrate: Optional[Callable[[np.ndarray], np.ndarray]] = None,
) -> np.ndarray:
    """Per piece, its probability of the name given (-1: of being outside),
    summed over the name's labels (B-, I-, ...) as token scores are."""
    if len(pieces) == 0:
        return np.zeros(0, dtype=np.float64)
    rows = piece_probs[pieces]
    if calibrate is not None:
        rows = calibrate(rows)
    by_name = rows.astype(np.float64) @ tables.name_columns
    return by_name[np.arange(len(pieces)), np.where(names >= 0, names, len(tables.names))]


@dataclass
class SnapCounts:
    """Character entities with an edge inside a token, as `snap_to_tokens`
    wrote them: widened to a whole token, narrowed to whole tokens, dropped."""

    widened: int = 0
    narrowed: int = 0
    dropped: int = 0


def snap_to_tokens(
    ents: Sequence[CharEntity], token_starts: np.ndarray, token_ends: np.ndarray
) -> Tuple[List[Tuple[int, int, str, float]], SnapCounts]:
    """Token spans for one doc's character entities (doc offsets, in order).

    The rule, for each edge inside a token: the entity takes the whole token
    when it holds at least half of the token's characters (`김태웅` of
    `김태웅이고`: 3 of 5), else it leaves the token out (`Paris` of
    `MerkelvisitedParis`: 5 of 18); an entity left with no token, or whose
    only tokens an entity before it took, is dropped. Edges on token
    boundaries stay where they are, so an entity that has none inside a token
    comes back as the decoded span it is.
    """
    counts = SnapCounts()
    out: List[Tuple[int, int, str, float]] = []
    if not len(token_starts):
        counts.dropped += len(ents)
        return out, counts
    starts = np.asarray(token_starts, dtype=np.int64)
    ends = np.asarray(token_ends, dtype=np.int64)
    for start, end, label, score in ents:
        first = int(np.searchsorted(ends, start, side="right"))
        last = int(np.searchsorted(starts, end, side="left")) - 1
        if first > last:
            counts.dropped += 1
            continue
        lo, hi = first, last + 1
        if start > starts[first]:
            held = min(end, int(ends[first])) - start
            lo = first if 2 * held >= ends[first] - starts[first] else first + 1
        if end < ends[last]:
            held = end - max(start, int(starts[last]))
            hi = last + 1 if 2 * held >= ends[last] - starts[last] else last
        if out and lo < out[-1][1]:
            lo = out[-1][1]
        if hi <= lo:
            counts.dropped += 1
            continue
        new_start, new_end = int(starts[lo]), int(ends[hi - 1])
        if new_start < start or new_end > end:
            counts.widened += 1
        if new_start > start or new_end < end:
            counts.narrowed += 1
        out.append((lo, hi, label, score))
    return out, counts
