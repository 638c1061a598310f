"""Run a chain-of-thought task (``type: cot``): load questions and exemplars, solve, write the run."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from promptlearning.errors import PromptLearningError
from promptlearning.loading import load_examples, task_data_root
from promptlearning.methods.cot import (
    gsm8k_rationale,
    reference_answer,
)
from promptlearning.methods.spec import SolverSpec, build_solver
from promptlearning.models.interface import LanguageModel
from promptlearning.prompts.template import PromptTemplate
from promptlearning.runs.directory import prepare_output_dir
from promptlearning.runs.result import TaskResult, scalar_metrics
from promptlearning.tasks.cot.config import CoTTaskConfig, Exemplar
from promptlearning.tasks.cot.report import prediction_rows, write_run


def exemplars_from_train(rows: list[dict[str, Any]], k: int, *, question_field: str, seed: int) -> list[dict[str, str]]:
    """``k`` solved training questions (GSM8K format: rationale, then ``#### N``), drawn with a seed."""
    solved = [row for row in rows if "####" in str(row.get("answer", ""))]
    if k > len(solved):
        raise PromptLearningError(f"{k} exemplars asked for, but the training file has {len(solved)} solved questions")
    out = []
    for row in random.Random(seed).sample(solved, k):
        rationale, final = gsm8k_rationale(str(row["answer"]))
        out.append({"question": str(row[question_field]), "rationale": rationale, "answer": final})
    return out


SHIPPED_EXEMPLARS = Path(__file__).resolve().parents[2] / "data" / "exemplars"


def load_exemplars(name_or_path: str) -> list[dict[str, str]]:
    """A YAML list of exemplars (question, rationale, answer): a shipped set by name, or a file."""
    path = Path(name_or_path).expanduser()
    if not path.suffix:
        path = SHIPPED_EXEMPLARS / f"{name_or_path}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in SHIPPED_EXEMPLARS.glob("*.yaml"))
            raise PromptLearningError(f"no shipped exemplar set {name_or_path!r}; shipped: {', '.join(known)}")
    if not path.is_file():
        raise PromptLearningError(f"exemplars file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PromptLearningError(f"exemplars file {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, list):
        raise PromptLearningError(f"{path}: expected a YAML list of {{question, rationale, answer}}")
    try:
        return [Exemplar.model_validate(item).model_dump() for item in raw]
    except (ValidationError, TypeError) as exc:
        raise PromptLearningError(f"{path}: expected a list of {{question, rationale, answer}}: {exc}") from None


def cot_exemplars(config: CoTTaskConfig) -> list[dict[str, Any]]:
    """The exemplars a task describes: inline, from a file or shipped set, or drawn from train."""
    exemplars = [e.model_dump() for e in config.exemplars]
    if config.exemplars_file:
        exemplars += load_exemplars(config.exemplars_file)
    if config.exemplars_from_train:
        if not config.data.train:
            raise PromptLearningError("exemplars_from_train needs data.train")
        rows = load_examples(
            config.data.train, root=task_data_root(config.data.root), required=[config.data.question_field]
        )
        exemplars = exemplars_from_train(
            rows, config.exemplars_from_train, question_field=config.data.question_field, seed=config.seed
        )
    for exemplar in exemplars:
        exemplar.setdefault(config.data.question_field, exemplar["question"])
    return exemplars


def solver_spec(config: CoTTaskConfig, exemplars: list[dict[str, Any]]) -> SolverSpec:
    """The solver a task describes, as every other surface describes it (checked as it is made)."""
    return SolverSpec(**config.solver_settings(), exemplars=exemplars)


def check_cot_task(config: CoTTaskConfig, exemplars: list[dict[str, Any]]) -> None:
    """Everything about a chain-of-thought task that can be checked without its model."""
    solver_spec(config, exemplars)


def build_cot(config: CoTTaskConfig, model: LanguageModel, exemplars: list[dict[str, Any]] | None = None) -> Any:
    """The method a task config describes, through the one builder (:func:`build_solver`)."""
    exemplars = cot_exemplars(config) if exemplars is None else exemplars
    return build_solver(solver_spec(config, exemplars), model, batch_size=config.batch_size)


def setting_label(config: CoTTaskConfig) -> str:
    label = config.mode
    if config.self_consistency > 1:
        label += f", self-consistency {config.self_consistency}"
    return label


def run_cot(
    config: CoTTaskConfig,
    *,
    model: LanguageModel | None = None,
    output_dir: str | Path | None = None,
    run_dir: str | Path | None = None,
    write: bool = True,
    progress: bool | None = None,
    **_: Any,
) -> TaskResult:
    """Evaluate a chain-of-thought task on its eval split and (by default) write a run directory."""
    from promptlearning.models import check_text_model, load_model

    template = PromptTemplate(config.template)
    questions = load_examples(
        config.data.eval, root=task_data_root(config.data.root), limit=config.data.eval_limit,
        offset=config.data.eval_offset, required=template.input_fields,
    )  # fmt: skip
    for number, question in enumerate(questions, config.data.eval_offset + 1):
        try:
            reference_answer(question, config.data.answer_field)
        except PromptLearningError as exc:
            raise PromptLearningError(f"{config.data.eval}, row {number}: {exc}") from None
    exemplars = cot_exemplars(config)
    check_cot_task(config, exemplars)
    exact = Path(run_dir) if run_dir else None
    run_root = prepare_output_dir(exact.parent if exact else output_dir or config.output_dir) if write else None
    if model is None:
        check_text_model(config.model)
        model = load_model(config.model, pull=True, batch_size=config.batch_size, **config.model_options())
    method = build_cot(config, model, exemplars)
    evaluation = method.evaluate(questions, answer_field=config.data.answer_field, progress=progress)
    stats = model.generation_stats()
    if stats is not None:
        evaluation.metrics["decoding"] = stats
    metrics = scalar_metrics(evaluation.metrics)
    result = TaskResult(
        kind="cot", name=config.name, setting=setting_label(config), model=config.model,
        metric="accuracy_flexible", value=metrics["accuracy_flexible"], values=[metrics["accuracy_flexible"]],
        metrics=metrics, num_examples=len(questions), seed=config.seed, predictions=prediction_rows(evaluation),
        evaluation=evaluation, config=config,
    )  # fmt: skip
    if run_root is not None:
        write_run(run_root, config, result, method.exemplars, name=exact.name if exact else None)
    return result


def check(config: CoTTaskConfig) -> None:
    check_cot_task(config, cot_exemplars(config))
