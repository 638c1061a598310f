"""STS-B test Spearman (× 100, cosine) of sentence encoders, through the same sentence-transformers
evaluator that ``type: embed-train`` reports: the ``minilm-l6`` reference (published: 82.0) and any
trained encoder directory (e.g. ``runs/simcse/model``).

    python benchmarks/sts_eval.py [ENCODER ...]      (default: minilm-l6)
"""

from __future__ import annotations

import argparse
import time

from common import DATA_ROOT, machine, read_jsonl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("encoders", nargs="*", default=["minilm-l6"])
    parser.add_argument("--split", default="test", choices=["dev", "test"])
    args = parser.parse_args()

    from promptlearning.models import load_embedder
    from promptlearning.pretraining.simcse import spearman, sts_evaluator

    rows = read_jsonl(DATA_ROOT / "stsb" / f"{args.split}.jsonl")
    evaluator = sts_evaluator(rows, name=args.split, fields=["sentence1", "sentence2", "score"])
    print(f"machine: {machine()}; STS-B {args.split}, {len(rows)} pairs")
    for name in args.encoders:
        encoder = load_embedder(name, device="cpu")
        start = time.perf_counter()
        value = spearman(evaluator, encoder.encoder)
        print(f"{name}: Spearman {value:.2f} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
