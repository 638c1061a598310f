"""What a chain-of-thought run writes: every rationale and vote, metrics, ``report.md``, the sample curve."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from promptlearning.runs.directory import dump_config, dump_json, dump_jsonl, timestamped, write_run_dir
from promptlearning.runs.plots import plot_sample_curve
from promptlearning.runs.report import markdown_table
from promptlearning.runs.result import TaskResult


def run_name(config: Any) -> str:
    sc = f"-sc{config.self_consistency}" if config.self_consistency > 1 else ""
    return timestamped(f"{config.name}-{config.mode}{sc}-seed{config.seed}")


def prediction_rows(evaluation: Any) -> list[dict[str, Any]]:
    """One row per question: gold answer, answers and votes per extraction chain, every rationale."""
    return [
        {
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
        for solution, gold in zip(evaluation.solutions, evaluation.gold, strict=True)
    ]


def write_run(
    output_dir: Path, config: Any, result: TaskResult, exemplars: Sequence[Mapping[str, Any]], name: str | None = None
) -> Path:
    """The run directory of a chain-of-thought evaluation: ``config.yaml``, ``run.json``, ``metrics.json``,
    ``exemplars.json``, ``predictions.jsonl`` (every rationale and vote), ``report.md`` and, when more
    than one sample was drawn, ``samples.png`` (accuracy against the number of samples)."""
    evaluation = result.evaluation

    def fill(staging: Path) -> None:
        dump_config(config, staging)
        result.write(staging)
        metrics = {**evaluation.metrics, "self_consistency_curve": evaluation.curves}
        dump_json(staging / "metrics.json", metrics)
        dump_json(staging / "exemplars.json", list(exemplars))
        dump_jsonl(staging / "predictions.jsonl", result.predictions)
        if metrics["samples"] > 1:
            plot_sample_curve(evaluation.curves, staging / "samples.png")
        write_report(staging / "report.md", config, metrics)

    run_dir = write_run_dir(output_dir, name or run_name(config), fill)
    result.run_dir = run_dir
    return run_dir


def write_report(path: Path, config: Any, metrics: dict[str, Any]) -> None:
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
