"""The schema of training task files (``type: train``): objective, model, PEFT method, data protocol, loop."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from promptlearning.tasks.config import DataRoot, StrictModel, TaskConfigBase, TemplateConfig, VerbalizerConfig, one_of
from promptlearning.training.loop import TrainingArguments
from promptlearning.training.peft_methods import METHODS

_LOOP = TrainingArguments()  # the loop's own defaults, not restated here


PeftMethod = one_of(METHODS)


class TrainDataConfig(DataRoot):
    """Training, dev and evaluation splits. Without ``dev``, dev examples come from the train pool."""

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


class PeftSection(StrictModel):
    """A ``peft`` method by name with its options (checked against peft's config fields)."""

    method: PeftMethod = Field(description=f"one of {', '.join(METHODS)}")
    options: dict[str, Any] = Field(default_factory=dict)


class FewShotConfig(StrictModel):
    """LM-BFF's protocol: k training and k dev examples per class, drawn under each seed."""

    k: int = Field(16, ge=1)
    seeds: list[int] = Field(default_factory=lambda: [13, 21, 42, 87, 100])


class TrainingSection(StrictModel):
    """Optimiser and loop settings (:class:`promptlearning.training.TrainingArguments`)."""

    learning_rate: float = Field(_LOOP.learning_rate, gt=0)
    weight_decay: float = Field(_LOOP.weight_decay, ge=0)
    batch_size: int = Field(_LOOP.batch_size, ge=1)
    gradient_accumulation_steps: int = Field(_LOOP.gradient_accumulation_steps, ge=1)
    max_steps: int = Field(_LOOP.max_steps, ge=1)
    warmup_ratio: float = Field(_LOOP.warmup_ratio, ge=0, le=1)
    scheduler: Literal["linear", "cosine"] = Field(
        _LOOP.scheduler, description="after warm-up: linear decay to 0, or cosine decay to min_lr_ratio"
    )
    min_lr_ratio: float = Field(_LOOP.min_lr_ratio, ge=0, le=1)
    adam_beta2: float = Field(_LOOP.adam_beta2, gt=0, lt=1)
    max_grad_norm: float = Field(_LOOP.max_grad_norm, ge=0)
    eval_every: int = Field(_LOOP.eval_every, ge=1)
    patience: int | None = Field(_LOOP.patience, ge=1)
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        _LOOP.mixed_precision, description="auto: bf16 (or fp16) on a GPU, none on CPU"
    )
    keep_checkpoints: int = Field(_LOOP.keep_checkpoints, ge=1)
    log_every: int = Field(_LOOP.log_every, ge=1)
    log_with: Literal["tensorboard"] | None = Field(_LOOP.log_with, description="null: no experiment tracking")

    @model_validator(mode="before")
    @classmethod
    def _bf16_flag(cls, data: Any) -> Any:
        """``bf16: true`` (the older spelling) asks for bf16 mixed precision."""
        if isinstance(data, dict) and "bf16" in data:
            data = dict(data)
            if data.pop("bf16") is True:
                data.setdefault("mixed_precision", "bf16")
        return data


class RationaleSection(StrictModel):
    """``objective: rationale``: where the worked solution is (the template reads the question) and how
    the trained model is evaluated (chain-of-thought on ``data.eval``, the question alone as prompt)."""

    rationale_field: str = Field("answer", description="the worked solution (GSM8K's ends with '#### N')")
    answer_field: str | None = Field("final", description="the final answer; null: the '#### N' of the rationale")
    calculator_calls: bool = Field(True, description="keep <<expr=value>> annotations: the model learns to call")
    calculator: bool = Field(True, description="evaluate with the calculator in the decoding loop")
    self_consistency: int = Field(1, ge=1, description="evaluation: samples per question (> 1 votes, T=0.7)")
    max_new_tokens: int = Field(256, ge=1, description="evaluation: tokens per solution")


class EnsembleMember(StrictModel):
    """One PET pattern of an ensemble: its template, label words, PEFT method and learning rate (the
    task's where not given)."""

    template: TemplateConfig | None = None
    verbalizer: VerbalizerConfig | None = None
    peft: PeftSection | None = Field(None, description="this member's PEFT method (default: the task's)")
    learning_rate: float | None = Field(None, gt=0, description="this member's learning rate (default: the task's)")


