"""The schema of classification task files (``type: classification``, the default).

Example (``tasks/sst2.yaml``)::

    name: sst2
    data: {root: ../../shared/data, train: sst2/train.jsonl, eval: sst2/dev.jsonl}
    model: smollm2-135m-instruct
    template: {input: "Review: {{ text }}\\nSentiment:", shorten: text}
    verbalizer: {words: {negative: " negative", positive: " positive"}}
    method: {name: icl, selection: balanced, calibration: batch}
    shots: 16

The schema mirrors the Python API one-to-one (``PromptTemplate``, ``Verbalizer``,
``PromptClassifier``, ``Calibrated``, ``OrderingEnsemble``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from promptlearning.evaluation.metrics import HEADLINE_METRICS
from promptlearning.methods.calibration import CONTENT_FREE_INPUTS
from promptlearning.methods.spec import CALIBRATION_CHOICES, ClassifierSpec, MemberSpec, calibration_of
from promptlearning.prompts.demonstrations import SELECTIONS
from promptlearning.tasks.config import DataRoot, StrictModel, TaskConfigBase, TemplateConfig, VerbalizerConfig, one_of

Selection = one_of(SELECTIONS)

Calibration = one_of(CALIBRATION_CHOICES)

# semeval_macro_f1: SemEval-2010 Task 8's official score (macro-F1 over directed relations, without Other)
Headline = one_of(HEADLINE_METRICS)


class DataConfig(DataRoot):
    """Where the examples come from. Relative paths resolve against the data root."""

    train: str | None = None
    eval: str
    label_field: str = "label"
    train_limit: int | None = Field(None, ge=1)
    train_min_words: int | None = Field(
        None, ge=1, description="keep training examples whose text fields have at least this many words in all"
    )
    eval_limit: int | None = Field(None, ge=1)
    eval_offset: int = Field(0, ge=0, description="skip this many eval rows first (select on a disjoint slice)")


class MethodConfig(StrictModel):
    """How to classify: zero-shot or in-context learning, and the wrappers (calibration, orderings)."""

    name: Literal["auto", "zero-shot", "icl"] = Field("auto", description="auto: zero-shot if shots == 0, else icl")
    selection: Selection = Field("random", description=f"how demonstrations are chosen: {', '.join(SELECTIONS)}")
    embedder: str = Field("minilm-l6", description="knn: an embedded encoder or a sentence-transformers directory")
    calibration: Calibration = Field("none", description=f"how the bias is estimated: {', '.join(CALIBRATION_CHOICES)}")
    calibrate: bool | None = Field(None, description="older spelling: false is calibration none, true its kind")
    content_free: list[str] = Field(default_factory=lambda: list(CONTENT_FREE_INPUTS))
    orderings: int = Field(1, ge=1, description="average over this many orderings of the fixed demonstrations")
    max_length: int | None = Field(None, ge=8, description="prompt + answer tokens at most (default: the model's)")
    scoring: Literal["direct", "channel"] = Field("direct", description="direct: P(label | input); channel: "
                                                  "P(input | label), Min et al. 2022")  # fmt: skip
    bias: dict[str, float] | None = Field(None, description="a frozen calibration bias (label -> share)")
    ensemble: list[MemberSpec] = Field(
        default_factory=list, description="prompts combined: each changes template, verbalizer, calibration, scoring"
    )
    ensemble_weighting: Literal["uniform", "agreement"] = "uniform"


class ClassificationTaskConfig(TaskConfigBase):
    """One experiment: data, model, template, verbalizer, method, shots and seed."""

    type: Literal["classification"] = "classification"
    data: DataConfig
    batch_size: int = Field(16, ge=1)
    template: TemplateConfig
    verbalizer: VerbalizerConfig
    method: MethodConfig = Field(default_factory=MethodConfig)
    shots: int = Field(0, ge=0)
    metric: Headline = Field("accuracy", description=f"the headline metric: {', '.join(HEADLINE_METRICS)}")

    @property
    def method_name(self) -> str:
        if self.method.name == "auto":
            return "icl" if self.shots else "zero-shot"
        return self.method.name

    @property
    def calibration(self) -> str:
        """``none``, ``contextual``, ``domain`` or ``batch`` (``calibrate:`` of older files read in)."""
        return calibration_of(self.method.calibrate, self.method.calibration)

    def classifier_spec(self) -> ClassifierSpec:
        """The classifier this task describes, as every other surface describes it."""
        method = self.method
        return ClassifierSpec(
            template=self.template.model_dump(), verbalizer=self.verbalizer.model_dump(), method=method.name,
            shots=self.shots, selection=method.selection, embedder=method.embedder, calibration=self.calibration,
            content_free=method.content_free, orderings=method.orderings, label_field=self.data.label_field,
            max_length=method.max_length, seed=self.seed, scoring=method.scoring, bias=method.bias,
            ensemble=[m.model_dump(exclude_none=True) for m in method.ensemble],
            ensemble_weighting=method.ensemble_weighting,
        )  # fmt: skip
