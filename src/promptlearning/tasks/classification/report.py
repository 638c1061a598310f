"""What a classification run writes: metrics, predictions, ``report.md`` and its plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from promptlearning.runs.directory import dump_config, dump_json, dump_jsonl, timestamped, write_run_dir
from promptlearning.runs.plots import plot_confusion_matrix, plot_reliability
from promptlearning.runs.report import markdown_table
from promptlearning.runs.result import TaskResult


def run_name(config: Any) -> str:
    method = config.method_name + ("-" + config.method.selection if config.method_name == "icl" else "")
    calibrated = f"-{config.calibration}-cal" if config.calibration != "none" else ""
    if config.method.orderings > 1:
        calibrated += f"-{config.method.orderings}orders"
    return timestamped(f"{config.name}-{method}{calibrated}-{config.shots}shot-seed{config.seed}")


def prediction_rows(examples: Sequence[Mapping[str, Any]], evaluation: Any) -> list[dict[str, Any]]:
    """One row per example: the example, gold and predicted labels, probabilities, scores, demonstrations."""
    return [
        {
            "example": dict(example),
            "gold": gold,
            "predicted": prediction.label,
            "correct": gold == prediction.label,
            "probabilities": prediction.probabilities,
            "label_scores": prediction.label_scores,
            "demonstrations": prediction.demonstrations,
        }
        for example, prediction, gold in zip(examples, evaluation.predictions, evaluation.gold, strict=True)
    ]


def write_run(output_dir: Path, config: Any, result: TaskResult, name: str | None = None) -> Path:
    """The run directory of a prompt-classification evaluation::

    <output_dir>/<task>-<method>-<shots>shot-seed<seed>-<YYYYmmdd-HHMMSS>/
        config.yaml, run.json   the task, the common result
        metrics.json            accuracy, macro-F1, per-class scores, confusion matrix, ECE, speed
        predictions.jsonl       one line per example: gold, predicted, probabilities, scores
        report.md, confusion_matrix.png, reliability.png
    """
    metrics = result.evaluation.metrics

    def fill(staging: Path) -> None:
        dump_config(config, staging)
        result.write(staging)
        dump_json(staging / "metrics.json", metrics)
        dump_jsonl(staging / "predictions.jsonl", result.predictions)
        plot_confusion_matrix(metrics["confusion_matrix"], staging / "confusion_matrix.png")
        plot_reliability(metrics["reliability"], staging / "reliability.png")
        write_report(staging / "report.md", config, metrics)

    run_dir = write_run_dir(output_dir, name or run_name(config), fill)
    result.run_dir = run_dir
    return run_dir


def write_report(path: Path, config: Any, metrics: dict[str, Any]) -> None:
    method = config.method_name
    if method == "icl":
        method += f", {config.shots} shots ({config.method.selection})"
        if config.method.orderings > 1:
            method += f", {config.method.orderings} orderings averaged"
    calibration = config.calibration
    lines = [
        f"# {config.name}",
        "",
        f"- model: `{config.model}`; template mode: {config.template.mode}",
        f"- method: {method}; calibration: {calibration}; seed {config.seed}",
        f"- evaluated on {metrics['num_examples']} examples ({config.data.eval}) "
        f"in {metrics['seconds']:.1f} s ({metrics['examples_per_second']:.1f} examples/s)",
        "",
        markdown_table(
            ["accuracy", "macro-F1", "ECE", *(["SemEval macro-F1"] if "semeval_macro_f1" in metrics else [])],
            [
                [
                    f"{metrics['accuracy']:.4f}",
                    f"{metrics['macro_f1']:.4f}",
                    f"{metrics['ece']:.4f}",
                    *([f"{metrics['semeval_macro_f1']:.4f}"] if "semeval_macro_f1" in metrics else []),
                ]
            ],
        ),
        "",
        "## Per class",
        "",
        markdown_table(
            ["label", "precision", "recall", "F1", "support"],
            [
                [label, f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}", s["support"]]
                for label, s in metrics["per_class"].items()
            ],
        ),
        "",
        "## Confusion matrix (rows: gold, columns: predicted)",
        "",
        markdown_table(
            ["", *metrics["confusion_matrix"]["labels"]],
            [[label, *row] for label, row in zip(*metrics["confusion_matrix"].values(), strict=True)],
        ),
        "",
        "![confusion matrix](confusion_matrix.png) ![reliability diagram](reliability.png)",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
