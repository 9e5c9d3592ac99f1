"""Train small SentencePiece-Unigram NER models on CoNLL-2003 from scratch, one per
training recipe, to measure how the component reads bare word markers.

Why: hub checkpoints come from two recipes that label different pieces of a
word that starts with a bare "▁" (SentencePiece cannot merge it with the next
piece): a `word_ids()` recipe labels the marker, an offsets recipe the first
piece with text. The component cannot tell them apart, and no model hub is
reachable here, so this trains one of each (same tokenizer, same encoder
size, same seed, only the labelled pieces differ) for `accuracy.py --model`.

    python benchmarks/recipe_models.py OUT_DIR            # ~10 min a model on 2 cores
    python benchmarks/accuracy.py --model OUT_DIR/unigram-offsets --reference-piece text

Writes OUT_DIR/unigram-word_ids and OUT_DIR/unigram-offsets (safetensors and a
fast tokenizer). The models are for measurement only: keep them out of the
repository (CoNLL-2003 is licensed for research use).
"""

from __future__ import annotations

import argparse
import math
import random
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from conll import decode_spans, read_conll, render_words

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TRAIN = ROOT.parent / "shared" / "data" / "conll2003" / "eng.train"
LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
RECIPES = ("word_ids", "offsets")
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
MARKER = "▁"
MAX_LENGTH = 256


def iob2(tags: Sequence[str]) -> List[str]:
    """CoNLL's IOB1 tags as IOB2 (every entity starts with B-)."""
    out = ["O"] * len(tags)
    for start, end, label in decode_spans(tags):
        out[start] = f"B-{label}"
        for i in range(start + 1, end):
            out[i] = f"I-{label}"
    return out


def train_tokenizer(texts: Sequence[str], vocab_size: int):
    """A SentencePiece-style Unigram tokenizer (Metaspace, XLM-R specials)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=MARKER, prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement=MARKER, prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, unk_token="<unk>", shrinking_factor=0.75
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        cls_token="<s>",
        sep_token="</s>",
        model_max_length=MAX_LENGTH,
    )


def labelled_pieces(
    pieces: Sequence[str],
    offsets: Sequence[Tuple[int, int]],
    word_spans: Sequence[Tuple[int, int]],
    recipe: str,
) -> List[Optional[int]]:
    """For each word (character span), the piece a recipe labels; None if none.

    offsets: the first piece whose own text starts inside the word. word_ids:
    that piece, or the bare marker right before it when there is one (what
    `word_ids()` makes the word's first piece)."""
    out: List[Optional[int]] = []
    k = 0
    for start, end in word_spans:
        while k < len(pieces) and not (
            pieces[k] != MARKER and offsets[k][1] > offsets[k][0] and offsets[k][1] > start
        ):
            k += 1
        if k == len(pieces) or offsets[k][0] >= end:
            out.append(None)
            continue
        marked = recipe == "word_ids" and k > 0 and pieces[k - 1] == MARKER
        out.append(k - 1 if marked else k)
    return out


def encode(tokenizer, sentences: Sequence[Tuple[List[str], List[str]]], recipe: str):
    """Each sentence as natural text (how the models are used), labels on the
    pieces the recipe labels, -100 elsewhere."""
    rows = []
    for words, tags in sentences:
        text, spans = render_words(words, "natural")
        enc = tokenizer(text, truncation=True, max_length=MAX_LENGTH, return_offsets_mapping=True)
        pieces = tokenizer.convert_ids_to_tokens(enc["input_ids"])
        labels = [-100] * len(pieces)
        for tag, k in zip(tags, labelled_pieces(pieces, enc["offset_mapping"], spans, recipe)):
            if k is not None:
                labels[k] = LABELS.index(tag)
        rows.append((enc["input_ids"], labels))
    return rows


def train_model(tokenizer, rows, epochs: int, seed: int, batch_size: int = 32):
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForTokenClassification

    torch.manual_seed(seed)
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
        max_position_embeddings=MAX_LENGTH + 2,
        type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    model = XLMRobertaForTokenClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    # Batches of similar length: little padding.
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    total = epochs * len(batches)
    warmup = max(1, total // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min((step + 1) / warmup, 0.5 * (1 + math.cos(math.pi * step / total))),
    )
    rng = random.Random(seed)
    model.train()
    for epoch in range(epochs):
        rng.shuffle(batches)
        start, seen = time.perf_counter(), 0.0
        for batch in batches:
            width = max(len(rows[i][0]) for i in batch)
            ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            for r, i in enumerate(batch):
                n = len(rows[i][0])
                ids[r, :n] = torch.tensor(rows[i][0])
                labels[r, :n] = torch.tensor(rows[i][1])
            loss = model(
                input_ids=ids, attention_mask=ids.ne(tokenizer.pad_token_id), labels=labels
            )
            loss.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            seen += loss.loss.item()
        print(
            f"  epoch {epoch + 1}/{epochs}: mean loss {seen / len(batches):.4f} "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    model.eval()
    return model


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--data", type=Path, default=DEFAULT_TRAIN)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--vocab-size", type=int, default=8000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--recipes", default=",".join(RECIPES))
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(2)
    sentences = [
        ([w for w, _ in sent], iob2([t for _, t in sent]))
        for doc in read_conll(args.data)
        for sent in doc
    ]
    texts = [render_words(words, "natural")[0] for words, _ in sentences]
    tokenizer = train_tokenizer(texts, args.vocab_size)
    pieces = [tokenizer.tokenize(text) for text in texts]
    bare = sum(p.count(MARKER) for p in pieces)
    n_words = sum(len(words) for words, _ in sentences)
    print(
        f"{len(sentences)} sentences; vocabulary {len(tokenizer)}; a bare '{MARKER}' "
        f"begins {100 * bare / n_words:.1f}% of the words (natural text)"
    )
    for recipe in args.recipes.split(","):
        print(f"recipe {recipe}:", flush=True)
        model = train_model(tokenizer, encode(tokenizer, sentences, recipe), args.epochs, args.seed)
        out = args.out_dir / f"unigram-{recipe}"
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        print(f"  saved {out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
