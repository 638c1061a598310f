"""``POST /v1/completions``: text, texts or token ids; echo and legacy logprobs as lm-evaluation-harness
reads them; streaming."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from promptlearning.models.interface import Generation, TokenLevelModel, TokenLogprobs
from promptlearning.serving.errors import APIError
from promptlearning.serving.openai.generation import (
    Incremental,
    Job,
    TokenStream,
    check_counts,
    check_lengths,
    generate,
    generation_config,
    score,
    stream_error,
)
from promptlearning.serving.responses import (
    Completion,
    CompletionChoice,
    CompletionChunk,
    CompletionLogprobs,
    Usage,
    event,
    new_id,
    now,
)
from promptlearning.serving.schemas import CompletionRequest

router = APIRouter()


def _completion_prompts(model: TokenLevelModel, prompt: Any) -> tuple[list[list[int]], list[str | None]]:
    """Token ids of each prompt, and its text when it was given as text."""
    if isinstance(prompt, str):
        return [model.encode_prompt(prompt)], [prompt]
    if prompt and all(isinstance(p, int) for p in prompt):
        return [list(prompt)], [None]
    if all(isinstance(p, str) for p in prompt):
        return [model.encode_prompt(p) for p in prompt], list(prompt)
    return [list(p) for p in prompt], [None] * len(prompt)


def _legacy_logprobs(
    model: TokenLevelModel, scores: TokenLogprobs, start: int, end: int, top: int, offset: int = 0
) -> CompletionLogprobs:
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
    return CompletionLogprobs(
        tokens=strings, token_logprobs=list(scores.logprobs[start:end]), top_logprobs=tops, text_offset=offsets
    )


@router.post("/v1/completions", response_model=Completion)
async def completions(body: CompletionRequest, request: Request) -> Completion | StreamingResponse:
    served = request.app.state.served
    name, model = served.token_model(body.model)
    max_tokens = 16 if body.max_tokens is None else body.max_tokens
    prompts, texts = await run_in_threadpool(_completion_prompts, model, body.prompt)
    check_counts(request, len(prompts), body.n, max_tokens, body.logprobs)
    config = None
    if max_tokens:
        config = generation_config(max_tokens, body.temperature, body.top_p, body.top_k, body.seed, body.stops,
                                   body.calculator)  # fmt: skip
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
    check_lengths(request, job)
    request.app.state.metrics.prompt_tokens.inc(sum(len(p) for p in job.prompts))
    request.state.content = [
        t if t is not None else f"<{len(p)} token ids>" for t, p in zip(texts, prompts, strict=True)
    ]
    if body.stream:
        stream = TokenStream(request, job) if job.max_tokens else None
        return StreamingResponse(_stream_completion(request, job, body, texts, stream), media_type="text/event-stream")
    return await _complete(request, job, body, texts)


def _greedy_first_token(model: TokenLevelModel, scores: TokenLogprobs) -> tuple[Generation, TokenLogprobs]:
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


def _scored_ids(model: TokenLevelModel, generation: Generation, stops: Sequence[str]) -> list[int]:
    """The tokens of a generation that logprobs report: the generated ones, and the EOS that ended
    it (clients such as lm-eval drop the last reported token, so it must be there)."""
    ids = list(generation.token_ids)
    if generation.finish_reason == "stop" and not any(s in model.decode_ids(ids) for s in stops):
        ids.append(model.eos_token_ids[0])
    return ids


def _stop_reason(model: TokenLevelModel, generation: Generation, stops: Sequence[str]) -> str | None:
    """The stop string that ended a generation (the first one its tokens spell), as vLLM reports it:
    a client that continues the text (calculator decoding through the remote backend) needs to know."""
    if generation.finish_reason != "stop" or not stops:
        return None
    decoded = model.decode_ids(list(generation.token_ids))
    found = [(decoded.find(s), s) for s in stops if s in decoded]
    return min(found)[1] if found else None


async def _complete(request: Request, job: Job, body: CompletionRequest, texts: list[str | None]) -> Completion:
    generations, scores = await _generations_and_scores(request, job, body)
    model = job.model
    prompt_texts = [t if t is not None else model.decode_ids(p) for t, p in zip(texts, job.prompts, strict=True)]
    choices = []
    for i, row in enumerate(generations):
        for j, generation in enumerate(row):
            logprobs = None
            if scores is not None:
                logprobs = _choice_logprobs(model, scores[i][j], len(job.prompts[i]), body, len(prompt_texts[i]))
            text = (prompt_texts[i] if body.echo else "") + generation.text
            choices.append(CompletionChoice(index=i * job.n + j, text=text, logprobs=logprobs,
                                            finish_reason=generation.finish_reason,
                                            stop_reason=_stop_reason(model, generation, body.stops)))  # fmt: skip
    completion_tokens = sum(g.num_tokens for row in generations for g in row)
    request.state.output = [c.text for c in choices]
    return Completion(
        model=job.model_name, choices=choices, usage=Usage.of(sum(len(p) for p in job.prompts), completion_tokens)
    )


async def _generations_and_scores(
    request: Request, job: Job, body: CompletionRequest
) -> tuple[list[list[Generation]], list[list[TokenLogprobs]] | None]:
    """Each prompt's samples, and (when logprobs are asked for) each sample's scored sequence."""
    model, top = job.model, body.logprobs or 0
    want_logprobs = body.logprobs is not None
    if job.max_tokens == 1 and body.temperature == 0 and not body.stops and job.n == 1:
        # lm-eval's loglikelihood request: one scoring call answers it
        pairs = [_greedy_first_token(model, s) for s in await score(request, model, job.prompts, top)]
        request.app.state.metrics.generation_tokens.inc(len(job.prompts))
        return [[g] for g, _ in pairs], [[extended] for _, extended in pairs] if want_logprobs else None
    if job.max_tokens == 0:
        generations = [[Generation("", 0, "length")] for _ in job.prompts]
        scored = await score(request, model, job.prompts, top) if want_logprobs else None
        return generations, [[s] for s in scored] if scored is not None else None
    generations = await generate(request, job)
    if not want_logprobs:
        return generations, None
    sequences = [
        p + _scored_ids(model, g, body.stops) for p, row in zip(job.prompts, generations, strict=True) for g in row
    ]
    flat = await score(request, model, sequences, top)
    return generations, [flat[i * job.n : (i + 1) * job.n] for i in range(len(job.prompts))]


def _choice_logprobs(
    model: TokenLevelModel, scores: TokenLogprobs, prompt_length: int, body: CompletionRequest, prompt_chars: int
) -> CompletionLogprobs:
    """The prompt's tokens (with ``echo``), then the generated ones, their offsets counted in the
    text the choice returns."""
    top = body.logprobs or 0
    logprobs = _legacy_logprobs(model, scores, 0, prompt_length, top) if body.echo else CompletionLogprobs()
    if len(scores.token_ids) > prompt_length:
        offset = prompt_chars if body.echo else 0
        logprobs += _legacy_logprobs(model, scores, prompt_length, len(scores.token_ids), top, offset)
    return logprobs


async def _stream_completion(
    request: Request, job: Job, body: CompletionRequest, texts: list[str | None], stream: TokenStream | None
) -> AsyncIterator[str]:
    created, ident = now(), new_id("cmpl")
    model = job.model

    def chunk(index: int, text: str, finish: str | None = None) -> str:
        choice = CompletionChoice(index=index, text=text, finish_reason=finish)
        return event(CompletionChunk(id=ident, created=created, model=job.model_name, choices=[choice]))

    streams = {(i, j): Incremental(model, body.stops) for i in range(len(job.prompts)) for j in range(job.n)}
    if body.echo:
        for i, ids in enumerate(job.prompts):
            for j in range(job.n):
                yield chunk(i * job.n + j, texts[i] if texts[i] is not None else model.decode_ids(ids))
    if stream is None:  # max_tokens 0: nothing to generate
        for i in range(len(job.prompts)):
            yield chunk(i, "", "length")
        yield event("[DONE]")
        return
    async for kind, value in stream.events():
        if kind == "token":
            prompt, sample, token = value
            delta = streams[(prompt, sample)].push(token)
            if delta:
                yield chunk(prompt * job.n + sample, delta)
        elif kind == "error":
            yield event(stream_error(value))
        else:
            completion_tokens = 0
            for i, row in enumerate(value):
                for j, generation in enumerate(row):
                    completion_tokens += generation.num_tokens
                    yield chunk(i * job.n + j, streams[(i, j)].finish(generation.text), generation.finish_reason)
            if (body.stream_options or {}).get("include_usage"):
                final = Usage.of(sum(map(len, job.prompts)), completion_tokens)
                yield event(CompletionChunk(id=ident, created=created, model=job.model_name, choices=[], usage=final))
    yield event("[DONE]")
