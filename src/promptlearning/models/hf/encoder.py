"""Encoders (BERT-style) without a language-model head: sentence embeddings by masked mean pooling."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from promptlearning.errors import UnsupportedOperationError
from promptlearning.models.interface import LanguageModel


class HFEncoderModel(LanguageModel):
    """An encoder from ``transformers``: ``embed`` only (it neither scores nor generates text)."""

    def __init__(self, model: Any, tokenizer: Any, *, name: str = "encoder", batch_size: int = 32) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.batch_size = batch_size

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def max_length(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 512))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text)["input_ids"])

    def loglikelihood(self, requests, *, batch_size=None, progress=None):  # type: ignore[override]
        raise UnsupportedOperationError(f"{self.name} is an encoder without a language-model head: it cannot score")

    def generate(self, prompts, config=None, *, batch_size=None, progress=None):  # type: ignore[override]
        raise UnsupportedOperationError(f"{self.name} is an encoder: it cannot generate text")

    def embed(self, texts: Sequence[str], *, batch_size: int | None = None) -> Any:
        import numpy as np

        texts = list(texts)
        size = batch_size or self.batch_size
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), size):
                batch = self.tokenizer(
                    texts[start : start + size], padding=True, truncation=True, max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)  # fmt: skip
                hidden = self.model(**batch).last_hidden_state
                weights = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                chunks.append(((hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)).float().cpu())
        if not chunks:
            return np.zeros((0, 0), dtype=np.float32)
        return torch.cat(chunks).numpy()
