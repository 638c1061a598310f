"""Request bodies: the OpenAI shapes (completions, chat, embeddings), vLLM's tokenizer endpoints and
this project's task endpoints. Unknown OpenAI fields are ignored, as OpenAI-compatible servers do."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _stops(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    stops = [value] if isinstance(value, str) else list(value)
    if any(not s for s in stops):
        raise ValueError("stop strings must be non-empty")
    return stops


class CompletionRequest(_Request):
    model: str | None = None
    prompt: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]
    max_tokens: int | None = Field(16, ge=0)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1)
    echo: bool = False
    logprobs: int | None = Field(None, ge=0)
    stream: bool = False
    stream_options: dict[str, Any] | None = None

    @field_validator("prompt")
    @classmethod
    def _non_empty(cls, value: Any) -> Any:
        if isinstance(value, list) and (not value or any(isinstance(v, list) and not v for v in value)):
            raise ValueError("prompt must not be empty")
        return value

    @property
    def stops(self) -> list[str]:
        return _stops(self.stop)


class TextPart(_Request):
    type: Literal["text"]
    text: str


class ChatMessage(_Request):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: StrictStr | list[TextPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatRequest(_Request):
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0)

    @property
    def stops(self) -> list[str]:
        return _stops(self.stop)


class EmbeddingRequest(_Request):
    model: str | None = None
    input: StrictStr | list[StrictStr]
    encoding_format: Literal["float", "base64"] = "float"


class TokenizeRequest(_Request):
    model: str | None = None
    prompt: StrictStr | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: bool = True
    add_generation_prompt: bool = True


class DetokenizeRequest(_Request):
    model: str | None = None
    tokens: list[StrictInt]


class ProgramPredictRequest(_Request):
    inputs: list[dict[str, Any]] = Field(min_length=1)


class ClassifyRequest(_Request):
    model: str | None = None
    template: StrictStr | dict[str, Any] = Field(description="a Jinja input template, or PromptTemplate options")
    verbalizer: dict[str, Any] = Field(description="label -> word(s), or {'label_words': ..., 'word_score': ...}")
    inputs: list[dict[str, Any]] = Field(min_length=1)
    demonstrations: list[dict[str, Any]] = Field(default_factory=list)
    label_field: str = "label"
    calibration: Literal["none", "contextual", "domain", "batch"] = "none"


class SolveRequest(_Request):
    model: str | None = None
    questions: list[dict[str, Any] | StrictStr] = Field(min_length=1)
    mode: Literal["few-shot-cot", "zero-shot-cot", "direct"] = "zero-shot-cot"
    exemplars: list[dict[str, Any]] = Field(default_factory=list)
    template: StrictStr = "Q: {{ question }}\nA:"
    samples: int = Field(1, ge=1)
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(256, ge=1)
    seed: int = 0
