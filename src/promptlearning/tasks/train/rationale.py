"""``objective: rationale``: chain-of-thought fine-tuning of a small causal LM (Magister et al. 2023;
Hsieh et al. 2023; GSM8K's calculator-annotated solutions, Cobbe et al. 2021).

The model learns to write the worked solution after the question: the language-model loss on the
solution and its answer only (the question is context), with LoRA (merged after) or every weight,
on the shared training loop (checkpoints, ``--resume``, progress with ETA). The target reads::

    Natalia sold 48/2 = <<48/2=24>>24 clips in May. … The answer is 72.

(GSM8K's lines joined, its ``<<expr=value>>`` calculator calls kept unless ``calculator_calls`` is
off, its ``#### N`` line made the sentence the chain-of-thought extractors read.) The run writes::

    <run>/training/      the loop's checkpoints and best weights
    <run>/model/         the fine-tuned model (LoRA merged): ``model:`` of any task, ``serve --model``
    <run>/eval/          a chain-of-thought run of it on data.eval (mode direct: the question alone,
                         the calculator in the decoding loop unless ``calculator: false``)
    <run>/run.json, report.md
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from promptlearning.errors import PromptLearningError
from promptlearning.io import write_directory_atomically
from promptlearning.loading import load_examples, task_data_root
from promptlearning.methods.cot import gsm8k_rationale
from promptlearning.methods.spec import SolverSpec, build_solver
from promptlearning.runs.directory import check_run_dir, prepare_output_dir
from promptlearning.runs.result import TaskResult
from promptlearning.tasks.train.config import RationaleSection, TrainTaskConfig


def rationale_target(row: Mapping[str, Any], section: RationaleSection) -> str:
    """The text the model learns to write after the question: the solution, then "The answer is N."."""
    rationale, final = gsm8k_rationale(str(row[section.rationale_field]), keep_calls=section.calculator_calls)
    if section.answer_field is not None and row.get(section.answer_field) is not None:
        final = str(row[section.answer_field])
    final = final.strip().rstrip(".")
    if not final:
        raise PromptLearningError(f"no final answer: set {section.answer_field!r} or end the solution with '#### N'")
    return f"{rationale} The answer is {final}.".strip()


def _rows(config: TrainTaskConfig, path: str, limit: int | None, fields: Sequence[str]) -> list[dict[str, Any]]:
    return load_examples(path, root=task_data_root(config.data.root), limit=limit, required=fields)


def _targets(rows: Sequence[Mapping[str, Any]], section: RationaleSection, path: str) -> list[str]:
    targets = []
    for number, row in enumerate(rows, 1):
        try:
            targets.append(rationale_target(row, section))
        except PromptLearningError as exc:
            raise PromptLearningError(f"{path}, row {number}: {exc}") from None
    return targets


def solver_spec(config: TrainTaskConfig) -> SolverSpec:
    """How the trained model is evaluated: the question alone (mode direct, no exemplars)."""
    section = config.rationale
    assert section is not None
    return SolverSpec(
        mode="direct", template=config.template.input, self_consistency=section.self_consistency,
        max_new_tokens=section.max_new_tokens, calculator=section.calculator, seed=config.seed,
    )  # fmt: skip


def check_rationale_task(config: TrainTaskConfig) -> None:
    """What can be checked before the model loads."""
    from promptlearning.training.peft_methods import get_method

    if config.template.mode != "plain":
        raise PromptLearningError("objective rationale prompts are plain text (the chain-of-thought format): "
                                  "template.mode must be plain")  # fmt: skip
    if config.peft is not None and get_method(config.peft.method).prompt_learning:
        raise PromptLearningError(f"objective rationale saves a merged model: {config.peft.method} learns a prompt, "
                                  "not weights; use lora (or another adapter) or full fine-tuning")  # fmt: skip
    solver_spec(config)


def run_rationale_task(
    config: TrainTaskConfig, run_dir: Path, *, resume: bool = False, progress: bool | None = None
) -> TaskResult:
    """Fine-tune on the solutions, save the merged model, evaluate it with chain-of-thought."""
    from promptlearning.models import load_model
    from promptlearning.training.generation import finetune_for_generation
    from promptlearning.training.loop import TrainingArguments

    check_run_dir(config, run_dir, resume)
    check_rationale_task(config)
    spec = solver_spec(config)
    (pool, targets), (dev_rows, dev_targets) = _splits(config)
    prepare_output_dir(run_dir, "run directory")
    if not (resume and (run_dir / "config.yaml").is_file()):
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    lm = load_model(config.model, pull=True, batch_size=config.eval_batch_size, **config.model_options())
    prompter = build_solver(spec, lm)
    args = TrainingArguments(**config.training.model_dump(), seed=config.seed)
    trained, loop = finetune_for_generation(
        lm, [prompter.prompt(r) for r in pool], targets, peft=config.peft.method if config.peft else None,
        peft_options=config.peft.options if config.peft else None, args=args, output_dir=run_dir / "training",
        dev=([prompter.prompt(r) for r in dev_rows], dev_targets), max_length=config.max_length,
        device=config.device, progress=progress, resume=resume,
    )  # fmt: skip
    model_dir = _save_merged(trained, run_dir / "model")
    del trained, lm, prompter  # the saved model is loaded for the evaluation
    evaluated = _evaluate(config, spec, model_dir, run_dir / "eval", progress)
    assert config.rationale is not None
    method = config.peft.method if config.peft else "full fine-tuning"
    calculator = ", calculator" if config.rationale.calculator else ""
    result = TaskResult(
        kind="train", name=config.name, setting=f"rationale + {method}, {loop.steps} steps{calculator}",
        model=config.model, metric=evaluated.metric, value=evaluated.value, values=evaluated.values,
        metrics={**evaluated.metrics, "train_examples": len(pool), "steps": loop.steps, "best_step": loop.best_step,
                 "best_dev_loss": -loop.best_metric,
                 "first_dev_loss": -loop.history[0]["neg_loss"] if loop.history else -loop.best_metric},
        num_examples=evaluated.num_examples, seed=config.seed, config=config,
    )  # fmt: skip
    result.write(run_dir)
    _write_report(run_dir / "report.md", config, result)
    return result


def _splits(config: TrainTaskConfig) -> tuple[tuple[list, list[str]], tuple[list, list[str]]]:
    """(training rows, their targets), (dev rows, their targets): ``data.dev``, else the pool's last
    tenth (at most ``dev_limit``, default 200 rows), every row checked."""
    section, data = config.rationale, config.data
    assert section is not None
    fields = [*_template_fields(config), section.rationale_field]
    pool = _rows(config, data.train, data.train_limit, fields)
    targets = _targets(pool, section, data.train)
    if data.dev:
        dev_rows = _rows(config, data.dev, data.dev_limit, fields)
        return (pool, targets), (dev_rows, _targets(dev_rows, section, data.dev))
    held = min(max(1, len(pool) // 10), data.dev_limit or 200) if len(pool) > 1 else 0
    cut = len(pool) - held
    return (pool[:cut], targets[:cut]), (pool[cut:], targets[cut:])


def _evaluate(config: TrainTaskConfig, spec: SolverSpec, model_dir: Path, run_dir: Path,
              progress: bool | None) -> TaskResult:  # fmt: skip
    """The trained model's chain-of-thought run on ``data.eval`` (a ``type: cot`` run in ``run_dir``),
    with the saved model loaded as ``promptlearning run`` loads it (the task's dtype: bf16 where the
    CPU has it), so that the number is the one a user gets from the saved model. On GSM8K it also
    decoded faster: 196 tokens/s in bf16 against 97 with the float32 training weights (two runs on
    this machine's 2 cores, benchmarks/RESULTS.md, not a side-by-side benchmark)."""
    from promptlearning.tasks.cot.run import run_cot
    from promptlearning.tasks.registry import validate_config

    section, data = config.rationale, config.data
    assert section is not None
    evaluation_config = validate_config({
        "type": "cot", "name": f"{config.name}-eval", "model": str(model_dir), "device": config.device,
        "dtype": config.dtype,
        "data": {"root": data.root, "eval": data.eval, "eval_limit": data.eval_limit,
                 "answer_field": section.answer_field or section.rationale_field},
        **{k: v for k, v in spec.model_dump().items() if k != "exemplars"}, "exemplars_file": None,
        "batch_size": config.eval_batch_size,
    })  # fmt: skip
    return run_cot(evaluation_config, run_dir=run_dir, progress=progress)


def _template_fields(config: TrainTaskConfig) -> list[str]:
    from promptlearning.prompts.template import PromptTemplate

    return list(PromptTemplate(config.template.input).input_fields)


def _save_merged(lm: Any, directory: Path) -> Path:
    """The trained model (an adapter merged into its weights) as a Hugging Face directory, atomically."""
    model = lm.model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()

    def write(staging: Path) -> None:
        model.save_pretrained(str(staging), safe_serialization=True)
        lm.tokenizer.save_pretrained(str(staging))

    write_directory_atomically(directory, write)
    lm.model = model
    return directory


def _write_report(path: Path, config: TrainTaskConfig, result: TaskResult) -> None:
    metrics = result.metrics
    lines = [
        f"# {config.name}", "",
        f"- model: `{config.model}`; {result.setting}; {metrics['train_examples']} training solutions",
        f"- best dev loss {metrics['best_dev_loss']:.4f} at step {metrics['best_step']}",
        f"- {config.data.eval}: accuracy (flexible) **{100 * result.value:.2f} %**, strict "
        f"{100 * metrics.get('accuracy_strict', 0.0):.2f} % over {result.num_examples} questions",
        "- the fine-tuned model: `model/`; every solution: `eval/predictions.jsonl`", "",
    ]  # fmt: skip
    path.write_text("\n".join(lines), encoding="utf-8")
