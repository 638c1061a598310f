"""Batched decoding for reasoning workloads (chain-of-thought, self-consistency).

Written by hand because ``transformers``' ``generate`` lacks three things this workload needs:

* **shared prefill**: the token prefix common to every prompt of a run (the few-shot exemplar
  block) is run once and its KV cache reused by every batch; each prompt is prefilled once and its
  cache expanded to its ``n`` samples (``generate(num_return_sequences=n)`` prefills n times);
* **per-sample seeds**: sample ``j`` of a prompt draws from its own ``torch.Generator`` seeded by
  ``(seed, j)``, so a sample does not depend on batch size or on which prompts share its batch;
* **early finish**: rows that hit EOS or a stop string leave the batch (their cache rows are
  dropped) instead of decoding padding until the longest row ends;
* **a calculator in the loop**: with ``calculator`` set, a row that writes ``<<48/2=`` gets the
  calculator's ``24>>`` forced as its next tokens (:mod:`promptlearning.models.calculator`), row by
  row, so a row decodes the same alone or in any batch;
* **joining** (continuous batching): the rows that leave make room for prompts that arrive while the
  call runs (a :class:`~promptlearning.models.interface.Joining` hands them over between steps), so
  a server request does not wait for a whole running batch to end.

The model call itself (attention, KV cache, masks) is ``transformers``': we only drive it with an
explicit 2D attention mask, position ids and cache positions, as ``generate`` does.
"""

from __future__ import annotations

import copy
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from promptlearning.cancellation import abandoned_items
from promptlearning.models.calculator import MAX_EXPRESSION_CHARS, calculator_completion, continuation_ids
from promptlearning.models.hf.base import cache_keyword, returned_cache
from promptlearning.models.interface import (
    Generation,
    GenerationConfig,
    Joining,
    sample_seed,
    shared_prefix_length,
)
from promptlearning.progress import progress_bar

STOP_TAIL_TOKENS = 24  # tokens decoded at the end of a row to look for stop strings


@dataclass
class DecodeStats:
    """Where the time of one decoding run went."""

    prompts: int = 0
    samples: int = 0
    shared_prefix_tokens: int = 0
    prompt_tokens: int = 0  # tokens prefilled (shared prefix counted once)
    generated_tokens: int = 0
    max_cache_slots: int = 0
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0

    @property
    def seconds(self) -> float:
        return self.prefill_seconds + self.decode_seconds

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "prompts": self.prompts,
            "samples": self.samples,
            "shared_prefix_tokens": self.shared_prefix_tokens,
            "prompt_tokens": self.prompt_tokens,
            "generated_tokens": self.generated_tokens,
            "prefill_seconds": round(self.prefill_seconds, 3),
            "decode_seconds": round(self.decode_seconds, 3),
            "prefill_share": round(self.prefill_seconds / self.seconds, 3) if self.seconds else 0.0,
            "generated_tokens_per_second": round(self.tokens_per_second, 2),
        }


