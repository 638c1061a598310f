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

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from promptlearning.errors import PromptLearningError
from promptlearning.methods.calibration import CONTENT_FREE_INPUTS


class TaskConfigError(PromptLearningError):
    """A task file that is not valid YAML or does not fit the schema."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    word_score: Literal["sum", "mean", "chars"] = "sum"
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


class TaskConfig(_Strict):
    """One experiment: data, model, template, verbalizer, method, shots and seed."""

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


def _parse_value(text: str) -> Any:
    """A YAML scalar, or a flow list/mapping written with brackets; anything else stays a string
    (so ``--set template.instruction=Answer: yes or no`` is not read as a mapping)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, dict | list) and not text.lstrip().startswith(("{", "[")):
        return text
    return value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML scalars) to a raw config dict."""
    for override in overrides:
        if "=" not in override:
            raise TaskConfigError(f"--set expects key=value, got {override!r}")
        path, value = override.split("=", 1)
        keys = path.strip().split(".")
        node = raw
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise TaskConfigError(f"--set {path}: {key!r} is not a section")
            node = child
        node[keys[-1]] = _parse_value(value)
    return raw


def format_validation_error(error: ValidationError, source: str) -> str:
    lines = [f"invalid task {source}:"]
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def validate_config(raw: Any, source: str = "config") -> TaskConfig:
    if not isinstance(raw, dict):
        raise TaskConfigError(f"task {source} must be a mapping of keys to values, got {type(raw).__name__}")
    try:
        return TaskConfig.model_validate(raw)
    except ValidationError as exc:
        raise TaskConfigError(format_validation_error(exc, source)) from None


def load_task(path: str | Path, overrides: list[str] | None = None) -> TaskConfig:
    """Read a task YAML file, apply ``--set`` overrides and validate it.

    A relative ``data.root`` is made relative to the task file's directory.
    """
    path = Path(path)
    if not path.is_file():
        raise TaskConfigError(f"task file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise TaskConfigError(f"{path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if isinstance(raw, dict):
        raw = apply_overrides(raw, overrides or [])
        root = (raw.get("data") or {}).get("root") if isinstance(raw.get("data"), dict) else None
        if root and not Path(root).expanduser().is_absolute():
            raw["data"]["root"] = str((path.parent / root).resolve())
    return validate_config(raw, str(path))
