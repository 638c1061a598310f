"""Methods described once. A prompt classifier: :class:`ClassifierSpec` is what a task file's ``template`` /
``verbalizer`` / ``method`` / ``shots`` say, the body of ``/v1/classify``, what a weightless saved
program stores and what a search candidate is; :func:`build_classifier` is the one place that turns
a spec and a model into the classifier (``OrderingEnsemble(Calibrated(PromptClassifier(...)))``).

A chain-of-thought solver likewise: :class:`SolverSpec` (a ``type: cot`` task file, ``/v1/solve``,
``promptlearning cot``) and :func:`build_solver`; and a prompted generator: :class:`GeneratorSpec`
(a ``type: generate`` task file, ``/v1/generate``) and :func:`build_generator`.

One spelling per option everywhere: ``calibration`` is ``none``, ``contextual``, ``domain`` or
``batch`` (task files may still say ``calibrate: false`` / ``true``, read as ``none`` / their
``calibration``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from promptlearning.errors import PromptLearningError
from promptlearning.methods.calibration import CALIBRATIONS, CONTENT_FREE_INPUTS, Calibrated
from promptlearning.methods.classifier import (
    OrderingEnsemble,
    PromptClassifier,
    check_channel_template,
    check_classifier_settings,
)
from promptlearning.methods.cot import DEFAULT_STOP, ChainOfThought, SelfConsistency, check_cot_settings
from promptlearning.methods.ensemble import WEIGHTINGS, PromptEnsemble, SharedScores
from promptlearning.methods.extraction import multiple_choice_extractors, numeric_extractors
from promptlearning.methods.generation import GENERATION_SELECTIONS, POSTPROCESSORS, PromptGenerator, check_postprocess
from promptlearning.models.interface import GenerationConfig, LanguageModel
from promptlearning.prompts.demonstrations import SELECTIONS
from promptlearning.prompts.template import PromptTemplate
from promptlearning.prompts.verbalizer import Verbalizer

CALIBRATION_CHOICES = ("none", *CALIBRATIONS)
Calibration = Literal["none", "contextual", "domain", "batch"]
Selection = Literal["random", "balanced", "first", "knn"]
Scoring = Literal["direct", "channel"]
GenerationSelection = Literal["random", "first", "length", "knn"]
PostprocessStep = Literal["strip", "first_line", "first_sentence", "lower"]
assert set(SELECTIONS) == set(Selection.__args__)  # type: ignore[attr-defined]
assert set(GENERATION_SELECTIONS) == set(GenerationSelection.__args__)  # type: ignore[attr-defined]
assert set(POSTPROCESSORS) == set(PostprocessStep.__args__)  # type: ignore[attr-defined]
assert set(CALIBRATIONS) == set(Calibration.__args__) - {"none"}  # type: ignore[attr-defined]
assert set(WEIGHTINGS) == {"uniform", "agreement"}


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TemplateSpec(_Spec):
    """:class:`~promptlearning.prompts.PromptTemplate`'s arguments."""

    input: str
    instruction: str = ""
    mode: Literal["plain", "chat"] = "plain"
    separator: str = "\n\n"
    shorten: str | None = None


class VerbalizerSpec(_Spec):
    """:class:`~promptlearning.prompts.Verbalizer`'s arguments (``words``: label -> word or words)."""

    words: dict[str, str | list[str]]
    word_score: Literal["sum", "mean", "chars", "first"] = "sum"
    aggregate: Literal["logsumexp", "mean", "max"] = "logsumexp"

    @field_validator("words", mode="before")
    @classmethod
    def _labels_as_strings(cls, value: Any) -> Any:
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value


class MemberSpec(_Spec):
    """One prompt of an ensemble: what it changes of the classifier spec around it (the rest, such as
    shots and selection, is shared) and, optionally, its weight."""

    template: TemplateSpec | None = None
    verbalizer: VerbalizerSpec | None = None
    calibration: Calibration | None = None
    bias: dict[str, float] | None = None
    scoring: Scoring | None = None
    content_free: list[str] | None = None
    weight: float | None = Field(None, ge=0, description="default: the ensemble's weighting")


