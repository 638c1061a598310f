"""Masked language models (BERT, RoBERTa, …) as scorers of blanks: the cloze form of PET and OpenPrompt.

A request ``(context, continuation, suffix)`` becomes the input ``context [MASK]×k suffix``, with one
mask per token of the continuation, and its score is the sum of the log-probabilities of the
continuation's tokens at their masks, all read from one forward pass (the "parallel" scoring of
multi-token label words; one-token words, LM-BFF's choice, are exact). Tokens are split where the
whole string ``context + continuation`` splits, as for causal LMs, so a word keeps the form it has
in running text. Masked LMs do not generate text.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from promptlearning.errors import PromptTooLongError, UnsupportedOperationError
from promptlearning.models.hf.base import HFModel, context_limit, score_targets
from promptlearning.models.hf.tokens import PromptTokens, right_pad
from promptlearning.models.interface import (
    LoglikelihoodRequest,
    LoglikelihoodResult,
    RequestLike,
    as_requests,
    split_at_boundary,
)
from promptlearning.progress import progress_bar

# (input ids, first mask position, [(request index, target ids)]): requests whose masked inputs are
# identical (label words of one length after one context) share a row and its forward pass
_Row = tuple[list[int], int, list[tuple[int, list[int]]]]


class HFMaskedLM(HFModel):
    """A ``…ForMaskedLM`` model with its tokenizer, scoring continuations at ``[MASK]`` positions."""

    auto_class = "AutoModelForMaskedLM"
    what = "masked LM"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str = "masked-lm",
        batch_size: int = 16,
        max_length: int | None = None,
    ) -> None:
        if tokenizer.mask_token_id is None:
            raise UnsupportedOperationError(f"{name}: a masked LM needs a tokenizer with a mask token")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.tokens = PromptTokens(tokenizer, encoder=True)
        self.name = name
        self.batch_size = batch_size
        self._max_length = max_length or context_limit(model, tokenizer, default=512)

    def generate(self, prompts, config=None, *, batch_size=None, progress=None):  # type: ignore[override]
        raise UnsupportedOperationError(
            f"{self.name} is a masked LM: it fills blanks but does not generate text; use a causal or seq2seq model"
        )

    def masked_input(self, request: LoglikelihoodRequest) -> tuple[list[int], int, list[int]]:
        """(input ids with the continuation masked, position of its first mask, continuation ids)."""
        context, target = split_at_boundary(request, self.tokens.encode_many)
        suffix = self.tokens.encode(request.suffix) if request.suffix else []
        start = len(self.tokens.before) + len(context)
        masks = [self.tokenizer.mask_token_id] * len(target)
        return [*self.tokens.before, *context, *masks, *suffix, *self.tokens.after], start, target

    def loglikelihood(
        self, requests: Iterable[RequestLike], *, batch_size: int | None = None, progress: bool | None = None
    ) -> list[LoglikelihoodResult]:
        requests = as_requests(requests)
        unique = list(dict.fromkeys(requests))
        rows: dict[tuple[int, ...], _Row] = {}
        for index, request in enumerate(unique):
            ids, start, target = self.masked_input(request)
            if len(ids) > self.max_length:
                raise PromptTooLongError(
                    f"context + blank + suffix take {len(ids)} tokens, more than {self.name}'s maximum of "
                    f"{self.max_length} (context starts {request.context[:60]!r}); shorten the input"
                )
            rows.setdefault(tuple(ids), (ids, start, []))[2].append((index, target))
        ordered = sorted(rows.values(), key=lambda row: -len(row[0]))
        size = batch_size or self.batch_size
        scored: list[LoglikelihoodResult | None] = [None] * len(unique)
        with torch.inference_mode(), progress_bar(len(unique), desc="loglikelihood", enabled=bool(progress)) as bar:
            for first in range(0, len(ordered), size):
                batch = ordered[first : first + size]
                for index, result in self._score(batch):
                    scored[index] = result
                bar.update(sum(len(targets) for _, _, targets in batch))
        by_request = dict(zip(unique, scored, strict=True))
        return [by_request[r] for r in requests]  # type: ignore[misc]

    def _score(self, batch: list[_Row]) -> list[tuple[int, LoglikelihoodResult]]:
        padded = right_pad([{"input_ids": ids} for ids, _, _ in batch], self.tokens.pad_id)  # positions stay put
        logits = self.model(**{k: v.to(self.device) for k, v in padded.items()}).logits
        out = []
        for row, (_, start, targets) in enumerate(batch):
            for index, target in targets:
                out.append((index, score_targets(logits[row, start : start + len(target)], target, self.tokenizer)))
        return out
