"""``POST /v1/chat/completions``: the model's chat template (messages kept as text), logprobs, streaming."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from promptlearning.models.interface import TokenLevelModel, TokenLogprobs
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
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatDelta,
    ChatLogprobs,
    ChatMessage,
    TokenLogprob,
    TopLogprob,
    Usage,
    event,
    new_id,
    now,
)
from promptlearning.serving.schemas import ChatRequest

router = APIRouter()


def _chat_prompt(model: TokenLevelModel, body: ChatRequest) -> list[int]:
    if not model.has_chat_template:
        raise APIError(400, f"{model.name} has no chat template (a base model?); use /v1/completions")
    messages = [{"role": m.role if m.role != "developer" else "system", "content": m.text()} for m in body.messages]
    text = model.apply_chat_template(messages, add_generation_prompt=True)
    bos = model.tokenizer.bos_token
    if bos and model.add_bos and text.startswith(bos):  # the template wrote BOS; encode_prompt adds it
        text = text[len(bos) :]
    # messages are text: "<|im_start|>system" typed by a user must not become the control token
    return model.encode_prompt(text, literals=[m["content"] for m in messages])


def _chat_logprobs(model: TokenLevelModel, scores: TokenLogprobs, start: int, count: int, top: int) -> ChatLogprobs:
    def entry(text: str, logprob: float) -> TopLogprob:
        return TopLogprob(token=text, logprob=logprob, bytes=list(text.encode("utf-8")))

    content = []
    for position in range(start, start + count):
        text = model.token_strings([scores.token_ids[position]])[0]
        alternatives = (scores.top[position] or ())[:top]
        strings = model.token_strings([i for i, _ in alternatives])
        tops = [entry(s, lp) for s, (_, lp) in zip(strings, alternatives, strict=True)]
        content.append(TokenLogprob(**entry(text, scores.logprobs[position]).model_dump(), top_logprobs=tops))
    return ChatLogprobs(content=content)


@router.post("/v1/chat/completions", response_model=ChatCompletion)
async def chat_completions(body: ChatRequest, request: Request) -> ChatCompletion | StreamingResponse:
    served = request.app.state.served
    name, model = served.token_model(body.model)
    max_tokens = body.max_completion_tokens or body.max_tokens or min(256, request.app.state.settings.max_tokens_limit)
    top = body.top_logprobs if body.logprobs else None
    check_counts(request, 1, body.n, max_tokens, top)
    prompt = await run_in_threadpool(_chat_prompt, model, body)
    config = generation_config(max_tokens, body.temperature, body.top_p, 0, body.seed, body.stops, body.calculator)
    job = Job(name, model, [prompt], max_tokens, body.n, config, top)
    check_lengths(request, job)
    request.app.state.metrics.prompt_tokens.inc(len(prompt))
    request.state.content = [m.text() for m in body.messages]
    if body.stream:
        if body.logprobs:
            raise APIError(400, "logprobs are not streamed by this server; ask without stream", param="logprobs")
        return StreamingResponse(
            _stream_chat(request, job, body, TokenStream(request, job)), media_type="text/event-stream"
        )
    generations = (await generate(request, job))[0]
    scores: list[TokenLogprobs] = []
    if body.logprobs:
        scores = await score(request, model, [prompt + list(g.token_ids) for g in generations], top or 0)
    choices = [
        ChatChoice(
            index=j,
            message=ChatMessage(content=generation.text),
            logprobs=_chat_logprobs(model, scores[j], len(prompt), len(generation.token_ids), top or 0)
            if scores
            else None,
            finish_reason=generation.finish_reason,
        )
        for j, generation in enumerate(generations)
    ]
    request.state.output = [c.message.content for c in choices]
    return ChatCompletion(
        model=name, choices=choices, usage=Usage.of(len(prompt), sum(g.num_tokens for g in generations))
    )


async def _stream_chat(request: Request, job: Job, body: ChatRequest, stream: TokenStream) -> AsyncIterator[str]:
    created, ident = now(), new_id("chatcmpl")

    def chunk(index: int, delta: ChatDelta, finish: str | None = None) -> str:
        choice = ChatChunkChoice(index=index, delta=delta, finish_reason=finish)
        return event(ChatCompletionChunk(id=ident, created=created, model=job.model_name, choices=[choice]))

    for j in range(job.n):
        yield chunk(j, ChatDelta(role="assistant", content=""))
    streams = {j: Incremental(job.model, body.stops) for j in range(job.n)}
    async for kind, value in stream.events():
        if kind == "token":
            _, sample, token = value
            delta = streams[sample].push(token)
            if delta:
                yield chunk(sample, ChatDelta(content=delta))
        elif kind == "error":
            yield event(stream_error(value))
        else:
            row = value[0]
            for j, generation in enumerate(row):
                rest = streams[j].finish(generation.text)
                if rest:
                    yield chunk(j, ChatDelta(content=rest))
                yield chunk(j, ChatDelta(), generation.finish_reason)
            if (body.stream_options or {}).get("include_usage"):
                final = Usage.of(len(job.prompts[0]), sum(g.num_tokens for g in row))
                yield event(
                    ChatCompletionChunk(id=ident, created=created, model=job.model_name, choices=[], usage=final)
                )
    yield event("[DONE]")
