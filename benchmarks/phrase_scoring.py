"""Multi-token label words: one prefill per context (its cache reused by every word) vs one full row
per (context, word), on SemEval-2010 Task 8's zero-shot classifier (19 relation phrases of 4-6 tokens).

Both sides are the same HF backend and the same classifier (``tasks/semeval2010_task8.yaml``'s
template and phrases); the baseline switches the sharing off (``min_shared_prefix`` above any
context), which is how every context was scored before. Predictions must be identical (checked) and
scores equal to 1e-4. Sides alternate, ``--rounds`` times; medians.

    python benchmarks/phrase_scoring.py [--n 40] [--rounds 3]

Ends with ``speed-up vs a full row per (context, word): …x``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from common import DATA_ROOT, REPO, machine, read_jsonl

from promptlearning.methods.classifier import PromptClassifier
from promptlearning.models import load_model
from promptlearning.prompts.template import PromptTemplate
from promptlearning.prompts.verbalizer import Verbalizer
from promptlearning.tasks import load_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="test sentences")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    task = load_task(Path(REPO / "tasks" / "semeval2010_task8.yaml"))
    rows = read_jsonl(DATA_ROOT / "semeval2010_task8" / "test.jsonl", limit=args.n)
    model = load_model(task.model, pull=True, device="cpu")
    verbalizer = Verbalizer(dict(task.verbalizer.words), word_score=task.verbalizer.word_score)
    classifier = PromptClassifier(model, PromptTemplate(**task.template.model_dump()), verbalizer,
                                  label_field=task.data.label_field).fit()  # fmt: skip
    words = sum(len(model.encode(w[0])) for w in task.verbalizer.words.values()) / len(task.verbalizer.words)
    print(f"machine: {machine()}; {len(rows)} sentences x {len(task.verbalizer.words)} phrases "
          f"({words:.1f} tokens each)")  # fmt: skip

    sharing = model.min_shared_prefix
    times: dict[str, list[float]] = {"shared": [], "rows": []}
    outputs: dict[str, list] = {}
    for _ in range(args.rounds):
        for side, min_prefix in (("shared", sharing), ("rows", 10**9)):
            model.min_shared_prefix = min_prefix
            start = time.perf_counter()
            outputs[side] = classifier.predict(rows)
            times[side].append(time.perf_counter() - start)
    model.min_shared_prefix = sharing

    same = [a.label for a in outputs["shared"]] == [b.label for b in outputs["rows"]]
    gap = max(abs(a.label_scores[k] - b.label_scores[k]) for a, b in zip(outputs["shared"], outputs["rows"],
              strict=True) for k in a.label_scores)  # fmt: skip
    accuracy = np.mean([p.label == r[task.data.label_field] for p, r in zip(outputs["shared"], rows, strict=True)])
    ours, theirs = statistics.median(times["shared"]), statistics.median(times["rows"])
    print(f"one prefill per context: {ours:.1f} s ({len(rows) / ours:.2f} sentences/s); a row per word: "
          f"{theirs:.1f} s ({len(rows) / theirs:.2f} sentences/s); medians of {args.rounds}")  # fmt: skip
    print(f"same predictions: {same}; largest score difference {gap:.2e}; accuracy {accuracy:.3f}")
    if not same or gap > 1e-3:
        raise SystemExit("the two paths disagree")
    print(f"speed-up vs a full row per (context, word): {theirs / ours:.2f}x")


if __name__ == "__main__":
    main()
