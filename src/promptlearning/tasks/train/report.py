"""What a training run writes at its top level: ``summary.json``, ``run.json``, ``report.md``, ``dev_curves.png``.

(Each seed's directory holds its checkpoints, best weights, TensorBoard scalars, program and metrics.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptlearning.io import write_json_atomically
from promptlearning.runs.plots import plot_training_curves
from promptlearning.runs.report import markdown_table
from promptlearning.runs.result import TaskResult
from promptlearning.training.fewshot import mean_std


@dataclass
class TrainEvaluation:
    """A training run's detail: per-seed results (dev history, eval metrics) and the summary over seeds."""

    seeds: dict[int, dict[str, Any]]
    summary: dict[str, Any]
    run_dir: Path | None = None

    def summary_lines(self) -> list[str]:
        per_seed = ", ".join(f"{seed}: {value:.2f}" for seed, value in self.summary.get("per_seed", {}).items())
        lines = [f"{self.summary['metric']} per seed on the eval split: {per_seed}"] if per_seed else []
        if self.run_dir is not None:
            lines.append(f"programs (for `promptlearning predict`) in {self.run_dir}/seed-*/program")
        return lines


def metric_name(config: Any) -> str:
    return "f1" if config.objective == "ner" else "accuracy"


def setting_label(config: Any) -> str:
    """``pet + lora, k=16`` / ``head + full fine-tuning``."""
    method = config.peft.method if config.peft else "full fine-tuning"
    protocol = f", k={config.few_shot.k}" if config.few_shot else ""
    return f"{config.objective} + {method}{protocol}"


def write_reports(run_dir: Path, config: Any, result: TaskResult) -> None:
    """The run's top-level files, once every seed is done."""
    results, summary = result.evaluation.seeds, result.evaluation.summary
    write_json_atomically(run_dir / "summary.json", summary)
    result.write(run_dir)
    plot_training_curves({f"seed {s}": r["dev_history"] for s, r in results.items()}, metric_name(config),
                         run_dir / "dev_curves.png")  # fmt: skip
    write_report(run_dir / "report.md", config, results, summary)


def summarise(config: Any, results: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    metric = metric_name(config)
    values = [100 * r["eval"][metric] for r in results.values()]
    mean, std = mean_std(values)
    summary = {"name": config.name, "objective": config.objective,
               "peft": config.peft.method if config.peft else "full", "model": config.model,
               "k": config.few_shot.k if config.few_shot else None, "metric": metric, "mean": mean, "std": std,
               "per_seed": dict(zip(map(str, results), values, strict=True))}  # fmt: skip
    scored = _scored_ensembles(results)
    if scored:  # what distillation keeps: the members and their undistilled ensemble, over the same seeds
        members = zip(*(e["members_eval"] for e in scored), strict=True)  # per member, its accuracy per seed
        summary["ensemble"] = {"members_eval": [_percent_mean_std(m) for m in members],
                               "ensemble_eval": _percent_mean_std([e["ensemble_eval"] for e in scored])}  # fmt: skip
    return summary


def _percent_mean_std(fractions: Sequence[float]) -> dict[str, float]:
    mean, std = mean_std([100 * f for f in fractions])
    return {"mean": mean, "std": std}


def _scored_ensembles(results: Mapping[int, Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Each seed's ``ensemble`` notes when every seed scored its members on the eval split, else []."""
    notes = [r.get("ensemble") or {} for r in results.values()]
    return notes if notes and all("members_eval" in n for n in notes) else []


def write_report(path: Path, config: Any, results: Mapping[int, Mapping[str, Any]], summary: Mapping[str, Any]) -> None:
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
        *_ensemble_lines(results, summary),
        "![dev curves](dev_curves.png)",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


def _ensemble_lines(results: Mapping[int, Mapping[str, Any]], summary: Mapping[str, Any]) -> list[str]:
    """A ``pet_ensemble`` run's own table: members, their ensemble and the distilled program, per seed."""
    if not all(r.get("ensemble") for r in results.values()):
        return []
    scored = "ensemble" in summary  # summarise() found every seed's members scored on the eval split
    header = ["seed", "members' dev", "ensemble dev", "distilled dev"]
    header += ["members' eval", "ensemble eval"] if scored else []
    rows = []
    for seed, r in results.items():
        notes = r["ensemble"]
        row = [seed, " / ".join(f"{100 * v:.1f}" for v in notes["members_dev"]), f"{100 * notes['ensemble_dev']:.1f}",
               f"{100 * (r['best_dev'] or 0):.1f}"]  # fmt: skip
        if scored:
            row += [" / ".join(f"{100 * v:.1f}" for v in notes["members_eval"]), f"{100 * notes['ensemble_eval']:.2f}"]
        rows.append([*row, f"{100 * r['eval'][summary['metric']]:.2f}"])
    lines = ["## Ensemble", "", markdown_table([*header, f"distilled eval {summary['metric']}"], rows), "",
             "Each seed's `program/` is the distilled program; `ensemble/` is the undistilled ensemble as one "
             "program (one forward pass per member).", ""]  # fmt: skip
    if scored:
        members = ", ".join(f"{m['mean']:.2f} ± {m['std']:.2f}" for m in summary["ensemble"]["members_eval"])
        whole = summary["ensemble"]["ensemble_eval"]
        lines += [f"Over the seeds: members {members}; undistilled ensemble {whole['mean']:.2f} ± {whole['std']:.2f}; "
                  f"distilled {summary['mean']:.2f} ± {summary['std']:.2f}.", ""]  # fmt: skip
    return lines
