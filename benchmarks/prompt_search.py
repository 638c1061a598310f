"""Try prompt variants of a task on its eval split and print one table (what worked and what did not).

    python benchmarks/prompt_search.py tasks/sst2.yaml benchmarks/variants/sst2.yaml [--limit 300]

The variants file maps a variant name to a list of ``--set`` overrides, e.g.::

    plain-review: ["template.mode=plain", "verbalizer.words={negative: ' negative', positive: ' positive'}"]

Selection happens on the dev split; report the chosen settings on test once.
"""

from __future__ import annotations

import argparse
import time

import yaml

from promptlearning.models import load_model
from promptlearning.tasks import load_task, run_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task")
    parser.add_argument("variants")
    parser.add_argument("--limit", type=int, default=300, help="first N eval rows (default: %(default)s)")
    parser.add_argument("--only", nargs="*", help="run only these variants")
    parser.add_argument("--set", action="append", default=[], help="override applied to every variant")
    args = parser.parse_args()

    with open(args.variants, encoding="utf-8") as f:
        variants = yaml.safe_load(f)
    base = load_task(args.task, args.set)
    model = load_model(base.model, pull=True, dtype=base.dtype, batch_size=base.batch_size)
    embedder = None
    print("| variant | accuracy | macro-F1 | ECE | examples/s | overrides |\n| --- | --- | --- | --- | --- | --- |")
    for name, overrides in variants.items():
        if args.only and name not in args.only:
            continue
        config = load_task(args.task, [*args.set, f"data.eval_limit={args.limit}", *overrides])
        if config.method.selection == "knn" and embedder is None:
            embedder = load_model("minilm-l6", pull=True)
        start = time.perf_counter()
        result = run_task(config, model=model, embedder=embedder, write=False, progress=False)
        m = result.evaluation.metrics
        seconds = time.perf_counter() - start
        print(
            f"| {name} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {m['ece']:.3f} | "
            f"{m['num_examples'] / seconds:.1f} | {'; '.join(overrides).encode('unicode_escape').decode()} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
