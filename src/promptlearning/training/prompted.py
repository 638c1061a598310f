"""Prompt programs without trained weights: what ``promptlearning search`` finds.

A prompted program is a base model plus a classifier spec (template, label words, calibration with a
frozen bias, scoring; or an ensemble of such prompts) and fixed demonstrations, saved as a
``program.json`` with ``objective: prompt`` and nothing else::

    program = load_program("runs/sst2-search/program")   # loads the base model it names
    program.predict([{"text": "a gorgeous film"}])

The bias is the mean label distribution of the prompt on the search's dev split (batch calibration,
estimated once and kept), so a program served one request at a time predicts as it did on dev.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from promptlearning.io import write_json_atomically
from promptlearning.methods.classifier import Prediction
from promptlearning.methods.spec import ClassifierSpec, build_classifier
from promptlearning.models.interface import LanguageModel
from promptlearning.prompts.examples import as_examples


def demonstration_rows(spec: Any) -> list[dict[str, Any]]:
    """The program's demonstrations as labelled rows (``{"example": …, "answer": …}`` in the spec)."""
    return [{**d["example"], spec.label_field: d["answer"]} for d in spec.demonstrations]


class PromptedProgram:
    """A classifier made of a prompt alone: template, label words, demonstrations, calibration bias."""

    def __init__(self, spec: Any, model: LanguageModel) -> None:
        self.spec = spec
        self.model = model
        self.classifier = build_classifier(classifier_spec(spec), model).fit(demonstration_rows(spec))

    @property
    def labels(self) -> list[str]:
        return list(self.spec.labels)

    def predict(
        self, examples: Iterable[Mapping[str, Any]], *, batch_size: int = 16, progress: bool | None = False
    ) -> list[Prediction]:
        """A :class:`Prediction` per example, calibrated by the saved bias (when there is one)."""
        examples = as_examples(examples, "predict")
        if not examples:
            return []
        return self.classifier.predict(examples, progress=progress)

    def evaluate(self, examples: Sequence[Mapping[str, Any]], *, progress: bool | None = False) -> dict[str, float]:
        """Accuracy and macro-F1 on labelled examples."""
        from promptlearning.evaluation.metrics import classification_metrics

        predictions = self.predict(examples, progress=progress)
        gold = [str(e[self.spec.label_field]) for e in examples]
        return classification_metrics(gold, predictions, self.labels)

    def save(self, directory: str | Path, *, metrics: Mapping[str, Any] | None = None) -> Path:
        """Write ``program.json`` (the whole program: there are no weights)."""
        return save_prompted_program(self.spec, directory, metrics=metrics)


def classifier_spec(spec: Any) -> ClassifierSpec:
    """The classifier a prompt program stores: its whole spec, or (programs written before it was
    stored) its template, words and demonstrations, all shown in order, and the program's bias."""
    if spec.classifier is not None:
        return ClassifierSpec(**spec.classifier)
    words = spec.verbalizer
    shots = len(spec.demonstrations)
    frozen = {"calibration": "batch", "bias": spec.bias} if spec.bias else {}
    return ClassifierSpec(
        template=spec.template,
        verbalizer={"words": words["label_words"], **{k: v for k, v in words.items() if k != "label_words"}},
        shots=shots, selection="first", label_field=spec.label_field, max_length=spec.max_length, **frozen,
    )  # fmt: skip


def program_from_spec(
    classifier: ClassifierSpec, model: str, pool: Sequence[Mapping[str, Any]] = (), *, dtype: str = "float32"
) -> Any:
    """The :class:`ProgramSpec` of a weightless program: ``classifier`` over ``model``, ``pool`` its
    demonstrations (labelled rows) as the classifier draws them."""
    from promptlearning.training.program import ProgramSpec

    field = classifier.label_field
    demonstrations = [{"example": {k: v for k, v in row.items() if k != field}, "answer": str(row[field])}
                      for row in pool]  # fmt: skip
    words = classifier.verbalizer
    return ProgramSpec(
        objective="prompt", model=model, labels=list(words.words), template=classifier.template.model_dump(),
        verbalizer={"label_words": words.words, "word_score": words.word_score, "aggregate": words.aggregate},
        demonstrations=demonstrations, label_field=field, dtype=dtype,
        max_length=classifier.max_length or 256, classifier=classifier.model_dump(mode="json"),
    )  # fmt: skip


def save_prompted_program(spec: Any, directory: str | Path, *, metrics: Mapping[str, Any] | None = None) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if metrics is not None:
        spec.metrics = dict(metrics)
    write_json_atomically(directory / "program.json", asdict(spec))
    return directory


def load_prompted_program(spec: Any, *, device: str = "auto") -> PromptedProgram:
    """Load the base model a prompted program names and rebuild its classifier."""
    from promptlearning.models import check_text_model, load_model

    check_text_model(spec.model)
    return PromptedProgram(spec, load_model(spec.model, pull=True, device=device, dtype=spec.dtype))
