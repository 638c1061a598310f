"""The OpenAI-compatible endpoints: completions (with ``echo`` + ``logprobs`` as lm-evaluation-harness
reads them), chat completions, models, embeddings, and vLLM's tokenizer endpoints."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from promptlearning.models.interface import Generation, GenerationConfig, TokenLogprobs
from promptlearning.serving.batching import _config_key
from promptlearning.serving.errors import APIError
from promptlearning.serving.requests import abandon, cancel_event, request_limits, unless_disconnected
from promptlearning.serving.schemas import (
    ChatRequest,
    CompletionRequest,
    DetokenizeRequest,
    EmbeddingRequest,
    TokenizeRequest,
)

router = APIRouter()
MAX_TOP_LOGPROBS = 20


# ----------------------------------------------------------------------------- shared steps


@dataclass
class Job:
    """One request's prompts (token ids) and how to continue them."""

    model_name: str
    model: Any
    prompts: list[list[int]]
    max_tokens: int
    n: int
    config: GenerationConfig | None
    logprobs: int | None
    started: float = field(default_factory=time.perf_counter)
    first_token: float | None = None


def _limits(request: Request) -> Any:
    return request.app.state.settings


def _check_counts(request: Request, prompts: int, n: int, max_tokens: int, logprobs: int | None) -> None:
    settings = _limits(request)
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


def _check_lengths(request: Request, job: Job) -> None:
    settings = _limits(request)
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


async def _model_call(request: Request, key: Any, items: list[Any], run: Callable[[list[Any]], Sequence[Any]]) -> list:
    """Queue ``items`` on the batcher and await the results without blocking the event loop; a
    client that disconnects meanwhile abandons the work."""
    future = request.app.state.batcher.submit(key, items, run, cancel=cancel_event(request))
    return await unless_disconnected(request, asyncio.wrap_future(future))


