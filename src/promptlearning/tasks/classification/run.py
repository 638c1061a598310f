"""Run a classification task: check it, load data and model, build the classifier, evaluate, write the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from promptlearning.errors import PromptLearningError
from promptlearning.evaluation.metrics import semeval2010_macro_f1
from promptlearning.loading import keep_min_words, load_examples, task_data_root
from promptlearning.methods.spec import build_classifier as build_from_spec
from promptlearning.models.interface import LanguageModel
from promptlearning.prompts.template import PromptTemplate
from promptlearning.prompts.verbalizer import Verbalizer
from promptlearning.runs.directory import prepare_output_dir
from promptlearning.runs.result import TaskResult, scalar_metrics
from promptlearning.tasks.classification.config import ClassificationTaskConfig
from promptlearning.tasks.classification.report import prediction_rows, write_run


def build_template(config: ClassificationTaskConfig) -> PromptTemplate:
    return PromptTemplate(**config.template.model_dump())


def build_verbalizer(config: ClassificationTaskConfig) -> Verbalizer:
    return Verbalizer(
        config.verbalizer.words, word_score=config.verbalizer.word_score, aggregate=config.verbalizer.aggregate
    )


def check_task(config: ClassificationTaskConfig) -> tuple[PromptTemplate, Verbalizer]:
    """Everything about a classification task that can be checked without its model."""
    spec = config.classifier_spec()  # checks method, shots, selection and orderings together
    if spec.method_name == "icl" and not config.data.train:
        raise PromptLearningError("icl needs data.train (the pool of demonstrations)")
    return spec.build_template(), spec.build_verbalizer()


def build_classifier(
    config: ClassificationTaskConfig, model: LanguageModel, embedder: LanguageModel | None = None
) -> Any:
    """The classifier a task describes (the YAML ↔ Python mapping), through the one builder."""
    check_task(config)
    return build_from_spec(config.classifier_spec(), model, embedder)


def load_task_data(config: ClassificationTaskConfig, template: PromptTemplate, verbalizer: Verbalizer) -> tuple:
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


def setting_label(config: ClassificationTaskConfig) -> str:
    """What a run did, in a few words: ``4-shot balanced + batch calibration``."""
    label = "zero-shot" if config.method_name == "zero-shot" else f"{config.shots}-shot {config.method.selection}"
    label = label.replace("shot knn", "shot kNN")
    if config.calibration != "none":
        label += f" + {config.calibration} calibration"
    if config.method.orderings > 1:
        label += f", {config.method.orderings} orderings"
    return label


def run_classification(
    config: ClassificationTaskConfig,
    *,
    model: LanguageModel | None = None,
    embedder: LanguageModel | None = None,
    output_dir: str | Path | None = None,
    run_dir: str | Path | None = None,
    write: bool = True,
    progress: bool | None = None,
    **_: Any,
) -> TaskResult:
    """Evaluate the task's classifier on its eval split and (by default) write a run directory: a new
    one under ``output_dir`` (default: the config's), or exactly ``run_dir``.

    The task, its data and the output directory are checked before the model is loaded.
    """
    from promptlearning.models import check_text_model, load_model

    template, verbalizer = check_task(config)
    eval_examples, train = load_task_data(config, template, verbalizer)
    exact = Path(run_dir) if run_dir else None
    run_root = prepare_output_dir(exact.parent if exact else output_dir or config.output_dir) if write else None
    if model is None:
        check_text_model(config.model)
        model = load_model(config.model, pull=True, batch_size=config.batch_size, **config.model_options())
    classifier = build_classifier(config, model, embedder)
    classifier.fit(train)
    evaluation = classifier.evaluate(eval_examples, progress=progress)
    if config.metric == "semeval_macro_f1":
        predicted = [p.label for p in evaluation.predictions]
        semeval = semeval2010_macro_f1(evaluation.gold, predicted)
        evaluation.metrics["semeval_macro_f1"] = semeval["semeval_macro_f1"] / 100  # a fraction, as accuracy is
    metrics = scalar_metrics(evaluation.metrics)
    result = TaskResult(
        kind="classification", name=config.name, setting=setting_label(config), model=config.model,
        metric=config.metric, value=metrics[config.metric], values=[metrics[config.metric]], metrics=metrics,
        num_examples=len(eval_examples), seed=config.seed, predictions=prediction_rows(eval_examples, evaluation),
        evaluation=evaluation, config=config,
    )  # fmt: skip
    if run_root is not None:
        write_run(run_root, config, result, name=exact.name if exact else None)
    return result


def check(config: ClassificationTaskConfig) -> None:
    check_task(config)
