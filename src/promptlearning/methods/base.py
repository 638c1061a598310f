"""The interface every method shares, in the spirit of scikit-learn estimators and DSPy modules.

* ``fit(examples)`` learns what the method needs from labelled examples (demonstrations, a bias
  estimate, weights) and returns the method;
* ``predict(inputs)`` answers each input;
* ``evaluate(examples)`` predicts and scores against the gold answers.

Methods compose: a wrapper (``Calibrated``, ``OrderingEnsemble``, ``SelfConsistency``) takes a
method and is one itself, so a task builds ``OrderingEnsemble(Calibrated(PromptClassifier(...)))``
instead of passing flags.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from promptlearning.errors import EmptyDataError, PromptLearningError
from promptlearning.prompts.examples import Example, as_examples


@runtime_checkable
class Method(Protocol):
    """Anything with ``fit`` / ``predict`` / ``evaluate``."""

    def fit(self, examples: Iterable[Example] = ()) -> Method: ...

    def predict(self, inputs: Iterable[Example], **options: Any) -> list[Any]: ...

    def evaluate(self, examples: Iterable[Example], **options: Any) -> Any: ...


@dataclass
class Prediction:
    """The predicted label of one example, with the scores behind it."""

    label: str
    probabilities: dict[str, float]  # over labels, after calibration when enabled
    label_scores: dict[str, float]  # aggregated log-scores from the verbalizer (before calibration)
    demonstrations: list[int] = field(default_factory=list)  # indices into the training pool


@dataclass
class Evaluation:
    """Metrics (see :func:`classification_metrics`), predictions and gold labels of one evaluation."""

    metrics: dict[str, Any]
    predictions: list[Prediction]
    gold: list[str]


class ClassifierMixin:
    """``evaluate`` for any classifier with ``predict``, ``labels`` and ``label_field``."""

    label_field: str

    @property
    def labels(self) -> list[str]:  # pragma: no cover - overridden
        raise NotImplementedError

    def check_gold(self, labels: Sequence[str]) -> None:
        """Every gold label must be one the classifier can predict (the verbalizer says which)."""

    def predict(self, inputs: Iterable[Example], **options: Any) -> list[Prediction]:  # pragma: no cover
        raise NotImplementedError

    def evaluate(self, examples: Iterable[Example], *, progress: bool | None = None) -> Evaluation:
        """Predict and compare with the gold labels; returns metrics, predictions and timing."""
        from promptlearning.evaluation.metrics import classification_metrics

        examples = as_examples(examples, "evaluate")
        if not examples:
            raise EmptyDataError("cannot evaluate on an empty dataset")
        if any(self.label_field not in ex for ex in examples):
            raise PromptLearningError(f"every evaluation example needs a {self.label_field!r} field")
        gold = [str(ex[self.label_field]) for ex in examples]
        self.check_gold(gold)
        start = time.perf_counter()
        predictions = self.predict(examples, progress=progress)
        seconds = time.perf_counter() - start
        metrics = classification_metrics(gold, predictions, self.labels)
        metrics["examples_per_second"] = len(examples) / seconds
        metrics["seconds"] = seconds
        return Evaluation(metrics=metrics, predictions=predictions, gold=gold)


class ClassifierWrapper(ClassifierMixin):
    """A classifier around another one (``Calibrated``, ``OrderingEnsemble``): labels, gold checks and
    every attribute it does not define (model, template, verbalizer, pool …) come from the wrapped one."""

    def __init__(self, classifier: Any) -> None:
        self.classifier = classifier

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["classifier"], name)

    @property
    def labels(self) -> list[str]:
        return self.classifier.labels

    @property
    def label_field(self) -> str:  # type: ignore[override]
        return self.classifier.label_field

    def check_gold(self, labels: Sequence[str]) -> None:
        self.classifier.check_gold(labels)


def mean_distribution(distributions: Sequence[dict[str, float]], *, normalise: bool = True) -> dict[str, float]:
    """The per-label mean of several distributions (renormalised unless ``normalise=False``)."""
    if len(distributions) == 1:
        return dict(distributions[0])
    mean = {label: sum(d[label] for d in distributions) / len(distributions) for label in distributions[0]}
    if normalise:
        total = sum(mean.values())
        mean = {label: value / total for label, value in mean.items()}
    return mean
