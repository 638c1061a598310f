"""Prompt-based classification: zero-shot and in-context learning, with optional calibration.

A :class:`PromptClassifier` renders each example with a template (after ``k`` demonstrations for
``icl``), asks the model for the log-likelihood of every label word, aggregates the words of each
label with the verbalizer and predicts the most probable label. Everything goes to the model as one
``loglikelihood`` call, so the backend can share work (label words of one prompt, demonstrations of
all prompts).
"""

from __future__ import annotations

import random
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from promptlearning.errors import PromptLearningError
from promptlearning.methods.calibration import (
    CALIBRATIONS,
    CONTENT_FREE_INPUTS,
    MIN_BATCH,
    calibrate,
    content_free_distribution,
    domain_content_free_inputs,
)
from promptlearning.models.interface import LanguageModel, LoglikelihoodRequest
from promptlearning.prompts.demonstrations import (
    DemonstrationError,
    NearestNeighbours,
    Selection,
    select_fixed,
)
from promptlearning.prompts.examples import Example, as_examples
from promptlearning.prompts.template import Demonstration, PromptTemplate, split_at_blank
from promptlearning.prompts.verbalizer import Verbalizer, label_distribution

METHODS = ("zero-shot", "icl")
SELECTIONS = ("random", "balanced", "first", "knn")


class EmptyDataError(PromptLearningError):
    """A dataset (or split) with no examples."""


@dataclass
class Prediction:
    """The predicted label of one example, with the scores behind it."""

    label: str
    probabilities: dict[str, float]  # over labels, after calibration when enabled
    label_scores: dict[str, float]  # aggregated log-scores from the verbalizer (before calibration)
    demonstrations: list[int] = field(default_factory=list)  # indices into the training pool


def check_classifier_settings(*, method: str, shots: int, selection: str, calibration: str, orderings: int) -> None:
    """The constructor's checks of its settings, callable before any model is loaded."""
    if method not in METHODS:
        raise PromptLearningError(f"unknown method {method!r}; known methods: {', '.join(METHODS)}")
    if selection not in SELECTIONS:
        raise DemonstrationError(f"unknown selection {selection!r}; use one of {', '.join(SELECTIONS)}")
    if not isinstance(shots, int) or isinstance(shots, bool) or shots < 0:
        raise DemonstrationError(f"shots must be a whole number >= 0, got {shots!r}")
    if method == "zero-shot" and shots:
        raise PromptLearningError(f"zero-shot takes no demonstrations (shots={shots}); use method 'icl'")
    if calibration not in CALIBRATIONS:
        raise PromptLearningError(f"unknown calibration {calibration!r}; use one of {', '.join(CALIBRATIONS)}")
    if method == "icl" and shots < 1:
        raise DemonstrationError(f"icl needs shots >= 1, got {shots}")
    if orderings < 1:
        raise PromptLearningError(f"orderings must be >= 1, got {orderings}")
    if orderings > 1 and (method != "icl" or selection == "knn"):
        raise PromptLearningError(
            "orderings > 1 averages orderings of fixed demonstrations: it needs method 'icl' with "
            f"selection random, balanced or first (got method {method!r}, selection {selection!r})"
        )


