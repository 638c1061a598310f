"""Encoder-decoder models (T5, BART, …): the context goes to the encoder, the decoder scores or writes.

* ``loglikelihood``: the log-probability of the continuation as the decoder's output for the
  context. The decoder starts from the model's start token (and the tokens its tokenizer puts before
  a text, e.g. BART's ``<s>``); the continuation is a new text, so its leading whitespace is dropped.
  Each distinct context is encoded once per batch; one-token continuations of a context share one
  decoder row (every label word of a classifier from one decoder step).
* ``generate``: ``transformers``' own ``generate`` (greedy batched; sampled prompts one at a time
  under their own seed, so a sample does not depend on its batch), then stop strings are applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from promptlearning.errors import PromptTooLongError
from promptlearning.models.hf.base import HFModel, context_limit, score_targets
from promptlearning.models.hf.tokens import PromptTokens, right_pad, special_tokens_around
from promptlearning.models.interface import (
    Generation,
    GenerationConfig,
    LoglikelihoodResult,
    RequestLike,
    as_requests,
    check_calculator,
    check_prompts,
    refuse_suffix,
)
from promptlearning.progress import progress_bar

# (context index, decoder input ids, [(request index, target ids)])
_Row = tuple[int, list[int], list[tuple[int, list[int]]]]


class HFSeq2SeqLM(HFModel):
    """A ``…ForConditionalGeneration`` encoder-decoder with its tokenizer."""

    auto_class = "AutoModelForSeq2SeqLM"
    what = "encoder-decoder"

    def __init__(
        self, model: Any, tokenizer: Any, *, name: str = "seq2seq", batch_size: int = 16, max_length: int | None = None
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.tokens = PromptTokens(tokenizer, encoder=True)
        self.name = name
        self.batch_size = batch_size
        config = model.config
        start = config.decoder_start_token_id
        self.decoder_prefix = [start if start is not None else self.tokens.pad_id, *special_tokens_around(tokenizer)[0]]
        eos = model.generation_config.eos_token_id if model.generation_config else config.eos_token_id
        self.eos_token_ids = sorted({i for i in [*(eos if isinstance(eos, list) else [eos]), tokenizer.eos_token_id]
                                     if i is not None})  # fmt: skip
        self._max_length = max_length or context_limit(model, tokenizer, default=512)

    def _encoder_ids(self, text: str) -> list[int]:
        ids = self.tokens.prompt_ids(text)
        if len(ids) > self.max_length:
            raise PromptTooLongError(
                f"the input takes {len(ids)} tokens, more than {self.name}'s maximum of {self.max_length} "
                f"(it starts {text[:60]!r}); shorten it"
            )
        return ids

    def _encode_batch(self, texts: Sequence[list[int]]) -> tuple[Any, torch.Tensor]:
        width = max(len(ids) for ids in texts)
        ids = torch.full((len(texts), width), self.tokens.pad_id, dtype=torch.long)
        mask = torch.zeros((len(texts), width), dtype=torch.long)
        for row, seq in enumerate(texts):
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        return self.model.get_encoder()(input_ids=ids, attention_mask=mask), mask

    # ------------------------------------------------------------------ scoring

    def loglikelihood(
        self, requests: Iterable[RequestLike], *, batch_size: int | None = None, progress: bool | None = None
    ) -> list[LoglikelihoodResult]:
        requests = as_requests(requests)
        refuse_suffix(requests, self.name)
        unique = list(dict.fromkeys(requests))
        contexts = list(dict.fromkeys(r.context for r in unique))
        context_ids = [self._encoder_ids(c) for c in contexts]
        where = {c: i for i, c in enumerate(contexts)}
        rows: dict[tuple[int, tuple[int, ...]], _Row] = {}
        for index, request in enumerate(unique):
            target = self.tokens.encode(request.continuation.lstrip()) or self.tokens.encode(request.continuation)
            decoder = [*self.decoder_prefix, *target[:-1]]
            key = (where[request.context], tuple(decoder))
            rows.setdefault(key, (where[request.context], decoder, []))[2].append((index, target))
        ordered = sorted(rows.values(), key=lambda row: (row[0], -len(row[1])))
        size = batch_size or self.batch_size
        scored: list[LoglikelihoodResult | None] = [None] * len(unique)
        with torch.inference_mode(), progress_bar(len(unique), desc="loglikelihood", enabled=bool(progress)) as bar:
            for first in range(0, len(ordered), size):
                batch = ordered[first : first + size]
                for index, result in self._score(batch, context_ids):
                    scored[index] = result
                bar.update(sum(len(targets) for _, _, targets in batch))
        by_request = dict(zip(unique, scored, strict=True))
        return [by_request[r] for r in requests]  # type: ignore[misc]

    def _score(self, batch: list[_Row], context_ids: list[list[int]]) -> list[tuple[int, LoglikelihoodResult]]:
        needed = list(dict.fromkeys(ctx for ctx, _, _ in batch))
        encoded, enc_mask = self._encode_batch([context_ids[c] for c in needed])
        pick = torch.tensor([needed.index(ctx) for ctx, _, _ in batch], device=self.device)
        hidden = encoded.last_hidden_state.index_select(0, pick)
        decoder = right_pad([{"input_ids": dec} for _, dec, _ in batch], self.tokens.pad_id)
        logits = self.model(
            encoder_outputs=(hidden,), attention_mask=enc_mask.index_select(0, pick),
            decoder_input_ids=decoder["input_ids"].to(self.device),
            decoder_attention_mask=decoder["attention_mask"].to(self.device),
        ).logits  # fmt: skip
        out = []
        start = len(self.decoder_prefix) - 1  # the position that predicts the first target token
        for row, (_, _, targets) in enumerate(batch):
            for index, target in targets:
                out.append((index, score_targets(logits[row, start : start + len(target)], target, self.tokenizer)))
        return out

    # ------------------------------------------------------------------ generation

    def generate(
        self,
        prompts: Sequence[str],
        config: GenerationConfig | None = None,
        *,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> list[Generation]:
        prompts = check_prompts(prompts)
        config = config or GenerationConfig()
        check_calculator(config, "a sequence-to-sequence model")
        encoded = [self._encoder_ids(p) for p in prompts]
        size = 1 if config.do_sample else batch_size or self.batch_size
        out: list[Generation] = []
        with torch.inference_mode(), progress_bar(len(prompts), desc="generate", enabled=bool(progress)) as bar:
            for first in range(0, len(prompts), size):
                chunk = encoded[first : first + size]
                out += self._generate(chunk, config)
                bar.update(len(chunk))
        return out

    def _generate(self, chunk: list[list[int]], config: GenerationConfig) -> list[Generation]:
        from transformers import GenerationConfig as HFGenerationConfig

        width = max(len(ids) for ids in chunk)
        ids = torch.full((len(chunk), width), self.tokens.pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, seq in enumerate(chunk):
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        settings = HFGenerationConfig(
            max_new_tokens=config.max_new_tokens, do_sample=config.do_sample, num_beams=1,
            decoder_start_token_id=self.decoder_prefix[0], eos_token_id=self.eos_token_ids,
            pad_token_id=self.tokens.pad_id,
            **({"temperature": config.temperature, "top_p": config.top_p, "top_k": config.top_k or None}
               if config.do_sample else {}),
        )  # fmt: skip
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, enabled=config.do_sample):
            if config.do_sample and config.seed is not None:
                torch.manual_seed(config.seed)
            output = self.model.generate(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device), generation_config=settings
            )
        results = []
        for row in output.tolist():
            tokens = (
                row[len(self.decoder_prefix) :] if row[: len(self.decoder_prefix)] == self.decoder_prefix else row[1:]
            )
            ends = [i for i, token in enumerate(tokens) if token in self.eos_token_ids]
            generated = tokens[: ends[0]] if ends else tokens  # after EOS there is only padding
            text = self.tokens.decode(generated)
            cut = min((p for p in (text.find(s) for s in config.stop) if p >= 0), default=-1)
            if cut >= 0:
                text = text[:cut]
            reason = "stop" if ends or cut >= 0 else "length"
            results.append(Generation(text=text, num_tokens=len(generated) + bool(ends), finish_reason=reason))
        return results
