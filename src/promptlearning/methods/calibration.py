"""Contextual calibration (Zhao et al. 2021, "Calibrate Before Use").

The prompt is scored with content-free inputs ("N/A", "", "[MASK]") in place of the example; the
average label distribution ``p_cf`` measures the prompt's bias. Calibrated probabilities are
``p / p_cf``, renormalised (the paper's ``W = diag(p_cf)^-1``, ``b = 0``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

CONTENT_FREE_INPUTS = ("N/A", "", "[MASK]")


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
