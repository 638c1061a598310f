"""Task files: a declarative YAML description of a prompt-classification experiment.

The schema mirrors the Python API one-to-one (``PromptTemplate``, ``Verbalizer``,
``PromptClassifier``). Unknown keys are errors, reported with their key path.

Example (``tasks/sst2.yaml``)::

    name: sst2
    data: {root: ../../shared/data, train: sst2/train.jsonl, eval: sst2/dev.jsonl}
    model: smollm2-135m-instruct
    template: {mode: chat, input: "Review: {{ text }}\\nSentiment:", shorten: text}
    verbalizer: {words: {negative: negative, positive: positive}}
    method: {name: icl, selection: balanced, calibrate: true}
    shots: 16
"""

from __future__ import annotations

import difflib
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from promptlearning.errors import PromptLearningError
from promptlearning.methods.calibration import CONTENT_FREE_INPUTS


class TaskConfigError(PromptLearningError):
    """A task file that is not valid YAML or does not fit the schema."""


def _annotation_types(annotation: Any) -> set[Any]:
    """The plain types an annotation admits (``int | None`` -> {int, NoneType}; Literals by their values' types)."""
    origin = get_origin(annotation)
    if origin is Literal:
        return {type(v) for v in get_args(annotation)}
    if origin in (Union, UnionType):
        return set().union(*(_annotation_types(a) for a in get_args(annotation)))
    return {origin or annotation}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_yaml_booleans_for_numbers_or_text(cls, value: Any, info: Any) -> Any:
        """YAML 1.1 reads yes/no/on/off/true/false as booleans, and pydantic would turn ``true`` into 1:
        a boolean where a number or text is expected is an error that says what to write instead."""
        if not isinstance(value, bool):
            return value
        types = _annotation_types(cls.model_fields[info.field_name].annotation)
        if bool in types or Any in types:
            return value
        if types & {int, float}:
            raise ValueError(f"expects a number, got the boolean {str(value).lower()}")
        if str in types:
            raise ValueError(
                f"expects text, got the boolean {str(value).lower()} (YAML reads yes/no/on/off/true/false as "
                'booleans): put the text in quotes, e.g. name: "no" or --set \'name="no"\''
            )
        return value


class DataConfig(_Strict):
    """Where the examples come from. Relative paths resolve against the data root."""

    root: str | None = Field(
        None, description="data root when PROMPTLEARNING_DATA is unset (relative to the task file)"
    )
    train: str | None = None
    eval: str
    label_field: str = "label"
    train_limit: int | None = Field(None, ge=1)
    train_min_words: int | None = Field(
        None, ge=1, description="keep training examples whose text fields have at least this many words in all"
    )
    eval_limit: int | None = Field(None, ge=1)
    eval_offset: int = Field(0, ge=0, description="skip this many eval rows first (select on a disjoint slice)")


class TemplateConfig(_Strict):
    input: str
    instruction: str = ""
    mode: Literal["plain", "chat"] = "plain"
    separator: str = "\n\n"
    shorten: str | None = None


class VerbalizerConfig(_Strict):
    words: dict[str, str | list[str]]
    word_score: Literal["sum", "mean", "chars", "first"] = "sum"
    aggregate: Literal["logsumexp", "mean", "max"] = "logsumexp"

    @field_validator("words", mode="before")
    @classmethod
    def _labels_as_strings(cls, value: Any) -> Any:
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value


class MethodConfig(_Strict):
    name: Literal["auto", "zero-shot", "icl"] = Field("auto", description="auto: zero-shot if shots == 0, else icl")
    selection: Literal["random", "balanced", "first", "knn"] = "random"
    calibrate: bool = False
    calibration: Literal["contextual", "domain", "batch"] = "contextual"
    content_free: list[str] = Field(default_factory=lambda: list(CONTENT_FREE_INPUTS))
    orderings: int = Field(1, ge=1, description="average over this many orderings of the fixed demonstrations")


class TaskConfig(_Strict):
    """One experiment: data, model, template, verbalizer, method, shots and seed."""

    type: Literal["classification"] = "classification"
    name: str
    description: str = ""
    data: DataConfig
    model: str = "smollm2-135m-instruct"
    dtype: Literal["float32", "bfloat16"] = "float32"
    batch_size: int = Field(16, ge=1)
    template: TemplateConfig
    verbalizer: VerbalizerConfig
    method: MethodConfig = Field(default_factory=MethodConfig)
    shots: int = Field(0, ge=0)
    seed: int = 0
    output_dir: str = "runs"

    @property
    def method_name(self) -> str:
        if self.method.name == "auto":
            return "icl" if self.shots else "zero-shot"
        return self.method.name


