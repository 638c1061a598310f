"""``GET /v1/models`` and ``POST /v1/embeddings``."""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from promptlearning.serving.errors import APIError
from promptlearning.serving.openai.generation import (
    check_counts,
    model_call,
)
from promptlearning.serving.requests import request_limits
from promptlearning.serving.responses import Embedding, EmbeddingList, EmbeddingUsage, ModelCard, ModelList
from promptlearning.serving.schemas import EmbeddingRequest

router = APIRouter()


@router.get("/v1/models")
async def list_models(request: Request) -> ModelList:
    served = request.app.state.served
    created = request.app.state.started
    return ModelList(data=[ModelCard(id=name, created=created) for name in [*served.text, *served.embedders]])


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request) -> EmbeddingList:
    import numpy as np

    name, model = request.app.state.served.embedder(body.model)
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    if not texts:
        raise APIError(400, "input must not be empty", param="input")
    check_counts(request, len(texts), 1, 0, None)
    lengths = await run_in_threadpool(lambda: [model.count_tokens(t) for t in texts])
    request_limits(request).spend(lengths)
    tokens = sum(lengths)
    rows = await model_call(request, (id(model), "embed"), texts, lambda batch: list(model.embed(batch)))
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
        data.append(Embedding(index=index, embedding=embedding))
    return EmbeddingList(data=data, model=name, usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens))
