"""The causal-LM part of the Hugging Face backend (SmolLM2, Gemma, Llama, GPT-2, …).

Scoring and generation both pad on the left with explicit attention masks and position ids, so
every sequence ends at the last column: the scores of a continuation are the last few positions
of every row, and only those positions go through the vocabulary projection (``logits_to_keep``).
Every tensor is made on the model's device.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterable, Sequence
from functools import cached_property
from typing import Any

import torch

from promptlearning.errors import PromptLearningError, PromptTooLongError
from promptlearning.models.hf.base import HFModel, cache_keyword, context_limit, returned_cache
from promptlearning.models.hf.decoding import Decoder, common_prefix_length, prefix_reuse_is_exact
from promptlearning.models.hf.tokens import PromptTokens, left_pad
from promptlearning.models.interface import (
    Generation,
    GenerationConfig,
    Joining,
    LoglikelihoodRequest,
    LoglikelihoodResult,
    RequestLike,
    TokenLevelModel,
    TokenLogprobs,
    TopTokens,
    as_requests,
    check_calculator,
    check_prompts,
    check_samples,
    refuse_suffix,
    sample_seed,
    split_at_boundary,
)
from promptlearning.progress import progress_bar


def _show_progress(progress: bool | None, n_batches: int) -> bool:
    return n_batches > 1 if progress is None else progress


SCORED_POSITIONS = 2048  # rows x width of one forward pass that returns logits at every position
GROUP_ROWS = 64  # continuation rows of one cached context per forward pass
_Row = tuple[list[int], list[tuple[int, list[int]]]]  # (input tokens, [(request index, target tokens)])


def _scoring_rows(encoded: list[tuple[list[int], list[int]]]) -> list[_Row]:
    """Forward-pass rows for (prefix, continuation) pairs.

    Single-token continuations of the same prefix share one row (one forward pass for all of them).
    """
    rows: list[_Row] = []
    single: dict[tuple[int, ...], list[tuple[int, list[int]]]] = {}
    for index, (prefix, continuation) in enumerate(encoded):
        if len(continuation) == 1:
            single.setdefault(tuple(prefix), []).append((index, continuation))
        else:
            rows.append((prefix + continuation[:-1], [(index, continuation)]))
    rows += [(list(prefix), targets) for prefix, targets in single.items()]
    return rows


def _context_groups(rows: list[_Row], min_prefix: int) -> tuple[list[tuple[list[int], list[_Row]]], list[_Row]]:
    """Rows that score continuations of one context (a multi-token label word each, and the row of
    its single-token words), grouped by the tokens they share: ``(cacheable context, rows)`` for
    groups of two or more rows sharing at least ``min_prefix`` tokens, and the other rows.

    A classifier with multi-token label words (SemEval's relation phrases) sends each context once
    per word; with the context's prefill run once and its cache reused, each row runs only its
    word's tokens (plus the context's last token, whose position predicts the word's first).
    """
    by_key: dict[tuple[int, ...], list[_Row]] = {}
    for row in rows:
        tokens, targets = row
        cut = len(tokens) - max(len(target) for _, target in targets)
        by_key.setdefault(tuple(tokens[:cut]), []).append(row)
    groups, rest = [], []
    for key, group in by_key.items():
        if len(group) > 1 and len(key) >= min_prefix:
            groups.append((list(key), group))
        else:
            rest += group
    return groups, rest


def _length_batches(rows: Sequence[_Row], max_rows: int) -> list[list[_Row]]:
    """``rows`` in batches of one length each (at most ``max_rows``): a cached context's continuation
    rows are a few tokens long, so one long phrase would otherwise pad every row of its batch to its
    length (BANKING77's 77 intent phrases of 2 to 9 tokens: 1.05 -> 1.16 sentences/s here)."""
    by_length: dict[int, list[_Row]] = {}
    for row in rows:
        by_length.setdefault(len(row[0]), []).append(row)
    return [same[i : i + max_rows] for _, same in sorted(by_length.items()) for i in range(0, len(same), max_rows)]


def _cacheable_prefix(rows: Sequence[_Row]) -> int:
    """How many leading tokens of every row may come from a cached prefix.

    A row's targets are predicted by its last ``len(target)`` positions, so those positions must be
    run, not cached: at most ``len(row) - longest target`` tokens of a row can be shared. (A context
    whose trailing newline moved into the continuation makes identical rows whose targets start
    inside the common prefix; caching all of it lost the positions that score them.)
    """
    return min(len(tokens) - max(len(target) for _, target in targets) for tokens, targets in rows)


def _sliding_window(config: Any) -> int | None:
    """The attention window of a model with sliding-window layers (Gemma 3, Mistral), else None."""
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    window = getattr(text_config, "sliding_window", None)
    layer_types = getattr(text_config, "layer_types", None)
    if layer_types is not None and "sliding_attention" not in layer_types:
        return None
    return int(window) if window else None


class HFLanguageModel(HFModel, TokenLevelModel):
    """A causal language model from ``transformers``, with its tokenizer.

    ``soft_prompt=True`` is for a model that prepends learned vectors to every input (``peft``'s
    prompt tuning, P-tuning, prefix tuning): positions then cannot move, so each request is scored
    alone, unpadded and without a cached prefix, and generation goes through ``peft``'s ``generate``.
    """

    auto_class = "AutoModelForCausalLM"
    what = "model"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str = "model",
        batch_size: int = 16,
        max_length: int | None = None,
        add_bos: bool | None = None,
        soft_prompt: bool = False,
    ) -> None:
        self.model = model.eval()
        self.soft_prompt = soft_prompt
        self.tokenizer = tokenizer
        self.tokens = PromptTokens(tokenizer, model_type=getattr(model.config, "model_type", ""), add_bos=add_bos)
        self.name = name
        self.batch_size = batch_size
        self.min_shared_prefix = 16  # tokens; shorter shared prefixes are not worth a cached prefill
        self._max_length = max_length or context_limit(model, tokenizer, default=2048)
        self._keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._cache_keyword = cache_keyword(model)
        self.sliding_window = _sliding_window(model.config)
        eos = model.generation_config.eos_token_id if model.generation_config else None
        eos_ids = eos if isinstance(eos, list) else [eos]
        self.eos_token_ids = sorted({i for i in [*eos_ids, tokenizer.eos_token_id] if i is not None})

    # ------------------------------------------------------------------ construction

    # ------------------------------------------------------------------ tokens

    @property
    def add_bos(self) -> bool:
        return self.tokens.add_bos

    @property
    def _prefix(self) -> list[int]:
        return self.tokens.prefix

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without any special token."""
        return self.tokens.encode(text)

    # ------------------------------------------------------------------ scoring

    def split_request(self, request: LoglikelihoodRequest) -> tuple[list[int], list[int]]:
        """Token ids of (context, continuation) as the model sees ``context + continuation`` (see
        :func:`split_at_boundary`); BOS is added when the model needs it, and an empty context is
        replaced by BOS (or EOS when there is no BOS), as lm-eval does."""
        context_ids, continuation_ids = split_at_boundary(request, self.tokens.encode_many)
        prefix = self._prefix + context_ids
        if not prefix:
            start = self.tokenizer.bos_token_id
            prefix = [start if start is not None else self.eos_token_ids[0]]
        return prefix, continuation_ids

    def loglikelihood(
        self, requests: Iterable[RequestLike], *, batch_size: int | None = None, progress: bool | None = None
    ) -> list[LoglikelihoodResult]:
        """Score continuations; work shared between requests is done once.

        * identical requests are scored once;
        * single-token continuations of the same context share one row (one forward pass scores
          every label word of a classifier);
        * when all rows start with the same tokens (the demonstrations of few-shot prompts), that
          prefix is run once and its KV cache reused by every batch. The prefix is found on token
          ids of the whole strings, so it is exactly what the model would see without the cache.
        """
        requests = as_requests(requests)
        refuse_suffix(requests, self.name)
        unique = list(dict.fromkeys(requests))
        encoded = [self.split_request(r) for r in unique]
        for request, (prefix, continuation) in zip(unique, encoded, strict=True):
            total = len(prefix) + len(continuation)
            if total > self.max_length:
                raise PromptTooLongError(
                    f"context + continuation take {total} tokens, more than {self.name}'s maximum of "
                    f"{self.max_length} (context starts {request.context[:60]!r}); shorten the input"
                )
        rows = _scoring_rows(encoded)
        shared = (
            min(common_prefix_length([tokens for tokens, _ in rows]), _cacheable_prefix(rows)) if len(rows) > 1 else 0
        )
        if (
            shared < self.min_shared_prefix
            or self.soft_prompt
            or not prefix_reuse_is_exact(self.sliding_window, max(len(tokens) for tokens, _ in rows))
        ):
            shared = 0
        groups: list[tuple[list[int], list[_Row]]] = []
        multi_token = any(len(target) > 1 for _, targets in rows for _, target in targets)
        if multi_token and not self.soft_prompt:  # single-token words already share one row per context
            found, rest = _context_groups(rows, self.min_shared_prefix)
            exact = [prefix_reuse_is_exact(self.sliding_window, max(len(t) for t, _ in group)) for _, group in found]
            saved = sum(len(key) * (len(group) - 1) for (key, group), ok in zip(found, exact, strict=True) if ok)
            # one cache or the other: a prefix shared by every row (demonstrations, an instruction) or
            # each context's own prefill shared by its multi-token words, whichever runs fewer tokens
            if saved > shared * (len(rows) - 1):
                shared = 0
                groups = [g for g, ok in zip(found, exact, strict=True) if ok]
                rows = rest + [row for (_, group), ok in zip(found, exact, strict=True) if not ok for row in group]
        # Longest first: padding stays small and an out-of-memory batch fails at once.
        rows.sort(key=lambda row: -len(row[0]))
        size = 1 if self.soft_prompt else batch_size or self.batch_size
        batches = [rows[i : i + size] for i in range(0, len(rows), size)]
        scored: list[LoglikelihoodResult | None] = [None] * len(unique)
        passes = len(batches) + len(groups)
        bar = progress_bar(len(unique), desc="loglikelihood", enabled=_show_progress(progress, passes))
        with torch.inference_mode(), bar:
            prefix_cache = self._prefill(rows[0][0][:shared]) if shared else None
            for batch in batches:
                for index, result in self._score_rows(batch, prefix_cache, shared):
                    scored[index] = result
                bar.update(sum(len(targets) for _, targets in batch))
            for key, group in groups:  # one context, many multi-token continuations: its prefill is shared
                context_cache = self._prefill(key)
                for batch in _length_batches(group, max(size, GROUP_ROWS)):  # the rows are short
                    for index, result in self._score_rows(batch, context_cache, len(key)):
                        scored[index] = result
                    bar.update(sum(len(targets) for _, targets in batch))
        by_request = dict(zip(unique, scored, strict=True))
        return [by_request[r] for r in requests]  # type: ignore[misc]

    def _prefill(self, tokens: list[int]) -> Any:
        """Run a prefix once and return its KV cache."""
        ids = torch.tensor([tokens], dtype=torch.long, device=self.device)
        return returned_cache(self.model(input_ids=ids, use_cache=True, logits_to_keep=1))

    def _score_rows(self, batch: list[_Row], prefix_cache: Any, shared: int) -> list[tuple[int, LoglikelihoodResult]]:
        # Every target's tokens are predicted by the last len(target) positions of its row, which
        # left padding aligns across the batch.
        keep = max(len(cont) for _, targets in batch for _, cont in targets)
        logits = self._forward_last([tokens[shared:] for tokens, _ in batch], keep, prefix_cache, shared)
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        out = []
        for row, (_, targets) in enumerate(batch):
            for index, cont in targets:
                row_logprobs = logprobs[row, keep - len(cont) :]
                target = torch.tensor(cont, dtype=torch.long, device=row_logprobs.device)
                token_logprobs = row_logprobs.gather(-1, target[:, None]).squeeze(-1)
                result = LoglikelihoodResult(
                    token_logprobs=tuple(token_logprobs.tolist()),
                    is_greedy=bool((row_logprobs.argmax(-1) == target).all()),
                    tokens=tuple(self.tokenizer.convert_ids_to_tokens(cont)),
                )
                out.append((index, result))
        return out

    def _forward_last(
        self, inputs: list[list[int]], keep: int, prefix_cache: Any = None, shared: int = 0
    ) -> torch.Tensor:
        """Logits of the last ``keep`` positions of every left-padded row (after a cached prefix)."""
        ids, mask, positions = left_pad(inputs, self.tokens.pad_id, self.device)
        kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if not self.soft_prompt:  # peft places the soft prompt itself (one unpadded row at a time)
            kwargs["position_ids"] = positions
        if prefix_cache is not None:
            # The rows continue the cached prefix: [prefix | left padding | row]. Padding in the
            # middle is masked out; positions continue from the prefix.
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(inputs))
            kwargs[self._cache_keyword] = cache
            prefix_mask = torch.ones(len(inputs), shared, dtype=torch.long, device=self.device)
            kwargs["attention_mask"] = torch.cat([prefix_mask, mask], 1)
            kwargs["position_ids"] = positions + shared
        if self._keeps_logits:
            kwargs["logits_to_keep"] = keep
        logits = self.model(**kwargs, use_cache=prefix_cache is not None).logits
        return logits[:, -keep:]

    # ------------------------------------------------------------------ generation

    def generate(
        self,
        prompts: Sequence[str],
        config: GenerationConfig | None = None,
        *,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> list[Generation]:
        """Continue each prompt (batched; a prefix shared by all prompts is prefilled once)."""
        config = config or GenerationConfig()
        return [s[0] for s in self._decode(prompts, config, 1, batch_size, progress)]

    def sample(
        self,
        prompts: Sequence[str],
        config: GenerationConfig,
        *,
        n: int,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> list[list[Generation]]:
        """``n`` continuations per prompt; each prompt is prefilled once for all its samples."""
        check_samples(config, n)
        return self._decode(prompts, config, n, batch_size, progress)

    def _decode(
        self, prompts: Sequence[str], config: GenerationConfig, n: int, batch_size: int | None, progress: bool | None
    ) -> list[list[Generation]]:
        prompts = check_prompts(prompts)
        encoded = [self._prefix + ids for ids in self.tokens.encode_many(prompts)]
        for prompt, ids in zip(prompts, encoded, strict=True):
            if not ids:  # an empty prompt without BOS: start from EOS, as an empty context does
                ids.append(self.eos_token_ids[0])
            if len(ids) + config.max_new_tokens > self.max_length:
                raise PromptTooLongError(
                    f"prompt of {len(ids)} tokens + max_new_tokens={config.max_new_tokens} exceeds "
                    f"{self.name}'s maximum of {self.max_length} tokens (prompt starts {prompt[:60]!r})"
                )
        size = batch_size or self.batch_size
        n_batches = -(-len(prompts) * n // size)
        if self.soft_prompt:
            check_calculator(config, "a soft-prompt model (transformers' generate)")
            return [[self._generate_alone(ids, config, sample_seed(config.seed, j) if config.seed is not None else None)
                     for j in range(n)] for ids in encoded]  # fmt: skip
        return self.decoder.run(encoded, config, n=n, batch_size=size, progress=_show_progress(progress, n_batches))

    def _generate_alone(self, ids: list[int], config: GenerationConfig, seed: int | None) -> Generation:
        """One prompt through ``generate`` of ``transformers`` / ``peft`` (soft-prompt models)."""
        from transformers import GenerationConfig as HFGenerationConfig

        settings = HFGenerationConfig(
            max_new_tokens=config.max_new_tokens, do_sample=config.do_sample, num_beams=1,
            eos_token_id=self.eos_token_ids, pad_token_id=self.tokens.pad_id,
            **({"temperature": config.temperature, "top_p": config.top_p, "top_k": config.top_k or None}
               if config.do_sample else {}),
        )  # fmt: skip
        input_ids = torch.tensor([ids], device=self.device)
        with torch.inference_mode(), torch.random.fork_rng(devices=[], enabled=config.do_sample):
            if config.do_sample and seed is not None:
                torch.manual_seed(seed)
            output = self.model.generate(
                input_ids=input_ids, attention_mask=torch.ones_like(input_ids), generation_config=settings
            )[0].tolist()
        new = output[len(ids) :] if output[: len(ids)] == ids else output
        ends = [i for i, token in enumerate(new) if token in self.eos_token_ids]
        tokens = new[: ends[0]] if ends else new
        text = self.tokens.decode(tokens)
        cut = min((p for p in (text.find(stop) for stop in config.stop) if p >= 0), default=-1)
        if cut >= 0:
            text = text[:cut]
        return Generation(text, len(tokens) + bool(ends), "stop" if ends or cut >= 0 else "length", tuple(tokens))

    def generation_stats(self) -> dict[str, float] | None:
        return self.decoder.last_stats.as_dict() if "decoder" in self.__dict__ else None

    @cached_property
    def decoder(self) -> Decoder:
        """The batched decoding engine (its ``last_stats`` say where the time of the last run went)."""
        return Decoder(
            self.model,
            self.tokenizer,
            eos_token_ids=self.eos_token_ids,
            keeps_logits=self._keeps_logits,
            min_shared_prefix=self.min_shared_prefix,
            sliding_window=self.sliding_window,
        )

    # ------------------------------------------------------------------ token level (the server's)

    def encode_prompt(self, text: str, *, literals: Sequence[str] = ()) -> list[int]:
        """The ids of prompt ``text`` (BOS added when the model needs it); the spans equal to
        ``literals`` (user content in a chat prompt) are read as plain text, special-token strings
        included, so that a message cannot inject the chat template's control tokens."""
        ids = self._prefix + self.tokens.encode_keeping_text(text, literals)
        return ids or [self.eos_token_ids[0]]  # an empty prompt without BOS starts from EOS

    def encode_chat_text(self, text: str, contents: Sequence[str]) -> list[int]:
        """The ids of a rendered chat ``text`` as the tokenizer reads it, the messages' ``contents``
        kept as plain text (see :meth:`encode_prompt`)."""
        return self.tokens.encode_keeping_text(text, contents)

    def encode_text(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])

    def decode_ids(self, ids: Sequence[int]) -> str:
        return self.tokens.decode(ids)

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        return [self.tokenizer.decode([i]) for i in ids]

    def tokenizer_info(self) -> dict[str, Any]:
        tok = self.tokenizer
        return {
            "eos_token": tok.eos_token, "bos_token": tok.bos_token, "pad_token": tok.pad_token,
            "add_bos_token": self.add_bos, "chat_template": getattr(tok, "chat_template", None),
            "model_max_length": self.max_length, "vocab_size": len(tok),
        }  # fmt: skip

    def check_token_ids(self, sequences: Sequence[Sequence[int]], extra: int = 0) -> list[list[int]]:
        """Token-id prompts as lists, refusing empty ones, unknown ids and over-long ones."""
        vocab = self.model.get_input_embeddings().num_embeddings
        out = []
        for seq in sequences:
            ids = [int(i) for i in seq]
            if not ids:
                raise PromptLearningError("a token-id prompt is empty")
            if any(not 0 <= i < vocab for i in ids):
                raise PromptLearningError(f"token ids must be in [0, {vocab}) for {self.name}")
            if len(ids) + extra > self.max_length:
                raise PromptTooLongError(
                    f"prompt of {len(ids)} tokens + {extra} new tokens exceeds {self.name}'s maximum of "
                    f"{self.max_length} tokens"
                )
            out.append(ids)
        return out

    def score_token_ids(self, sequences: Sequence[Sequence[int]], *, top: int = 1) -> list[TokenLogprobs]:
        """Every position's logprob and ``top`` alternatives, in left-padded batches (longest first) of
        at most ``batch_size`` rows and ``SCORED_POSITIONS`` positions (the logits of every position
        are kept, unlike scoring)."""
        sequences = self.check_token_ids(sequences)
        order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
        results: list[TokenLogprobs | None] = [None] * len(sequences)
        start = 0
        with torch.inference_mode():
            while start < len(order):
                width = len(sequences[order[start]])
                rows = 1 if self.soft_prompt else max(1, min(self.batch_size, SCORED_POSITIONS // width))
                chunk = order[start : start + rows]
                start += len(chunk)
                logprobs = torch.log_softmax(self._forward_last([sequences[k] for k in chunk], width).float(), -1)
                for row, k in enumerate(chunk):
                    results[k] = self._token_logprobs(sequences[k], logprobs[row, width - len(sequences[k]) :], top)
        return results  # type: ignore[return-value]

    @staticmethod
    def _token_logprobs(ids: list[int], logprobs: torch.Tensor, top: int) -> TokenLogprobs:
        """``logprobs[j]`` is the distribution after token ``j``: it predicts token ``j + 1``."""
        target = torch.tensor(ids[1:], dtype=torch.long, device=logprobs.device)
        chosen = logprobs[:-1].gather(-1, target[:, None]).squeeze(-1).tolist()
        values, indices = logprobs.topk(max(top, 1), dim=-1)
        pairs = zip(indices.tolist(), values.tolist(), strict=True)
        tops: list[TopTokens] = [tuple(zip(i_row, v_row, strict=True)) for i_row, v_row in pairs]
        return TokenLogprobs(
            token_ids=tuple(ids),
            logprobs=(None, *chosen),
            top=(None, *(tops[:-1] if top > 0 else [() for _ in chosen])),
            next_top=tops[-1],
        )

    def generate_token_ids(
        self,
        prompts: Sequence[Sequence[int]],
        config: GenerationConfig,
        *,
        n: int = 1,
        on_token: Callable[[int, int, int], None] | None = None,
        joining: Joining | None = None,
    ) -> list[list[Generation]]:
        check_samples(config, n)
        encoded = self.check_token_ids(prompts, config.max_new_tokens)
        if self.soft_prompt:
            out = []
            for p, ids in enumerate(encoded):
                seeds = [None if config.seed is None else sample_seed(config.seed, j) for j in range(n)]
                samples = [self._generate_alone(ids, config, seed) for seed in seeds]
                for j, generation in enumerate(samples):
                    for token in generation.token_ids if on_token else ():
                        on_token(p, j, token)
                out.append(samples)
            return out
        # (a soft-prompt model decodes prompts one by one above: nothing joins it, arrivals wait their turn)
        return self.decoder.run(encoded, config, n=n, batch_size=self.batch_size, on_token=on_token, joining=joining,
                                prepare=lambda ids: self.check_token_ids([ids], config.max_new_tokens)[0])  # fmt: skip
