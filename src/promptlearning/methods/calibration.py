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
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Mapping, Sequence

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


def content_free_distribution(distributions: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean label distribution over the content-free inputs, renormalised."""
    labels = list(distributions[0])
    mean = {label: sum(d[label] for d in distributions) / len(distributions) for label in labels}
    total = sum(mean.values())
    return {label: value / total for label, value in mean.items()}


def calibrate(probabilities: Mapping[str, float], content_free: Mapping[str, float]) -> dict[str, float]:
    """Divide by the content-free distribution and renormalise."""
    scaled = {label: p / max(content_free[label], 1e-12) for label, p in probabilities.items()}
    total = sum(scaled.values())
    return {label: value / total for label, value in scaled.items()}
