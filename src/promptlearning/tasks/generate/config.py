"""The schema of generation task files (``type: generate``): any text-to-text task — a template,
demonstrations, decoding settings, an answer post-processing chain and metrics.

Example (``tasks/squad.yaml``)::

    type: generate
    name: squad
    data: {root: ../../shared/data, eval: squad/dev.jsonl, target_field: answers}
    template: {input: "Context: {{ context }}\\nQuestion: {{ question }}\\nAnswer:", shorten: context}
    metrics: [squad]
    decoding: {max_new_tokens: 24, stop: ["\\n"]}
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from promptlearning.evaluation.text_metrics import HEADLINES
from promptlearning.methods.generation import GENERATION_SELECTIONS, POSTPROCESSORS
from promptlearning.methods.spec import DecodingSpec, GeneratorSpec
from promptlearning.tasks.config import DataRoot, StrictModel, TaskConfigBase, TemplateConfig, one_of
from promptlearning.tasks.train.config import PeftSection, TrainingSection

Selection = one_of(GENERATION_SELECTIONS)
Metric = one_of(tuple(HEADLINES))
Step = one_of(tuple(POSTPROCESSORS))


class DialogueConfig(StrictModel):
    """Turn each dialogue (a list of turns) into one example per response: the ``context_turns``
    turns before it as ``context`` ("A: …" / "B: …" lines), its speaker as ``speaker`` and the turn
    itself as ``response``."""

    field: str = Field("dialog", description="the list of turns in each row")
    context_turns: int = Field(4, ge=1)


class GenerateDataConfig(DataRoot):
    """Where the examples come from. Relative paths resolve against the data root."""

    train: str | None = Field(None, description="the pool of demonstrations (and training examples)")
    eval: str
    target_field: str = Field("answer", description="the answer text (or list of texts) shown in demonstrations")
    reference_field: str | None = Field(None, description="eval references (a text or a list); default: target_field")
    train_fields: dict[str, str] = Field(
        default_factory=dict, description="rename train fields to the template's: {template_field: train_field}"
    )
    dialogue: DialogueConfig | None = Field(None, description="expand dialogues into (context, response) examples")
    disjoint_on: str | None = Field(None, description="fail if a value of this field is in both train and eval")
    train_limit: int | None = Field(None, ge=1)
    train_offset: int = Field(0, ge=0)
    eval_limit: int | None = Field(None, ge=1)
    eval_offset: int = Field(0, ge=0)


class DecodingConfig(StrictModel, DecodingSpec):
    """How answers are generated: the generator spec's decoding, read as a task file section."""


class FinetuneConfig(StrictModel):
    """Fine-tune on ``data.train`` before generating: the causal LM loss on the target text after the
    zero-shot prompt, with a PEFT method; the best weights by the loss on ``dev_size`` held-out rows."""

    peft: PeftSection = Field(default_factory=lambda: PeftSection(method="lora"))
    training: TrainingSection = Field(default_factory=TrainingSection)
    max_length: int = Field(512, ge=16, description="tokens of prompt + target per training example")
    dev_size: int = Field(32, ge=0, description="training rows held out for the dev loss")


class GenerateTaskConfig(TaskConfigBase):
    """A generation experiment (``type: generate``): data, template, shots, decoding, post-processing, metrics."""

    type: Literal["generate"]
    data: GenerateDataConfig
    template: TemplateConfig
    shots: int = Field(0, ge=0)
    selection: Selection = Field("random", description=f"demonstrations: {', '.join(GENERATION_SELECTIONS)}")
    embedder: str = Field("minilm-l6", description="knn: an embedded encoder or a sentence-transformers directory")
    decoding: DecodingConfig = Field(default_factory=DecodingConfig)
    postprocess: list[Step] = Field(default_factory=lambda: ["strip"], description="applied in order to each output")
    answer_regex: str | None = Field(None, description="keep the first group (or the match) when it matches")
    metrics: list[Metric] = Field(min_length=1, description=f"any of {', '.join(HEADLINES)}; the first is the headline")
    batch_size: int = Field(8, ge=1)
    worst: int = Field(10, ge=0, description="list this many lowest-scoring examples in report.md")
    finetune: FinetuneConfig | None = Field(None, description="train on data.train first (a fine-tuned row)")

    @model_validator(mode="after")
    def _shots_need_a_pool(self) -> GenerateTaskConfig:
        if self.finetune and not self.data.train:
            raise ValueError("finetune needs data.train (the training examples)")
        if self.shots and not self.data.train:
            raise ValueError(f"{self.shots}-shot needs data.train (the pool of demonstrations)")
        return self

    def generator_spec(self) -> GeneratorSpec:
        """The method this task file describes, as every surface builds it."""
        return GeneratorSpec(
            template=self.template.model_dump(), target_field=self.data.target_field, shots=self.shots,
            selection=self.selection, embedder=self.embedder, decoding=self.decoding.model_dump(),
            postprocess=list(self.postprocess), answer_regex=self.answer_regex, seed=self.seed,
        )  # fmt: skip