class CoTDataConfig(_Strict):
    """Questions with numeric (or letter) answers. Relative paths resolve against the data root."""

    root: str | None = None
    train: str | None = Field(None, description="solutions to draw exemplars from (GSM8K format: '... #### N')")
    eval: str
    question_field: str = "question"
    answer_field: str = Field("final", description="the gold answer; a GSM8K 'answer' with '#### N' works too")
    eval_limit: int | None = Field(None, ge=1)
    eval_offset: int = Field(0, ge=0)


class Exemplar(_Strict):
    question: str
    rationale: str = ""
    answer: str

    @field_validator("answer", mode="before")
    @classmethod
    def _answer_as_string(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value


class CoTTaskConfig(_Strict):
    """A chain-of-thought experiment (``type: cot``): questions, exemplars, mode, self-consistency."""

    type: Literal["cot"]
    name: str
    description: str = ""
    data: CoTDataConfig
    model: str = "smollm2-135m-instruct"
    backend: Literal["hf", "llamacpp"] | None = Field(None, description="default: hf (transformers)")
    dtype: Literal["float32", "bfloat16"] = "float32"
    batch_size: int = Field(16, ge=1)
    template: str = "Q: {{ question }}\nA:"
    mode: Literal["direct", "few-shot-cot", "zero-shot-cot"] = "few-shot-cot"
    exemplars: list[Exemplar] = Field(default_factory=list)
    exemplars_file: str | None = Field(
        None,
        description="YAML list of exemplars: a shipped set (gsm8k-wei2022) or a path relative to the task file",
    )
    exemplars_from_train: int = Field(0, ge=0, description="draw this many exemplars from data.train instead")
    answer_type: Literal["numeric", "multiple_choice"] = "numeric"
    self_consistency: int = Field(1, ge=1, description="samples per question; > 1 votes over sampled rationales")
    temperature: float | None = Field(None, ge=0, description="default: 0 (greedy) for 1 sample, 0.7 for more")
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)
    max_new_tokens: int = Field(256, ge=1)
    stop: list[str] = Field(default_factory=lambda: ["Q:", "\n\n\n"])
    trigger: str = "Let's think step by step."
    answer_trigger: str = "Therefore, the answer (arabic numerals) is"
    seed: int = 0
    output_dir: str = "runs"


class TrainDataConfig(_Strict):
    """Training, dev and evaluation splits. Without ``dev``, dev examples come from the train pool."""

    root: str | None = None
    train: str
    dev: str | None = None
    eval: str
    label_field: str = "label"
    tokens_field: str = Field("tokens", description="NER: the words of a sentence")
    tags_field: str = Field("ner_tags", description="NER: one BIO tag per word")
    train_limit: int | None = Field(None, ge=1)
    train_min_words: int | None = Field(
        None, ge=1, description="keep training examples whose template fields have at least this many words"
    )
    dev_limit: int | None = Field(None, ge=1)
    eval_limit: int | None = Field(None, ge=1)


class PeftSection(_Strict):
    """A ``peft`` method by name with its options (checked against peft's config fields)."""

    method: Literal["lora", "adalora", "ia3", "prompt-tuning", "p-tuning", "prefix-tuning"]
    options: dict[str, Any] = Field(default_factory=dict)


class FewShotConfig(_Strict):
    """LM-BFF's protocol: k training and k dev examples per class, drawn under each seed."""

    k: int = Field(16, ge=1)
    seeds: list[int] = Field(default_factory=lambda: [13, 21, 42, 87, 100])


class TrainingSection(_Strict):
    """Optimiser and loop settings (``promptlearning.training.TrainingArguments``)."""

    learning_rate: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_steps: int = Field(200, ge=1)
    warmup_ratio: float = Field(0.06, ge=0, le=1)
    max_grad_norm: float = Field(1.0, ge=0)
    eval_every: int = Field(50, ge=1)
    patience: int | None = Field(None, ge=1)
    bf16: bool = False
    keep_checkpoints: int = Field(2, ge=1)
    log_every: int = Field(10, ge=1)
    log_with: Literal["tensorboard"] | None = Field("tensorboard", description="null: no experiment tracking")


class TrainTaskConfig(_Strict):
    """A training experiment (``type: train``): objective, model, PEFT method, data protocol, loop."""

    type: Literal["train"]
    name: str
    description: str = ""
    data: TrainDataConfig
    model: str = "smollm2-135m-instruct"
    dtype: Literal["float32", "bfloat16"] = "float32"
    objective: Literal["pet", "head", "ner"] = Field(
        "pet", description="pet: label words at the answer position; head: classification head; ner: token tags"
    )
    template: TemplateConfig = Field(default_factory=lambda: TemplateConfig(input="{{ text }}"))
    verbalizer: VerbalizerConfig | None = None
    labels: list[str] | None = Field(None, description="head/ner: the label set (default: from the train data)")
    peft: PeftSection | None = Field(None, description="none: full fine-tuning")
    demonstrations: int = Field(0, ge=0, description="pet: training examples per label shown in every prompt")
    few_shot: FewShotConfig | None = None
    training: TrainingSection = Field(default_factory=TrainingSection)
    max_length: int = Field(256, ge=8)
    eval_batch_size: int = Field(32, ge=1)
    seed: int = Field(0, description="the seed of a run without few_shot")
    output_dir: str = "runs"

    @model_validator(mode="after")
    def _pet_needs_verbalizer(self) -> TrainTaskConfig:
        if self.objective == "pet" and self.verbalizer is None:
            raise ValueError("objective pet needs a verbalizer (label words)")
        return self


