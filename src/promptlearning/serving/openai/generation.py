"""What the OpenAI endpoints share: a request's generation job, its checks against the server's limits, the
batched model calls (abandoned when the client goes away), streaming token by token, usage and SSE."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from promptlearning.models.interface import Generation, GenerationConfig, Joining, TokenLevelModel, TokenLogprobs
from promptlearning.serving.batching import _config_key
from promptlearning.serving.errors import APIError
from promptlearning.serving.requests import abandon, cancel_event, request_limits, unless_disconnected

MAX_TOP_LOGPROBS = 20


@dataclass
class Job:
    """One request's prompts (token ids) and how to continue them."""

    model_name: str
    model: TokenLevelModel
    prompts: list[list[int]]
    max_tokens: int
    n: int
    config: GenerationConfig | None
    logprobs: int | None
    started: float = field(default_factory=time.perf_counter)
    first_token: float | None = None


def limits(request: Request) -> Any:
    return request.app.state.settings


def check_counts(request: Request, prompts: int, n: int, max_tokens: int, logprobs: int | None) -> None:
    settings = limits(request)
    if prompts > settings.max_inputs:
        raise APIError(400, f"{prompts} prompts in one request; the limit is {settings.max_inputs}", param="prompt")
    if n > settings.max_n:
        raise APIError(400, f"n={n} is over this server's limit of {settings.max_n}", param="n")
    if max_tokens > settings.max_tokens_limit:
        raise APIError(
            400,
            f"max_tokens={max_tokens} is over this server's limit of {settings.max_tokens_limit}",
            param="max_tokens",
        )
    if logprobs is not None and logprobs > MAX_TOP_LOGPROBS:
        raise APIError(400, f"logprobs={logprobs}: at most {MAX_TOP_LOGPROBS} top tokens", param="logprobs")


def check_lengths(request: Request, job: Job) -> None:
    settings = limits(request)
    limit = min(settings.max_prompt_tokens or job.model.max_length, job.model.max_length)
    for ids in job.prompts:
        if len(ids) > limit:
            raise APIError(
                400,
                f"the prompt takes {len(ids)} tokens, more than the limit of {limit}",
                param="prompt",
                code="context_length_exceeded",
            )
        if len(ids) + job.max_tokens > job.model.max_length:
            raise APIError(
                400,
                f"prompt ({len(ids)} tokens) + max_tokens ({job.max_tokens}) exceeds the model's "
                f"context of {job.model.max_length} tokens",
                param="max_tokens",
                code="context_length_exceeded",
            )
    request_limits(request).spend([len(ids) for ids in job.prompts], job.max_tokens * job.n * len(job.prompts))


async def model_call(request: Request, key: Any, items: list[Any], run: Callable[[list[Any]], Sequence[Any]]) -> list:
    """Queue ``items`` on the batcher and await the results without blocking the event loop; a
    client that disconnects meanwhile abandons the work."""
    future = request.app.state.batcher.submit(key, items, run, cancel=cancel_event(request))
    return await unless_disconnected(request, asyncio.wrap_future(future))


def submit_generate(
    request: Request, job: Job, on_token: Callable[[int, int, int], None] | None = None
) -> concurrent.futures.Future:
    """Queue generations of every prompt (``n`` each), batched with concurrent requests."""
    model, n, config = job.model, job.n, job.config
    assert config is not None
    metrics = request.app.state.metrics

    def first(prompt: int, sample: int, token: int) -> None:
        if job.first_token is None:
            job.first_token = time.perf_counter()
            metrics.time_to_first_token.observe(job.first_token - job.started)
        if on_token is not None:
            on_token(prompt, sample, token)

    # Requests share a batch: each prompt carries its own callback, so tokens reach the right request.
    owner = Owner(first)
    key = (id(model), "generate_ids", _config_key(config), n)
    items = [(ids, owner.slot(i)) for i, ids in enumerate(job.prompts)]
    return request.app.state.batcher.submit(
        key, items, batched_generate(model, config, n), cancel=cancel_event(request), joinable=True
    )


def count_generated(request: Request, results: list[list[Generation]]) -> None:
    request.app.state.metrics.generation_tokens.inc(sum(g.num_tokens for row in results for g in row))


async def generate(request: Request, job: Job) -> list:
    """Generations of every prompt (``n`` each); a client that disconnects abandons them."""
    results = await unless_disconnected(request, asyncio.wrap_future(submit_generate(request, job)))
    count_generated(request, results)
    return results


