"""Compare run directories of any task kind in one table (and an optional plot).

Every run directory holds ``run.json`` (a :class:`~promptlearning.runs.result.TaskResult`): the
kind, the setting, the headline metric with its spread over seeds and the scalar metrics. Rows are
labelled by their *setting*, so runs of one setting under several seeds sit together and the plot
shows their spread. Runs written before ``run.json`` existed (classification runs with only
``config.yaml`` and ``metrics.json``) are still read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from promptlearning.errors import PromptLearningError
from promptlearning.runs.report import markdown_table

PLOT_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg")
SORT_KEYS = ("run", "kind", "setting", "value", "accuracy", "macro_f1", "examples_per_second")
# columns shown when at least one compared run has the metric, in this order
_OPTIONAL_COLUMNS = (("accuracy", "accuracy", ".4f"), ("macro_f1", "macro-F1", ".4f"), ("ece", "ECE", ".3f"),
                     ("examples_per_second", "examples/s", ".1f"))  # fmt: skip


def read_runs(run_dirs: Iterable[str | Path]) -> list[dict[str, Any]]:
    """One row per run directory, of any kind. Paths that are not run directories (a glob's other
    matches) are skipped."""
    from promptlearning.runs.result import RUN_FILE, TaskResult

    rows = []
    for run_dir in map(Path, run_dirs):
        if (run_dir / RUN_FILE).is_file():
            rows.append(result_row(TaskResult.read(run_dir)))
        elif (run_dir / "config.yaml").is_file() and (run_dir / "metrics.json").is_file():
            rows.append(_legacy_row(run_dir))
    if not rows:
        raise PromptLearningError("no run directories (with run.json) among the given paths")
    return rows


def result_row(result: Any) -> dict[str, Any]:
    """The comparison row of a :class:`TaskResult`."""
    return {
        **result.metrics,
        "run": result.run_dir.name if result.run_dir else result.name,
        "kind": result.kind,
        "setting": result.setting,
        "task": result.name,
        "model": result.model,
        "seed": result.seed,
        "metric": result.metric,
        "value": result.value,
        "std": result.std,
        "values": list(result.values),
        "num_examples": result.num_examples,
        result.metric: result.value,
        f"{result.metric}_std": result.std,
    }


def _legacy_row(run_dir: Path) -> dict[str, Any]:
    """A classification run from before ``run.json``."""
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        accuracy = float(metrics["accuracy"])
        if not isinstance(config, dict) or config.get("type", "classification") != "classification":
            raise PromptLearningError(f"{run_dir} has no run.json; rerun it with this version to compare it")
        return {
            **{k: v for k, v in metrics.items() if isinstance(v, int | float)},
            "run": run_dir.name, "kind": "classification", "setting": legacy_setting_label(config),
            "task": config["name"], "model": config["model"], "seed": config.get("seed", 0), "metric": "accuracy",
            "value": accuracy, "std": 0.0, "values": [accuracy], "num_examples": metrics["num_examples"],
        }  # fmt: skip
    except (ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError) as exc:
        raise PromptLearningError(f"{run_dir} holds a damaged metrics.json or config.yaml ({exc})") from None


def legacy_setting_label(config: Mapping[str, Any]) -> str:
    """The setting of a classification run from its saved config, e.g. ``8-shot balanced + batch calibration``."""
    method = config.get("method") or {}
    shots = int(config.get("shots", 0) or 0)
    name = method.get("name", "auto")
    name = ("icl" if shots else "zero-shot") if name == "auto" else name
    label = "zero-shot" if name == "zero-shot" else f"{shots}-shot {method.get('selection', 'random')}"
    label = label.replace("shot knn", "shot kNN")
    calibration = method.get("calibration") or "none"
    if method.get("calibrate") is False:  # older spelling, still read
        calibration = "none"
    elif method.get("calibrate") is True and calibration == "none":
        calibration = "contextual"
    if calibration != "none":
        label += f" + {calibration} calibration"
    if int(method.get("orderings", 1) or 1) > 1:
        label += f", {method['orderings']} orderings"
    return label


def sort_rows(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Rows sorted by a column: names ascending, numbers best (largest) first; rows without it last."""
    text = key in ("run", "kind", "setting")
    present = [r for r in rows if r.get(key) is not None]
    missing = [r for r in rows if r.get(key) is None]
    return sorted(present, key=lambda r: str(r[key]) if text else -float(r[key])) + missing


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


def plot_metric(rows: list[dict[str, Any]]) -> str:
    """The metric a plot of ``rows`` shows: their common headline metric."""
    metrics = {r["metric"] for r in rows}
    if len(metrics) > 1:
        raise PromptLearningError(
            f"the runs report different metrics ({', '.join(sorted(metrics))}); plot runs of one metric at a time"
        )
    return metrics.pop()


def comparison_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table: run, kind, setting, seed, the headline metric (± std over seeds) and the common
    metrics any of the runs has."""
    optional = [(key, title, fmt) for key, title, fmt in _OPTIONAL_COLUMNS if any(key in r for r in rows)]
    show_kind = len({r["kind"] for r in rows}) > 1

    def headline(r: Mapping[str, Any]) -> str:
        spread = f" ± {r['std']:.4f}" if len(r["values"]) > 1 else ""
        return f"{r['metric']} {r['value']:.4f}{spread}"

    def cell(r: Mapping[str, Any], key: str, fmt: str) -> str:
        return format(r[key], fmt) if isinstance(r.get(key), int | float) else "-"

    header = ["run", *(["kind"] if show_kind else []), "setting", "seed", "result",
              *(title for _, title, _ in optional), "n"]  # fmt: skip
    body = [
        [r["run"], *([r["kind"]] if show_kind else []), r["setting"], r["seed"], headline(r),
         *(cell(r, key, fmt) for key, _, fmt in optional), r["num_examples"]]
        for r in rows
    ]  # fmt: skip
    return markdown_table(header, body)
