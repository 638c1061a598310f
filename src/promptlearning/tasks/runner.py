"""Run a task: load data and model, build the classifier, evaluate, write the run directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptlearning.errors import PromptLearningError
from promptlearning.evaluation.runs import write_run
from promptlearning.methods.classifier import Evaluation, PromptClassifier
from promptlearning.models.interface import LanguageModel
from promptlearning.prompts.template import PromptTemplate
from promptlearning.prompts.verbalizer import Verbalizer
from promptlearning.tasks.config import TaskConfig
from promptlearning.tasks.loading import keep_min_words, load_examples


@dataclass
class RunResult:
    """A finished run: its directory, the evaluation and the resolved config."""

    run_dir: Path | None
    evaluation: Evaluation
    config: TaskConfig


def build_classifier(
    config: TaskConfig, model: LanguageModel, embedder: LanguageModel | None = None
) -> PromptClassifier:
    """The :class:`PromptClassifier` a task config describes (the YAML ↔ Python mapping)."""
    template = PromptTemplate(
        config.template.input,
        instruction=config.template.instruction,
        mode=config.template.mode,
        separator=config.template.separator,
        shorten=config.template.shorten,
    )
    verbalizer = Verbalizer(
        config.verbalizer.words,
        word_score=config.verbalizer.word_score,
        aggregate=config.verbalizer.aggregate,
    )
    return PromptClassifier(
        model,
        template,
        verbalizer,
        method=config.method_name,
        shots=config.shots,
        selection=config.method.selection,
        calibrate=config.method.calibrate,
        calibration=config.method.calibration,
        content_free_inputs=config.method.content_free,
        label_field=config.data.label_field,
        seed=config.seed,
        embedder=embedder,
        orderings=config.method.orderings,
    )


def run_task(
    config: TaskConfig,
    *,
    model: LanguageModel | None = None,
    embedder: LanguageModel | None = None,
    output_dir: str | Path | None = None,
    write: bool = True,
    progress: bool | None = None,
) -> RunResult:
    """Evaluate the task's classifier on its eval split and (by default) write a run directory."""
    from promptlearning.models import load_model

    eval_examples = load_examples(
        config.data.eval, root=config.data.root, limit=config.data.eval_limit, offset=config.data.eval_offset
    )
    if model is None:
        model = load_model(config.model, pull=True, dtype=config.dtype, batch_size=config.batch_size)
    classifier = build_classifier(config, model, embedder)
    train: list[dict[str, Any]] = []
    if config.method_name == "icl":
        if not config.data.train:
            raise PromptLearningError("icl needs data.train (the pool of demonstrations)")
        train = load_examples(config.data.train, root=config.data.root)
        if config.data.train_min_words:
            fields = [f for f in classifier.template.fields if f != config.data.label_field]
            train = keep_min_words(train, fields, config.data.train_min_words)
        train = train[: config.data.train_limit]
    classifier.fit(train)
    evaluation = classifier.evaluate(eval_examples, progress=progress)
    run_dir = None
    if write:
        run_dir = write_run(Path(output_dir or config.output_dir), config, evaluation, eval_examples, classifier.pool)
    return RunResult(run_dir=run_dir, evaluation=evaluation, config=config)