def _submit_generate(
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
    owner = _Owner(first)
    key = (id(model), "generate_ids", _config_key(config), n)
    items = [(ids, owner.slot(i)) for i, ids in enumerate(job.prompts)]
    return request.app.state.batcher.submit(
        key, items, _batched_generate(model, config, n), cancel=cancel_event(request)
    )


def _count_generated(request: Request, results: list[list[Generation]]) -> None:
    request.app.state.metrics.generation_tokens.inc(sum(g.num_tokens for row in results for g in row))


async def _generate(request: Request, job: Job) -> list:
    """Generations of every prompt (``n`` each); a client that disconnects abandons them."""
    results = await unless_disconnected(request, asyncio.wrap_future(_submit_generate(request, job)))
    _count_generated(request, results)
    return results


class _Owner:
    """Routes a batch's (prompt, sample, token) callbacks to the request and prompt they belong to."""

    def __init__(self, callback: Callable[[int, int, int], None]) -> None:
        self.callback = callback

    def slot(self, prompt: int) -> Callable[[int, int], None]:
        return lambda sample, token: self.callback(prompt, sample, token)


def _batched_generate(model: Any, config: GenerationConfig, n: int) -> Callable[[list[Any]], list[list[Generation]]]:
    def run(batch: list[tuple[list[int], Callable[[int, int], None]]]) -> list[list[Generation]]:
        return model.generate_token_ids(
            [ids for ids, _ in batch], config, n=n, on_token=lambda p, s, t: batch[p][1](s, t)
        )

    return run


async def _score(request: Request, model: Any, sequences: list[list[int]], top: int) -> list[TokenLogprobs]:
    key = (id(model), "score_ids", top)
    return await _model_call(request, key, sequences, lambda batch: model.score_token_ids(batch, top=top))


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


class _Incremental:
    """Text deltas of a token stream: a delta is sent once its characters are final (no half UTF-8
    character) and cannot be the start of a stop string (those characters wait)."""

    def __init__(self, model: Any, stops: Sequence[str]) -> None:
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


# ----------------------------------------------------------------------------- completions


def _completion_prompts(model: Any, prompt: Any) -> tuple[list[list[int]], list[str | None]]:
    """Token ids of each prompt, and its text when it was given as text."""
    if isinstance(prompt, str):
        return [model.encode_prompt(prompt)], [prompt]
    if prompt and all(isinstance(p, int) for p in prompt):
        return [list(prompt)], [None]
    if all(isinstance(p, str) for p in prompt):
        return [model.encode_prompt(p) for p in prompt], list(prompt)
    return [list(p) for p in prompt], [None] * len(prompt)


def _legacy_logprobs(
    model: Any, scores: TokenLogprobs, start: int, end: int, top: int, offset: int = 0
) -> dict[str, list[Any]]:
    """OpenAI's legacy ``logprobs`` object of tokens ``start:end`` of a scored sequence."""
    ids = list(scores.token_ids[start:end])
    strings = model.token_strings(ids)
    tops: list[dict[str, float] | None] = []
    for position in range(start, end):
        alternatives = scores.top[position]
        if alternatives is None:
            tops.append(None)
            continue
        entry = {model.token_strings([i])[0]: lp for i, lp in alternatives[:top]} if top else {}
        entry.setdefault(strings[position - start], scores.logprobs[position])  # the chosen token is always there
        tops.append(entry)
    offsets, at = [], offset
    for text in strings:
        offsets.append(at)
        at += len(text)
    return {
        "tokens": strings,
        "token_logprobs": list(scores.logprobs[start:end]),
        "top_logprobs": tops,
        "text_offset": offsets,
    }


def _merge_logprobs(a: dict[str, list[Any]] | None, b: dict[str, list[Any]]) -> dict[str, list[Any]]:
    if a is None:
        return b
    return {key: a[key] + b[key] for key in a}


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request) -> Any:
    served = request.app.state.served
    name, model = served.token_model(body.model)
    max_tokens = 16 if body.max_tokens is None else body.max_tokens
    prompts, texts = await run_in_threadpool(_completion_prompts, model, body.prompt)
    _check_counts(request, len(prompts), body.n, max_tokens, body.logprobs)
    config = None
    if max_tokens:
        config = _generation_config(max_tokens, body.temperature, body.top_p, body.top_k, body.seed, body.stops)
    elif body.n > 1:
        raise APIError(400, "n > 1 needs max_tokens > 0", param="n")
    if body.stream and body.logprobs is not None:
        raise APIError(400, "logprobs are not streamed by this server; ask without stream", param="logprobs")
    job = Job(
        name,
        model,
        await run_in_threadpool(model.check_token_ids, prompts, 0),
        max_tokens,
        body.n,
        config,
        body.logprobs,
    )
    _check_lengths(request, job)
    request.app.state.metrics.prompt_tokens.inc(sum(len(p) for p in job.prompts))
    request.state.content = [
        t if t is not None else f"<{len(p)} token ids>" for t, p in zip(texts, prompts, strict=True)
    ]
    if body.stream:
        stream = _TokenStream(request, job) if job.max_tokens else None
        return StreamingResponse(_stream_completion(request, job, body, texts, stream), media_type="text/event-stream")
    return await _complete(request, job, body, texts)


def _generation_config(
    max_tokens: int, temperature: float, top_p: float, top_k: int, seed: int | None, stop: list[str]
) -> GenerationConfig:
    return GenerationConfig(
        max_new_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k, seed=seed, stop=stop
    )


def _greedy_first_token(model: Any, scores: TokenLogprobs) -> tuple[Generation, TokenLogprobs]:
    """The one greedy token after a scored prompt (``max_tokens=1``, temperature 0), read from the
    scoring call's last position instead of a second model call; and the scores with it appended."""
    token, logprob = scores.next_top[0]
    eos = token in model.eos_token_ids
    generation = Generation(
        "" if eos else model.decode_ids([token]), 1, "stop" if eos else "length", () if eos else (token,)
    )
    extended = TokenLogprobs(
        (*scores.token_ids, token), (*scores.logprobs, logprob), (*scores.top, scores.next_top), ()
    )
    return generation, extended


def _scored_ids(model: Any, generation: Generation, stops: Sequence[str]) -> list[int]:
    """The tokens of a generation that logprobs report: the generated ones, and the EOS that ended
    it (clients such as lm-eval drop the last reported token, so it must be there)."""
    ids = list(generation.token_ids)
    if generation.finish_reason == "stop" and not any(s in model.decode_ids(ids) for s in stops):
        ids.append(model.eos_token_ids[0])
    return ids


