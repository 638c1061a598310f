"""Predicting with a saved program over a list of examples: the rows ``promptlearning predict``
writes, and the accuracy on the examples that carry a gold label."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from promptlearning.prompts.examples import Example


@dataclass
class ProgramPredictions:
    """One JSON-ready row per example (``input``, ``label``, ``probabilities``; for NER the tags), and
    the accuracy over the examples with a gold label when every example has one."""

    rows: list[dict[str, Any]]
    accuracy: float | None


def predict_examples(
    program: Any, examples: Sequence[Example], *, batch_size: int = 32, progress: bool | None = None
) -> ProgramPredictions:
    """Run ``program`` (a :class:`~promptlearning.training.program.PromptProgram`) on ``examples``."""
    predictions = program.predict(examples, batch_size=batch_size, progress=progress)
    rows = []
    for example, prediction in zip(examples, predictions, strict=True):
        fields = dict(prediction) if isinstance(prediction, dict) else {
            "label": prediction.label, "probabilities": prediction.probabilities,
        }  # fmt: skip
        rows.append({"input": dict(example), **fields})
    gold_field = program.spec.label_field
    accuracy = None
    if examples and program.spec.objective != "ner" and all(gold_field in e for e in examples):
        correct = sum(str(e[gold_field]) == p.label for e, p in zip(examples, predictions, strict=True))
        accuracy = correct / len(examples)
    return ProgramPredictions(rows, accuracy)
