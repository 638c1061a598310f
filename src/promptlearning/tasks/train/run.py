"""Run a training task file: build the program, train it per seed, evaluate, save, report.

A training run directory (``<output_dir>/<name>/``, or ``--output``) grows as the run goes::

    config.yaml
    seed-13/
        checkpoints/step-…/   atomic checkpoints (``--resume`` continues from the newest valid one)
        best/                 the best weights on dev so far
        tensorboard/          scalars for TensorBoard
        program/              the saved prompt program (``promptlearning predict seed-13/program …``)
        metrics.json          dev history and the eval-split metrics of the best weights
    summary.json, report.md, dev_curves.png   written when every seed is done

A seed whose ``metrics.json`` exists is complete and is not trained again on ``--resume``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from promptlearning.errors import PromptLearningError
from promptlearning.io import write_atomically, write_json_atomically
from promptlearning.loading import keep_min_words, load_examples, task_data_root
from promptlearning.prompts.demonstrations import select_fixed
from promptlearning.prompts.template import PromptTemplate
from promptlearning.prompts.verbalizer import Verbalizer
from promptlearning.runs.directory import check_run_dir, prepare_output_dir
from promptlearning.runs.result import TaskResult, scalar_metrics
from promptlearning.tasks.train.config import TrainTaskConfig
from promptlearning.tasks.train.report import TrainEvaluation, metric_name, setting_label, summarise, write_reports
from promptlearning.training.fewshot import sample_per_class
from promptlearning.training.loop import TrainingArguments, announce, train, training_state
from promptlearning.training.peft_methods import peft_config
from promptlearning.training.program import ProgramSpec, PromptProgram, build_program


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: v for k, v in scalar_metrics(dict(metrics)).items() if k != "num_examples"}


def program_spec(config: TrainTaskConfig, train_pool: Sequence[Mapping[str, Any]], seed: int) -> ProgramSpec:
    """The program a task describes; labels come from the verbalizer, ``labels`` or the train data."""
    if config.objective == "ner":
        tags = {str(t) for e in train_pool for t in e.get(config.data.tags_field, [])}
        labels = config.labels or sorted(tags, key=lambda t: (t != "O", t[2:], t))
    elif config.verbalizer is not None:
        labels = list(config.verbalizer.words)
    else:
        labels = config.labels or sorted({str(e[config.data.label_field]) for e in train_pool})
    demonstrations = []
    if config.demonstrations and config.objective == "pet":
        assert config.verbalizer is not None
        k = config.demonstrations * len(labels)
        indices = select_fixed(train_pool, k, "balanced", label_field=config.data.label_field, seed=seed)
        for i in indices:
            label = str(train_pool[i][config.data.label_field])
            words = config.verbalizer.words[label]
            demonstrations.append(
                {"example": dict(train_pool[i]), "answer": words if isinstance(words, str) else words[0]}
            )
    return ProgramSpec(
        objective=config.objective,
        model=config.model,
        labels=labels,
        template=config.template.model_dump(),
        verbalizer=(
            {"label_words": config.verbalizer.words, "word_score": config.verbalizer.word_score,
             "aggregate": config.verbalizer.aggregate}
            if config.verbalizer is not None else None
        ),
        peft=config.peft.method if config.peft else None,
        peft_options=dict(config.peft.options) if config.peft else {},
        demonstrations=demonstrations,
        max_length=config.max_length,
        label_field=config.data.label_field,
        tokens_field=config.data.tokens_field,
        tags_field=config.data.tags_field,
        dtype=config.dtype,
    )  # fmt: skip


def training_arguments(config: TrainTaskConfig, seed: int) -> TrainingArguments:
    return TrainingArguments(**config.training.model_dump(), metric=metric_name(config), seed=seed)


def train_program(
    config: TrainTaskConfig,
    train_set: Sequence[Mapping[str, Any]],
    dev_set: Sequence[Mapping[str, Any]],
    directory: Path,
    *,
    seed: int,
    resume: bool = False,
    progress: bool | None = None,
) -> tuple[PromptProgram, Any]:
    """Build, train and save one program; return it (best dev weights loaded) and the loop's result."""
    spec = program_spec(config, train_set, seed)
    if config.objective != "ner":
        missing = sorted({str(e[config.data.label_field]) for e in [*train_set, *dev_set]} - set(spec.labels))
        if missing:
            raise PromptLearningError(f"label(s) {missing} in the data are not among the task's labels {spec.labels}")
    args = training_arguments(config, seed)
    state = training_state(config.device)
    program = build_program(spec, total_steps=args.max_steps, seed=seed, device=state.device)
    features = program.encode(train_set)

    def evaluate(_: Any) -> dict[str, float]:
        return _scalars(program.evaluate(dev_set, batch_size=config.eval_batch_size))

    result = train(
        program.module, features, program.featurizer.collate, evaluate, args, directory,
        resume=resume, progress=progress, after_step=program.after_step, device=config.device,
    )  # fmt: skip
    return program, result