async def _complete(request: Request, job: Job, body: CompletionRequest, texts: list[str | None]) -> dict[str, Any]:
    model = job.model
    top = body.logprobs or 0
    want_logprobs = body.logprobs is not None
    greedy_one = job.max_tokens == 1 and body.temperature == 0 and not body.stops and job.n == 1
    scores: list[list[TokenLogprobs]] | None = None  # per prompt, per sample
    if greedy_one:  # lm-eval's loglikelihood request: one scoring call answers it
        pairs = [_greedy_first_token(model, s) for s in await _score(request, model, job.prompts, top)]
        generations = [[g] for g, _ in pairs]
        scores = [[extended] for _, extended in pairs] if want_logprobs else None
        request.app.state.metrics.generation_tokens.inc(len(job.prompts))
    elif job.max_tokens == 0:
        generations = [[Generation("", 0, "length")] for _ in job.prompts]
        if want_logprobs:
            scores = [[s] for s in await _score(request, model, job.prompts, top)]
    else:
        generations = await _generate(request, job)
        if want_logprobs:
            sequences = [
                p + _scored_ids(model, g, body.stops)
                for p, row in zip(job.prompts, generations, strict=True)
                for g in row
            ]
            flat = await _score(request, model, sequences, top)
            scores = [flat[i * job.n : (i + 1) * job.n] for i in range(len(job.prompts))]
    prompt_texts = [t if t is not None else model.decode_ids(p) for t, p in zip(texts, job.prompts, strict=True)]
    choices = []
    for i, row in enumerate(generations):
        for j, generation in enumerate(row):
            logprobs = None
            if scores is not None:
                s, length = scores[i][j], len(job.prompts[i])
                logprobs = _legacy_logprobs(model, s, 0, length, top) if body.echo else None
                if len(s.token_ids) > length:
                    offset = len(prompt_texts[i]) if body.echo else 0
                    logprobs = _merge_logprobs(
                        logprobs, _legacy_logprobs(model, s, length, len(s.token_ids), top, offset)
                    )
                logprobs = logprobs or {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
            choices.append(
                {
                    "index": i * job.n + j,
                    "text": (prompt_texts[i] if body.echo else "") + generation.text,
                    "logprobs": logprobs,
                    "finish_reason": generation.finish_reason,
                }
            )
    completion_tokens = sum(g.num_tokens for row in generations for g in row)
    request.state.output = [c["text"] for c in choices]
    return {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": job.model_name,
        "choices": choices,
        "usage": _usage(sum(len(p) for p in job.prompts), completion_tokens),
    }


class _TokenStream:
    """A streamed generation. Its job is queued when the stream is made, before the response
    starts, so a full queue is a 429 rather than an error inside a 200 stream. :meth:`events`
    yields ("token", (prompt, sample, id)) as the worker chooses tokens, then ("done", results) or
    ("error", exception); a stream closed early (the client went away) abandons the job."""

    def __init__(self, request: Request, job: Job) -> None:
        self.request = request
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.future = _submit_generate(request, job, self._on_token)
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
                    _count_generated(self.request, value.result())
                    yield "done", value.result()
                return
        finally:
            if not self.future.done():  # the client went away (or the server is stopping)
                self.future.cancel()
                abandon(self.request)


def _stream_error(exc: Exception) -> dict[str, Any]:
    from promptlearning.errors import PromptLearningError
    from promptlearning.serving.errors import error_body

    if isinstance(exc, APIError):
        return error_body(exc.status, exc.message, exc.param, exc.code)
    if isinstance(exc, PromptLearningError):
        return error_body(400, str(exc))
    return error_body(500, f"internal error ({type(exc).__name__})")


async def _stream_completion(
    request: Request, job: Job, body: CompletionRequest, texts: list[str | None], stream: _TokenStream | None
) -> AsyncIterator[str]:
    created, ident = int(time.time()), f"cmpl-{uuid.uuid4().hex}"
    model = job.model

    def chunk(index: int, text: str, finish: str | None = None) -> str:
        return _sse(
            {
                "id": ident,
                "object": "text_completion",
                "created": created,
                "model": job.model_name,
                "choices": [{"index": index, "text": text, "logprobs": None, "finish_reason": finish}],
            }
        )

    streams = {(i, j): _Incremental(model, body.stops) for i in range(len(job.prompts)) for j in range(job.n)}
    if body.echo:
        for i, ids in enumerate(job.prompts):
            for j in range(job.n):
                yield chunk(i * job.n + j, texts[i] if texts[i] is not None else model.decode_ids(ids))
    if stream is None:  # max_tokens 0: nothing to generate
        for i in range(len(job.prompts)):
            yield chunk(i, "", "length")
        yield _sse("[DONE]")
        return
    async for kind, value in stream.events():
        if kind == "token":
            prompt, sample, token = value
            delta = streams[(prompt, sample)].push(token)
            if delta:
                yield chunk(prompt * job.n + sample, delta)
        elif kind == "error":
            yield _sse(_stream_error(value))
        else:
            completion_tokens = 0
            for i, row in enumerate(value):
                for j, generation in enumerate(row):
                    completion_tokens += generation.num_tokens
                    yield chunk(i * job.n + j, streams[(i, j)].finish(generation.text), generation.finish_reason)
            if (body.stream_options or {}).get("include_usage"):
                yield _sse(
                    {
                        "id": ident,
                        "object": "text_completion",
                        "created": created,
                        "model": job.model_name,
                        "choices": [],
                        "usage": _usage(sum(map(len, job.prompts)), completion_tokens),
                    }
                )
    yield _sse("[DONE]")


# ----------------------------------------------------------------------------- chat


def _chat_prompt(model: Any, body: ChatRequest) -> list[int]:
    if not model.has_chat_template:
        raise APIError(400, f"{model.name} has no chat template (a base model?); use /v1/completions")
    messages = [{"role": m.role if m.role != "developer" else "system", "content": m.text()} for m in body.messages]
    text = model.apply_chat_template(messages, add_generation_prompt=True)
    bos = model.tokenizer.bos_token
    if bos and model.add_bos and text.startswith(bos):  # the template wrote BOS; encode_prompt adds it
        text = text[len(bos) :]
    # messages are text: "<|im_start|>system" typed by a user must not become the control token
    return model.encode_prompt(text, literals=[m["content"] for m in messages])


def _chat_logprobs(model: Any, scores: TokenLogprobs, start: int, count: int, top: int) -> dict[str, Any]:
    content = []
    for position in range(start, start + count):
        token = scores.token_ids[position]
        text = model.token_strings([token])[0]
        alternatives = (scores.top[position] or ())[:top]
        content.append(
            {
                "token": text,
                "logprob": scores.logprobs[position],
                "bytes": list(text.encode("utf-8")),
                "top_logprobs": [
                    {"token": s, "logprob": lp, "bytes": list(s.encode("utf-8"))}
                    for s, lp in zip(
                        model.token_strings([i for i, _ in alternatives]), [lp for _, lp in alternatives], strict=True
                    )
                ],
            }
        )
    return {"content": content}


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatRequest, request: Request) -> Any:
    served = request.app.state.served
    name, model = served.token_model(body.model)
    max_tokens = body.max_completion_tokens or body.max_tokens or min(256, request.app.state.settings.max_tokens_limit)
    top = body.top_logprobs if body.logprobs else None
    _check_counts(request, 1, body.n, max_tokens, top)
    prompt = await run_in_threadpool(_chat_prompt, model, body)
    config = _generation_config(max_tokens, body.temperature, body.top_p, 0, body.seed, body.stops)
    job = Job(name, model, [prompt], max_tokens, body.n, config, top)
    _check_lengths(request, job)
    request.app.state.metrics.prompt_tokens.inc(len(prompt))
    request.state.content = [m.text() for m in body.messages]
    if body.stream:
        if body.logprobs:
            raise APIError(400, "logprobs are not streamed by this server; ask without stream", param="logprobs")
        return StreamingResponse(
            _stream_chat(request, job, body, _TokenStream(request, job)), media_type="text/event-stream"
        )
    generations = (await _generate(request, job))[0]
    scores: list[TokenLogprobs] = []
    if body.logprobs:
        scores = await _score(request, model, [prompt + list(g.token_ids) for g in generations], top or 0)
    choices = []
    for j, generation in enumerate(generations):
        logprobs = (
            _chat_logprobs(model, scores[j], len(prompt), len(generation.token_ids), top or 0) if scores else None
        )
        choices.append(
            {
                "index": j,
                "message": {"role": "assistant", "content": generation.text},
                "logprobs": logprobs,
                "finish_reason": generation.finish_reason,
            }
        )
    request.state.output = [c["message"]["content"] for c in choices]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": name,
        "choices": choices,
        "usage": _usage(len(prompt), sum(g.num_tokens for g in generations)),
    }