class ClassifierSpec(_Spec):
    """Everything that decides a prompt classifier's predictions, on every surface alike."""

    template: TemplateSpec
    verbalizer: VerbalizerSpec
    method: Literal["auto", "zero-shot", "icl"] = Field("auto", description="auto: zero-shot if shots == 0, else icl")
    shots: int = Field(0, ge=0)
    selection: Selection = Field("random", description=f"how demonstrations are chosen: {', '.join(SELECTIONS)}")
    embedder: str = Field("minilm-l6", description="knn: an embedded encoder or a sentence-transformers directory")
    calibration: Calibration = Field("none", description=f"{', '.join(CALIBRATION_CHOICES)}")
    bias: dict[str, float] | None = Field(
        None, description="a frozen calibration bias (label -> share), used instead of the calibration's estimate"
    )
    content_free: list[str] = Field(default_factory=lambda: list(CONTENT_FREE_INPUTS))
    scoring: Scoring = Field("direct", description="direct: P(label | input); channel: P(input | label)")
    orderings: int = Field(1, ge=1, description="average over this many orderings of the fixed demonstrations")
    label_field: str = "label"
    max_length: int | None = Field(None, ge=8, description="prompt + answer tokens at most (default: the model's)")
    ensemble: list[MemberSpec] = Field(
        default_factory=list, description="several prompts combined; each member changes some of the fields above"
    )
    ensemble_weighting: Literal["uniform", "agreement"] = Field(
        "uniform", description="members without weights: equal, or by agreement with the ensemble (no labels)"
    )
    seed: int = 0

    @model_validator(mode="after")
    def _consistent(self) -> ClassifierSpec:
        check_classifier_settings(method=self.method_name, shots=self.shots, selection=self.selection)
        if self.scoring == "channel":
            check_channel_template(self.build_template(), self.build_verbalizer())
        if self.orderings > 1 and (self.method_name != "icl" or self.selection == "knn"):
            raise PromptLearningError(
                "orderings > 1 averages orderings of fixed demonstrations: it needs method 'icl' with selection "
                f"random, balanced or first (got method {self.method_name!r}, selection {self.selection!r})"
            )
        _check_bias(self.bias, self.calibration, list(self.verbalizer.words))
        given = [m.weight is not None for m in self.ensemble]
        if any(given) and not all(given):
            raise PromptLearningError("give every ensemble member a weight, or none (then: ensemble_weighting)")
        members = self.members()
        labels = set(self.verbalizer.words)
        for i, member in enumerate(members):
            if set(member.verbalizer.words) != labels:
                raise PromptLearningError(
                    f"ensemble member {i} has labels {sorted(member.verbalizer.words)}, the classifier has "
                    f"{sorted(labels)}: every member must predict the same labels"
                )
        return self

    @property
    def method_name(self) -> str:
        if self.method == "auto":
            return "icl" if self.shots else "zero-shot"
        return self.method

    def members(self) -> list[ClassifierSpec]:
        """Each ensemble member as a whole spec (the fields around it, changed by the member)."""
        base = self.model_dump(exclude={"ensemble", "ensemble_weighting"})
        out = []
        for member in self.ensemble:
            changes = member.model_dump(exclude={"weight"}, exclude_none=True)
            if "calibration" in changes and "bias" not in changes:
                changes["bias"] = None  # the base's frozen bias belongs to the base's calibration
            out.append(ClassifierSpec(**{**base, **changes}))
        return out

    def build_template(self) -> PromptTemplate:
        return PromptTemplate(**self.template.model_dump())

    def build_verbalizer(self) -> Verbalizer:
        words = self.verbalizer
        return Verbalizer(words.words, word_score=words.word_score, aggregate=words.aggregate)


def _check_bias(bias: dict[str, float] | None, calibration: str, labels: list[str]) -> None:
    if bias is None:
        return
    if calibration == "none":
        raise PromptLearningError("a calibration bias needs a calibration (contextual, domain or batch), not 'none'")
    if set(bias) != set(labels):
        raise PromptLearningError(f"the calibration bias has labels {sorted(bias)}, the classifier {sorted(labels)}")
    if any(not value > 0 for value in bias.values()):
        raise PromptLearningError("every share of a calibration bias must be > 0")


