"""Compare prompt-classification run directories in one table (and an optional plot).

Rows are labelled by their *setting* (method, shots, selection, calibration, orderings), so runs of
one setting under several seeds sit together and the plot shows their spread.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from promptlearning.errors import PromptLearningError
from promptlearning.evaluation.report import markdown_table

PLOT_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg")


def setting_label(config: Mapping[str, Any]) -> str:
    """A short description of what a classification run did, e.g. ``8-shot balanced + batch calibration``."""
    method = config.get("method") or {}
    shots = int(config.get("shots", 0) or 0)
    name = method.get("name", "auto")
    name = ("icl" if shots else "zero-shot") if name == "auto" else name
    label = "zero-shot" if name == "zero-shot" else f"{shots}-shot {method.get('selection', 'random')}"
    label = label.replace("shot knn", "shot kNN")
    if method.get("calibrate"):
        label += f" + {method.get('calibration', 'contextual')} calibration"
    if int(method.get("orderings", 1) or 1) > 1:
        label += f", {method['orderings']} orderings"
    return label


def read_runs(run_dirs: Iterable[str | Path]) -> list[dict[str, Any]]:
    """One row per classification run directory. Paths that are not run directories (a glob's other
    matches) are skipped; a training or chain-of-thought run is an error that says so."""
    rows = []
    for run_dir in map(Path, run_dirs):
        if (run_dir / "summary.json").is_file():
            raise PromptLearningError(_unsupported(run_dir, "a training run"))
        config_path, metrics_path = run_dir / "config.yaml", run_dir / "metrics.json"
        if not (config_path.is_file() and metrics_path.is_file()):
            continue
        try:
            metrics = json.loads(metrics_path.read_text())
            config = yaml.safe_load(config_path.read_text())
            if config.get("type") == "cot":
                raise PromptLearningError(_unsupported(run_dir, "a chain-of-thought run"))
            rows.append(_row(run_dir, config, metrics))
        except (ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError) as exc:
            raise PromptLearningError(f"{run_dir} holds a damaged metrics.json or config.yaml ({exc})") from None
    if not rows:
        raise PromptLearningError("no run directories (with metrics.json) among the given paths")
    return rows


def _unsupported(run_dir: Path, kind: str) -> str:
    return (
        f"{run_dir} is {kind}: compare reads prompt-classification runs (from `promptlearning run`) for now; "
        "read its report.md instead"
    )


def _row(run_dir: Path, config: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
    method = config["method"]
    shots = config.get("shots", 0)
    name = method["name"] if method["name"] != "auto" else ("icl" if shots else "zero-shot")
    return {
        "run": run_dir.name,
        "setting": setting_label(config),
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


def check_plot_path(path: str | Path) -> Path:
    """A plot file name matplotlib can write, in a folder that exists (created if missing)."""
    path = Path(path).expanduser()
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise PromptLearningError(f"--plot {path}: name an image file ending in {', '.join(PLOT_SUFFIXES)}")
    if path.is_dir():
        raise PromptLearningError(f"--plot {path} is a directory; name an image file such as {path}/compare.png")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PromptLearningError(f"cannot create the folder of --plot {path}: {exc.strerror or exc}") from None
    return path


def comparison_table(rows: list[dict[str, Any]]) -> str:
    return markdown_table(
        ["run", "setting", "seed", "accuracy", "macro-F1", "ECE", "examples/s", "n"],
        [
            [
                r["run"],
                r["setting"],
                r["seed"],
                f"{r['accuracy']:.4f}",
                f"{r['macro_f1']:.4f}",
                f"{r['ece']:.3f}",
                f"{r['examples_per_second']:.1f}",
                r["num_examples"],
            ]
            for r in rows
        ],
    )
