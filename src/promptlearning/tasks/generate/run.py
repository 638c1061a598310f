"""Run a generation task (``type: generate``): load examples, build the prompted generator, generate,
score and write the run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from promptlearning.errors import PromptLearningError
from promptlearning.evaluation.text_metrics import HEADLINES
from promptlearning.loading import DataError, load_examples, task_data_root
from promptlearning.methods.generation import PromptGenerator, references_of
from promptlearning.methods.spec import build_generator as build_from_spec
from promptlearning.models.interface import LanguageModel
from promptlearning.prompts.template import PromptTemplate
from promptlearning.runs.directory import prepare_output_dir
from promptlearning.runs.result import TaskResult, scalar_metrics
from promptlearning.tasks.generate.config import DialogueConfig, GenerateTaskConfig
from promptlearning.tasks.generate.report import prediction_rows, write_run

SPEAKERS = ("A", "B")


def dialogue_examples(rows: Sequence[Mapping[str, Any]], dialogue: DialogueConfig) -> list[dict[str, Any]]:
    """One example per turn after the first: ``context`` (the turns before, as "A: …" lines),
    ``speaker`` and ``response``."""
    out = []
    for number, row in enumerate(rows, 1):
        turns = row.get(dialogue.field)
        if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
            raise DataError(f"row {number}: field {dialogue.field!r} must be a list of turns, got {turns!r}")
        lines = [f"{SPEAKERS[i % 2]}: {turn.strip()}" for i, turn in enumerate(turns)]
        for i in range(1, len(turns)):
            context = "\n".join(lines[max(0, i - dialogue.context_turns) : i])
            out.append({"context": context, "speaker": SPEAKERS[i % 2], "response": turns[i].strip()})
    return out


def load_split(config: GenerateTaskConfig, path: str, *, train: bool) -> list[dict[str, Any]]:
    data = config.data
    limit, offset = (data.train_limit, data.train_offset) if train else (data.eval_limit, data.eval_offset)
    root = task_data_root(data.root)
    if data.dialogue:  # limits count expanded examples, not dialogues
        rows = dialogue_examples(load_examples(path, root=root), data.dialogue)[offset:]
        rows = rows[:limit] if limit else rows
        if not rows:
            raise DataError(f"{path} holds no dialogue turns after offset {offset}")
        return rows
    rows = load_examples(path, root=root, limit=limit, offset=offset)
    if train and data.train_fields:
        rows = [{**row, **{new: row[old] for new, old in data.train_fields.items() if old in row}} for row in rows]
    return rows


def check_rows(rows: Sequence[Mapping[str, Any]], fields: Sequence[str], reference: str, source: str) -> None:
    """Every row has the template's fields and a non-empty reference (a text or a list of texts)."""
    for number, row in enumerate(rows, 1):
        missing = [f for f in [*fields, reference] if row.get(f) is None]
        if missing:
            raise DataError(f"{source}, example {number}: no field {missing[0]!r} (the example has {sorted(row)})")
        try:
            refs = references_of(row, reference)
        except PromptLearningError as exc:
            raise DataError(f"{source}, example {number}: {exc}") from None
        if not any(r.strip() for r in refs):
            raise DataError(f"{source}, example {number}: the reference {reference!r} is empty")


def load_task_data(config: GenerateTaskConfig, template: PromptTemplate) -> tuple[list[dict], list[dict]]:
    """The eval examples and the demonstration pool, checked for the fields they need."""
    data = config.data
    reference = data.reference_field or data.target_field
    eval_rows = load_split(config, data.eval, train=False)
    check_rows(eval_rows, template.input_fields, reference, data.eval)
    pool: list[dict[str, Any]] = []
    if (config.shots or config.finetune) and data.train:
        pool = load_split(config, data.train, train=True)
        check_rows(pool, template.input_fields, data.target_field, data.train)
        if data.disjoint_on:
            shared = {str(r.get(data.disjoint_on)) for r in pool} & {str(r.get(data.disjoint_on)) for r in eval_rows}
            if shared:
                raise PromptLearningError(
                    f"train and eval share {len(shared)} value(s) of {data.disjoint_on!r} "
                    f"(e.g. {sorted(shared)[0]!r}): choose disjoint slices"
                )
    return eval_rows, pool


