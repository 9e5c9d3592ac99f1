"""Fine-tuning: which labels and head to train, gold → piece targets → loss → optimizer step.

The component stays a `TrainablePipe` so `spacy train` drives it; this module
holds the parts that do the work:

- `choose_head`: the label set from the gold data (or the `labels` given to
  `initialize`), and a head for it that keeps the checkpoint's rows for
  labels it already has;
- `training_batches`: gold labels on spaCy tokens → targets on the first
  piece of each token, through the very alignment and windows inference
  uses (`forward.encode_docs`, `forward.model_batches`);
- `cross_entropy`, and `TorchStep`: torch's AdamW driven by the settings and
  schedules of spaCy's optimizer, so no CuPy is needed on GPU.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from spacy.training import Example
from thinc.api import Optimizer

from ..errors import ConfigError, ModelLoadError
from ..labels.schemes import LabelScheme, iob_labels, is_upos, read_label_scheme
from ..labels.targets import IGNORE_INDEX, biluo_to_scheme_ids, piece_targets, tags_to_ids
from ..model import hub
from ..model.forward import encode_docs, model_batches, window_targets
from ..model.loading import LoadedModel, Source
from ..model.precision import FLOAT_DTYPES

Batch = Tuple[Dict[str, torch.Tensor], torch.Tensor]


def gold_labels(get_examples: Callable[[], Iterable[Example]]) -> Dict[str, set]:
    """Entity types, POS tags and fine tags found in the gold data, in one pass."""
    found: Dict[str, set] = {"ents": set(), "pos": set(), "tag": set()}
    for eg in get_examples():
        ref = eg.reference
        found["ents"].update(ent.label_ for ent in ref.ents)
        found["pos"].update(t.pos_ for t in ref if t.pos_)
        found["tag"].update(t.tag_ for t in ref if t.tag_)
    return found


def training_kind(
    annotate: Optional[List[str]], gold: Dict[str, set], scheme: Optional[LabelScheme]
) -> str:
    """What to train: from `annotate`, else the gold data, else the checkpoint."""
    if annotate:
        if "ents" in annotate or "spans" in annotate:
            return "ents"
        return "pos" if "pos" in annotate else "tag"
    for kind in ("ents", "pos", "tag"):
        if gold[kind]:
            return kind
    if scheme is not None:
        if scheme.is_entity:
            return "ents"
        return "pos" if is_upos(scheme) else "tag"
    raise ConfigError(
        "Cannot tell what to train: the examples have no entities, POS or tags. "
        'Set `annotate` (e.g. ["ents", "spans"] or ["pos"]).'
    )


def merge_labels(checkpoint: Optional[LabelScheme], kind: str, wanted: List[str]) -> List[str]:
    """The head's labels: the checkpoint's when it has all wanted ones, the
    checkpoint's plus the missing ones when it has some, else new IOB2 labels
    (entities) or the wanted tags."""
    if kind == "ents":
        if checkpoint is not None and checkpoint.is_entity:
            missing = [t for t in wanted if t not in checkpoint.entity_types]
            if not missing:
                return list(checkpoint.labels)
            if checkpoint.kind == "iob" and len(missing) < len(wanted):
                return list(checkpoint.labels) + [
                    lab for t in missing for lab in (f"B-{t}", f"I-{t}")
                ]
        return iob_labels(wanted)
    if checkpoint is not None and not checkpoint.is_entity:
        missing = [t for t in wanted if t not in checkpoint.labels]
        if len(missing) < len(wanted):
            return list(checkpoint.labels) + missing
    return list(wanted)


def choose_head(
    source_name: str,
    source: Source,
    annotate: Optional[List[str]],
    get_examples: Callable[[], Iterable[Example]],
    labels: Optional[Sequence[str]],
) -> torch.nn.Module:
    """The source model with a head for the labels to train.

    Labels come from `labels` or from the gold data: entity types become
    IOB2 labels, tags stay tags. If the checkpoint already has all of them
    its head is kept; if it has some, the head is extended and its rows for
    the old labels are kept bit for bit; otherwise a new head is built.
    """
    model, problems = source.model, source.problems
    check_encoder_loaded(source_name, problems)
    has_head = not problems["missing_keys"] and not problems["mismatched_keys"]
    checkpoint: Optional[LabelScheme] = None
    if has_head:
        try:
            checkpoint = read_label_scheme(model.config.id2label)
        except ValueError:
            checkpoint = None
    gold = gold_labels(get_examples)
    kind = training_kind(annotate, gold, checkpoint)
    if labels is None:
        labels = sorted(gold[kind])
    if not labels:
        if checkpoint is None:
            raise ConfigError(
                f"No gold {kind} labels were found in the training examples and "
                f"{source_name!r} has no token-classification head to take labels from. "
                "Check the corpus (e.g. `spacy debug data`) or pass labels in "
                "[initialize.components.<name>.labels]."
            )
        # Nothing to learn labels from (e.g. `spacy assemble`): keep the checkpoint.
        labels = list(checkpoint.entity_types if checkpoint.is_entity else checkpoint.labels)
    new_labels = merge_labels(checkpoint, kind, list(labels))
    if checkpoint is None or list(new_labels) != list(checkpoint.labels):
        keep = checkpoint.labels if checkpoint is not None else ()
        model = resize_head(model, list(new_labels), list(keep))
    return model


def check_encoder_loaded(source: str, problems: Dict[str, List[str]]) -> None:
    """Refuse a checkpoint whose encoder weights did not load (wrong folder)."""
    encoder_missing = [k for k in problems["missing_keys"] if not hub.is_head_key(k)]
    encoder_mismatched = [
        shape
        for key, shape in zip(problems["mismatched_keys"], problems["mismatched_shapes"])
        if not hub.is_head_key(key)
    ]
    if encoder_missing or encoder_mismatched or problems["error_msgs"]:
        details = []
        if encoder_missing:
            details.append(f"missing {encoder_missing[:8]}")
        if encoder_mismatched:
            details.append(f"{'; '.join(encoder_mismatched[:4])}")
        if problems["error_msgs"]:
            details.append(f"errors {problems['error_msgs'][:3]}")
        raise ModelLoadError(
            f"The encoder weights of {source!r} did not load: {', '.join(details)}. "
            "Check that the folder holds the weights that belong to its config.json."
        )


def classifier_layer(model: torch.nn.Module) -> Tuple[str, torch.nn.Linear]:
    """The token-classification head: its attribute name and Linear layer."""
    for name in ("classifier", "score"):
        layer = getattr(model, name, None)
        if isinstance(layer, torch.nn.Linear):
            return name, layer
    raise ConfigError(
        f"Cannot find the token-classification head of {type(model).__name__} "
        "(expected a Linear layer named `classifier` or `score`)."
    )


def resize_head(
    model: torch.nn.Module, labels: List[str], keep_labels: List[str]
) -> torch.nn.Module:
    """Give the model a head for `labels`, copying the rows of `keep_labels`."""
    name, old = classifier_layer(model)
    new = torch.nn.Linear(old.in_features, len(labels), bias=old.bias is not None)
    new.to(device=old.weight.device, dtype=old.weight.dtype)
    std = getattr(model.config, "initializer_range", 0.02)
    with torch.no_grad():
        new.weight.normal_(mean=0.0, std=std)
        if new.bias is not None:
            new.bias.zero_()
        old_index = {label: i for i, label in enumerate(keep_labels)}
        for i, label in enumerate(labels):
            j = old_index.get(label)
            if j is not None and j < old.out_features:
                new.weight[i].copy_(old.weight[j])
                if new.bias is not None and old.bias is not None:
                    new.bias[i].copy_(old.bias[j])
    setattr(model, name, new)
    model.num_labels = len(labels)
    model.config.num_labels = len(labels)
    model.config.id2label = dict(enumerate(labels))
    model.config.label2id = {label: i for i, label in enumerate(labels)}
    return model


def training_batches(
    loaded: LoadedModel,
    examples: Sequence[Example],
    *,
    tag_attr: str,
    label_all_pieces: bool,
    context: str,
    batch_size: int,
    max_batch_subwords: int,
) -> Tuple[List[Batch], int]:
    """Model inputs and piece targets for examples, windowed like inference.

    `tag_attr` is "POS" or "TAG" for tagging models. Returns the batches and
    how many gold labels the model has no label for (they are ignored).
    """
    scheme = loaded.scheme
    encoded = encode_docs(loaded, [eg.predicted for eg in examples], context)
    token_ids = []
    unknown = 0
    for eg in examples:
        if scheme.is_entity:
            ids, missing = biluo_to_scheme_ids(scheme, eg.get_aligned_ner())
        else:
            ids, missing = tags_to_ids(scheme, eg.get_aligned(tag_attr, as_string=True))
        unknown += len(missing)
        token_ids.append(ids)
    targets_all = piece_targets(
        np.concatenate(token_ids) if token_ids else np.zeros(0, dtype=np.int64),
        encoded.alignment,
        encoded.n_pieces,
        label_all_pieces=label_all_pieces,
        continuation=loaded.continuation,
        outside=scheme.outside_id,
    )
    out = []
    for batch in model_batches(loaded, encoded, batch_size, max_batch_subwords):
        out.append((batch.inputs, window_targets(targets_all, batch, IGNORE_INDEX)))
    return out, unknown


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over pieces that carry a target, in float32."""
    return torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
    )


