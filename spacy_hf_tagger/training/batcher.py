"""Training batches of sentences, sized in words, whatever Docs the corpus holds.

A spaCy corpus can hold one sentence per Doc (our converter), ten
(`spacy convert -n 10`) or whole documents. Batching Docs makes the number
of steps, the batch size and the model's windows depend on that choice: the
same config trained 3 epochs of CoNLL in 1,317 steps from one shape and in
132 from another. This batcher cuts every Example into its sentences (gold
sentence starts, else line breaks; never inside a gold entity), shuffles
them, and fills each batch up to `size` words, so one step is about the same
amount of text for any corpus.
"""

from __future__ import annotations

import random
from typing import Callable, Iterable, Iterator, List

import numpy as np
from spacy.training import Example
from spacy.util import registry

from ..align.sentences import segment_starts

Batcher = Callable[[Iterable[Example]], Iterator[List[Example]]]


def split_example(example: Example) -> List[Example]:
    """The example's sentences as examples of their own.

    Boundaries come from the reference (gold) doc: its sentence starts, else
    its line breaks. A boundary inside a gold entity, or where the predicted
    tokens have no token boundary, is not used.
    """
    ref, pred = example.reference, example.predicted
    if len(ref) < 2:
        return [example]
    starts = segment_starts(ref)
    starts[0] = False
    for ent in ref.ents:
        starts[ent.start + 1 : ent.end] = False
    cuts = np.flatnonzero(starts).tolist()
    if not cuts:
        return [example]
    pred_at = {int(idx): i for i, idx in enumerate(pred.to_array("IDX").tolist())}
    ref_idx = ref.to_array("IDX").tolist()
    ref_cuts, pred_cuts = [0], [0]
    for cut in cuts:
        p = pred_at.get(int(ref_idx[cut]))
        if p is not None and p > pred_cuts[-1]:
            ref_cuts.append(cut)
            pred_cuts.append(p)
    if len(ref_cuts) == 1:
        return [example]
    ref_cuts.append(len(ref))
    pred_cuts.append(len(pred))
    return [
        Example(pred[ps:pe].as_doc(), ref[rs:re].as_doc())
        for rs, re, ps, pe in zip(ref_cuts, ref_cuts[1:], pred_cuts, pred_cuts[1:])
    ]


def sentence_batches(
    examples: Iterable[Example], size: int, shuffle_buffer: int
) -> Iterator[List[Example]]:
    """Split, shuffle within a buffer of `shuffle_buffer` sentences, and batch up
    to `size` words (a longer sentence is a batch of its own)."""
    buffer: List[Example] = []
    batch: List[Example] = []
    words = 0

    def drain(items: List[Example]) -> Iterator[List[Example]]:
        nonlocal batch, words
        for eg in items:
            n = len(eg)
            if batch and words + n > size:
                yield batch
                batch, words = [], 0
            batch.append(eg)
            words += n

    for example in examples:
        buffer.extend(split_example(example))
        if len(buffer) >= shuffle_buffer:
            random.shuffle(buffer)
            yield from drain(buffer)
            buffer = []
    random.shuffle(buffer)
    yield from drain(buffer)
    if batch:
        yield batch


@registry.batchers("spacy_hf_tagger.sentence_batches.v1")
def make_sentence_batcher(size: int = 500, shuffle_buffer: int = 20000) -> Batcher:
    """Batcher for `[training.batcher]`: sentences, about `size` words a batch.

    `shuffle_buffer` sentences are shuffled together (spaCy already shuffles
    the Docs each epoch; this mixes sentences of different Docs).
    """
    if size < 1:
        raise ValueError(f"size={size!r}: a batch must hold at least one word.")
    if shuffle_buffer < 1:
        raise ValueError(f"shuffle_buffer={shuffle_buffer!r} must be at least 1.")

    def batch(examples: Iterable[Example]) -> Iterator[List[Example]]:
        return sentence_batches(examples, size, shuffle_buffer)

    return batch
