"""The schema of chain-of-thought task files (``type: cot``): questions, exemplars, mode, self-consistency."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from promptlearning.methods.cot import MODES
from promptlearning.methods.spec import SolverSettings
from promptlearning.tasks.config import DataRoot, StrictModel, TaskConfigBase, one_of, resolve_relative

Mode = one_of(MODES)


class CoTDataConfig(DataRoot):
    """Questions with numeric (or letter) answers. Relative paths resolve against the data root."""

    train: str | None = Field(None, description="solutions to draw exemplars from (GSM8K format: '... #### N')")
    eval: str
    question_field: str = "question"
    answer_field: str = Field("final", description="the gold answer; a GSM8K 'answer' with '#### N' works too")
    eval_limit: int | None = Field(None, ge=1)
    eval_offset: int = Field(0, ge=0)


class Exemplar(StrictModel):
    question: str
    rationale: str = ""
    answer: str

    @field_validator("answer", mode="before")
    @classmethod
    def _answer_as_string(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value


class CoTTaskConfig(TaskConfigBase, SolverSettings):
    """A chain-of-thought experiment (``type: cot``): questions, where the exemplars come from, and the
    solver's settings (:class:`~promptlearning.methods.spec.SolverSettings`: mode, template,
    self-consistency, decoding, triggers)."""

    type: Literal["cot"]
    data: CoTDataConfig
    batch_size: int = Field(16, ge=1)
    mode: Mode = Field("few-shot-cot", description=f"one of {', '.join(MODES)}")
    exemplars: list[Exemplar] = Field(default_factory=list)
    exemplars_file: str | None = Field(
        None,
        description="YAML list of exemplars: a shipped set (gsm8k-wei2022) or a path relative to the task file",
    )
    exemplars_from_train: int = Field(0, ge=0, description="draw this many exemplars from data.train instead")

    @field_validator("exemplars_file")
    @classmethod
    def _file_relative_to_the_task(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value and value.endswith((".yaml", ".yml", ".json")):  # a shipped set is named without a suffix
            return resolve_relative(value, info)
        return value