async def _stream_chat(request: Request, job: Job, body: ChatRequest, stream: _TokenStream) -> AsyncIterator[str]:
    created, ident = int(time.time()), f"chatcmpl-{uuid.uuid4().hex}"

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> str:
        return _sse(
            {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": job.model_name,
                "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
        )

    for j in range(job.n):
        yield chunk(j, {"role": "assistant", "content": ""})
    streams = {j: _Incremental(job.model, body.stops) for j in range(job.n)}
    async for kind, value in stream.events():
        if kind == "token":
            _, sample, token = value
            delta = streams[sample].push(token)
            if delta:
                yield chunk(sample, {"content": delta})
        elif kind == "error":
            yield _sse(_stream_error(value))
        else:
            row = value[0]
            for j, generation in enumerate(row):
                rest = streams[j].finish(generation.text)
                if rest:
                    yield chunk(j, {"content": rest})
                yield chunk(j, {}, generation.finish_reason)
            if (body.stream_options or {}).get("include_usage"):
                yield _sse(
                    {
                        "id": ident,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": job.model_name,
                        "choices": [],
                        "usage": _usage(len(job.prompts[0]), sum(g.num_tokens for g in row)),
                    }
                )
    yield _sse("[DONE]")


# ----------------------------------------------------------------------------- models, embeddings, tokens


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    served = request.app.state.served
    created = request.app.state.started
    names = [*served.text, *served.embedders]
    return {
        "object": "list",
        "data": [{"id": n, "object": "model", "created": created, "owned_by": "promptlearning"} for n in names],
    }


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request) -> dict[str, Any]:
    import numpy as np

    name, model = request.app.state.served.embedder(body.model)
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    if not texts:
        raise APIError(400, "input must not be empty", param="input")
    _check_counts(request, len(texts), 1, 0, None)
    lengths = await run_in_threadpool(lambda: [model.count_tokens(t) for t in texts])
    request_limits(request).spend(lengths)
    tokens = sum(lengths)
    rows = await _model_call(request, (id(model), "embed"), texts, lambda batch: list(model.embed(batch)))
    size = len(rows[0])
    if body.dimensions is not None and body.dimensions != size:
        raise APIError(
            400,
            f"{name} makes {size}-dimensional embeddings and cannot shorten them (it was not trained to); "
            f"leave out dimensions or ask for {size}",
            param="dimensions",
        )
    data = []
    for index, row in enumerate(rows):
        vector = np.asarray(row, dtype=np.float32)
        embedding: Any = (
            base64.b64encode(vector.tobytes()).decode() if body.encoding_format == "base64" else vector.tolist()
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {"object": "list", "data": data, "model": name, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


@router.post("/tokenize")
async def tokenize(body: TokenizeRequest, request: Request) -> dict[str, Any]:
    _, model = request.app.state.served.token_model(body.model)
    if (body.prompt is None) == (body.messages is None):
        raise APIError(400, "give either prompt or messages", param="prompt")
    if body.messages is not None:
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        text = model.apply_chat_template(messages, add_generation_prompt=body.add_generation_prompt)
        tokens = await run_in_threadpool(model.encode_chat_text, text, [m["content"] for m in messages])
    else:
        tokens = await run_in_threadpool(model.encode_text, body.prompt, add_special_tokens=body.add_special_tokens)
    request_limits(request).spend([len(tokens)])
    return {"tokens": tokens, "count": len(tokens), "max_model_len": model.max_length}


@router.post("/detokenize")
async def detokenize(body: DetokenizeRequest, request: Request) -> dict[str, Any]:
    _, model = request.app.state.served.token_model(body.model)
    await run_in_threadpool(model.check_token_ids, [body.tokens] if body.tokens else [[0]])
    return {"prompt": model.decode_ids(body.tokens)}


@router.get("/tokenizer_info")
async def tokenizer_info(request: Request) -> dict[str, Any]:
    _, model = request.app.state.served.token_model(None)
    return model.tokenizer_info()