class Owner:
    """Routes a batch's (prompt, sample, token) callbacks to the request and prompt they belong to."""

    def __init__(self, callback: Callable[[int, int, int], None]) -> None:
        self.callback = callback

    def slot(self, prompt: int) -> Callable[[int, int], None]:
        return lambda sample, token: self.callback(prompt, sample, token)


def batched_generate(model: TokenLevelModel, config: GenerationConfig, n: int) -> Callable[..., list[list[Generation]]]:
    """The batched call of generation jobs: items are (prompt ids, token callback); requests that
    arrive while it decodes join it through the batcher's admission."""

    def run(batch: list[tuple[list[int], Callable[[int, int], None]]], admission: Any = None) -> list:
        items = list(batch)  # joined items are appended: a token's prompt index points into it

        def take(room: int) -> list[list[int]]:
            arrivals = admission.take(room)
            items.extend(arrivals)
            return [ids for ids, _ in arrivals]

        joining = Joining(take=take, done=admission.done) if admission is not None else None
        return model.generate_token_ids(
            [ids for ids, _ in batch], config, n=n, on_token=lambda p, s, t: items[p][1](s, t), joining=joining
        )

    return run


async def score(request: Request, model: TokenLevelModel, sequences: list[list[int]], top: int) -> list[TokenLogprobs]:
    key = (id(model), "score_ids", top)
    return await model_call(request, key, sequences, lambda batch: model.score_token_ids(batch, top=top))


class Incremental:
    """Text deltas of a token stream: a delta is sent once its characters are final (no half UTF-8
    character) and cannot be the start of a stop string (those characters wait)."""

    def __init__(self, model: TokenLevelModel, stops: Sequence[str]) -> None:
        self.model = model
        self.hold = max((len(s) for s in stops), default=1) - 1
        self.tokens: list[int] = []
        self.sent = ""

    def push(self, token: int) -> str:
        self.tokens.append(token)
        text = self.model.decode_ids(self.tokens)
        if text.endswith("\ufffd"):
            return ""
        safe = text[: len(text) - self.hold] if self.hold else text
        if not safe.startswith(self.sent) or len(safe) <= len(self.sent):
            return ""
        delta, self.sent = safe[len(self.sent) :], safe
        return delta

    def finish(self, final: str) -> str:
        return final[len(self.sent) :] if final.startswith(self.sent) else ""


def generation_config(
    max_tokens: int,
    temperature: float,
    top_p: float,
    top_k: int,
    seed: int | None,
    stop: list[str],
    calculator: bool = False,
) -> GenerationConfig:
    return GenerationConfig(
        max_new_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k, seed=seed, stop=stop,
        calculator=calculator,
    )  # fmt: skip


class TokenStream:
    """A streamed generation. Its job is queued when the stream is made, before the response
    starts, so a full queue is a 429 rather than an error inside a 200 stream. :meth:`events`
    yields ("token", (prompt, sample, id)) as the worker chooses tokens, then ("done", results) or
    ("error", exception); a stream closed early (the client went away) abandons the job."""

    def __init__(self, request: Request, job: Job) -> None:
        self.request = request
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.future = submit_generate(request, job, self._on_token)
        self.future.add_done_callback(self._on_done)  # after every token: the worker posts in order

    def _on_token(self, prompt: int, sample: int, token: int) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, ("token", (prompt, sample, token)))

    def _on_done(self, future: concurrent.futures.Future) -> None:
        if not future.cancelled():
            self.loop.call_soon_threadsafe(self.queue.put_nowait, ("end", future))

    async def events(self) -> AsyncIterator[tuple[str, Any]]:
        try:
            while True:
                kind, value = await self.queue.get()
                if kind == "token":
                    yield kind, value
                    continue
                error = value.exception()
                if error is not None:
                    yield "error", error
                else:
                    count_generated(self.request, value.result())
                    yield "done", value.result()
                return
        finally:
            if not self.future.done():  # the client went away (or the server is stopping)
                self.future.cancel()
                abandon(self.request)


def stream_error(exc: Exception) -> dict[str, Any]:
    from promptlearning.errors import PromptLearningError
    from promptlearning.serving.errors import error_body

    if isinstance(exc, APIError):
        return error_body(exc.status, exc.message, exc.param, exc.code)
    if isinstance(exc, PromptLearningError):
        return error_body(400, str(exc))
    return error_body(500, f"internal error ({type(exc).__name__})")
