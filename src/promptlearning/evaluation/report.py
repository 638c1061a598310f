"""report.md of a run: headline metrics, per-class table, confusion matrix and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(path: Path, config: Any, metrics: dict[str, Any]) -> None:
    method = config.method_name
    if method == "icl":
        method += f", {config.shots} shots ({config.method.selection})"
        if config.method.orderings > 1:
            method += f", {config.method.orderings} orderings averaged"
    calibration = config.method.calibration if config.method.calibrate else "off"
    lines = [
        f"# {config.name}",
        "",
        f"- model: `{config.model}`; template mode: {config.template.mode}",
        f"- method: {method}; calibration: {calibration}; seed {config.seed}",
        f"- evaluated on {metrics['num_examples']} examples ({config.data.eval}) "
        f"in {metrics['seconds']:.1f} s ({metrics['examples_per_second']:.1f} examples/s)",
        "",
        markdown_table(
            ["accuracy", "macro-F1", "ECE"],
            [[f"{metrics['accuracy']:.4f}", f"{metrics['macro_f1']:.4f}", f"{metrics['ece']:.4f}"]],
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


def write_cot_report(path: Path, config: Any, metrics: dict[str, Any]) -> None:
    sc = f"self-consistency over {config.self_consistency} samples" if config.self_consistency > 1 else "1 sample"
    curve = metrics.get("self_consistency_curve", {}).get("flexible", {})
    lines = [
        f"# {config.name}",
        "",
        f"- model: `{config.model}`; mode: {config.mode}; {sc}; seed {config.seed}",
        f"- {metrics['questions']} questions ({config.data.eval}) in {metrics['seconds']:.1f} s; "
        f"{metrics['generated_tokens']} tokens generated ({metrics['tokens_per_second']:.1f} tokens/s)",
        "",
        markdown_table(
            ["accuracy (strict)", "accuracy (flexible)", "no answer (strict)", "no answer (flexible)", "agreement"],
            [
                [
                    f"{metrics['accuracy_strict']:.4f}",
                    f"{metrics['accuracy_flexible']:.4f}",
                    f"{metrics['no_answer_strict']:.3f}",
                    f"{metrics['no_answer_flexible']:.3f}",
                    f"{metrics['agreement']:.3f}",
                ]
            ],
        ),
        "",
    ]
    if len(curve) > 1:
        lines += [
            "## Accuracy (flexible) against the number of samples",
            "",
            markdown_table(["samples", "accuracy"], [[k, f"{v:.4f}"] for k, v in curve.items()]),
            "",
            "![self-consistency](samples.png)",
            "",
        ]
    path.write_text("\n".join(lines), encoding="utf-8")
