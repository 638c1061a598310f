"""GSM8K accuracy of the chain-of-thought methods on one model (one process, the model loaded once).

Rows: direct answers (8 exemplars without rationales), 8-shot CoT (greedy), zero-shot CoT (greedy,
two-stage), and self-consistency over 10 samples at T=0.7; since sample j's seed does not depend on
n, the votes over the first 1, 5 and 10 of those samples are exactly the runs with n = 1, 5, 10.

    python benchmarks/gsm8k_accuracy.py --model smollm2-135m-instruct --limit 300 --sc-limit 100
    python benchmarks/gsm8k_accuracy.py --model gemma3-270m --backend llamacpp --rows zero-shot-cot

Writes every run directory under --output-dir and prints a markdown table.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

from common import REPO

from promptlearning.models import load_model
from promptlearning.tasks import load_task, run_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--limit", type=int, default=300, help="questions for the greedy rows")
    parser.add_argument("--sc-limit", type=int, default=100, help="questions for self-consistency (0: skip)")
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--sc-offset", type=int, default=0, help="first question of self-consistency (to split runs)")
    parser.add_argument(
        "--sc-chunk",
        type=int,
        default=100,
        help="self-consistency runs in chunks of this many questions, "
        "each its own run directory, so a long run leaves results as it goes",
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--output-dir", default="runs/gsm8k")
    parser.add_argument("--rows", default="direct,few-shot-cot,zero-shot-cot,sc")
    parser.add_argument("--backend", default=None, help="model backend, e.g. llamacpp (default: the model's own)")
    args = parser.parse_args()

    options = {} if args.backend == "llamacpp" else {"batch_size": args.batch_size}
    model = load_model(args.model, backend=args.backend, **options)
    task = REPO / "tasks" / "gsm8k-cot.yaml"
    common = [f"model={args.model}", f"data.eval_limit={args.limit}"]
    settings = {
        "direct": ["mode=direct", "max_new_tokens=32"],
        "few-shot-cot": [],
        "zero-shot-cot": ["mode=zero-shot-cot"],
        "sc": [f"self_consistency={args.samples}", f"data.eval_limit={args.sc_limit}", "batch_size=40"],
    }
    rows = []
    for name in args.rows.split(","):
        if name == "sc" and not args.sc_limit:
            continue
        if name == "sc":
            rows += self_consistency_rows(model, task, common + settings[name], args)
            continue
        config = load_task(task, common + settings[name])
        start = time.perf_counter()
        result = run_task(config, model=model, output_dir=Path(args.output_dir), progress=True)
        m = result.evaluation.metrics
        rows.append((name, m["questions"], m["accuracy_strict"], m["accuracy_flexible"], time.perf_counter() - start))
        print(f"{name}: strict {m['accuracy_strict']:.4f} flexible {m['accuracy_flexible']:.4f} "
              f"({m['generated_tokens']} tokens, {m['tokens_per_second']:.1f} tokens/s)")  # fmt: skip
        print(f"  run directory: {result.run_dir}", flush=True)
    print(f"\n{args.model} ({args.backend or 'default backend'}), GSM8K test")
    print("| method | questions | strict | flexible | run time |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, n, strict_acc, flexible_acc, seconds in rows:
        print(f"| {name} | {n} | {100 * strict_acc:.1f} | {100 * flexible_acc:.1f} | {seconds:.0f} s |")


def self_consistency_rows(model, task: Path, overrides: list[str], args: argparse.Namespace) -> list[tuple]:
    """Self-consistency over --sc-limit questions, run in chunks; rows for n = 1, 5 and --samples."""
    correct = {"strict": Counter(), "flexible": Counter()}
    questions, start = 0, time.perf_counter()
    for offset in range(args.sc_offset, args.sc_offset + args.sc_limit, args.sc_chunk):
        limit = min(args.sc_chunk, args.sc_offset + args.sc_limit - offset)
        config = load_task(task, [*overrides, f"data.eval_offset={offset}", f"data.eval_limit={limit}"])
        result = run_task(config, model=model, output_dir=Path(args.output_dir), progress=True)
        m = result.evaluation.metrics
        questions += m["questions"]
        for score, curve in result.evaluation.curves.items():
            for k, accuracy in curve.items():
                correct[score][k] += round(accuracy * m["questions"])
        print(f"sc questions {offset}-{offset + limit}: flexible by n {result.evaluation.curves['flexible']} "
              f"({m['generated_tokens']} tokens, {m['tokens_per_second']:.1f} tokens/s); "
              f"so far {questions} questions, flexible correct by n {dict(correct['flexible'])}")  # fmt: skip
        print(f"  run directory: {result.run_dir}", flush=True)
    seconds = time.perf_counter() - start
    return [
        (f"self-consistency n={k} (T=0.7)", questions, correct["strict"][k] / questions,
         correct["flexible"][k] / questions, seconds)
        for k in sorted({1, 5, args.samples}) if k in correct["flexible"]
    ]  # fmt: skip


if __name__ == "__main__":
    main()
