"""vLLM's tokenizer endpoints: ``/tokenize``, ``/detokenize``, ``/tokenizer_info``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from promptlearning.serving.errors import APIError
from promptlearning.serving.requests import request_limits
from promptlearning.serving.responses import Detokenized, Tokenized
from promptlearning.serving.schemas import (
    DetokenizeRequest,
    TokenizeRequest,
)

router = APIRouter()


@router.post("/tokenize")
async def tokenize(body: TokenizeRequest, request: Request) -> Tokenized:
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
    return Tokenized(tokens=tokens, count=len(tokens), max_model_len=model.max_length)


@router.post("/detokenize")
async def detokenize(body: DetokenizeRequest, request: Request) -> Detokenized:
    _, model = request.app.state.served.token_model(body.model)
    await run_in_threadpool(model.check_token_ids, [body.tokens] if body.tokens else [[0]])
    return Detokenized(prompt=model.decode_ids(body.tokens))


@router.get("/tokenizer_info")
async def tokenizer_info(request: Request) -> dict[str, Any]:
    _, model = request.app.state.served.token_model(None)
    return model.tokenizer_info()