AnyTaskConfig = TaskConfig | CoTTaskConfig | TrainTaskConfig
_SCHEMAS: dict[str, type[BaseModel]] = {"cot": CoTTaskConfig, "train": TrainTaskConfig}


def _parse_value(text: str) -> Any:
    """A YAML scalar, or a flow list/mapping written with brackets; anything else stays a string
    (so ``--set template.instruction=Answer: yes or no`` is not read as a mapping)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, dict | list) and not text.lstrip().startswith(("{", "[")):
        return text
    if isinstance(value, bool) and text.strip().lower() not in ("true", "false"):
        return text  # YAML 1.2: yes/no/on/off are words, not booleans (--set name=no names a task "no")
    return value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML scalars) to a raw config dict."""
    for override in overrides:
        if "=" not in override:
            raise TaskConfigError(f"--set expects key=value, got {override!r}")
        path, value = override.split("=", 1)
        keys = path.strip().split(".")
        if not path.strip():
            raise TaskConfigError(f"--set {override!r} names no key: write key=value, e.g. --set shots=4")
        if any(not key.strip() for key in keys):
            raise TaskConfigError(f"--set {path!r}: an empty key between dots; write e.g. method.calibrate=true")
        keys = [key.strip() for key in keys]
        node = raw
        for key in keys[:-1]:
            if node.get(key) is None:  # a missing or null section (e.g. `peft: null`) becomes a new one
                node[key] = {}
            child = node[key]
            if not isinstance(child, dict):
                raise TaskConfigError(f"--set {path}: {key!r} is not a section")
            node = child
        new_value = _parse_value(value)
        if keys == ["peft", "method"] and node.get("method") not in (None, new_value):
            # another method's options (LoRA's r, target_modules…) would not apply to this one;
            # `--set peft.options…` after this override sets its own
            node["options"] = {}
        node[keys[-1]] = new_value
    return raw


def _known_keys(schema: type[BaseModel] | None, path: tuple[Any, ...]) -> list[str]:
    """The keys a section of ``schema`` accepts (for suggesting a misspelt one)."""
    for part in path:
        if schema is None or part not in schema.model_fields:
            return []
        inner = [t for t in _annotation_types(schema.model_fields[part].annotation) if isinstance(t, type)]
        schema = next((t for t in inner if issubclass(t, BaseModel)), None)
    return list(schema.model_fields) if schema is not None else []


def format_validation_error(error: ValidationError, source: str, schema: type[BaseModel] | None = None) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(item["loc"][-1]), _known_keys(schema, item["loc"][:-1]), n=1)
            message = f"unknown key; did you mean {close[0]!r}?" if close else "unknown key"
        problems.append(f"{where}: {message}")
    if len(problems) == 1:
        return f"invalid task {source}: {problems[0]}"
    return "\n  ".join([f"invalid task {source} ({len(problems)} problems):", *problems])


def validate_config(raw: Any, source: str = "config") -> AnyTaskConfig:
    """Validate a raw task mapping; ``type: cot`` / ``type: train`` select their schemas."""
    if not isinstance(raw, dict):
        raise TaskConfigError(f"task {source} must be a mapping of keys to values, got {type(raw).__name__}")
    schema = _SCHEMAS.get(str(raw.get("type")), TaskConfig)
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        raise TaskConfigError(format_validation_error(exc, source, schema)) from None


def load_task(path: str | Path, overrides: list[str] | None = None) -> AnyTaskConfig:
    """Read a task YAML file, apply ``--set`` overrides and validate it.

    A relative ``data.root`` is made relative to the task file's directory.
    """
    path = Path(path)
    if not path.is_file():
        raise TaskConfigError(f"task file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise TaskConfigError(f"{path} is not UTF-8 text: is it really a task YAML file?") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise TaskConfigError(f"{path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if isinstance(raw, dict):
        raw = apply_overrides(raw, overrides or [])
        root = (raw.get("data") or {}).get("root") if isinstance(raw.get("data"), dict) else None
        if root and not Path(root).expanduser().is_absolute():
            raw["data"]["root"] = str((path.parent / root).resolve())
        exemplars_file = raw.get("exemplars_file")
        if (
            isinstance(exemplars_file, str)
            and exemplars_file.endswith((".yaml", ".yml", ".json"))
            and not Path(exemplars_file).expanduser().is_absolute()
        ):
            raw["exemplars_file"] = str((path.parent / exemplars_file).resolve())
    return validate_config(raw, str(path))
