"""``POST /v1/chat/completions``: the model's chat template (messages kept as text), logprobs, streaming."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

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
    sse,
    stream_error,
    usage,
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


def _chat_logprobs(model: TokenLevelModel, scores: TokenLogprobs, start: int, count: int, top: int) -> dict[str, Any]:
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
    check_counts(request, 1, body.n, max_tokens, top)
    prompt = await run_in_threadpool(_chat_prompt, model, body)
    config = generation_config(max_tokens, body.temperature, body.top_p, 0, body.seed, body.stops)
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
        "usage": usage(len(prompt), sum(g.num_tokens for g in generations)),
    }


async def _stream_chat(request: Request, job: Job, body: ChatRequest, stream: TokenStream) -> AsyncIterator[str]:
    created, ident = int(time.time()), f"chatcmpl-{uuid.uuid4().hex}"

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> str:
        return sse(
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
    streams = {j: Incremental(job.model, body.stops) for j in range(job.n)}
    async for kind, value in stream.events():
        if kind == "token":
            _, sample, token = value
            delta = streams[sample].push(token)
            if delta:
                yield chunk(sample, {"content": delta})
        elif kind == "error":
            yield sse(stream_error(value))
        else:
            row = value[0]
            for j, generation in enumerate(row):
                rest = streams[j].finish(generation.text)
                if rest:
                    yield chunk(j, {"content": rest})
                yield chunk(j, {}, generation.finish_reason)
            if (body.stream_options or {}).get("include_usage"):
                yield sse(
                    {
                        "id": ident,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": job.model_name,
                        "choices": [],
                        "usage": usage(len(job.prompts[0]), sum(g.num_tokens for g in row)),
                    }
                )
    yield sse("[DONE]")
