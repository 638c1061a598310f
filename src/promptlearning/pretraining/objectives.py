"""What each pretraining objective feeds the model, and how it is measured on held-out text.

* ``causal``: windows of ``block_size + 1`` tokens; the model shifts the labels itself.
* ``mlm``: ``[CLS] block [SEP]``, 15 % of the tokens masked by ``DataCollatorForLanguageModeling``.
* ``mlm-nsp``: ``[CLS] A [SEP] B [SEP]`` where B follows A (label 0) or is a random segment (label 1),
  masked the same way (``BertForPreTraining``).

Evaluation sums the loss over every predicted token of the validation blocks, so the numbers are
per token (loss, perplexity), per byte and per character of the text those tokens decode to
(bits per byte / character, comparable across tokenizers), plus masked-token and NSP accuracy.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import torch

from promptlearning.pretraining.tokens import TokenBlocks


def causal_collate(features: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    ids = torch.stack([f["input_ids"] for f in features])
    return {"input_ids": ids, "labels": ids}


class WrappedBlocks(Sequence):
    """``[CLS] block [SEP]`` for BERT-style models (the block is ``block_size - 2`` tokens)."""

    def __init__(self, blocks: TokenBlocks, cls_id: int, sep_id: int) -> None:
        self.blocks, self.cls, self.sep = blocks, cls_id, sep_id

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:  # type: ignore[override]
        ids = self.blocks[index]["input_ids"]
        return {"input_ids": torch.cat([torch.tensor([self.cls]), ids, torch.tensor([self.sep])])}


class SentencePairs(Sequence):
    """Next-sentence prediction pairs cut from consecutive blocks: the first half of a block and
    either its second half (``next_sentence_label`` 0) or the second half of a random other block (1).
    The choice depends on the index and the seed only, so resumed runs see the same pairs."""

    def __init__(self, blocks: TokenBlocks, cls_id: int, sep_id: int, seed: int = 0) -> None:
        self.blocks, self.cls, self.sep, self.seed = blocks, cls_id, sep_id, seed

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:  # type: ignore[override]
        rng = random.Random(self.seed * 1_000_003 + index)
        ids = self.blocks[index]["input_ids"]
        half = len(ids) // 2
        first, second = ids[:half], ids[half:]
        label = 0
        if rng.random() < 0.5 and len(self.blocks) > 1:
            other = rng.randrange(len(self.blocks) - 1)
            other += other >= index
            second, label = self.blocks[other]["input_ids"][half:], 1
        cls, sep = torch.tensor([self.cls]), torch.tensor([self.sep])
        input_ids = torch.cat([cls, first, sep, second, sep])
        token_type_ids = torch.cat([torch.zeros(len(first) + 2, dtype=torch.long),
                                    torch.ones(len(second) + 1, dtype=torch.long)])  # fmt: skip
        return {"input_ids": input_ids, "token_type_ids": token_type_ids, "next_sentence_label": torch.tensor(label)}


def mlm_collate(tokenizer: Any, probability: float = 0.15) -> Callable[[Sequence[dict]], dict[str, torch.Tensor]]:
    """transformers' masking collator (80 % [MASK], 10 % random, 10 % kept) on equal-length blocks."""
    from transformers import DataCollatorForLanguageModeling

    collator = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=probability)

    def collate(features: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        batch = collator([{k: v.tolist() for k, v in f.items()} for f in features])
        if "next_sentence_label" in batch:
            batch["next_sentence_label"] = batch["next_sentence_label"].view(-1)
        return dict(batch)

    return collate


def evenly_spaced(n: int, limit: int | None) -> list[int]:
    """At most ``limit`` indices spread over ``range(n)`` (all of them without a limit)."""
    if limit is None or limit >= n:
        return list(range(n))
    return [int(i * n / limit) for i in range(limit)]


@torch.no_grad()
def evaluate_causal(
    model: Any, blocks: TokenBlocks, tokenizer: Any, *, batch_size: int = 32, limit: int | None = None
) -> dict[str, float]:
    """Loss, perplexity, bits per token / byte / character over the validation blocks."""
    device = next(model.parameters()).device
    indices = evenly_spaced(len(blocks), limit)
    nats, tokens, size, characters = 0.0, 0, 0, 0
    for start in range(0, len(indices), batch_size):
        ids = torch.stack([blocks[i]["input_ids"] for i in indices[start : start + batch_size]]).to(device)
        logits = model(input_ids=ids).logits[:, :-1].float()
        targets = ids[:, 1:]
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="sum")
        nats += float(loss)
        tokens += targets.numel()
        for row in targets.tolist():
            text = tokenizer.decode(row)
            characters += len(text)
            size += len(text.encode("utf-8"))
    loss = nats / tokens
    return {"val_loss": loss, "perplexity": math.exp(min(loss, 50.0)), "bits_per_token": loss / math.log(2),
            "bits_per_byte": nats / math.log(2) / max(size, 1),
            "bits_per_character": nats / math.log(2) / max(characters, 1), "val_tokens": float(tokens)}  # fmt: skip


