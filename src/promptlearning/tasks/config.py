"""What every task file shares: the strict schema base, the common header, the pieces several task
kinds use (template, verbalizer, data root), ``--set`` overrides and readable validation errors.

Each task kind declares its own schema in ``tasks/<kind>/config.py`` on top of :class:`TaskConfigBase`;
:mod:`promptlearning.tasks.registry` picks the schema by the file's ``type:``. Allowed values and
defaults come from the library objects (the backend registry, :mod:`promptlearning.devices`, the
verbalizer's scores), not restated here. Unknown keys are errors, reported with their key path and
the closest valid key.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from promptlearning.devices import DTYPES, check_device_name
from promptlearning.errors import TaskConfigError
from promptlearning.methods.spec import TemplateSpec, VerbalizerSpec
from promptlearning.models.hub import DEFAULT_MODEL
from promptlearning.prompts.verbalizer import Aggregate, WordScore


def _annotation_types(annotation: Any) -> set[Any]:
    """The plain types an annotation admits (``int | None`` -> {int, NoneType}; Literals by their values' types)."""
    origin = get_origin(annotation)
    if origin is Literal:
        return {type(v) for v in get_args(annotation)}
    if origin in (Union, UnionType):
        return set().union(*(_annotation_types(a) for a in get_args(annotation)))
    return {origin or annotation}


def resolve_relative(value: str | None, info: ValidationInfo) -> str | None:
    """A path relative to the task file, made absolute (the loader passes the file's folder)."""
    folder = (info.context or {}).get("task_dir")
    if value and folder and not Path(value).expanduser().is_absolute():
        return str((Path(folder) / value).resolve())
    return value


def one_of(allowed: Sequence[str]) -> Any:
    """A string field whose allowed values come from the library object that defines them
    (``one_of(SELECTIONS)``), so a schema never restates them."""

    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}, got {value!r}")
        return value

    return Annotated[str, AfterValidator(check)]


Dtype = one_of(DTYPES)


class StrictModel(BaseModel):
    """A schema section: unknown keys are errors, and YAML 1.1 booleans are never numbers or text."""

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


class TaskConfigBase(StrictModel):
    """The header every task file has: what it is, which model on which device, where runs go."""

    type: str
    name: str
    description: str = ""
    model: str = Field(DEFAULT_MODEL, description="embedded model name, local directory, .gguf file or hub id")
    backend: str | None = Field(None, description="a registered backend (hf, llamacpp, …); default: the model's")
    device: str = Field("auto", description="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    dtype: Dtype = Field(
        "auto",
        description="auto (bf16/fp16 on GPUs; bf16 on CPUs with native bf16, else fp32), float32, bfloat16 or float16",
    )
    seed: int = 0
    output_dir: str = "runs"
    base_url: str | None = Field(None, description="backend openai: the server's URL, e.g. http://host:8000/v1")
    api_key_env: str = Field("OPENAI_API_KEY", description="backend openai: the variable holding the API key")
    tokenizer: str | None = Field(None, description="backend openai: local tokenizer (default: the model's)")
    timeout: float | None = Field(None, gt=0, description="backend openai: seconds per request, retries included")

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        return check_device_name(value)

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str | None) -> str | None:
        from promptlearning.models import backend_names

        if value is not None and value not in backend_names():
            raise ValueError(f"unknown backend; registered backends: {', '.join(backend_names())}")
        return value

    def model_options(self) -> dict[str, Any]:
        """What ``load_model`` needs to load this task's model."""
        options: dict[str, Any] = {"backend": self.backend, "device": self.device, "dtype": self.dtype}
        if self.backend == "openai":
            options.update(base_url=self.base_url, api_key_env=self.api_key_env, tokenizer=self.tokenizer)
            if self.timeout is not None:
                options["timeout"] = self.timeout
        return options


class DataRoot(StrictModel):
    """The ``root`` every ``data:`` section has: where its relative paths point when
    ``$PROMPTLEARNING_DATA`` is unset (a relative root is relative to the task file)."""

    root: str | None = Field(None, description="data root without PROMPTLEARNING_DATA (relative to the task file)")

    @field_validator("root")
    @classmethod
    def _relative_to_the_task_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        return resolve_relative(value, info)


class TemplateConfig(StrictModel, TemplateSpec):
    """:class:`~promptlearning.prompts.PromptTemplate`'s arguments: the classifier spec's, read as a
    task file section."""


class VerbalizerConfig(StrictModel, VerbalizerSpec):
    """:class:`~promptlearning.prompts.Verbalizer`'s arguments (``words``: label -> word or words): the
    classifier spec's, read as a task file section (its errors list the choices)."""

    word_score: WordScore = "sum"
    aggregate: Aggregate = "logsumexp"


# ----------------------------------------------------------------------------- overrides and errors


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
        if not path.strip():
            raise TaskConfigError(f"--set {override!r} names no key: write key=value, e.g. --set shots=4")
        keys = path.strip().split(".")
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


def read_task_file(path: str | Path) -> Any:
    """The raw YAML content of a task file, or a clear error."""
    path = Path(path)
    if not path.is_file():
        raise TaskConfigError(f"task file {path} does not exist")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise TaskConfigError(f"{path} is not UTF-8 text: is it really a task YAML file?") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise TaskConfigError(f"{path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
