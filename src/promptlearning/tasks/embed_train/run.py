"""Running a sentence-embedding task: sentences -> SimCSE pairs -> sentence-transformers' trainer with
``MultipleNegativesRankingLoss`` -> a sentence-transformers directory that ``load_model`` loads and kNN
demonstration selection uses (``method.embedder: <run>/model``).

    <run>/config.yaml          the settings (``--resume`` refuses different ones)
    <run>/[seed-N/]checkpoints the trainer's checkpoints (the best by dev Spearman is kept)
    <run>/[seed-N/]model       the trained encoder, written atomically
    <run>/[seed-N/]seed.json   that seed's scores (a resumed run keeps finished seeds)
    <run>/metrics.json, run.json, report.md
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from promptlearning.errors import PromptLearningError
from promptlearning.io import write_directory_atomically, write_json_atomically
from promptlearning.loading import load_examples, resolve_path, task_data_root
from promptlearning.pretraining.simcse import (
    build_sentence_encoder,
    spearman,
    sts_evaluator,
    supervised_triples,
    unsupervised_pairs,
)
from promptlearning.runs.directory import check_run_dir, prepare_output_dir
from promptlearning.runs.result import TaskResult
from promptlearning.tasks.embed_train.config import EmbedTrainTaskConfig

HEADLINE = "test_spearman"
SEED_FILE = "seed.json"  # one seed's scores (metrics.json is the summary over seeds)


def _sentences(config: EmbedTrainTaskConfig) -> list[str]:
    """Every sentence of ``data.fields`` in the training files (a .txt file gives its non-empty lines)."""
    root = task_data_root(config.data.root)
    out: list[str] = []
    for name in config.data.train:
        path = resolve_path(name, root)
        if path.suffix == ".txt":
            if not path.is_file():
                raise PromptLearningError(f"data file {path} does not exist")
            out += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            continue
        rows = load_examples(path, required=config.data.fields)
        out += [str(row[field]) for row in rows for field in config.data.fields]
    return out


def training_set(config: EmbedTrainTaskConfig, seed: int) -> Any:
    """The ``datasets.Dataset`` the loss trains on: (anchor, positive[, negative]) columns."""
    if config.objective == "unsupervised":
        return unsupervised_pairs(_sentences(config), limit=config.data.max_sentences, seed=seed)
    root = task_data_root(config.data.root)
    columns = config.data.columns
    rows = [row for name in config.data.train for row in load_examples(name, root=root, required=columns.values())]
    return supervised_triples(rows, columns)


def _sts(config: EmbedTrainTaskConfig, split: str) -> Any:
    name = getattr(config.data, split)
    if name is None:
        return None
    rows = load_examples(name, root=task_data_root(config.data.root), required=config.data.sts_fields,
                         limit=config.data.sts_limit)  # fmt: skip
    return sts_evaluator(rows, name=split, fields=config.data.sts_fields, batch_size=config.eval_batch_size)


def check(config: EmbedTrainTaskConfig) -> None:
    """What can be checked before the model loads: the training and STS files and their fields."""
    training_set(config, config.seed)
    _sts(config, "dev")
    _sts(config, "test")


def _arguments(config: EmbedTrainTaskConfig, output_dir: Path, seed: int, has_dev: bool, progress: bool) -> Any:
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers

    from promptlearning.devices import mixed_precision, resolve_device

    device = resolve_device(config.device)
    section = config.training
    precision = mixed_precision(section.mixed_precision, device)
    every = min(section.eval_every, section.max_steps)
    return SentenceTransformerTrainingArguments(
        output_dir=str(output_dir), max_steps=section.max_steps, per_device_train_batch_size=section.batch_size,
        per_device_eval_batch_size=config.eval_batch_size, learning_rate=section.learning_rate,
        weight_decay=section.weight_decay, warmup_steps=float(section.warmup_ratio),  # a float: a ratio
        lr_scheduler_type=section.scheduler,
        max_grad_norm=section.max_grad_norm, seed=seed, data_seed=seed,
        batch_sampler=BatchSamplers.NO_DUPLICATES,  # a duplicate in the batch would be a false negative
        eval_strategy="steps" if has_dev else "no", eval_steps=every, save_strategy="steps", save_steps=every,
        save_total_limit=section.keep_checkpoints, load_best_model_at_end=has_dev,
        metric_for_best_model="eval_dev_spearman_cosine" if has_dev else None, greater_is_better=True,
        logging_steps=max(1, every // 5), report_to=[section.log_with] if section.log_with else [],
        use_cpu=device.type == "cpu", bf16=precision == "bf16", fp16=precision == "fp16",
        disable_tqdm=not progress,
    )  # fmt: skip


def _last_checkpoint(directory: Path) -> str | None:
    done = [p for p in directory.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return str(max(done, key=lambda p: int(p.name.split("-")[1]))) if done else None


def _save(encoder: Any, directory: Path) -> None:
    """The encoder as a sentence-transformers directory (with a model card), renamed into place when complete."""
    from promptlearning.progress import quiet_third_party

    with quiet_third_party():
        write_directory_atomically(directory, lambda staging: encoder.save(str(staging)))


def train_one_seed(
    config: EmbedTrainTaskConfig, seed: int, seed_dir: Path, *, resume: bool, progress: bool,
    baseline: Mapping[str, float] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """One training run: the untrained encoder's STS scores (unless given), training, the trained scores."""
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from promptlearning.models import resolve_model_dir
    from promptlearning.progress import quiet_third_party

    dev, test = _sts(config, "dev"), _sts(config, "test")
    path = resolve_model_dir(config.model, pull=True)
    encoder = build_sentence_encoder(path, pooling=config.pooling, max_seq_length=config.max_seq_length,
                                     dropout=config.dropout, train_layers=config.train_layers, device=config.device,
                                     dtype=config.dtype)  # fmt: skip
    if baseline is None:
        baseline = {f"untrained_{split}_spearman": spearman(ev, encoder)
                    for split, ev in (("dev", dev), ("test", test)) if ev is not None}  # fmt: skip
    train_set = training_set(config, seed)
    loss = MultipleNegativesRankingLoss(encoder, scale=1.0 / config.temperature)
    checkpoints = seed_dir / "checkpoints"
    trainer = SentenceTransformerTrainer(
        model=encoder, args=_arguments(config, checkpoints, seed, dev is not None, progress),
        train_dataset=train_set, loss=loss, evaluator=dev,
    )  # fmt: skip
    if not progress:  # without bars, the trainer would print every log line instead
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    with quiet_third_party():
        trainer.train(resume_from_checkpoint=_last_checkpoint(checkpoints) if resume else None)
    seconds = time.perf_counter() - started
    metrics: dict[str, Any] = {**baseline, "seed": seed, "train_sentences": len(train_set),
                               "train_seconds": round(seconds, 1), "steps": trainer.state.global_step}  # fmt: skip
    if dev is not None:
        metrics["dev_spearman"] = spearman(dev, encoder)
        metrics["best_checkpoint"] = trainer.state.best_model_checkpoint
    if test is not None:
        metrics[HEADLINE] = spearman(test, encoder)
    _save(encoder, seed_dir / "model")
    shutil.rmtree(checkpoints, ignore_errors=True)  # the best weights are in model/
    write_json_atomically(seed_dir / SEED_FILE, metrics)
    return metrics