@torch.no_grad()
def evaluate_masked(
    model: Any,
    features: Sequence[dict[str, torch.Tensor]],
    collate: Callable[[Sequence[dict]], dict[str, torch.Tensor]],
    *,
    batch_size: int = 32,
    limit: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Masked-token loss and accuracy (and NSP accuracy) with the same masks at every evaluation."""
    device = next(model.parameters()).device
    indices = evenly_spaced(len(features), limit)
    nats, masked, correct, nsp_correct, pairs = 0.0, 0, 0, 0, 0
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # the masks are drawn from the global generator: fixed here
        for start in range(0, len(indices), batch_size):
            batch = collate([features[i] for i in indices[start : start + batch_size]])
            batch = {k: v.to(device) for k, v in batch.items()}
            labels = batch.pop("labels")
            nsp = batch.pop("next_sentence_label", None)
            out = model(**batch)
            logits = (out.prediction_logits if hasattr(out, "prediction_logits") else out.logits).float()
            keep = labels != -100
            nats += float(torch.nn.functional.cross_entropy(logits[keep], labels[keep], reduction="sum"))
            masked += int(keep.sum())
            correct += int((logits[keep].argmax(-1) == labels[keep]).sum())
            if nsp is not None:
                nsp_correct += int((out.seq_relationship_logits.argmax(-1) == nsp).sum())
                pairs += len(nsp)
    loss = nats / max(masked, 1)
    metrics = {"val_loss": loss, "perplexity": math.exp(min(loss, 50.0)), "mlm_accuracy": correct / max(masked, 1),
               "masked_tokens": float(masked)}  # fmt: skip
    if pairs:
        metrics["nsp_accuracy"] = nsp_correct / pairs
    return metrics


@torch.no_grad()
def sample_text(
    model: Any, tokenizer: Any, prompt: str, *, max_new_tokens: int = 200, temperature: float = 0.8,
    top_k: int | None = 50, seed: int = 0,
) -> str:  # fmt: skip
    """A sample from a causal model (the same one for the same seed), prompt included.

    Written out rather than ``model.generate``: the context is cropped to the model's last
    ``max_position_embeddings`` tokens, so a model trained on short blocks samples long texts as it
    was trained (nanoGPT's way), instead of running its positions past what it has seen."""
    device = next(model.parameters()).device
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id or 0]
    context = model.config.max_position_embeddings
    out = torch.tensor([ids], device=device)
    generator = torch.Generator().manual_seed(seed)  # draws on the host: one seed, one text, on any device
    for _ in range(max_new_tokens):
        logits = model(input_ids=out[:, -context:]).logits[0, -1].float().cpu() / max(temperature, 1e-5)
        if top_k:
            cut = torch.topk(logits, min(top_k, logits.numel())).values[-1]
            logits[logits < cut] = -math.inf
        token = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)
        out = torch.cat([out, token.view(1, 1).to(device)], dim=1)
    return tokenizer.decode(out[0].tolist())
