"""Run directories: everything needed to read, compare and reproduce one evaluation.

    <output_dir>/<task>-<method>-<shots>shot-<YYYYmmdd-HHMMSS>/
        config.yaml        the resolved task config
        metrics.json       accuracy, macro-F1, per-class scores, confusion matrix, ECE, speed
        predictions.jsonl  one line per example: gold, predicted, label probabilities and scores
        report.md          a readable summary with the plots
        confusion_matrix.png, reliability.png

The directory is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from promptlearning.errors import PromptLearningError
from promptlearning.evaluation.plots import plot_confusion_matrix, plot_reliability, plot_sample_curve
from promptlearning.evaluation.report import write_cot_report, write_report


def run_name(config: Any) -> str:
    method = config.method_name + ("-" + config.method.selection if config.method_name == "icl" else "")
    calibrated = f"-{config.method.calibration}-cal" if config.method.calibrate else ""
    if config.method.orderings > 1:
        calibrated += f"-{config.method.orderings}orders"
    return f"{config.name}-{method}{calibrated}-{config.shots}shot-seed{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def prepare_output_dir(path: str | Path, what: str = "output directory") -> Path:
    """Create the directory runs are written to, or say why it cannot be used, before any work starts."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise PromptLearningError(f"the {what} {path} is a file, not a directory; choose another path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PromptLearningError(f"cannot create the {what} {path}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise PromptLearningError(f"the {what} {path} is not writable")
    return path


def _write_atomically(output_dir: Path, name: str, fill: Callable[[Path], None]) -> Path:
    """Create ``output_dir/name`` (or ``name-2``, …): filled under a temporary name, then renamed."""
    output_dir.mkdir(parents=True, exist_ok=True)
    final = output_dir / name
    suffix = 1
    while final.exists():
        suffix += 1
        final = output_dir / f"{name}-{suffix}"
    staging = Path(tempfile.mkdtemp(prefix=".tmp-run-", dir=output_dir))
    try:
        fill(staging)
        os.rename(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final


def _dump_config(config: Any, directory: Path) -> None:
    (directory / "config.yaml").write_text(
        yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    )


def write_run(
    output_dir: Path,
    config: Any,
    evaluation: Any,
    examples: Sequence[Mapping[str, Any]],
    pool: Sequence[Mapping[str, Any]],
) -> Path:
    """The run directory of a prompt-classification evaluation."""

    def fill(staging: Path) -> None:
        _dump_config(config, staging)
        (staging / "metrics.json").write_text(json.dumps(evaluation.metrics, indent=2))
        with open(staging / "predictions.jsonl", "w", encoding="utf-8") as f:
            for example, prediction, gold in zip(examples, evaluation.predictions, evaluation.gold, strict=True):
                row = {
                    "example": dict(example),
                    "gold": gold,
                    "predicted": prediction.label,
                    "correct": gold == prediction.label,
                    "probabilities": prediction.probabilities,
                    "label_scores": prediction.label_scores,
                    "demonstrations": prediction.demonstrations,
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        plot_confusion_matrix(evaluation.metrics["confusion_matrix"], staging / "confusion_matrix.png")
        plot_reliability(evaluation.metrics["reliability"], staging / "reliability.png")
        write_report(staging / "report.md", config, evaluation.metrics)

    return _write_atomically(output_dir, run_name(config), fill)


def cot_run_name(config: Any) -> str:
    sc = f"-sc{config.self_consistency}" if config.self_consistency > 1 else ""
    return f"{config.name}-{config.mode}{sc}-seed{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def write_cot_run(output_dir: Path, config: Any, evaluation: Any, exemplars: Sequence[Mapping[str, Any]]) -> Path:
    """The run directory of a chain-of-thought evaluation: metrics, every rationale and vote, the
    self-consistency curve (``samples.png`` when more than one sample was drawn)."""

    def fill(staging: Path) -> None:
        _dump_config(config, staging)
        metrics = {**evaluation.metrics, "self_consistency_curve": evaluation.curves}
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2))
        (staging / "exemplars.json").write_text(json.dumps(list(exemplars), indent=2, ensure_ascii=False))
        with open(staging / "predictions.jsonl", "w", encoding="utf-8") as f:
            for solution, gold in zip(evaluation.solutions, evaluation.gold, strict=True):
                row = {
                    "question": solution.question,
                    "gold": gold,
                    "answers": solution.answers,
                    "correct": {name: a is not None and a == gold for name, a in solution.answers.items()},
                    "votes": solution.votes,
                    "agreement": solution.agreement,
                    "sample_answers": solution.sample_answers,
                    "rationales": solution.rationales,
                    "generated_tokens": solution.generated_tokens,
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        if metrics["samples"] > 1:
            plot_sample_curve(evaluation.curves, staging / "samples.png")
        write_cot_report(staging / "report.md", config, metrics)

    return _write_atomically(output_dir, cot_run_name(config), fill)