def calibration_of(calibrate: bool | None, calibration: str | None) -> str:
    """The one spelling, from a task file's ``calibrate`` (older files) and ``calibration``."""
    if calibrate is False:
        return "none"
    if calibrate is True and calibration in (None, "none"):
        return "contextual"
    return calibration or "none"


def build_classifier(spec: ClassifierSpec, model: LanguageModel, embedder: LanguageModel | None = None) -> Any:
    """The classifier ``spec`` describes, over ``model`` (not fitted: call ``fit(pool)``): a
    ``PromptClassifier``, in ``Calibrated`` unless calibration is ``none``, in ``OrderingEnsemble``
    when ``orderings > 1``; with ``ensemble`` members, a :class:`PromptEnsemble` of those."""
    if spec.ensemble:
        shared = SharedScores(model)
        members = [_single_classifier(member, shared, embedder) for member in spec.members()]
        weights = [m.weight for m in spec.ensemble] if spec.ensemble[0].weight is not None else None
        return PromptEnsemble(members, weights=weights, weighting=spec.ensemble_weighting, shared=shared)
    return _single_classifier(spec, model, embedder)


def _single_classifier(spec: ClassifierSpec, model: LanguageModel, embedder: LanguageModel | None) -> Any:
    classifier: Any = PromptClassifier(
        model, spec.build_template(), spec.build_verbalizer(), method=spec.method_name, shots=spec.shots,
        selection=spec.selection, label_field=spec.label_field, seed=spec.seed, embedder=embedder or spec.embedder,
        max_length=spec.max_length, scoring=spec.scoring,
    )  # fmt: skip
    if spec.calibration != "none":
        classifier = Calibrated(classifier, spec.calibration, content_free_inputs=spec.content_free, seed=spec.seed,
                                bias=spec.bias)  # fmt: skip
    if spec.orderings > 1:
        classifier = OrderingEnsemble(classifier, spec.orderings, seed=spec.seed)
    return classifier


# ----------------------------------------------------------------------------- chain-of-thought


class ExemplarSpec(BaseModel):
    """A worked example shown to few-shot chain-of-thought: question, reasoning, answer (and any
    other field the template reads)."""

    model_config = ConfigDict(extra="allow")

    question: str
    rationale: str = ""
    answer: str


class SolverSettings(_Spec):
    """A chain-of-thought solver's settings, all but its exemplars (a task file takes those from a
    file or its training set; see :class:`SolverSpec`)."""

    mode: Literal["few-shot-cot", "zero-shot-cot", "direct"] = "few-shot-cot"
    template: str = "Q: {{ question }}\nA:"
    answer_type: Literal["numeric", "multiple_choice"] = "numeric"
    self_consistency: int = Field(1, ge=1, description="samples per question; > 1 votes over sampled rationales")
    temperature: float | None = Field(None, ge=0, description="default: 0 (greedy) for 1 sample, 0.7 for more")
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)
    max_new_tokens: int = Field(256, ge=1)
    stop: list[str] = Field(default_factory=lambda: list(DEFAULT_STOP))
    trigger: str = "Let's think step by step."
    answer_trigger: str = "Therefore, the answer (arabic numerals) is"
    calculator: bool = Field(False, description="evaluate <<expr= calls while decoding (GSM8K-style rationales)")
    seed: int = 0

    def solver_settings(self) -> dict[str, Any]:
        """These settings alone (without whatever else a subclass, such as a task file, holds)."""
        return {name: getattr(self, name) for name in SolverSettings.model_fields}


