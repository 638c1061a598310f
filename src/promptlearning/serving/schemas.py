"""Request bodies: the OpenAI shapes (completions, chat, embeddings), vLLM's tokenizer endpoints and
this project's task endpoints. Unknown OpenAI fields are ignored, as OpenAI-compatible servers do."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)


class _Request(BaseModel):
    # strict: `true` is not 1 and "5" is not 5 (JSON has its own types; OpenAI refuses these too)
    model_config = ConfigDict(extra="ignore", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        where = _lone_surrogate(data)
        if where is not None:
            raise ValueError(
                f"{where or 'the body'} holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape), "
                "which is not text; send valid Unicode"
            )
        return data


def _lone_surrogate(value: Any, path: str = "") -> str | None:
    """Where a string of ``value`` (JSON: dicts, lists, strings) holds an unpaired surrogate, if any:
    JSON may escape one (``"\\ud800"``), but no tokenizer can encode it."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        where = _lone_surrogate(key, path) if isinstance(key, str) else None
        if where is None:
            where = _lone_surrogate(item, f"{path}.{key}" if path else str(key))
        if where is not None:
            return where
    return None


def _stops(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    stops = [value] if isinstance(value, str) else list(value)
    if any(not s for s in stops):
        raise ValueError("stop strings must be non-empty")
    return stops


def _check_stop(value: Any) -> Any:
    _stops(value)
    return value


class CompletionRequest(_Request):
    model: str | None = None
    prompt: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]
    max_tokens: int | None = Field(16, ge=0)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)
    seed: int | None = None
    stop: str | list[str] | None = None
    calculator: StrictBool = Field(False, description="extension: evaluate <<expr= calls while decoding")
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

    _stop_valid = field_validator("stop")(_check_stop)

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
    calculator: StrictBool = Field(False, description="extension: evaluate <<expr= calls while decoding")
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0)

    _stop_valid = field_validator("stop")(_check_stop)

    @property
    def stops(self) -> list[str]:
        return _stops(self.stop)


class EmbeddingRequest(_Request):
    model: str | None = None
    input: StrictStr | list[StrictStr]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)


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


TEMPLATE_OPTIONS = ("input", "instruction", "mode", "separator", "shorten")
VERBALIZER_OPTIONS = ("words", "word_score", "aggregate")


class _PromptedRequest(_Request):
    """A body whose method has a prompt template: its input text, or PromptTemplate's options."""

    template: StrictStr | dict[str, Any] = Field(description="a Jinja input template, or PromptTemplate options")
    _spec: Any = PrivateAttr(None)  # the method spec the body describes, built when it is checked

    @field_validator("template")
    @classmethod
    def _template_options(cls, value: str | dict[str, Any]) -> str | dict[str, Any]:
        return _template_options(value)


