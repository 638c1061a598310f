"""Calibration of label distributions: estimate the prompt's bias ``p_bias``, then use ``p / p_bias``.

Three ways to estimate the bias, all correcting with ``W = diag(p_bias)^-1``, ``b = 0``:

* ``contextual`` (Zhao et al. 2021, "Calibrate Before Use"): the mean label distribution of the
  prompt filled with content-free inputs ("N/A", "", "[MASK]");
* ``domain`` (Fei et al. 2023, "Mitigating Label Biases for In-context Learning"): content-free
  inputs made of random words from the task's own texts, as long as a typical input;
* ``batch`` (Zhou et al. 2024, "Batch Calibration"): the mean label distribution over the
  unlabelled examples being predicted. The mean of a handful of examples is mostly those examples'
  own labels (one example calibrates to a uniform distribution), so a batch smaller than
  ``MIN_BATCH`` falls back to ``contextual`` calibration, with a warning.

:class:`Calibrated` wraps any classifier with ``predict(examples, demonstrations=…)``: the bias is
estimated with the same demonstrations each example was shown (per example for kNN demonstrations).
"""

from __future__ import annotations

import random
import statistics
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from promptlearning.errors import PromptLearningError
from promptlearning.methods.base import ClassifierWrapper, Prediction
from promptlearning.prompts.examples import Example, as_examples

CONTENT_FREE_INPUTS = ("N/A", "", "[MASK]")
CALIBRATIONS = ("contextual", "domain", "batch")
MIN_BATCH = 16  # examples a batch-calibration estimate needs; smaller batches use contextual calibration


def domain_content_free_inputs(texts: Sequence[str], *, n: int = 20, seed: int = 0) -> list[str]:
    """Random-word strings drawn from ``texts``, each as long (in words) as a typical text."""
    words = [w for text in texts for w in text.split()]
    if not words:
        return list(CONTENT_FREE_INPUTS)
    length = max(1, round(statistics.median(len(text.split()) for text in texts)))
    rng = random.Random(seed)
    return [" ".join(rng.choices(words, k=length)) for _ in range(n)]


def mean_distribution(distributions: np.ndarray) -> np.ndarray:
    """The mean of ``[row, label]`` distributions, renormalised: a calibration bias (the content-free
    inputs' rows, or a batch's)."""
    mean = np.asarray(distributions, dtype=float).mean(axis=0)
    return mean / mean.sum()


def calibrate_rows(distributions: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Each ``[row, label]`` distribution divided by ``bias`` and renormalised (the calibration of every
    method here; search applies it to whole score matrices at once)."""
    scaled = np.asarray(distributions, dtype=float) / np.maximum(np.asarray(bias, dtype=float)[None, :], 1e-12)
    return scaled / scaled.sum(axis=1, keepdims=True)


def content_free_distribution(distributions: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean label distribution over the content-free inputs, renormalised."""
    labels = list(distributions[0])
    mean = mean_distribution(np.array([[d[label] for label in labels] for d in distributions]))
    return dict(zip(labels, mean.tolist(), strict=True))


def calibrate(probabilities: Mapping[str, float], content_free: Mapping[str, float]) -> dict[str, float]:
    """Divide by the content-free distribution and renormalise."""
    labels = list(probabilities)
    row = calibrate_rows(
        np.array([[probabilities[label] for label in labels]]), np.array([content_free[x] for x in labels])
    )
    return dict(zip(labels, row[0].tolist(), strict=True))


class Calibrated(ClassifierWrapper):
    """A classifier whose label distributions are divided by an estimate of the prompt's bias.

    ``calibration`` is ``contextual``, ``domain`` or ``batch`` (see the module docstring);
    ``content_free_inputs`` are the contextual inputs; ``min_batch`` is the smallest ``predict`` call
    batch calibration estimates from. ``bias`` (label -> share), when given, is used instead of any
    estimate: a frozen calibration, as a search winner keeps its dev estimate.
    """

    def __init__(
        self,
        classifier: Any,
        calibration: str = "contextual",
        *,
        content_free_inputs: Sequence[str] = CONTENT_FREE_INPUTS,
        min_batch: int = MIN_BATCH,
        seed: int = 0,
        bias: Mapping[str, float] | None = None,
    ) -> None:
        if calibration not in CALIBRATIONS:
            raise PromptLearningError(f"unknown calibration {calibration!r}; use one of {', '.join(CALIBRATIONS)}")
        super().__init__(classifier)
        self.calibration = calibration
        self.content_free_inputs = list(content_free_inputs)
        self.min_batch = min_batch
        self.seed = seed
        self.frozen_bias = dict(bias) if bias is not None else None
        self._bias: dict[tuple[int, ...], dict[str, float]] = {}  # per set of demonstrations

    def fit(self, train: Iterable[Example] = ()) -> Calibrated:
        self.classifier.fit(train)
        self._bias.clear()
        if self.calibration == "domain":
            self.content_free_inputs = self._domain_inputs(self.classifier.pool)
        return self

    def _domain_inputs(self, examples: Sequence[Example]) -> list[str]:
        fields = self.classifier.template.input_fields
        texts = [str(ex[f]) for ex in examples for f in fields if isinstance(ex.get(f), str)]
        return domain_content_free_inputs(texts, seed=self.seed) if texts else []

    def predict(
        self,
        examples: Iterable[Example],
        *,
        demonstrations: Sequence[Sequence[int]] | None = None,
        progress: bool | None = None,
    ) -> list[Prediction]:
        examples = as_examples(examples, "predict")
        raw = self.classifier.predict(examples, demonstrations=demonstrations, progress=progress)
        biases = self.biases(examples, raw)
        out = []
        for prediction, bias in zip(raw, biases, strict=True):
            probabilities = calibrate(prediction.probabilities, bias)
            label = max(probabilities, key=probabilities.__getitem__)
            out.append(Prediction(label, probabilities, prediction.label_scores, prediction.demonstrations))
        return out

    def biases(self, examples: Sequence[Example], raw: Sequence[Prediction]) -> list[dict[str, float]]:
        """The label distribution each prediction is calibrated against."""
        if self.frozen_bias is not None:
            return [self.frozen_bias] * len(raw)
        if self.calibration == "batch":
            if len(raw) >= self.min_batch:
                return [content_free_distribution([p.probabilities for p in raw])] * len(raw)
            warnings.warn(
                f"batch calibration needs at least {self.min_batch} examples per predict() call to estimate the "
                f"label bias; {len(raw)} given, so contextual calibration (content-free inputs) is used instead",
                UserWarning,
                stacklevel=3,
            )
        if not self.content_free_inputs:  # domain calibration with no training pool: the inputs' own words
            self.content_free_inputs = self._domain_inputs(examples)
        self._estimate([p.demonstrations for p in raw])
        return [self._bias[tuple(p.demonstrations)] for p in raw]

    def _estimate(self, demonstration_sets: Sequence[Sequence[int]]) -> None:
        """The content-free distribution of every new set of demonstrations, from one ``predict`` call."""
        new = list(dict.fromkeys(tuple(d) for d in demonstration_sets if tuple(d) not in self._bias))
        if not new:
            return
        fields = self.classifier.template.input_fields
        inputs = [dict.fromkeys(fields, text) for text in self.content_free_inputs]
        predictions = self.classifier.predict(
            [cf for _ in new for cf in inputs], demonstrations=[list(demos) for demos in new for _ in inputs]
        )
        n = len(inputs)
        for i, demos in enumerate(new):
            self._bias[demos] = content_free_distribution([p.probabilities for p in predictions[i * n : (i + 1) * n]])
