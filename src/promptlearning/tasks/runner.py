"""Run a task: load data and model, build the classifier, evaluate, write the run directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptlearning.errors import PromptLearningError
from promptlearning.evaluation.runs import prepare_output_dir, write_run
from promptlearning.methods.classifier import Evaluation, PromptClassifier, check_classifier_settings
from promptlearning.models.interface import LanguageModel
from promptlearning.prompts.template import PromptTemplate
from promptlearning.prompts.verbalizer import Verbalizer
from promptlearning.tasks.config import TaskConfig
from promptlearning.tasks.loading import keep_min_words, load_examples, task_data_root


@dataclass
class RunResult:
    """A finished run: its directory, the evaluation and the resolved config."""

    run_dir: Path | None
    evaluation: Evaluation
    config: TaskConfig


def build_template(config: TaskConfig) -> PromptTemplate:
    return PromptTemplate(
        config.template.input,
        instruction=config.template.instruction,
        mode=config.template.mode,
        separator=config.template.separator,
        shorten=config.template.shorten,
    )


def build_verbalizer(config: TaskConfig) -> Verbalizer:
    return Verbalizer(
        config.verbalizer.words, word_score=config.verbalizer.word_score, aggregate=config.verbalizer.aggregate
    )


def check_task(config: TaskConfig) -> tuple[PromptTemplate, Verbalizer]:
    """Everything about a classification task that can be checked without its model."""
    check_classifier_settings(
        method=config.method_name, shots=config.shots, selection=config.method.selection,
        calibration=config.method.calibration, orderings=config.method.orderings,
    )  # fmt: skip
    if config.method_name == "icl" and not config.data.train:
        raise PromptLearningError("icl needs data.train (the pool of demonstrations)")
    return build_template(config), build_verbalizer(config)


def build_classifier(
    config: TaskConfig, model: LanguageModel, embedder: LanguageModel | None = None
) -> PromptClassifier:
    """The :class:`PromptClassifier` a task config describes (the YAML ↔ Python mapping)."""
    template, verbalizer = check_task(config)
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


def load_task_data(config: TaskConfig, template: PromptTemplate, verbalizer: Verbalizer) -> tuple[list, list]:
    """The eval split and the demonstration pool, every row checked for the fields and labels used."""
    data, root = config.data, task_data_root(config.data.root)
    required = [*template.input_fields, data.label_field]
    eval_examples = load_examples(
        data.eval, root=root, limit=data.eval_limit, offset=data.eval_offset, required=required
    )
    verbalizer.check_labels(ex[data.label_field] for ex in eval_examples)
    train: list[dict[str, Any]] = []
    if config.method_name == "icl":
        assert data.train is not None  # check_task
        train = load_examples(data.train, root=root, required=required)
        if data.train_min_words:
            fields = [f for f in template.input_fields if f != data.label_field]
            train = keep_min_words(train, fields, data.train_min_words)
        train = train[: data.train_limit]
        verbalizer.check_labels(ex[data.label_field] for ex in train)
    return eval_examples, train


def run_task(
    config: TaskConfig,
    *,
    model: LanguageModel | None = None,
    embedder: LanguageModel | None = None,
    output_dir: str | Path | None = None,
    write: bool = True,
    progress: bool | None = None,
) -> RunResult:
    """Evaluate the task's classifier on its eval split and (by default) write a run directory.

    The task, its data and the output directory are checked before the model is loaded.
    """
    from promptlearning.models import check_text_model, load_model

    template, verbalizer = check_task(config)
    eval_examples, train = load_task_data(config, template, verbalizer)
    run_root = prepare_output_dir(output_dir or config.output_dir) if write else None
    if model is None:
        check_text_model(config.model)
        model = load_model(config.model, pull=True, dtype=config.dtype, batch_size=config.batch_size)
    classifier = build_classifier(config, model, embedder)
    classifier.fit(train)
    evaluation = classifier.evaluate(eval_examples, progress=progress)
    run_dir = None
    if run_root is not None:
        run_dir = write_run(run_root, config, evaluation, eval_examples, classifier.pool)
    return RunResult(run_dir=run_dir, evaluation=evaluation, config=config)