def run_embed_train_task(
    config: EmbedTrainTaskConfig,
    *,
    output_dir: str | Path | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool | None = None,
    **_: Any,
) -> TaskResult:
    """Train one encoder per seed and report STS Spearman (× 100) before and after training."""
    run_dir = Path(run_dir) if run_dir else Path(output_dir or config.output_dir) / config.name
    check_run_dir(config, run_dir, resume)
    check(config)
    prepare_output_dir(run_dir, "run directory")
    if not (resume and (run_dir / "config.yaml").is_file()):
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    seeds = config.seeds or [config.seed]
    runs: list[dict[str, Any]] = []
    baseline: dict[str, float] | None = None
    for seed in seeds:
        seed_dir = run_dir / f"seed-{seed}" if len(seeds) > 1 else run_dir
        done = seed_dir / SEED_FILE
        if resume and done.is_file() and (seed_dir / "model").is_dir():  # finished before the interruption
            runs.append(json.loads(done.read_text(encoding="utf-8")))
        else:
            runs.append(train_one_seed(config, seed, seed_dir, resume=resume, progress=progress is not False,
                                       baseline=baseline))  # fmt: skip
        baseline = {k: v for k, v in runs[-1].items() if k.startswith("untrained_")}
    headline = HEADLINE if HEADLINE in runs[0] else "dev_spearman" if "dev_spearman" in runs[0] else None
    values = [float(r[headline]) for r in runs] if headline else []
    metrics = {**baseline, **_means(runs)} if baseline else _means(runs)
    models = [str((run_dir / f"seed-{s}" if len(seeds) > 1 else run_dir) / "model") for s in seeds]
    summary = {"seeds": seeds, "runs": runs, "metrics": metrics, "models": models}
    write_json_atomically(run_dir / "metrics.json", summary)
    out = TaskResult(
        kind="embed-train", name=config.name, setting=_setting(config), model=models[0],
        metric=headline or "steps", value=statistics.fmean(values) if values else float(runs[0]["steps"]),
        values=values, metrics=metrics, num_examples=int(runs[0]["train_sentences"]),
        seed=seeds[0] if len(seeds) == 1 else ",".join(map(str, seeds)), run_dir=run_dir, evaluation=summary,
        config=config,
    )  # fmt: skip
    out.write(run_dir)
    _write_report(run_dir / "report.md", config, summary)
    return out