def accumulate_gradients(
    model: torch.nn.Module,
    batches: Sequence[Batch],
    drop: float,
    autocast: Callable[[], AbstractContextManager],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> float:
    """Backpropagate the loss of all batches, weighted by their share of the
    targets (one mean over the whole step); returns the summed loss."""
    total = sum(int((t != IGNORE_INDEX).sum()) for _, t in batches)
    if total == 0:
        return 0.0
    set_dropout(model, drop)
    model.train(drop > 0)
    loss_value = 0.0
    try:
        for inputs, targets in batches:
            with autocast():
                logits = model(**inputs).logits
            loss = loss_fn(logits, targets) * (int((targets != IGNORE_INDEX).sum()) / total)
            loss.backward()
            loss_value += float(loss.detach())
    finally:
        model.eval()
    return loss_value


def autocast(choice: str, device: torch.device) -> AbstractContextManager:
    """Autocast for `mixed_precision`: auto = bf16/fp16 on CUDA, fp32 elsewhere."""
    device_type = device.type
    if choice == "auto":
        if device_type == "cuda":
            choice = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        else:
            choice = "float32"
    if choice == "float32" or device_type not in ("cuda", "cpu", "mps"):
        return torch.autocast(device_type=device_type, enabled=False)
    return torch.autocast(device_type=device_type, dtype=FLOAT_DTYPES[choice])


class TorchStep:
    """Apply accumulated gradients with the settings of spaCy's optimizer.

    The step is torch's AdamW, driven by the thinc optimizer's current
    (scheduled) learn rate, betas, eps, weight decay (L2) and grad clip, so
    `[training.optimizer]` and its schedules in the config apply as usual.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer: Optional[torch.optim.Optimizer] = None

    def __call__(self, sgd: Optimizer) -> None:
        if self.optimizer is None:
            self.optimizer = adamw(self.params, float(sgd.learn_rate))
        opt = self.optimizer
        weight_decay = float(sgd.L2) if getattr(sgd, "L2_is_weight_decay", True) else 0.0
        for group in opt.param_groups:
            group["lr"] = float(sgd.learn_rate)
            group["betas"] = (float(sgd.b1), float(sgd.b2))
            group["eps"] = float(sgd.eps)
            group["weight_decay"] = weight_decay
        if sgd.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, float(sgd.grad_clip))
        opt.step()
        opt.zero_grad(set_to_none=True)


def adamw(params: List[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """AdamW with torch's fused kernel where the device has one (3x faster on CPU
    than the per-tensor loop), else the portable implementation."""
    try:
        return torch.optim.AdamW(params, lr=lr, fused=True)
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.AdamW(params, lr=lr)


def set_dropout(model: torch.nn.Module, drop: float) -> None:
    """Apply spaCy's `dropout` setting to the model's dropout layers."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = float(drop)