def check_train_task(config: TrainTaskConfig) -> None:
    """What a training task can be checked for without its model: template, label words, PEFT options."""
    PromptTemplate(**config.template.model_dump())
    if config.verbalizer is not None:
        Verbalizer(config.verbalizer.words)
    if config.peft is not None:
        peft_config(config.peft.method, config.peft.options, total_steps=config.training.max_steps)


def _load_splits(config: TrainTaskConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list | None]:
    """The training pool, the eval split and the dev split (if any), each row checked for its fields."""
    data, root = config.data, task_data_root(config.data.root)
    if config.objective == "ner":
        required, words = [data.tokens_field, data.tags_field], [data.tokens_field]
    else:
        fields = PromptTemplate(**config.template.model_dump()).input_fields
        required, words = [*fields, data.label_field], [f for f in fields if f != data.label_field]
    pool = load_examples(data.train, root=root, required=required)
    if data.train_min_words:  # an NER template is unused; its sentence is its tokens
        pool = keep_min_words(pool, words, data.train_min_words)
    pool = pool[: data.train_limit]
    eval_set = load_examples(data.eval, root=root, limit=data.eval_limit, required=required)
    dev_split = load_examples(data.dev, root=root, limit=data.dev_limit, required=required) if data.dev else None
    if config.verbalizer is not None and config.objective == "pet":
        verbalizer = Verbalizer(config.verbalizer.words)
        for rows in (pool, eval_set, dev_split or []):
            verbalizer.check_labels(row[data.label_field] for row in rows)
    return pool, eval_set, dev_split