@dataclass
class _Batch:
    """The rows being decoded: KV cache, 2D attention mask over cache slots, each row's last
    position, next-token logits, (prompt, sample) of each row and the tokens generated so far."""

    cache: Any
    mask: torch.Tensor
    last_position: torch.Tensor
    logits: torch.Tensor
    rows: list[tuple[int, int]]
    tokens: list[list[int]]
    generators: list[torch.Generator] | None = None
    forced: list[list[int]] | None = None  # per row, tokens the calculator still has to write

    def __post_init__(self) -> None:
        if self.forced is None:
            self.forced = [[] for _ in self.rows]

    @property
    def size(self) -> int:
        return len(self.rows)

    def select(self, keep: list[int]) -> None:
        index = torch.tensor(keep, device=self.mask.device)
        self.cache.batch_select_indices(index)
        self.mask, self.last_position, self.logits = self.mask[index], self.last_position[index], self.logits[index]
        self.rows = [self.rows[k] for k in keep]
        self.tokens = [self.tokens[k] for k in keep]
        self.forced = [self.forced[k] for k in keep]
        if self.generators is not None:
            self.generators = [self.generators[k] for k in keep]

    def merge(self, other: _Batch, shared: int) -> _Batch:
        """Append ``other``'s rows. The shorter batch gets empty (masked) cache slots right after
        the shared prefix, so both span the same slots; positions are per row and do not move."""
        width = max(self.mask.shape[1], other.mask.shape[1])
        self._widen(width, shared)
        other._widen(width, shared)
        for mine, theirs in zip(self.cache.layers, other.cache.layers, strict=True):
            mine.keys = torch.cat([mine.keys, theirs.keys], 0)
            mine.values = torch.cat([mine.values, theirs.values], 0)
        self.mask = torch.cat([self.mask, other.mask], 0)
        self.last_position = torch.cat([self.last_position, other.last_position], 0)
        self.logits = torch.cat([self.logits, other.logits], 0)
        self.rows += other.rows
        self.tokens += other.tokens
        self.forced += other.forced
        if self.generators is not None and other.generators is not None:
            self.generators += other.generators
        return self

    def compact(self, shared: int) -> None:
        """Drop cache slots after the shared prefix that no row attends to any more (left by rows
        that finished), so the cache does not grow with every refill."""
        used = self.mask[:, shared:].bool().any(0)
        if bool(used.all()):
            return
        index = torch.cat([torch.arange(shared, device=used.device), shared + used.nonzero().squeeze(1)])
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys[:, :, index], layer.values[:, :, index]
        self.mask = self.mask[:, index]

    def _widen(self, width: int, shared: int) -> None:
        extra = width - self.mask.shape[1]
        if extra <= 0:
            return
        for layer in self.cache.layers:  # hand-written: transformers' caches cannot insert slots
            for name in ("keys", "values"):
                tensor = getattr(layer, name)
                gap = tensor.new_zeros(tensor.shape[0], tensor.shape[1], extra, tensor.shape[3])
                setattr(layer, name, torch.cat([tensor[:, :, :shared], gap, tensor[:, :, shared:]], 2))
        gap = self.mask.new_zeros(self.mask.shape[0], extra)
        self.mask = torch.cat([self.mask[:, :shared], gap, self.mask[:, shared:]], 1)


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Tokens shared by the start of every sequence, leaving at least one token in each."""
    shared = min(len(s) for s in sequences) - 1
    for seq in sequences[1:]:
        shared = min(shared, shared_prefix_length(sequences[0], seq))
    return max(shared, 0)


def prefix_reuse_is_exact(sliding_window: int | None, longest_row: int) -> bool:
    """Whether a cached shared prefix gives the same results as full rows.

    Rows after a shared prefix are padded in the middle ([prefix | pad | row]). Full attention masks
    the padding away, but a sliding window counts cache slots, pad slots included, so a row longer
    than the window would see fewer real tokens than it does alone. Then the prefix is not shared.
    """
    return sliding_window is None or longest_row <= sliding_window


def choose_tokens(
    logits: torch.Tensor, config: GenerationConfig, generators: Sequence[torch.Generator] | None
) -> torch.Tensor:
    """Next token of every row: argmax when greedy, else temperature / top-k / top-p sampling."""
    if not config.do_sample or config.temperature < torch.finfo(torch.float32).tiny:
        return logits.argmax(-1)  # a temperature float32 rounds to 0: its limit, greedy
    # Shifted so that the best token scores 0 before dividing: a temperature so small that the
    # logits would overflow (1e-39, 5e-324) then leaves 0 for the best token(s) and -inf for the
    # rest, which is its limit, greedy decoding (ties shared), instead of inf - inf = nan.
    shifted = logits.float() - logits.float().amax(-1, keepdim=True)
    scores = shifted / config.temperature
    scores = scores.nan_to_num(nan=float("-inf"), neginf=float("-inf"))
    if config.top_k:
        kth = torch.topk(scores, min(config.top_k, scores.shape[-1]), dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if config.top_p < 1.0:
        ordered, order = torch.sort(scores, descending=True, dim=-1)
        cumulative = ordered.softmax(-1).cumsum(-1)
        drop_sorted = cumulative - ordered.softmax(-1) >= config.top_p  # keep the token that crosses top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        scores = scores.masked_fill(drop, float("-inf"))
    probs = scores.softmax(-1)
    assert generators is not None
    return torch.stack(
        [torch.multinomial(probs[row], 1, generator=generators[row])[0] for row in range(probs.shape[0])]
    )


class Decoder:
    """Drives a ``transformers`` causal LM through prefill and decode (see module docstring)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        eos_token_ids: Sequence[int],
        keeps_logits: bool = True,
        min_shared_prefix: int = 16,
        sliding_window: int | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.eos_token_ids = set(eos_token_ids)
        self.keeps_logits = keeps_logits
        self.cache_keyword = cache_keyword(model)
        self.min_shared_prefix = min_shared_prefix
        self.sliding_window = sliding_window
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_token_ids[0]
        self.last_stats = DecodeStats()
        self._equals_tokens: dict[int, bool] = {}  # token id -> whether its text ends with "="

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ------------------------------------------------------------------ model calls

    def _forward(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any, past: int
    ) -> tuple[torch.Tensor, Any]:
        kwargs: dict[str, Any] = {
            "input_ids": ids,
            "attention_mask": mask,
            "position_ids": positions,
            "cache_position": torch.arange(past, past + ids.shape[1], device=ids.device),
            "use_cache": True,
        }
        if cache is not None:
            kwargs[self.cache_keyword] = cache
        if self.keeps_logits:
            kwargs["logits_to_keep"] = 1
        out = self.model(**kwargs)
        return out.logits[:, -1], returned_cache(out)

    def _prefill(
        self, suffixes: list[list[int]], prefix_cache: Any, shared: int
    ) -> tuple[torch.Tensor, Any, torch.Tensor, torch.Tensor]:
        """Run left-padded suffixes after the cached shared prefix; returns last logits, cache,
        the 2D attention mask so far and each row's last position."""
        width = max(len(s) for s in suffixes)
        ids = torch.full((len(suffixes), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(suffixes), shared + width), dtype=torch.long)
        mask[:, :shared] = 1
        for row, seq in enumerate(suffixes):
            ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[row, shared + width - len(seq) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared:]
        ids, mask, positions = ids.to(self.device), mask.to(self.device), positions.to(self.device)
        cache = None
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(suffixes))
        logits, cache = self._forward(ids, mask, positions, cache, shared)
        return logits, cache, mask, positions[:, -1]

    # ------------------------------------------------------------------ public

    @torch.inference_mode()
    def run(
        self,
        prompts: Sequence[Sequence[int]],
        config: GenerationConfig,
        *,
        n: int = 1,
        batch_size: int = 16,
        progress: bool = False,
        on_token: Callable[[int, int, int], None] | None = None,
        joining: Joining | None = None,
        prepare: Callable[[Sequence[int]], list[int]] = list,
    ) -> list[list[Generation]]:
        """``n`` continuations of every prompt (token ids, special tokens included).

        ``on_token(prompt, sample, token_id)`` is called for each generated token (EOS excluded) as
        soon as it is chosen: the server streams with it. ``joining`` admits prompts while the call
        runs (each passed through ``prepare``, which may refuse it by raising)."""
        stats = DecodeStats(prompts=len(prompts), samples=len(prompts) * n)
        self.last_stats = stats
        prompts = list(prompts)
        started_with = len(prompts)
        seed = config.seed if config.seed is not None else int(torch.randint(0, 2**62, (1,)).item())
        refill = self.sliding_window is None  # slot surgery would move sliding windows
        if not refill:
            joining = None
        shared = common_prefix_length(prompts) if len(prompts) > 1 and joining is None else 0
        longest = max(len(p) for p in prompts) + config.max_new_tokens
        if shared < self.min_shared_prefix or not prefix_reuse_is_exact(self.sliding_window, longest):
            shared = 0
        start = time.perf_counter()
        prefix_cache = None
        if shared:
            _, prefix_cache = self._forward(
                torch.tensor([list(prompts[0][:shared])], device=self.device),
                torch.ones(1, shared, dtype=torch.long, device=self.device),
                torch.arange(shared, device=self.device)[None],
                None,
                0,
            )
        stats.prefill_seconds += time.perf_counter() - start
        stats.shared_prefix_tokens = shared
        stats.prompt_tokens = shared + sum(len(p) - shared for p in prompts)

        order = deque(sorted(range(len(prompts)), key=lambda i: -len(prompts[i])))
        results: dict[int, list[Generation | None]] = {i: [None] * n for i in range(len(prompts))}
        batch: _Batch | None = None
        bar = progress_bar(len(prompts), desc="generate", enabled=progress)
        abandoned = abandoned_items()  # set by the server's worker: prompts whose client went away

        def finished(prompt: int) -> None:
            bar.update(1)
            if joining is not None and prompt >= started_with:  # a joined prompt: delivered at once
                joining.done(prompt, results.pop(prompt))  # type: ignore[arg-type]

        with bar:
            while True:
                if joining is not None:
                    room = (batch_size - (batch.size if batch is not None else 0)) // n - len(order)
                    if room > 0:
                        self._join(joining, room, prepare, prompts, results, order, n)
                if abandoned is not None:
                    for prompt in self._skip_abandoned(order, results, abandoned):
                        finished(prompt)
                if batch is None and not order:
                    break
                room = batch_size - (batch.size if batch is not None else 0)
                if order and (batch is None or (refill and room >= n)):
                    start = time.perf_counter()
                    take = [order.popleft() for _ in range(min(max(1, room // n), len(order)))]
                    new = self._start([list(prompts[i][shared:]) for i in take], take, prefix_cache, shared, n)
                    if config.calculator:  # a prompt that ends in an open call gets its result first
                        new.forced = [self._calculator_tokens(list(prompts[i])) for i, _ in new.rows]
                    if config.do_sample:
                        new.generators = [
                            torch.Generator(device=self.device).manual_seed(sample_seed(seed, j)) for _, j in new.rows
                        ]
                    batch = new if batch is None else batch.merge(new, shared)
                    stats.prefill_seconds += time.perf_counter() - start
                start = time.perf_counter()
                stats.max_cache_slots = max(stats.max_cache_slots, batch.mask.shape[1])
                batch = self._step(batch, config, results, finished, shared if refill else None, on_token, abandoned)
                stats.decode_seconds += time.perf_counter() - start
        stats.generated_tokens = sum(g.num_tokens for row in results.values() for g in row if g is not None)
        return [list(results[i]) for i in range(started_with)]  # type: ignore[arg-type]

    @staticmethod
    def _skip_abandoned(
        order: deque[int], results: dict[int, list[Generation | None]], abandoned: Callable[[int], bool]
    ) -> list[int]:
        """Prompts nobody waits for any more are not started (their results are empty); which."""
        skipped = [i for i in order if abandoned(i)]
        for prompt in skipped:
            order.remove(prompt)
            results[prompt] = [Generation("", 0, "length") for _ in results[prompt]]
        return skipped

    @staticmethod
    def _join(
        joining: Joining, room: int, prepare: Callable[[Sequence[int]], list[int]], prompts: list,
        results: dict[int, list[Generation | None]], order: deque[int], n: int,
    ) -> None:  # fmt: skip
        """Admit up to ``room`` arrivals: each gets the next prompt index and waits in ``order``
        (one that ``prepare`` refuses is answered with its error at once)."""
        for ids in joining.take(room):
            index = len(prompts)
            prompts.append(ids)
            try:
                prompts[index] = prepare(ids)
            except Exception as exc:
                joining.done(index, exc)
                continue
            results[index] = [None] * n
            order.append(index)

    def _start(
        self, suffixes: list[list[int]], prompt_ids: list[int], prefix_cache: Any, shared: int, n: int
    ) -> _Batch:
        """Prefill new prompts once each and expand every prompt to its ``n`` sample rows."""
        logits, cache, mask, last_position = self._prefill(suffixes, prefix_cache, shared)
        if n > 1:
            cache.batch_repeat_interleave(n)
            logits = logits.repeat_interleave(n, 0)
            mask = mask.repeat_interleave(n, 0)
            last_position = last_position.repeat_interleave(n, 0)
        rows = [(i, j) for i in prompt_ids for j in range(n)]
        return _Batch(cache, mask, last_position, logits, rows, [[] for _ in rows])

    def _step(
        self,
        batch: _Batch,
        config: GenerationConfig,
        results: dict[int, list[Generation | None]],
        finished: Callable[[int], None],
        compact_after: int | None,
        on_token: Callable[[int, int, int], None] | None = None,
        abandoned: Callable[[int], bool] | None = None,
    ) -> _Batch | None:
        """Choose every row's next token; retire finished (and abandoned) rows; run the others one
        position on."""
        chosen = choose_tokens(batch.logits, config, batch.generators)
        picked = chosen.tolist()  # one device-to-host copy per step
        if config.calculator and any(batch.forced):
            for k, queue in enumerate(batch.forced):
                if queue:
                    picked[k] = queue.pop(0)
            chosen = torch.tensor(picked, device=chosen.device)
        keep = []
        for k, (prompt, sample) in enumerate(batch.rows):
            token, tokens = picked[k], batch.tokens[k]
            reason = None
            if abandoned is not None and abandoned(prompt):
                reason = "length"  # nobody reads it: stop spending steps on the row
            elif token in self.eos_token_ids:
                reason = "stop"
            else:
                tokens.append(token)
                if on_token is not None:
                    on_token(prompt, sample, token)
                if config.calculator and not batch.forced[k]:
                    batch.forced[k] = self._calculator_tokens(tokens)
                if config.stop and self._hits_stop(tokens, config.stop):
                    reason = "stop"
                elif len(tokens) >= config.max_new_tokens:
                    reason = "length"
            if reason is None:
                keep.append(k)
                continue
            results[prompt][sample] = self._finish(tokens, reason, config)
            if all(g is not None for g in results[prompt]):
                finished(prompt)
        if not keep:
            return None
        if len(keep) < batch.size:
            batch.select(keep)
            chosen = chosen[torch.tensor(keep, device=chosen.device)]
            if compact_after is not None:
                batch.compact(compact_after)
        batch.mask = torch.cat([batch.mask, torch.ones(batch.size, 1, dtype=torch.long, device=batch.mask.device)], 1)
        batch.last_position = batch.last_position + 1
        batch.logits, batch.cache = self._forward(
            chosen[:, None], batch.mask, batch.last_position[:, None], batch.cache, batch.mask.shape[1] - 1
        )
        return batch

    def _calculator_tokens(self, tokens: list[int]) -> list[int]:
        """The tokens the calculator writes next when ``tokens`` end in an open ``<<expr=`` call."""
        if not self._ends_with_equals(tokens[-1]):
            return []
        completion = calculator_completion(self.tokenizer.decode(tokens[-(MAX_EXPRESSION_CHARS + 4) :]))
        if not completion:
            return []
        return continuation_ids(self._encode_plain, self.tokenizer.decode, tokens, completion)

    def _encode_plain(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _ends_with_equals(self, token: int) -> bool:
        known = self._equals_tokens.get(token)
        if known is None:
            known = self._equals_tokens[token] = self.tokenizer.decode([token]).endswith("=")
        return known

    def _hits_stop(self, tokens: list[int], stop: Sequence[str]) -> bool:
        tail = self.tokenizer.decode(tokens[-STOP_TAIL_TOKENS:], skip_special_tokens=True)
        return any(s in tail for s in stop)

    def _finish(self, tokens: list[int], reason: str, config: GenerationConfig) -> Generation:
        """Decode a row and cut it at the first stop string (which is not returned)."""
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        cut = min((p for p in (text.find(s) for s in config.stop) if p >= 0), default=-1)
        if cut >= 0:
            text, reason = text[:cut], "stop"
        return Generation(text=text, num_tokens=len(tokens), finish_reason=reason, token_ids=tuple(tokens))  # type: ignore[arg-type]
