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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from promptlearning.errors import PromptLearningError
from promptlearning.evaluation.plots import plot_training_curves
from promptlearning.evaluation.report import markdown_table
from promptlearning.evaluation.runs import prepare_output_dir
from promptlearning.io import write_json_atomically
from promptlearning.prompts.demonstrations import select_fixed
from promptlearning.prompts.template import PromptTemplate
from promptlearning.prompts.verbalizer import Verbalizer
from promptlearning.tasks.config import TaskConfigError, TrainTaskConfig
from promptlearning.tasks.loading import keep_min_words, load_examples, task_data_root
from promptlearning.training.fewshot import mean_std, sample_per_class
from promptlearning.training.loop import TrainingArguments, train
from promptlearning.training.peft_methods import peft_config
from promptlearning.training.program import ProgramSpec, PromptProgram, build_program


@dataclass
class TrainRunResult:
    """A finished training run: its directory and the per-seed and summary metrics."""

    run_dir: Path
    seeds: dict[int, dict[str, Any]]
    summary: dict[str, Any]


def metric_name(config: TrainTaskConfig) -> str:
    return "f1" if config.objective == "ner" else "accuracy"


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and k != "num_examples"}


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
    program = build_program(spec, total_steps=args.max_steps, seed=seed)
    features = program.encode(train_set)

    def evaluate(_: Any) -> dict[str, float]:
        return _scalars(program.evaluate(dev_set, batch_size=config.eval_batch_size))

    result = train(
        program.module, features, program.featurizer.collate, evaluate, args, directory,
        resume=resume, progress=progress, after_step=program.after_step,
    )  # fmt: skip
    return program, result


# Settings that do not change what a run computes: a resumed run may differ in these.
RESUME_IGNORES = frozenset(
    {"description", "output_dir", "eval_batch_size", "training.log_every", "training.log_with",
     "training.keep_checkpoints"}
)  # fmt: skip


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``key: saved -> current`` for every setting that differs and changes the result."""
    old, new = _flatten(saved), _flatten(current)
    missing = "(unset)"
    return [
        f"{key}: {old.get(key, missing)!r} -> {new.get(key, missing)!r}"
        for key in sorted(set(old) | set(new))
        if key not in RESUME_IGNORES and old.get(key, missing) != new.get(key, missing)
    ]


def check_run_dir(run_dir: Path, config: TrainTaskConfig, resume: bool) -> None:
    """A new run needs an empty directory (one holding only the config.yaml of a start that failed
    before training is fine); a resumed run needs the same settings as the one it continues."""
    if run_dir.exists() and not run_dir.is_dir():
        raise PromptLearningError(f"the run directory {run_dir} is a file; choose another --output")
    if not run_dir.is_dir():
        return
    saved_path = run_dir / "config.yaml"
    if resume:
        if saved_path.is_file():
            saved = yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {}
            differences = config_differences(saved, config.model_dump(mode="json"))
            if differences:
                raise TaskConfigError(
                    f"cannot resume {run_dir}: its config.yaml differs in {len(differences)} setting(s) that change "
                    f"the result ({'; '.join(differences)}). Resume with the same settings, or start a new run "
                    "with another --output"
                )
        return
    started = [p.name for p in run_dir.iterdir() if p.name != "config.yaml"]
    if started:
        raise PromptLearningError(
            f"{run_dir} already holds a run: continue it with --resume, or choose another --output"
        )


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
    resume: bool = False,
    progress: bool | None = None,
) -> TrainRunResult:
    """Train (per few-shot seed, or once), evaluate the best weights on the eval split, write reports."""
    from accelerate import PartialState

    state = PartialState(cpu=True)  # under `accelerate launch` / torchrun, one of several processes
    data = config.data
    run_dir = Path(output_dir) if output_dir else Path(config.output_dir) / config.name
    check_run_dir(run_dir, config, resume)
    check_train_task(config)
    pool, eval_set, dev_split = _load_splits(config)
    if state.is_main_process:  # only once the task and its data are known to be good
        prepare_output_dir(run_dir, "run directory")
        if not (resume and (run_dir / "config.yaml").is_file()):
            (run_dir / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    state.wait_for_everyone()
    seeds = config.few_shot.seeds if config.few_shot else [config.seed]
    results: dict[int, dict[str, Any]] = {}
    for seed in seeds:
        seed_dir = run_dir / f"seed-{seed}"
        if resume and (seed_dir / "metrics.json").is_file():
            results[seed] = json.loads((seed_dir / "metrics.json").read_text())
            continue
        if config.few_shot:
            train_set, dev_set = sample_per_class(pool, config.few_shot.k, label_field=data.label_field, seed=seed)
        elif dev_split is not None:
            train_set, dev_set = pool, dev_split
        else:
            cut = max(1, len(pool) // 10)
            train_set, dev_set = pool[cut:], pool[:cut]
        program, result = train_program(
            config, train_set, dev_set, seed_dir, seed=seed, resume=resume, progress=progress
        )
        evaluation = program.evaluate(eval_set, batch_size=config.eval_batch_size, progress=progress)
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
        }
        if state.is_main_process:  # every process holds the same weights; one writes them
            program.save(seed_dir / "program", metrics=_scalars(evaluation))
            write_json_atomically(seed_dir / "metrics.json", metrics)
        state.wait_for_everyone()
        results[seed] = metrics
    if not state.is_main_process:
        return TrainRunResult(run_dir, results, {})
    summary = summarise(config, results)
    write_json_atomically(run_dir / "summary.json", summary)
    plot_training_curves({f"seed {s}": r["dev_history"] for s, r in results.items()}, metric_name(config),
                         run_dir / "dev_curves.png")  # fmt: skip
    write_train_report(run_dir / "report.md", config, results, summary)
    return TrainRunResult(run_dir, results, summary)


def summarise(config: TrainTaskConfig, results: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    metric = metric_name(config)
    values = [100 * r["eval"][metric] for r in results.values()]
    mean, std = mean_std(values)
    return {"name": config.name, "objective": config.objective, "peft": config.peft.method if config.peft else "full",
            "model": config.model, "k": config.few_shot.k if config.few_shot else None, "metric": metric,
            "mean": mean, "std": std, "per_seed": dict(zip(map(str, results), values, strict=True))}  # fmt: skip


def write_train_report(
    path: Path, config: TrainTaskConfig, results: Mapping[int, Mapping[str, Any]], summary: Mapping[str, Any]
) -> None:
    metric = summary["metric"]
    protocol = f"k={config.few_shot.k} per class" if config.few_shot else "full training pool"
    rows = [
        [
            seed,
            r["train_examples"],
            f"{100 * (r['best_dev'] or 0):.1f}",
            r["best_step"],
            f"{100 * r['eval'][metric]:.2f}",
        ]
        for seed, r in results.items()
    ]
    lines = [
        f"# {config.name}",
        "",
        f"- model `{config.model}`, objective **{config.objective}**, "
        f"method **{summary['peft']}**, {protocol}, {config.training.max_steps} steps max",
        f"- eval split `{config.data.eval}` ({next(iter(results.values()))['eval_examples']} examples): "
        f"**{metric} {summary['mean']:.2f} ± {summary['std']:.2f}** over {len(results)} seed(s)",
        "",
        markdown_table(["seed", "train examples", f"best dev {metric}", "best step", f"eval {metric}"], rows),
        "",
        "![dev curves](dev_curves.png)",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
