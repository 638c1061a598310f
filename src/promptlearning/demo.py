"""The main job of ``make demo``: prompt-based classification with the embedded default model.

On the small movie-review set shipped with the package (100 train / 200 test sentences, balanced,
written for this project), it compares zero-shot, few-shot (balanced), few-shot + batch calibration
and kNN few-shot, prints one table and writes each run (metrics, predictions, report, plots) plus a
comparison plot under ``runs/demo``.
"""

from __future__ import annotations

import time
from pathlib import Path

from promptlearning.evaluation.compare import read_runs
from promptlearning.evaluation.plots import plot_comparison
from promptlearning.evaluation.report import markdown_table
from promptlearning.models import GenerationConfig, load_model
from promptlearning.tasks.config import validate_config
from promptlearning.tasks.runner import run_task

DATA = Path(__file__).resolve().parent / "data" / "movie_reviews"

BASE = {
    "name": "movie-reviews",
    "description": "Sentiment of short movie reviews (shipped demo data).",
    "data": {"root": str(DATA), "train": "train.jsonl", "eval": "test.jsonl"},
    # plain prompts: on SST-2 dev they beat every chat variant tried (benchmarks/RESULTS.md)
    "template": {"mode": "plain", "input": "Review: {{ text }}\nSentiment:", "shorten": "text"},
    "verbalizer": {"words": {"negative": [" negative"], "positive": [" positive"]}},
}

BALANCED = {"selection": "balanced"}
SETTINGS = [
    ("zero-shot", {}),
    ("8-shot balanced", {"shots": 8, "method": BALANCED}),
    (
        "8-shot balanced + calibration",
        {"shots": 8, "method": {"selection": "balanced", "calibrate": True, "calibration": "batch"}},
    ),
    ("8-shot kNN", {"shots": 8, "method": {"selection": "knn"}}),
]


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

    rows, run_dirs = [], []
    for label, overrides in SETTINGS:
        raw = {**BASE, "model": model_name, **overrides}
        config = validate_config(raw, f"demo setting {label!r}")
        result = run_task(config, model=model, embedder=embedder, output_dir=output_dir, progress=False)
        m = result.evaluation.metrics
        rows.append([label, f"{m['accuracy']:.3f}", f"{m['macro_f1']:.3f}", f"{m['ece']:.3f}",
                     f"{m['examples_per_second']:.1f}"])  # fmt: skip
        run_dirs.append(result.run_dir)
        print(f"  {label:<30} accuracy {m['accuracy']:.3f}  ({m['examples_per_second']:.1f} examples/s)", flush=True)

    print()
    print(markdown_table(["setting", "accuracy", "macro-F1", "ECE", "examples/s"], rows))
    plot = Path(output_dir) / "comparison.png"
    plot_comparison(read_runs(run_dirs), plot)
    print(f"\nruns (report.md, predictions, confusion matrix and reliability plots) in {output_dir}/; "
          f"comparison plot: {plot}")  # fmt: skip
    print(f"total time {time.perf_counter() - start:.0f} s")
    return 0