class PetEnsembleSection(StrictModel):
    """PET's ensemble and distillation (Schick & Schütze 2021): one program per member trained on the
    labelled examples, their label distributions (softmax at ``temperature``, weighted by each member's
    dev accuracy) label an unlabelled pool, and one final program learns those soft labels. With
    ``generations`` above 1 it is iPET: the members are retrained on the labelled examples plus the pool
    rows the other members label most confidently, before the last generation labels the pool."""

    members: list[EnsembleMember] = Field(min_length=1, description="patterns / verbalizers, at least two")
    unlabeled: str | None = Field(None, description="JSONL whose rows are labelled by the ensemble (labels unused); "
                                  "default: the training rows no member trained on")  # fmt: skip
    unlabeled_limit: int | None = Field(2000, ge=1, description="rows of the unlabelled pool (a random sample)")
    temperature: float = Field(2.0, gt=0, description="softens the members' logits (PET: 2)")
    final: EnsembleMember | None = Field(None, description="the distilled program's pattern (default: member 1's)")
    distill_steps: int | None = Field(None, ge=1, description="steps of the distillation (default: training.max_steps)")
    distill_labelled: bool = Field(
        False, description="the labelled examples join the distillation set with their gold labels (PET: pool only)"
    )
    evaluate_members: bool = Field(
        False, description="also score each member and the undistilled ensemble on the eval split (metrics.json)"
    )
    generations: int = Field(
        1,
        ge=1,
        le=5,
        description="iPET: members retrained this many times in all, each "
        "generation on the labelled examples plus the pool labelled by the others (1: PET)",
    )
    growth: float = Field(
        5.0,
        gt=1,
        le=100,
        description="iPET: each generation's training set is this many times the previous one's (Schick & Schütze: 5)",
    )

    @model_validator(mode="after")
    def _an_ensemble(self) -> PetEnsembleSection:
        if len(self.members) < 2:
            raise ValueError("a pet_ensemble needs at least two members (patterns or verbalizers): one member is not "
                             "an ensemble; train it without pet_ensemble")  # fmt: skip
        return self


class TrainTaskConfig(TaskConfigBase):
    """A training experiment (``type: train``): objective, model, PEFT method, data protocol, loop.

    ``dtype`` is the precision of the weights being trained (float32 unless set); mixed precision is
    ``training.mixed_precision``.
    """

    type: Literal["train"]
    data: TrainDataConfig
    dtype: str = "float32"
    objective: Literal["pet", "head", "ner", "rationale"] = Field(
        "pet",
        description="pet: label words at the answer position; head: classification head; ner: token tags; "
        "rationale: the language-model loss on worked solutions (chain-of-thought fine-tuning)",
    )
    template: TemplateConfig = Field(default_factory=lambda: TemplateConfig(input="{{ text }}"))
    verbalizer: VerbalizerConfig | None = None
    labels: list[str] | None = Field(None, description="head/ner: the label set (default: from the train data)")
    peft: PeftSection | None = Field(None, description="none: full fine-tuning")
    demonstrations: int = Field(0, ge=0, description="pet: training examples per label shown in every prompt")
    few_shot: FewShotConfig | None = None
    rationale: RationaleSection | None = Field(None, description="objective rationale: fields and evaluation")
    pet_ensemble: PetEnsembleSection | None = Field(None, description="objective pet: an ensemble distilled into one")
    training: TrainingSection = Field(default_factory=TrainingSection)
    max_length: int = Field(256, ge=8)
    eval_batch_size: int = Field(32, ge=1)
    seed: int = Field(0, description="the seed of a run without few_shot")

    @model_validator(mode="after")
    def _pet_needs_verbalizer(self) -> TrainTaskConfig:
        if self.objective == "pet" and self.verbalizer is None:
            raise ValueError("objective pet needs a verbalizer (label words)")
        if self.objective == "rationale":
            if self.few_shot is not None:
                raise ValueError("objective rationale trains on every solution given: few_shot does not apply")
            if self.rationale is None:
                self.rationale = RationaleSection()
            if "template" not in self.model_fields_set:
                self.template = TemplateConfig(input="Q: {{ question }}\nA:")
        elif self.rationale is not None:
            raise ValueError(f"a rationale section needs objective rationale (this task's is {self.objective})")
        if self.pet_ensemble is not None and self.objective != "pet":
            raise ValueError(f"pet_ensemble needs objective pet (this task's is {self.objective})")
        return self
