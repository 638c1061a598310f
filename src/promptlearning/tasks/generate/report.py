"""What a generation run writes: every prompt, output and score, metrics, and ``report.md`` with the
worst-scoring examples to read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from promptlearning.runs.directory import dump_config, dump_json, dump_jsonl, timestamped, write_run_dir
from promptlearning.runs.report import markdown_table
from promptlearning.runs.result import TaskResult


def run_name(config: Any) -> str:
    shots = f"{config.shots}shot-{config.selection}" if config.shots else "0shot"
    return timestamped(f"{config.name}-{shots}-seed{config.seed}")


def prediction_rows(examples: Sequence[Mapping[str, Any]], evaluation: Any) -> list[dict[str, Any]]:
    """One row per example: the example, its prompt, raw output, post-processed answer, references, score."""
    return [
        {
            "example": dict(example),
            "prompt": prompt,
            "output": output,
            "answer": answer,
            "references": refs,
            "score": score,
        }
        for example, prompt, output, answer, refs, score in zip(
            examples,
            evaluation.prompts,
            evaluation.outputs,
            evaluation.answers,
            evaluation.references,
            evaluation.scores,
            strict=True,
        )
    ]


def write_run(output_dir: Path, config: Any, result: TaskResult, name: str | None = None) -> Path:
    """The run directory of a generation task::

    <output_dir>/<task>-<shots>-seed<seed>-<YYYYmmdd-HHMMSS>/
        config.yaml, run.json   the task, the common result
        metrics.json            every metric of the task
        predictions.jsonl       one line per example: prompt, output, answer, references, score
        report.md               the metrics, the first prompt, the worst examples
    """
    evaluation = result.evaluation

    def fill(staging: Path) -> None:
        dump_config(config, staging)
        result.write(staging)
        dump_json(staging / "metrics.json", evaluation.metrics)
        dump_jsonl(staging / "predictions.jsonl", result.predictions)
        write_report(staging / "report.md", config, result)

    run_dir = write_run_dir(output_dir, name or run_name(config), fill)
    result.run_dir = run_dir
    return run_dir


def _cell(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def write_report(path: Path, config: Any, result: TaskResult) -> None:
    evaluation = result.evaluation
    metrics = dict(result.metrics)
    lines = [
        f"# {config.name}",
        "",
        f"- model: `{config.model}`; {result.setting}; seed {config.seed}",
        f"- {result.num_examples} examples ({config.data.eval}); metrics: {', '.join(config.metrics)}; "
        f"headline: {result.metric}",
        "",
        markdown_table(list(metrics), [[f"{v:.2f}" for v in metrics.values()]]),
        "",
    ]
    if evaluation.prompts:
        lines += ["## The first prompt", "", "```text", evaluation.prompts[0], "```", ""]
    worst = evaluation.worst(config.worst)
    if worst:
        lines += [
            f"## The {len(worst)} lowest-scoring examples",
            "",
            markdown_table(
                ["#", "score", "input (end of prompt)", "answer", "references"],
                [
                    [
                        i + 1,
                        f"{evaluation.scores[i]:.1f}",
                        _cell(evaluation.prompts[i][-240:]),
                        _cell(evaluation.answers[i]),
                        _cell(" ‖ ".join(evaluation.references[i])),
                    ]
                    for i in worst
                ],
            ),
            "",
        ]
    path.write_text("\n".join(lines), encoding="utf-8")
