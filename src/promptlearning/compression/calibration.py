"""Token blocks of calibration text: what pruning measures and recovery distils on."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Any

import numpy as np
import torch

from promptlearning.errors import PromptLearningError
from promptlearning.pretraining.tokens import TokenBlocks


def token_stream(documents: Iterator[str], tokenizer: Any, max_tokens: int) -> np.ndarray:
    """The documents' tokens, one after another (EOS between documents), up to ``max_tokens``."""
    ids: list[int] = []
    separator = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for document in documents:
        if not document.strip():
            continue
        ids += tokenizer(document, add_special_tokens=False)["input_ids"] + separator
        if len(ids) >= max_tokens:
            break
    if not ids:
        raise PromptLearningError("the calibration text is empty: give files with text in them")
    return np.asarray(ids[:max_tokens], dtype=np.int64)


def calibration_blocks(tokens: np.ndarray, block_size: int, count: int | None = None) -> list[torch.Tensor]:
    """Consecutive blocks of ``block_size`` tokens (at most ``count``)."""
    blocks = TokenBlocks(tokens, block_size, what="calibration")
    return [blocks[i]["input_ids"] for i in islice(range(len(blocks)), count)]


def as_batches(blocks: Sequence[torch.Tensor], batch_size: int, device: Any = "cpu") -> list[dict[str, torch.Tensor]]:
    """Blocks stacked ``batch_size`` at a time, with a full attention mask."""
    batches = []
    for start in range(0, len(blocks), batch_size):
        ids = torch.stack(list(blocks[start : start + batch_size])).to(device)
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    return batches
