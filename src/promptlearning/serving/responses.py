"""Response bodies: the OpenAI shapes (completions, chat, embeddings, models), vLLM's tokenizer
endpoints and this project's task endpoints. Each endpoint declares its model, so ``/docs`` shows
what it returns and a handler cannot drop or misspell a field.

Streaming chunks are models too: :func:`event` turns one into a server-sent event."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field, model_serializer


class _Response(BaseModel):
    """Fields are always written, ``None`` as ``null`` (as OpenAI does), unless a model says otherwise."""


class _OmitsNone(_Response):
    """A body whose ``None`` fields are left out instead of written as ``null`` (OpenAI's stream
    deltas, and ``usage`` outside the last chunk)."""

    @model_serializer(mode="wrap")
    def _omit_none(self, handler: Any) -> dict[str, Any]:
        return {key: value for key, value in handler(self).items() if value is not None}


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


class Usage(_Response):
    """Tokens a request read and wrote."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> Usage:
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )


# --- /v1/completions


class CompletionLogprobs(_Response):
    """OpenAI's legacy ``logprobs`` of a completion (what lm-evaluation-harness reads)."""

    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = Field(default_factory=list)
    text_offset: list[int] = Field(default_factory=list)

    def __add__(self, other: CompletionLogprobs) -> CompletionLogprobs:
        return CompletionLogprobs(
            tokens=self.tokens + other.tokens,
            token_logprobs=self.token_logprobs + other.token_logprobs,
            top_logprobs=self.top_logprobs + other.top_logprobs,
            text_offset=self.text_offset + other.text_offset,
        )


class CompletionChoice(_Response):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None = None
    stop_reason: str | None = None  # vLLM's extension: the stop string that ended it (None: EOS or length)


class Completion(_Response):
    """The body of ``POST /v1/completions``."""

    id: str = Field(default_factory=lambda: new_id("cmpl"))
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=now)
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class CompletionChunk(_Response):
    """One event of a streamed completion; the last one, asked for with ``include_usage``, has no
    choices and the usage."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None

    @model_serializer(mode="wrap")
    def _usage_only_at_the_end(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        if data.get("usage") is None:
            data.pop("usage", None)
        return data


# --- /v1/chat/completions


class TopLogprob(_Response):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(_Response):
    content: list[TokenLogprob]


class ChatMessage(_Response):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(_Response):
    index: int
    message: ChatMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletion(_Response):
    """The body of ``POST /v1/chat/completions``."""

    id: str = Field(default_factory=lambda: new_id("chatcmpl"))
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=now)
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ChatDelta(_OmitsNone):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(_Response):
    index: int
    delta: ChatDelta
    logprobs: None = None
    finish_reason: str | None = None


class ChatCompletionChunk(CompletionChunk):
    """One event of a streamed chat completion."""

    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"  # type: ignore[assignment]
    choices: list[ChatChunkChoice]  # type: ignore[assignment]


# --- /v1/embeddings and /v1/models


class Embedding(_Response):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str  # floats, or base64 of little-endian float32


class EmbeddingUsage(_Response):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(_Response):
    """The body of ``POST /v1/embeddings``."""

    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class ModelCard(_Response):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "promptlearning"


class ModelList(_Response):
    """The body of ``GET /v1/models``."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


# --- vLLM's tokenizer endpoints


class Tokenized(_Response):
    """The body of ``POST /tokenize``."""

    tokens: list[int]
    count: int
    max_model_len: int


class Detokenized(_Response):
    """The body of ``POST /detokenize``."""

    prompt: str


# --- this project's task endpoints


class ProgramCard(_Response):
    id: str
    object: Literal["program"] = "program"
    objective: str
    model: str
    labels: list[str]
    inputs: list[str]


class ProgramList(_Response):
    """The body of ``GET /v1/programs``."""

    object: Literal["list"] = "list"
    data: list[ProgramCard]


class ProgramPrediction(_OmitsNone):
    """A label with its probabilities, or (NER) one tag per word."""

    label: str | None = None
    probabilities: dict[str, float] | None = None
    tags: list[str] | None = None


class ProgramPredictions(_Response):
    """The body of ``POST /v1/programs/{name}/predict``."""

    object: Literal["list"] = "list"
    program: str
    predictions: list[ProgramPrediction]


class Classification(_Response):
    label: str
    probabilities: dict[str, float]  # after calibration
    label_scores: dict[str, float]  # the verbalizer's log-scores, before calibration


class Classifications(_Response):
    """The body of ``POST /v1/classify``."""

    object: Literal["list"] = "list"
    model: str
    predictions: list[Classification]


class SolutionBody(_Response):
    answer: str | None
    answers: dict[str, str | None]  # extractor -> majority answer
    votes: dict[str, int]  # answer -> samples that gave it
    agreement: float
    rationales: list[str]
    generated_tokens: int


class Solutions(_Response):
    """The body of ``POST /v1/solve``."""

    object: Literal["list"] = "list"
    model: str
    solutions: list[SolutionBody]


class GeneratedAnswer(_Response):
    answer: str  # after the post-processing chain
    text: str  # what the model generated


class Generations(_Response):
    """The body of ``POST /v1/generate``."""

    object: Literal["list"] = "list"
    model: str
    generations: list[GeneratedAnswer]


def event(data: BaseModel | dict[str, Any] | str) -> str:
    """One server-sent event: a model or dict as JSON, or a bare string (``[DONE]``)."""
    if isinstance(data, BaseModel):
        data = data.model_dump_json()
    elif isinstance(data, dict):
        import json

        data = json.dumps(data, ensure_ascii=False)
    return f"data: {data}\n\n"
