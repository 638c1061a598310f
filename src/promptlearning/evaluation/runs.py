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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from promptlearning.evaluation.plots import plot_confusion_matrix, plot_reliability
from promptlearning.evaluation.report import write_report


def run_name(config: Any) -> str:
    method = config.method_name + ("-" + config.method.selection if config.method_name == "icl" else "")
    calibrated = f"-{config.method.calibration}-cal" if config.method.calibrate else ""
    return f"{config.name}-{method}{calibrated}-{config.shots}shot-seed{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def write_run(
    output_dir: Path,
    config: Any,
    evaluation: Any,
    examples: Sequence[Mapping[str, Any]],
    pool: Sequence[Mapping[str, Any]],
) -> Path:
    output_dir.mkdir(parents=True, exist_ok=True)
    final = output_dir / run_name(config)
    suffix = 1
    while final.exists():
        suffix += 1
        final = output_dir / f"{run_name(config)}-{suffix}"
    staging = Path(tempfile.mkdtemp(prefix=".tmp-run-", dir=output_dir))
    try:
        (staging / "config.yaml").write_text(
            yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
        )
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
        os.rename(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final
