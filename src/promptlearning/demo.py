"""The main job of ``make demo``: prompt-based classification with the embedded default model.

On the movie-review set shipped with the package (120 train / 200 test sentences, balanced, written
for this project by ``scripts/make_demo_data.py``: plain verdicts mixed with the constructions that
make SST-2 hard, such as negation, faint praise, irony and sad-but-praised stories), it compares
zero-shot, 4-shot (balanced demonstrations, three seeds), the same with batch calibration, and
4-shot kNN demonstrations. It prints the accuracy of each setting (with its spread over seeds) and
by kind of sentence, and writes each run (metrics, predictions, report, plots) plus a comparison
plot under ``runs/demo``.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from promptlearning.models import GenerationConfig, load_model
from promptlearning.runs.compare import read_runs
from promptlearning.runs.plots import plot_comparison
from promptlearning.runs.report import markdown_table
from promptlearning.tasks import run_task, validate_config

DATA = Path(__file__).resolve().parent / "data" / "movie_reviews"

BASE = {
    "name": "movie-reviews",
    "description": "Sentiment of movie-review sentences (shipped demo data).",
    # absolute paths: the shipped files, whatever $PROMPTLEARNING_DATA says
    "data": {"train": str(DATA / "train.jsonl"), "eval": str(DATA / "test.jsonl")},
    # plain prompts: on SST-2 dev they beat every chat variant tried (benchmarks/RESULTS.md)
    "template": {"mode": "plain", "input": "Review: {{ text }}\nSentiment:", "shorten": "text"},
    "verbalizer": {"words": {"negative": [" negative"], "positive": [" positive"]}},
}

SEEDS = (0, 1, 2)  # demonstrations drawn three times: few-shot results move with the draw
SETTINGS: list[tuple[str, dict[str, Any], tuple[int, ...]]] = [
    ("zero-shot", {}, (0,)),
    ("4-shot balanced", {"shots": 4, "method": {"selection": "balanced"}}, SEEDS),
    (
        "4-shot balanced + batch calibration",
        {"shots": 4, "method": {"selection": "balanced", "calibration": "batch"}},
        SEEDS,
    ),
    ("4-shot kNN", {"shots": 4, "method": {"selection": "knn"}}, (0,)),  # the nearest examples: no draw
]


def _by_kind(run_dir: Path) -> dict[str, list[bool]]:
    correct: dict[str, list[bool]] = defaultdict(list)
    for line in (run_dir / "predictions.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        correct[row["example"].get("kind", "all")].append(row["correct"])
    return correct


def _spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def run_demo(model_name: str, output_dir: str | Path = "runs/demo") -> int:
    start = time.perf_counter()
    model = load_model(model_name, pull=True)
    embedder = load_model("minilm-l6", pull=True)
    print(f"model: {model.name} (loaded with minilm-l6 in {time.perf_counter() - start:.1f} s)")
    if model.has_chat_template:
        question = "What is the capital of France?"
        prompt = model.apply_chat_template([{"role": "user", "content": question}])
        [answer] = model.generate([prompt], GenerationConfig(max_new_tokens=32))
        print(f"Q: {question}  A: {answer.text.strip()}")
    print(f"\nPrompt-based sentiment classification on {DATA.name} (200 test sentences):")

    rows, run_dirs, kinds = [], [], {}
    for label, overrides, seeds in SETTINGS:
        metrics, kind_correct = [], defaultdict(list)
        for seed in seeds:
            raw = {**BASE, "model": model_name, "seed": seed, **overrides}
            config = validate_config(raw, f"demo setting {label!r}")
            result = run_task(config, model=model, embedder=embedder, output_dir=output_dir, progress=False)
            metrics.append(result.evaluation.metrics)
            run_dirs.append(result.run_dir)
            for kind, values in _by_kind(result.run_dir).items():
                kind_correct[kind] += values
        accuracy = [m["accuracy"] for m in metrics]
        speed = sum(m["num_examples"] for m in metrics) / sum(m["seconds"] for m in metrics)
        seeds_note = f"{len(seeds)} seeds" if len(seeds) > 1 else "-"
        rows.append([label, _spread(accuracy), seeds_note, f"{statistics.mean(m['macro_f1'] for m in metrics):.3f}",
                     f"{statistics.mean(m['ece'] for m in metrics):.3f}", f"{speed:.1f}"])  # fmt: skip
        kinds[label] = {kind: sum(v) / len(v) for kind, v in kind_correct.items()}
        print(f"  {label:<36} accuracy {_spread(accuracy):<14} ({speed:.1f} examples/s)", flush=True)

    print()
    print(markdown_table(["setting", "accuracy", "over", "macro-F1", "ECE", "examples/s"], rows))
    names = sorted({kind for per_kind in kinds.values() for kind in per_kind})
    print("\nAccuracy by kind of sentence (mean over seeds):\n")
    print(markdown_table(["setting", *names], [[label, *(f"{kinds[label].get(k, 0):.2f}" for k in names)]
                                              for label in kinds]))  # fmt: skip
    plot = Path(output_dir) / "comparison.png"
    plot_comparison(read_runs(run_dirs), plot)
    print(f"\nruns (report.md, predictions, confusion matrix and reliability plots) in {output_dir}/; "
          f"comparison plot: {plot}")  # fmt: skip
    print(f"browse and compare them example by example: promptlearning ui {Path(output_dir).parent or '.'} "
          "(then open http://127.0.0.1:8000/ui/)")  # fmt: skip
    print(f"total time {time.perf_counter() - start:.0f} s")
    return 0
