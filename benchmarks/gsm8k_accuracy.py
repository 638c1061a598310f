"""GSM8K accuracy of the chain-of-thought methods on one model (one process, the model loaded once).

Rows: direct answers (8 exemplars without rationales), 8-shot CoT (greedy), zero-shot CoT (greedy,
two-stage), and self-consistency over 10 samples at T=0.7; since sample j's seed does not depend on
n, the votes over the first 1, 5 and 10 of those samples are exactly the runs with n = 1, 5, 10.

    python benchmarks/gsm8k_accuracy.py --model smollm2-135m-instruct --limit 300 --sc-limit 100

Writes every run directory under --output-dir and prints a markdown table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import REPO

from promptlearning.models import load_model
from promptlearning.tasks import load_task, run_cot_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--limit", type=int, default=300, help="questions for the greedy rows")
    parser.add_argument("--sc-limit", type=int, default=100, help="questions for self-consistency (0: skip)")
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--output-dir", default="runs/gsm8k")
    parser.add_argument("--rows", default="direct,few-shot-cot,zero-shot-cot,sc")
    args = parser.parse_args()

    model = load_model(args.model, batch_size=args.batch_size)
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
        config = load_task(task, common + settings[name])
        start = time.perf_counter()
        result = run_cot_task(config, model=model, output_dir=Path(args.output_dir), progress=True)
        seconds = time.perf_counter() - start
        m = result.evaluation.metrics
        if name == "sc":
            strict, flexible = result.evaluation.curves["strict"], result.evaluation.curves["flexible"]
            for k in (1, 5, args.samples):
                if k in flexible:
                    rows.append((f"self-consistency n={k} (T=0.7)", m["questions"], strict[k], flexible[k], seconds))
        else:
            rows.append((name, m["questions"], m["accuracy_strict"], m["accuracy_flexible"], seconds))
        print(f"{name}: strict {m['accuracy_strict']:.4f} flexible {m['accuracy_flexible']:.4f} "
              f"({m['generated_tokens']} tokens, {m['tokens_per_second']:.1f} tokens/s)")  # fmt: skip
        print(f"  run directory: {result.run_dir}")
    print(f"\n{args.model}, GSM8K test")
    print("| method | questions | strict | flexible | run time |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, n, strict_acc, flexible_acc, seconds in rows:
        print(f"| {name} | {n} | {100 * strict_acc:.1f} | {100 * flexible_acc:.1f} | {seconds:.0f} s |")


if __name__ == "__main__":
    main()