class PromptClassifier:
    """Turn a language model into a classifier with a template and a verbalizer.

    ``method`` is ``"zero-shot"`` or ``"icl"`` (``shots`` demonstrations chosen by ``selection``:
    ``random``, ``balanced``, ``first`` or ``knn``). ``calibrate=True`` corrects the label
    distribution; ``calibration`` says how the bias is estimated: ``contextual`` (content-free
    inputs), ``domain`` (random in-domain words) or ``batch`` (mean over the predicted examples; a
    ``predict`` call with fewer than ``min_batch`` examples falls back to ``contextual``, with a warning).
    ``orderings > 1`` averages the calibrated label distributions of that many orderings of the same
    fixed demonstrations (the order of demonstrations moves small models a lot; Lu et al. 2022).
    Call :meth:`fit` with the training pool (may be empty for zero-shot), then :meth:`predict`.
    """

    def __init__(
        self,
        model: LanguageModel,
        template: PromptTemplate,
        verbalizer: Verbalizer,
        *,
        method: str = "zero-shot",
        shots: int = 0,
        selection: Selection = "random",
        calibrate: bool = False,
        calibration: str = "contextual",
        content_free_inputs: Sequence[str] = CONTENT_FREE_INPUTS,
        label_field: str = "label",
        seed: int = 0,
        embedder: LanguageModel | None = None,
        orderings: int = 1,
        min_batch: int = MIN_BATCH,
    ) -> None:
        check_classifier_settings(
            method=method, shots=shots, selection=selection, calibration=calibration, orderings=orderings
        )
        if not isinstance(template, PromptTemplate):
            raise PromptLearningError(f"template must be a PromptTemplate, got {type(template).__name__}")
        if not isinstance(verbalizer, Verbalizer):
            raise PromptLearningError(f"verbalizer must be a Verbalizer, got {type(verbalizer).__name__}")
        self.model = model
        self.template = template
        self.verbalizer = verbalizer
        self.method = method
        self.shots = shots
        self.selection = selection
        self.calibrate = calibrate
        self.calibration = calibration
        self.content_free_inputs = list(content_free_inputs)
        self.label_field = label_field
        self.seed = seed
        self.embedder = embedder
        self.orderings = orderings
        self.min_batch = min_batch
        self.pool: list[Example] = []
        self.fixed_demonstrations: list[int] = []
        self.demonstration_orderings: list[list[int]] = [[]]
        self.content_free: list[dict[str, float]] | None = None  # one per ordering
        self._neighbours: NearestNeighbours | None = None
        self._fitted = False

    # ------------------------------------------------------------------ fitting

    def fit(self, train: Iterable[Example] = ()) -> PromptClassifier:
        """Choose demonstrations from ``train`` (and embed it for kNN); estimate calibration."""
        self.pool = as_examples(train, "fit")
        if self.method == "icl":
            if not self.pool:
                raise EmptyDataError("icl needs a training pool to draw demonstrations from; it is empty")
            missing = [i for i, ex in enumerate(self.pool) if self.label_field not in ex]
            if missing:
                raise PromptLearningError(
                    f"training example {missing[0]} has no {self.label_field!r} field (fields: {sorted(self.pool[0])})"
                )
            self.verbalizer.check_labels(ex[self.label_field] for ex in self.pool)
            if self.uses_knn:
                if self.shots > len(self.pool):
                    raise DemonstrationError(
                        f"{self.shots} shots asked for, but the training pool has only {len(self.pool)} examples"
                    )
                self._neighbours = NearestNeighbours(
                    [self.template.render_input(ex) for ex in self.pool], self._embedder().embed
                )
            else:
                self.fixed_demonstrations = select_fixed(
                    self.pool, self.shots, self.selection, label_field=self.label_field, seed=self.seed
                )
        rng = random.Random(f"orderings-{self.seed}")
        self.demonstration_orderings = [self.fixed_demonstrations] + [
            rng.sample(self.fixed_demonstrations, len(self.fixed_demonstrations)) for _ in range(self.orderings - 1)
        ]
        self._fitted = True
        if self.calibrate and self.calibration == "domain":
            texts = [str(ex[f]) for ex in self.pool for f in self.template.input_fields if isinstance(ex.get(f), str)]
            self.content_free_inputs = domain_content_free_inputs(texts, seed=self.seed) if texts else []
        if self.calibrate and self.calibration != "batch" and self.content_free_inputs and not self.uses_knn:
            # kNN calibrates per example (its demonstrations differ), in predict()
            self.content_free = self._content_free_distributions(self.demonstration_orderings)
        return self

    @property
    def uses_knn(self) -> bool:
        return self.method == "icl" and self.selection == "knn"

    def _embedder(self) -> LanguageModel:
        if self.embedder is None:
            from promptlearning.models import load_model

            self.embedder = load_model("minilm-l6", pull=True)
        return self.embedder

    # ------------------------------------------------------------------ prompts

    def demonstrations(self, indices: Sequence[int]) -> list[Demonstration]:
        return [
            Demonstration(self.pool[i], self.verbalizer.answer(str(self.pool[i][self.label_field]))) for i in indices
        ]

    def prompt(self, example: Example, demonstration_indices: Sequence[int] = ()) -> str:
        """The prompt the model continues with a label word, shortened to fit the context window."""
        chat = self.model.apply_chat_template if self.template.mode == "chat" else None
        return self.template.render_to_fit(
            example,
            self.demonstrations(demonstration_indices),
            budget=self.model.max_length - self.answer_tokens,
            count_tokens=self.model.count_tokens,
            truncate=self.model.truncate,
            chat=chat,
        )

    @cached_property
    def answer_tokens(self) -> int:
        """Tokens to keep free after the prompt: the longest label word."""
        words = [w for ws in self.verbalizer.label_words.values() for w in ws]
        return max(self.model.count_tokens(self.template.answer_text(w)) for w in words)

    def _requests(self, prompts: Sequence[str]) -> list[LoglikelihoodRequest]:
        """Every label word of every prompt, in the blank of a cloze template or after the prompt."""
        out = []
        for prompt in prompts:
            context, suffix = split_at_blank(prompt)
            for words in self.verbalizer.label_words.values():
                for word in words:
                    answer = self.template.answer_text(word)
                    if context[-1:].isspace():  # the template spaces the blank itself: "it was {{ mask }}"
                        answer = answer.lstrip()
                    out.append(LoglikelihoodRequest(context, answer, suffix))
        return out

    def requests(self, examples: Iterable[Example]) -> list[LoglikelihoodRequest]:
        """The ``loglikelihood`` requests that :meth:`predict` sends for ``examples`` (first ordering)."""
        examples = as_examples(examples, "requests")
        if self._neighbours is not None:
            demo_sets = self._neighbours.select([self.template.render_input(ex) for ex in examples], self.shots)
        else:
            demo_sets = [self.demonstration_orderings[0]] * len(examples)
        return self._requests([self.prompt(ex, demos) for ex, demos in zip(examples, demo_sets, strict=True)])

    def _distributions(self, prompts: Sequence[str], progress: bool | None = None) -> list[dict[str, Any]]:
        """Label scores and probabilities of each prompt, from one loglikelihood call."""
        results = self.model.loglikelihood(self._requests(prompts), progress=progress)
        out, position = [], 0
        for _ in prompts:
            per_label = {}
            for label, words in self.verbalizer.label_words.items():
                per_label[label] = results[position : position + len(words)]
                position += len(words)
            scores = self.verbalizer.label_scores(per_label)
            probabilities = label_distribution(scores)
            out.append({"scores": scores, "probabilities": probabilities})
        return out

    def _content_free_examples(self) -> list[dict[str, str]]:
        return [dict.fromkeys(self.template.input_fields, text) for text in self.content_free_inputs]

    def _content_free_distributions(self, demonstration_sets: Sequence[Sequence[int]]) -> list[dict[str, float]]:
        """The content-free label distribution for each set of demonstrations."""
        cf_examples = self._content_free_examples()
        prompts = [self.prompt(cf, demos) for demos in demonstration_sets for cf in cf_examples]
        distributions = self._distributions(prompts)
        n = len(cf_examples)
        return [
            content_free_distribution([d["probabilities"] for d in distributions[i * n : (i + 1) * n]])
            for i in range(len(demonstration_sets))
        ]

    # ------------------------------------------------------------------ prediction

    def predict(self, examples: Iterable[Example], *, progress: bool | None = None) -> list[Prediction]:
        """Predict a label for each example."""
        if not self._fitted:
            raise PromptLearningError("call fit(train) before predict (fit() with no pool for zero-shot)")
        examples = as_examples(examples, "predict")
        if not examples:
            raise EmptyDataError("nothing to predict: the example list is empty")
        n = len(examples)
        if self._neighbours is not None:
            queries = [self.template.render_input(ex) for ex in examples]
            orderings = [self._neighbours.select(queries, self.shots)]
        else:
            orderings = [[order] * n for order in self.demonstration_orderings]
        calibrated: list[list[dict[str, float]]] = []
        scores: list[list[dict[str, float]]] = []
        for position, demo_sets in enumerate(orderings):
            prompts = [self.prompt(ex, demos) for ex, demos in zip(examples, demo_sets, strict=True)]
            distributions = self._distributions(prompts, progress=progress)
            content_free = self._bias(examples, distributions, demo_sets, position)
            calibrated.append(
                [
                    calibrate(d["probabilities"], cf) if cf is not None else d["probabilities"]
                    for d, cf in zip(distributions, content_free, strict=True)
                ]
            )
            scores.append([d["scores"] for d in distributions])
        predictions = []
        for i in range(n):
            probabilities = _mean_distribution([per_ordering[i] for per_ordering in calibrated])
            label_scores = _mean_distribution([per_ordering[i] for per_ordering in scores], normalise=False)
            label = max(probabilities, key=probabilities.__getitem__)
            predictions.append(Prediction(label, probabilities, label_scores, list(orderings[0][i])))
        return predictions

    def _bias(
        self,
        examples: Sequence[Example],
        distributions: Sequence[dict[str, Any]],
        demo_sets: Sequence[Sequence[int]],
        ordering: int,
    ) -> list[dict[str, float] | None]:
        """The label distribution to calibrate each example against (None: no calibration)."""
        n = len(examples)
        if not self.calibrate:
            return [None] * n
        if self.calibration == "batch":
            if n >= self.min_batch:
                return [content_free_distribution([d["probabilities"] for d in distributions])] * n
            warnings.warn(
                f"batch calibration needs at least {self.min_batch} examples per predict() call to estimate the "
                f"label bias; {n} given, so contextual calibration (content-free inputs) is used instead",
                UserWarning,
                stacklevel=3,
            )
        if self.content_free is None:  # kNN, or domain inputs from the unlabelled examples
            if not self.content_free_inputs:
                texts = [
                    str(ex[f]) for ex in examples for f in self.template.input_fields if isinstance(ex.get(f), str)
                ]
                self.content_free_inputs = domain_content_free_inputs(texts, seed=self.seed)
            if self.uses_knn:
                return list(self._content_free_distributions(demo_sets))
            self.content_free = self._content_free_distributions(self.demonstration_orderings)
        return [self.content_free[ordering]] * n

    def evaluate(self, examples: Iterable[Example], *, progress: bool | None = None) -> Evaluation:
        """Predict and compare with the gold labels; returns metrics, predictions and timing."""
        from promptlearning.evaluation.metrics import classification_metrics

        examples = as_examples(examples, "evaluate")
        if not examples:
            raise EmptyDataError("cannot evaluate on an empty dataset")
        if any(self.label_field not in ex for ex in examples):
            raise PromptLearningError(f"every evaluation example needs a {self.label_field!r} field")
        gold = [str(ex[self.label_field]) for ex in examples]
        self.verbalizer.check_labels(gold)
        start = time.perf_counter()
        predictions = self.predict(examples, progress=progress)
        seconds = time.perf_counter() - start
        metrics = classification_metrics(gold, predictions, self.verbalizer.labels)
        metrics["examples_per_second"] = len(examples) / seconds
        metrics["seconds"] = seconds
        return Evaluation(metrics=metrics, predictions=predictions, gold=gold)


def _mean_distribution(distributions: Sequence[Mapping[str, float]], *, normalise: bool = True) -> dict[str, float]:
    if len(distributions) == 1:
        return dict(distributions[0])
    mean = {label: sum(d[label] for d in distributions) / len(distributions) for label in distributions[0]}
    if normalise:
        total = sum(mean.values())
        mean = {label: value / total for label, value in mean.items()}
    return mean


@dataclass
class Evaluation:
    """Metrics (see :func:`classification_metrics`), predictions and gold labels of one evaluation."""

    metrics: dict[str, Any]
    predictions: list[Prediction]
    gold: list[str]