class ClassifyRequest(_PromptedRequest):
    """A :class:`~promptlearning.methods.spec.ClassifierSpec` (the same fields as a task file's
    classifier: ``template``, ``verbalizer``, ``method``, ``shots``, ``selection``, ``calibration``,
    ``content_free``, ``orderings``, ``label_field``, ``max_length``, ``seed``), the inputs and the
    demonstration pool. ``template`` may be just the input template; ``verbalizer`` just label ->
    word(s). kNN selection embeds with the server's embedding model."""

    model: str | None = None
    verbalizer: dict[str, Any] = Field(description="label -> word(s), or {'words': ..., 'word_score': ...}")
    inputs: list[dict[str, Any]] = Field(min_length=1)
    demonstrations: list[dict[str, Any]] = Field(default_factory=list)
    method: Literal["auto", "zero-shot", "icl"] = "auto"
    shots: int | None = Field(None, ge=0, description="default: every demonstration, in order (selection first)")
    selection: Literal["random", "balanced", "first", "knn"] | None = None
    calibration: Literal["none", "contextual", "domain", "batch"] = "none"
    content_free: list[StrictStr] | None = None
    orderings: int = Field(1, ge=1)
    label_field: str = "label"
    max_length: int | None = Field(None, ge=8)
    scoring: Literal["direct", "channel"] = "direct"
    bias: dict[str, float] | None = None
    ensemble: list[dict[str, Any]] = Field(
        default_factory=list, max_length=32, description="members: template, verbalizer, calibration, scoring, weight"
    )
    ensemble_weighting: Literal["uniform", "agreement"] = "uniform"
    seed: int = 0

    @field_validator("verbalizer")
    @classmethod
    def _verbalizer_options(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _verbalizer_options(value)

    @field_validator("ensemble")
    @classmethod
    def _member_shapes(cls, members: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for member in members:
            member = dict(member)
            if "template" in member:
                template = _template_options(member["template"])
                member["template"] = {"input": template} if isinstance(template, str) else template
            if isinstance(member.get("verbalizer"), dict):
                member["verbalizer"] = _verbalizer_options(member["verbalizer"])
            out.append(member)
        return out

    @model_validator(mode="after")
    def _a_valid_spec(self) -> ClassifyRequest:
        self._spec = _checked_spec(self._build_spec)
        return self

    def classifier_spec(self) -> Any:
        """The spec the body describes (built once, when the body was checked)."""
        return self._spec

    def _build_spec(self) -> Any:
        """Demonstrations without ``shots`` are all shown, in order."""
        from promptlearning.methods.spec import ClassifierSpec

        shots = self.shots if self.shots is not None else len(self.demonstrations)
        selection = self.selection or ("first" if self.shots is None else "random")
        options = {"content_free": self.content_free} if self.content_free is not None else {}
        return ClassifierSpec(
            template={"input": self.template} if isinstance(self.template, str) else self.template,
            verbalizer=self.verbalizer, method=self.method, shots=shots, selection=selection,
            calibration=self.calibration, orderings=self.orderings, label_field=self.label_field,
            max_length=self.max_length, seed=self.seed, scoring=self.scoring, bias=self.bias, ensemble=self.ensemble,
            ensemble_weighting=self.ensemble_weighting, **options,
        )  # fmt: skip


def _template_options(value: str | dict[str, Any]) -> str | dict[str, Any]:
    """A template given as its input text, or as PromptTemplate's options (strings)."""
    if isinstance(value, str):
        return value
    unknown = [key for key in value if key not in TEMPLATE_OPTIONS]
    if unknown:
        raise ValueError(f"unknown template option {unknown[0]!r}; the options are {', '.join(TEMPLATE_OPTIONS)}")
    if "input" not in value:
        raise ValueError("a template object needs 'input', the Jinja template of one input")
    for key, option in value.items():
        if not isinstance(option, str) and not (key == "shorten" and option is None):
            raise ValueError(f"template option {key!r} must be a string, got {type(option).__name__}")
    return value


def _verbalizer_options(value: dict[str, Any]) -> dict[str, Any]:
    """A verbalizer given as label -> word(s), or as its options (``words``, ``word_score``, ``aggregate``)."""
    key = next((k for k in ("words", "label_words") if k in value), None)  # label_words: the older spelling
    if key is None:
        return {"words": _label_words(value)}
    if not isinstance(value[key], dict):
        raise ValueError(
            f"{key!r} names the options form ({{'words': {{label: words}}, 'word_score': ...}}), "
            "so it cannot be a label; rename that label"
        )
    unknown = [k for k in value if k not in (key, "word_score", "aggregate")]
    if unknown:
        raise ValueError(f"unknown verbalizer option {unknown[0]!r}; the options are {', '.join(VERBALIZER_OPTIONS)}")
    for option in ("word_score", "aggregate"):
        if option in value and not isinstance(value[option], str):
            raise ValueError(f"verbalizer option {option!r} must be a string")
    rest = {k: v for k, v in value.items() if k != key}
    return {**rest, "words": _label_words(value[key])}


def _checked_spec(make: Any) -> Any:
    """The method spec a body describes, its pydantic errors as a value error naming the field (a
    4xx), not a 500 when the handler builds it."""
    try:
        return make()
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def _label_words(mapping: dict[str, Any]) -> dict[str, Any]:
    if not mapping:
        raise ValueError("give at least one label and its word(s), e.g. {'positive': ' great', 'negative': ' awful'}")
    for label, words in mapping.items():
        listed = [words] if isinstance(words, str) else words
        if not isinstance(listed, list) or not listed or any(not isinstance(w, str) or not w for w in listed):
            raise ValueError(
                f"label {label!r}: its words must be a non-empty string or a list of them, got {json_repr(words)}"
            )
    return mapping


def json_repr(value: Any) -> str:
    import json

    return json.dumps(value)[:60]


class SolveRequest(_Request):
    """A :class:`~promptlearning.methods.spec.SolverSpec` (the fields of a ``type: cot`` task's solver)
    and the questions. ``samples`` and ``max_tokens`` are accepted for ``self_consistency`` and
    ``max_new_tokens``; the default mode here is zero-shot-cot (no exemplars needed)."""

    model: str | None = None
    questions: list[dict[str, Any] | StrictStr] = Field(min_length=1)
    mode: Literal["few-shot-cot", "zero-shot-cot", "direct"] = "zero-shot-cot"
    exemplars: list[dict[str, Any]] = Field(default_factory=list)
    template: StrictStr = "Q: {{ question }}\nA:"
    answer_type: Literal["numeric", "multiple_choice"] = "numeric"
    self_consistency: int = Field(1, ge=1, validation_alias=AliasChoices("self_consistency", "samples"))
    temperature: float | None = Field(None, ge=0, le=2, description="default: greedy for 1 sample, 0.7 for more")
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)
    max_new_tokens: int = Field(256, ge=1, validation_alias=AliasChoices("max_new_tokens", "max_tokens"))
    stop: list[StrictStr] | None = None
    trigger: StrictStr | None = None
    answer_trigger: StrictStr | None = None
    calculator: StrictBool = False
    seed: int = 0

    def solver_spec(self) -> Any:
        from promptlearning.methods.spec import SolverSpec

        given = {k: v for k in ("stop", "trigger", "answer_trigger") if (v := getattr(self, k)) is not None}
        return SolverSpec(
            mode=self.mode, exemplars=self.exemplars, template=self.template, answer_type=self.answer_type,
            self_consistency=self.self_consistency, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
            max_new_tokens=self.max_new_tokens, seed=self.seed, calculator=self.calculator, **given,
        )  # fmt: skip


DECODING_FIELDS = frozenset({"max_new_tokens", "temperature", "top_p", "top_k", "stop", "calculator"})


class GenerateRequest(_PromptedRequest):
    """A :class:`~promptlearning.methods.spec.GeneratorSpec` (the fields of a ``type: generate`` task's
    method: ``template``, ``target_field``, ``shots``, ``selection``, decoding, ``postprocess``,
    ``answer_regex``, ``seed``), the inputs and the demonstration pool. Decoding is a task file's
    ``decoding: {...}`` section, or top-level ``max_new_tokens`` (or ``max_tokens``), ``temperature``,
    ``top_p``, ``top_k`` and ``stop``."""

    model: str | None = None
    inputs: list[dict[str, Any]] = Field(min_length=1)
    demonstrations: list[dict[str, Any]] = Field(default_factory=list)
    target_field: StrictStr = "answer"
    shots: int | None = Field(None, ge=0, description="default: every demonstration, in order (selection first)")
    selection: Literal["random", "first", "length", "knn"] | None = None
    max_new_tokens: int = Field(64, ge=1, validation_alias=AliasChoices("max_new_tokens", "max_tokens"))
    temperature: float = Field(0.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)
    stop: list[StrictStr] = Field(default_factory=lambda: ["\n"], max_length=16)
    calculator: StrictBool = False
    postprocess: list[Literal["strip", "first_line", "first_sentence", "lower"]] = Field(
        default_factory=lambda: ["strip"]
    )
    answer_regex: StrictStr | None = None
    decoding: dict[str, Any] | None = Field(None, description="a task file's decoding section, instead of the fields")
    seed: int = 0

    @model_validator(mode="after")
    def _a_valid_spec(self) -> GenerateRequest:
        both = self.decoding is not None and DECODING_FIELDS & (self.model_fields_set - {"decoding"})
        if both:
            raise ValueError(f"give decoding either as 'decoding' or as {sorted(both)[0]!r}, not both")
        self._spec = _checked_spec(self._build_spec)
        return self

    def generator_spec(self) -> Any:
        """The spec the body describes (built once, when the body was checked)."""
        return self._spec

    def _build_spec(self) -> Any:
        """Demonstrations without ``shots`` are all shown, in order."""
        from promptlearning.methods.spec import GeneratorSpec

        shots = self.shots if self.shots is not None else len(self.demonstrations)
        selection = self.selection or ("first" if self.shots is None else "random")
        decoding = self.decoding if self.decoding is not None else {f: getattr(self, f) for f in DECODING_FIELDS}
        return GeneratorSpec(
            template={"input": self.template} if isinstance(self.template, str) else self.template,
            target_field=self.target_field, shots=shots, selection=selection, decoding=decoding,
            postprocess=self.postprocess, answer_regex=self.answer_regex, seed=self.seed,
        )  # fmt: skip