def run_train_task(
    config: TrainTaskConfig,
    *,
    output_dir: str | Path | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool | None = None,
    **_: Any,
) -> TaskResult:
    """Train (per few-shot seed, or once), evaluate the best weights on the eval split, write reports."""
    state = training_state(config.device)  # under `accelerate launch` / torchrun, one of several processes
    data = config.data
    run_dir = Path(run_dir) if run_dir else Path(output_dir or config.output_dir) / config.name
    if config.objective == "rationale":
        from promptlearning.tasks.train.rationale import run_rationale_task

        return run_rationale_task(config, run_dir, resume=resume, progress=progress)
    check_run_dir(config, run_dir, resume)
    check(config)
    pool, eval_set, dev_split = _load_splits(config)
    if state.is_main_process:  # only once the task and its data are known to be good
        prepare_output_dir(run_dir, "run directory")
        if not (resume and (run_dir / "config.yaml").is_file()):
            (run_dir / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    state.wait_for_everyone()
    seeds = config.few_shot.seeds if config.few_shot else [config.seed]
    results: dict[int, dict[str, Any]] = {}
    for number, seed in enumerate(seeds, 1):
        seed_dir = run_dir / f"seed-{seed}"
        if resume and (seed_dir / "metrics.json").is_file():
            results[seed] = json.loads((seed_dir / "metrics.json").read_text())
            announce(f"seed {seed} ({number} of {len(seeds)}): finished before, kept")
            continue
        if len(seeds) > 1:
            announce(f"seed {seed} ({number} of {len(seeds)})")
        if config.few_shot:
            train_set, dev_set = sample_per_class(pool, config.few_shot.k, label_field=data.label_field, seed=seed)
        elif dev_split is not None:
            train_set, dev_set = pool, dev_split
        else:
            cut = max(1, len(pool) // 10)
            train_set, dev_set = pool[cut:], pool[:cut]
        ensemble: dict[str, Any] = {}
        if config.pet_ensemble is not None:
            from promptlearning.tasks.train.ensemble import train_pet_ensemble

            program, result, ensemble = train_pet_ensemble(
                config, pool, train_set, dev_set, seed_dir, seed=seed, eval_set=eval_set, resume=resume,
                progress=progress,
            )  # fmt: skip
        else:
            program, result = train_program(
                config, train_set, dev_set, seed_dir, seed=seed, resume=resume, progress=progress
            )
        predictions = program.predict_all(eval_set, batch_size=config.eval_batch_size, progress=progress)
        evaluation = program.evaluate_predictions(eval_set, predictions)
        metrics = {
            "seed": seed,
            "train_examples": len(train_set),
            "dev_examples": len(dev_set),
            "eval_examples": len(eval_set),
            "best_dev": result.best_metric,
            "best_step": result.best_step,
            "steps": result.steps,
            "dev_history": result.history,
            "eval": evaluation,
            **({"ensemble": ensemble} if ensemble else {}),
        }
        if state.is_main_process:  # every process holds the same weights; one writes them
            program.save(seed_dir / "program", metrics=_scalars(evaluation))
            write_json_atomically(seed_dir / "metrics.json", metrics)
            write_atomically(seed_dir / "predictions.jsonl", prediction_lines(eval_set, predictions, config))
        state.wait_for_everyone()
        results[seed] = metrics
    summary = summarise(config, results)
    metric = metric_name(config)
    values = [r["eval"][metric] for r in results.values()]
    evaluation = TrainEvaluation(seeds=results, summary=summary, run_dir=run_dir)
    result = TaskResult(
        kind="train", name=config.name, setting=setting_label(config), model=config.model, metric=metric,
        value=sum(values) / len(values), values=values, metrics=_mean_metrics(results),
        num_examples=len(eval_set), seed=",".join(map(str, results)), run_dir=run_dir, evaluation=evaluation,
        config=config,
    )  # fmt: skip
    if state.is_main_process:
        write_reports(run_dir, config, result)
    return result


def prediction_lines(examples: Sequence[Mapping[str, Any]], predictions: Sequence[Any], config: TrainTaskConfig) -> str:
    """``predictions.jsonl`` of a seed: per eval example its gold and predicted label (and label
    probabilities), or its gold and predicted tags (NER), as classification runs write them."""
    label_field = config.data.label_field
    lines = []
    for example, prediction in zip(examples, predictions, strict=True):
        if isinstance(prediction, dict):  # NER: {"tags": [...]}
            gold = list(map(str, example.get(config.data.tags_field, [])))
            row = {"example": dict(example), "gold": " ".join(gold), "predicted": " ".join(prediction["tags"]),
                   "correct": gold == prediction["tags"]}  # fmt: skip
        else:
            gold = str(example[label_field])
            row = {"example": dict(example), "gold": gold, "predicted": prediction.label,
                   "correct": gold == prediction.label, "probabilities": prediction.probabilities}  # fmt: skip
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    return "".join(lines)


def _mean_metrics(results: Mapping[int, Mapping[str, Any]]) -> dict[str, float]:
    """The eval-split metrics averaged over seeds."""
    per_seed = [_scalars(r["eval"]) for r in results.values()]
    return {k: sum(m[k] for m in per_seed) / len(per_seed) for k in per_seed[0] if all(k in m for m in per_seed)}


def check(config: TrainTaskConfig) -> None:
    check_train_task(config)
    if config.pet_ensemble is not None:
        from promptlearning.tasks.train.ensemble import check_ensemble

        check_ensemble(config)
    if config.objective == "rationale":
        from promptlearning.tasks.train.rationale import check_rationale_task

        check_rationale_task(config)
