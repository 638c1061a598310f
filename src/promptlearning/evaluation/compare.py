"""Compare run directories in one table (and an optional bar plot)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from promptlearning.errors import PromptLearningError
from promptlearning.evaluation.report import markdown_table


def read_runs(run_dirs: Iterable[str | Path]) -> list[dict[str, Any]]:
    rows = []
    for run_dir in map(Path, run_dirs):
        if not (run_dir / "metrics.json").is_file():
            continue  # tolerate globs that match other files
        metrics = json.loads((run_dir / "metrics.json").read_text())
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        method = config["method"]
        shots = config.get("shots", 0)
        name = method["name"] if method["name"] != "auto" else ("icl" if shots else "zero-shot")
        rows.append(
            {
                "run": run_dir.name,
                "task": config["name"],
                "model": config["model"],
                "method": name + (f" ({method['selection']})" if name == "icl" else ""),
                "shots": shots,
                "calibration": method.get("calibration", "contextual") if method["calibrate"] else "no",
                "seed": config.get("seed", 0),
                "accuracy": metrics["accuracy"],
                "macro_f1": metrics["macro_f1"],
                "ece": metrics["ece"],
                "examples_per_second": metrics["examples_per_second"],
                "num_examples": metrics["num_examples"],
            }
        )
    if not rows:
        raise PromptLearningError("no run directories (with metrics.json) among the given paths")
    return rows


def comparison_table(rows: list[dict[str, Any]]) -> str:
    return markdown_table(
        ["run", "method", "shots", "calibration", "accuracy", "macro-F1", "ECE", "examples/s", "n"],
        [
            [
                r["run"],
                r["method"],
                r["shots"],
                r["calibration"],
                f"{r['accuracy']:.4f}",
                f"{r['macro_f1']:.4f}",
                f"{r['ece']:.3f}",
                f"{r['examples_per_second']:.1f}",
                r["num_examples"],
            ]
            for r in rows
        ],
    )
