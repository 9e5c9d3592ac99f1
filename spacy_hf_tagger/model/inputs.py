"""The model-input contract: special tokens, position limits, encoded texts, padded batches.

What a checkpoint accepts as input is read from the model and tokenizer once
(which arguments its forward takes, which special tokens frame a sequence, how
many positions it can embed, whether it sees only left context), so windows
and batches are cut to fit every architecture the same way.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

# Models whose position ids start after the padding index (fairseq heritage):
# the usable length is max_position_embeddings - (pad_token_id + 1).
_OFFSET_POSITION_MODELS = frozenset(
    {
        "roberta",
        "xlm-roberta",
        "camembert",
        "longformer",
        "xlm-roberta-xl",
        "ibert",
        "data2vec-text",
        "bart",
        "mbart",
        "luke",
        "mluke",
        "markuplm",
        "roberta-prelayernorm",
        "esm",
        "xmod",
        "lilt",
    }
)
_SENTINEL_MAX_LENGTH = 100_000


def position_limit(config: Any) -> Optional[int]:
    """The most positions the model can embed, or None when it has no hard limit.

    `max_position_embeddings` (GPT-2's `n_positions` maps to it), minus the
    padding offset of RoBERTa-like models, whose position ids start after the
    padding index. DeBERTa without absolute positions has no limit.
    """
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int) or positions <= 0:
        return None
    if getattr(config, "position_biased_input", True) is False:
        return None
    if getattr(config, "model_type", "") in _OFFSET_POSITION_MODELS:
        pad = getattr(config, "pad_token_id", None)
        positions -= (pad if pad is not None else 1) + 1
    return positions


def max_input_length(tokenizer: Any, config: Any) -> int:
    """The most subwords (special tokens included) the model accepts at once:
    the tokenizer's `model_max_length`, but never more than the model's
    positions (`position_limit`). Many tokenizers carry a 1e30 sentinel or
    none at all; then the positions decide, else 512."""
    limit = getattr(tokenizer, "model_max_length", None)
    positions = position_limit(config)
    if not isinstance(limit, int) or limit <= 0 or limit > _SENTINEL_MAX_LENGTH:
        limit = positions
    elif positions is not None:
        limit = min(limit, positions)
    if limit is None:
        limit = 512
    return int(limit)


@dataclass(frozen=True)
class SpecialTokens:
    """Ids wrapped around every window, found by encoding a probe text."""

    prefix: Tuple[int, ...]
    suffix: Tuple[int, ...]
    pad_id: int
    uses_token_types: bool

    @property
    def count(self) -> int:
        return len(self.prefix) + len(self.suffix)


def forward_inputs(model: torch.nn.Module) -> frozenset:
    """The input names the model's forward takes, by name.

    The tokenizer's `model_input_names` is no authority: a DistilBERT or
    ModernBERT fine-tuned next to a BERT tokenizer declares token_type_ids
    that their forward refuses.
    """
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return frozenset({"input_ids", "attention_mask"})
    return frozenset(
        name
        for name, p in parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    )


def special_tokens(tokenizer: Any, accepted: frozenset = frozenset()) -> SpecialTokens:
    """The tokenizer's own template for one sequence, as prefix/suffix ids.

    Read from the tokenizer's post-processor by encoding a probe, so every
    family (BERT [CLS]/[SEP], RoBERTa <s>/</s>, none at all) is handled alike.
    Token type ids (all zero) go to the model only when the tokenizer makes
    them and the model's forward takes them (`accepted`, see
    `forward_inputs`). `prepare_for_encoding` must have run on the tokenizer.
    """
    encoding = tokenizer.backend_tokenizer.encode("a", add_special_tokens=True)
    mask = list(encoding.special_tokens_mask)
    ids = list(encoding.ids)
    content = [i for i, m in enumerate(mask) if not m]
    if content:
        prefix = tuple(ids[: content[0]])
        suffix = tuple(ids[content[-1] + 1 :])
    else:
        prefix, suffix = tuple(ids), ()
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = 0
    uses_types = "token_type_ids" in getattr(tokenizer, "model_input_names", [])
    return SpecialTokens(prefix, suffix, int(pad_id), uses_types and "token_type_ids" in accepted)


def sees_only_left_context(
    model: torch.nn.Module, tokenizer: Any, special: SpecialTokens, device: torch.device
) -> bool:
    """Whether the model is a decoder: its output for a piece ignores the pieces
    after it. Found by changing the last piece of a probe and watching the
    first, which works for any architecture, whatever its config says."""
    first = list(tokenizer.backend_tokenizer.encode("the cat sat", add_special_tokens=False).ids)
    if len(first) < 2:
        return False
    other = first[0] if first[0] != first[-1] else first[-2]
    if other == first[-1]:
        return False
    second = [*first[:-1], other]
    rows = [list(special.prefix) + ids + list(special.suffix) for ids in (first, second)]
    input_ids = torch.tensor(rows, dtype=torch.long, device=device)
    with torch.inference_mode():
        logits = model(
            input_ids=input_ids, attention_mask=torch.ones_like(input_ids)
        ).logits.float()
    at = len(special.prefix)
    return bool(torch.allclose(logits[0, at], logits[1, at], atol=1e-5, rtol=0))


@dataclass
class EncodedText:
    """Subword ids and their character offsets in the text (no special tokens)."""

    ids: np.ndarray
    offsets: np.ndarray


def prepare_for_encoding(tokenizer: Any) -> None:
    """Switch off the backend's own truncation and padding, once, at load time.

    Windows come later, so whole texts are tokenized. Changing these settings
    mutates the Rust tokenizer; doing it per call made concurrent callers fail
    with "Already borrowed". After this, encoding only reads the tokenizer,
    which any number of threads may do at once.
    """
    backend = tokenizer.backend_tokenizer
    backend.no_truncation()
    backend.no_padding()


def encode_texts(tokenizer: Any, texts: Sequence[str]) -> List[EncodedText]:
    """Tokenize whole texts, no special tokens, offsets in characters.

    Uses the Rust backend directly (one parallel call for the batch, and no
    "sequence longer than the maximum" warnings); `prepare_for_encoding` must
    have run on the tokenizer.
    """
    # No lone surrogates can reach here: spaCy cannot store them in a Doc.
    backend = tokenizer.backend_tokenizer
    encodings = backend.encode_batch(list(texts), add_special_tokens=False)
    out = [
        EncodedText(
            np.asarray(e.ids, dtype=np.int64),
            np.asarray(e.offsets, dtype=np.int64).reshape(-1, 2),
        )
        for e in encodings
    ]
    markers = bare_marker_ids(backend)
    if len(markers) and out:
        # One lookup for the batch; only texts that hold a marker are visited.
        flat = np.concatenate([e.ids for e in out])
        owners = np.searchsorted(
            np.cumsum([len(e.ids) for e in out]),
            np.flatnonzero(np.isin(flat, markers)),
            side="right",
        )
        for k in np.unique(owners).tolist():
            release_prepended_markers(texts[k], out[k].ids, out[k].offsets, markers)
    return out


# The pieces that stand for a word boundary alone: SentencePiece's "▁" and
# byte-level BPE's "Ġ".
BARE_MARKERS = ("\u2581", "\u0120")


def bare_marker_ids(backend: Any) -> np.ndarray:
    """The vocabulary ids of the bare word markers this tokenizer has."""
    found = [backend.token_to_id(marker) for marker in BARE_MARKERS]
    return np.array([i for i in found if i is not None], dtype=np.int64)


def release_prepended_markers(
    text: str, ids: np.ndarray, offsets: np.ndarray, markers: np.ndarray
) -> None:
    """Make a bare marker that claims another character cover nothing (in place).

    A marker the pre-tokenizer prepended (Metaspace's `prepend_scheme`
    "always"/"first", to the text or to each of its pre-tokens) has no
    character of its own, and the backend reports the next character as its
    offset, the very one the next piece starts with: it would then read as
    that word's first piece without being seen as a marker. Covering nothing
    at the word's start, it is attached to the word like any other bare
    marker (`align.pieces.attach_word_markers`). A marker that stands for a
    space keeps it; one that is the text's own character ("Ġ" is a Maltese
    letter in a WordPiece vocabulary) is left as it is."""
    for k in np.flatnonzero(np.isin(ids, markers)).tolist():
        start, end = int(offsets[k, 0]), int(offsets[k, 1])
        if end > start and not text[start].isspace() and text[start] not in BARE_MARKERS:
            offsets[k] = (start, start)


def build_batch(
    rows: Sequence[np.ndarray], special: SpecialTokens, device: torch.device
) -> Dict[str, torch.Tensor]:
    """Pad rows (pieces of one window each) into model inputs with special tokens."""
    n_prefix, n_suffix = len(special.prefix), len(special.suffix)
    width = max(len(r) for r in rows) + n_prefix + n_suffix
    input_ids = np.full((len(rows), width), special.pad_id, dtype=np.int64)
    attention = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        n = len(row) + n_prefix + n_suffix
        input_ids[i, :n_prefix] = special.prefix
        input_ids[i, n_prefix : n_prefix + len(row)] = row
        if n_suffix:
            input_ids[i, n_prefix + len(row) : n] = special.suffix
        attention[i, :n] = 1
    batch = {
        "input_ids": to_device(input_ids, device),
        "attention_mask": to_device(attention, device),
    }
    if special.uses_token_types:
        batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
    return batch


def to_device(data: Union[np.ndarray, torch.Tensor], device: torch.device) -> torch.Tensor:
    """A host array or tensor as a tensor on `device`.

    To a CUDA GPU through pinned memory, without blocking: the copy runs on the
    calling thread's current stream, in order with a forward pass that thread
    runs next, and the host goes on meanwhile."""
    tensor = torch.from_numpy(data) if isinstance(data, np.ndarray) else data
    if tensor.device == device:
        return tensor
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