def check_task(config: GenerateTaskConfig) -> PromptTemplate:
    """Everything about a generation task that can be checked without its model."""
    return config.generator_spec().build_template()


def build_generator(
    config: GenerateTaskConfig, model: LanguageModel, embedder: LanguageModel | None = None
) -> PromptGenerator:
    """The generator a task describes: its :class:`~promptlearning.methods.spec.GeneratorSpec`, built."""
    return build_from_spec(config.generator_spec(), model, embedder=embedder, batch_size=config.batch_size)


def finetune(
    config: GenerateTaskConfig, model: LanguageModel, pool: list[dict[str, Any]], root: Path, progress: bool | None
) -> tuple[LanguageModel, Any]:
    """Fine-tune ``model`` on the pool (its last ``dev_size`` rows held out for the dev loss), with
    the zero-shot prompts as context; checkpoints go to ``<root>/<name>-finetune/``."""
    from promptlearning.training.generation import finetune_for_generation
    from promptlearning.training.loop import TrainingArguments

    assert config.finetune is not None
    settings = config.finetune
    zero_shot = config.generator_spec().model_copy(update={"shots": 0})
    prompter = build_from_spec(zero_shot, model).fit()
    held = settings.dev_size if len(pool) > 2 * settings.dev_size else 0
    train_rows, dev_rows = pool[: len(pool) - held], pool[len(pool) - held :]
    target = config.data.target_field
    args = TrainingArguments(**settings.training.model_dump(), seed=config.seed)
    return finetune_for_generation(
        model, prompter.prompts(train_rows), [references_of(r, target)[0] for r in train_rows],
        peft=settings.peft.method, peft_options=settings.peft.options, args=args,
        output_dir=root / f"{config.name}-finetune", max_length=settings.max_length,
        dev=(prompter.prompts(dev_rows), [references_of(r, target)[0] for r in dev_rows]),
        device=config.device, progress=progress,
    )  # fmt: skip


def setting_label(config: GenerateTaskConfig) -> str:
    if config.finetune:
        return f"fine-tuned ({config.finetune.peft.method}, {config.finetune.training.max_steps} steps)"
    return "zero-shot" if not config.shots else f"{config.shots}-shot {config.selection}".replace("knn", "kNN")


def run_generate(
    config: GenerateTaskConfig,
    *,
    model: LanguageModel | None = None,
    embedder: LanguageModel | None = None,
    output_dir: str | Path | None = None,
    run_dir: str | Path | None = None,
    write: bool = True,
    progress: bool | None = None,
    **_: Any,
) -> TaskResult:
    """Generate for every eval example, score with the task's metrics and (by default) write a run."""
    from promptlearning.models import check_text_model, load_model

    template = check_task(config)
    eval_rows, pool = load_task_data(config, template)
    exact = Path(run_dir) if run_dir else None
    run_root = prepare_output_dir(exact.parent if exact else output_dir or config.output_dir) if write else None
    if model is None:
        check_text_model(config.model)
        model = load_model(config.model, pull=True, batch_size=config.batch_size, **config.model_options())
    training = None
    if config.finetune:
        model, training = finetune(config, model, pool, run_root or Path(config.output_dir), progress)
    generator = build_generator(config, model, embedder).fit(pool)
    evaluation = generator.evaluate(
        eval_rows, config.metrics, reference_field=config.data.reference_field, progress=progress
    )
    if training is not None:
        evaluation.metrics.update(train_steps=training.steps, dev_loss=-(training.best_metric or 0.0))
    metrics = scalar_metrics(evaluation.metrics)
    headline = HEADLINES[config.metrics[0]]
    result = TaskResult(
        kind="generate", name=config.name, setting=setting_label(config), model=config.model, metric=headline,
        value=metrics[headline], values=[metrics[headline]], metrics=metrics, num_examples=len(eval_rows),
        seed=config.seed, predictions=prediction_rows(eval_rows, evaluation), evaluation=evaluation, config=config,
    )  # fmt: skip
    if run_root is not None:
        write_run(run_root, config, result, name=exact.name if exact else None)
    return result


def check(config: GenerateTaskConfig) -> None:
    check_task(config)
