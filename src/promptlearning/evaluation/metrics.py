"""Classification metrics, computed with scikit-learn (plus expected calibration error)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from promptlearning.errors import PromptLearningError


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    """ECE: the gap between confidence and accuracy, averaged over equal-width confidence bins.

    Written here because scikit-learn has only the reliability curve, not the ECE itself.
    """
    confidences = np.asarray(confidences, dtype=float)
    correct = np.asarray(correct, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidences, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            ece += members.mean() * abs(confidences[members].mean() - correct[members].mean())
    return float(ece)


def reliability_bins(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> list[dict[str, float]]:
    """Per-bin mean confidence, accuracy and count (the data of a reliability diagram)."""
    confidences = np.asarray(confidences, dtype=float)
    correct = np.asarray(correct, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidences, edges[1:-1], right=True), 0, bins - 1)
    out = []
    for b in range(bins):
        members = which == b
        out.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "count": int(members.sum()),
                "confidence": float(confidences[members].mean()) if members.any() else 0.0,
                "accuracy": float(correct[members].mean()) if members.any() else 0.0,
            }
        )
    return out


HEADLINE_METRICS = ("accuracy", "macro_f1", "semeval_macro_f1")


def headline_metric(name: str, labels: Sequence[str]) -> Callable[[Sequence[str], Sequence[str]], float]:
    """A task's headline metric, a fraction, of predicted against gold labels: the one implementation
    that evaluations report and prompt search selects by."""
    labels = list(labels)
    if name == "accuracy":
        return lambda gold, predicted: float(accuracy_score(gold, predicted))
    if name == "macro_f1":
        return lambda gold, predicted: float(f1_score(gold, predicted, labels=labels, average="macro", zero_division=0))
    if name == "semeval_macro_f1":
        return lambda gold, predicted: semeval2010_macro_f1(list(gold), list(predicted))["semeval_macro_f1"] / 100
    raise PromptLearningError(f"unknown metric {name!r}; use one of {', '.join(HEADLINE_METRICS)}")


def classification_metrics(gold: Sequence[str], predictions: Sequence[Any], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1, confusion matrix and ECE."""
    predicted = [p.label for p in predictions]
    labels = list(labels)
    precision, recall, f1, support = precision_recall_fscore_support(gold, predicted, labels=labels, zero_division=0)
    confidences = [max(p.probabilities.values()) for p in predictions]
    correct = [g == p for g, p in zip(gold, predicted, strict=True)]
    return {
        "accuracy": headline_metric("accuracy", labels)(gold, predicted),
        "macro_f1": headline_metric("macro_f1", labels)(gold, predicted),
        "ece": expected_calibration_error(confidences, correct),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
        },
        "confusion_matrix": {
            "labels": labels,
            "matrix": confusion_matrix(gold, predicted, labels=labels).tolist(),
        },
        "reliability": reliability_bins(confidences, correct),
        "num_examples": len(gold),
    }


def _relation_type(label: str) -> str:
    """``Cause-Effect(e2,e1)`` -> ``Cause-Effect``; ``Other`` and unparsable answers stay as they are."""
    return label.split("(", 1)[0].strip()


def semeval2010_macro_f1(gold: Sequence[str], predicted: Sequence[str], *, other: str = "Other") -> dict[str, Any]:
    """The official SemEval-2010 Task 8 score: macro-F1 over the relation types except ``Other``,
    direction taken into account ("(9+1)-way"). A prediction counts for its relation type's precision
    whatever its direction, and is correct only with the right direction.

    Written here: the official scorer is a Perl script, and scikit-learn's F1 cannot count a wrong
    direction against the right type.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"{len(predicted)} predictions for {len(gold)} examples")
    types = sorted({_relation_type(g) for g in gold} - {other})
    per_type: dict[str, dict[str, float]] = {}
    for kind in types:
        correct = sum(g == p for g, p in zip(gold, predicted, strict=True) if _relation_type(g) == kind)
        predicted_as = sum(_relation_type(p) == kind for p in predicted)
        actual = sum(_relation_type(g) == kind for g in gold)
        precision = correct / predicted_as if predicted_as else 0.0
        recall = correct / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_type[kind] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}
    macro = sum(t["f1"] for t in per_type.values()) / len(per_type) if per_type else 0.0
    return {"semeval_macro_f1": 100 * macro, "per_relation": per_type}