class SolverSpec(SolverSettings):
    """A chain-of-thought solver (with self-consistency when ``self_consistency > 1``), on every
    surface alike: a ``type: cot`` task file, the body of ``/v1/solve``, ``promptlearning cot``."""

    exemplars: list[ExemplarSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> SolverSpec:
        check_cot_settings(
            mode=self.mode, exemplars=self.shown_exemplars(), n=self.self_consistency,
            temperature=self.temperature or 0.0, top_p=self.top_p, top_k=self.top_k,
            max_new_tokens=self.max_new_tokens, stop=self.stop,
        )  # fmt: skip
        PromptTemplate(self.template)
        return self

    def shown_exemplars(self) -> list[dict[str, str]]:
        """The exemplars the prompt shows (none in zero-shot-cot)."""
        return [e.model_dump() for e in self.exemplars] if self.mode != "zero-shot-cot" else []


def build_solver(spec: SolverSpec, model: LanguageModel, *, batch_size: int | None = None) -> Any:
    """The solver ``spec`` describes: a :class:`ChainOfThought`, in :class:`SelfConsistency` when
    ``self_consistency > 1`` (sampled at ``temperature``, default 0.7; one sample is greedy unless a
    temperature is given)."""
    extractors = numeric_extractors() if spec.answer_type == "numeric" else multiple_choice_extractors()
    sampled = spec.self_consistency > 1
    cot = ChainOfThought(
        model, mode=spec.mode, exemplars=spec.shown_exemplars(), template=spec.template,
        temperature=0.0 if sampled else spec.temperature or 0.0, top_p=spec.top_p, top_k=spec.top_k,
        max_new_tokens=spec.max_new_tokens, stop=spec.stop, trigger=spec.trigger, answer_trigger=spec.answer_trigger,
        extractors=extractors, seed=spec.seed, batch_size=batch_size, calculator=spec.calculator,
    )  # fmt: skip
    if not sampled:
        return cot
    return SelfConsistency(
        cot, spec.self_consistency, temperature=0.7 if spec.temperature is None else spec.temperature
    )


# ----------------------------------------------------------------------------- prompted generation


class DecodingSpec(_Spec):
    """How answers are generated: greedy unless ``temperature`` > 0."""

    max_new_tokens: int = Field(64, ge=1)
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)
    stop: list[str] = Field(default_factory=lambda: ["\n"])
    calculator: bool = Field(False, description="evaluate <<expr= calls while decoding (hf backend)")

    def generation_config(self, seed: int = 0) -> GenerationConfig:
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
            stop=list(self.stop), seed=seed, calculator=self.calculator,
        )  # fmt: skip


class GeneratorSpec(_Spec):
    """A prompted generator (QA, summarization, translation, dialogue), on every surface alike: a
    ``type: generate`` task file and the body of ``/v1/generate``."""

    template: TemplateSpec
    target_field: str = Field("answer", description="the answer text (or list of texts) shown in demonstrations")
    shots: int = Field(0, ge=0)
    selection: GenerationSelection = Field("random", description=f"demonstrations: {', '.join(GENERATION_SELECTIONS)}")
    embedder: str = Field("minilm-l6", description="knn: an embedded encoder or a sentence-transformers directory")
    decoding: DecodingSpec = Field(default_factory=DecodingSpec)
    postprocess: list[PostprocessStep] = Field(
        default_factory=lambda: ["strip"], description="applied in order to each output"
    )
    answer_regex: str | None = Field(None, description="keep the first group (or the match) when it matches")
    seed: int = 0

    @model_validator(mode="after")
    def _consistent(self) -> GeneratorSpec:
        check_postprocess(self.postprocess, self.answer_regex)
        self.decoding.generation_config(self.seed)
        self.build_template()
        return self

    def build_template(self) -> PromptTemplate:
        return PromptTemplate(**self.template.model_dump())


def build_generator(
    spec: GeneratorSpec, model: LanguageModel, *, embedder: LanguageModel | None = None, batch_size: int | None = None
) -> PromptGenerator:
    """The generator ``spec`` describes, over ``model`` (not fitted: call ``fit(pool)``)."""
    return PromptGenerator(
        model, spec.build_template(), target_field=spec.target_field, shots=spec.shots, selection=spec.selection,
        config=spec.decoding.generation_config(spec.seed), steps=spec.postprocess, regex=spec.answer_regex,
        seed=spec.seed, batch_size=batch_size, embedder=embedder or spec.embedder,
    )  # fmt: skip