def _means(runs: list[dict[str, Any]]) -> dict[str, float]:
    keys = [k for k in ("dev_spearman", HEADLINE, "train_seconds") if k in runs[0]]
    return {k: statistics.fmean(float(r[k]) for r in runs) for k in keys}


def _setting(config: EmbedTrainTaskConfig) -> str:
    noise = f", dropout {config.dropout}" if config.dropout is not None else ""
    return (f"{config.objective} SimCSE, {config.pooling} pooling{noise}, temperature {config.temperature}, "
            f"batch {config.training.batch_size}, {config.training.max_steps} steps")  # fmt: skip


def _write_report(path: Path, config: EmbedTrainTaskConfig, summary: Mapping[str, Any]) -> None:
    runs = summary["runs"]
    lines = [f"# {config.name}: sentence embeddings", "", f"{config.model}: {_setting(config)}", ""]
    lines += ["STS Spearman of cosine similarities × 100 (sentence-transformers' evaluator).", ""]
    lines += ["| seed | untrained dev | untrained test | dev | test | steps | seconds |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip

    def cell(run: Mapping[str, Any], key: str) -> str:
        return f"{run[key]:.2f}" if isinstance(run.get(key), (int, float)) else "-"

    for run in runs:
        keys = ("untrained_dev_spearman", "untrained_test_spearman", "dev_spearman", HEADLINE)
        lines.append(f"| {run['seed']} | " + " | ".join(cell(run, k) for k in keys)
                     + f" | {run['steps']} | {run['train_seconds']:.0f} |")  # fmt: skip
    if len(runs) > 1 and HEADLINE in runs[0]:
        values = [r[HEADLINE] for r in runs]
        lines += ["", f"test Spearman {statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f} "
                  f"(sample std over {len(values)} seeds)"]  # fmt: skip
    lines += ["", "Models: " + ", ".join(f"`{m}`" for m in summary["models"])]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
