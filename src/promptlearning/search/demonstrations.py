"""Candidate demonstration sets for in-context learning, as DSPy's BootstrapFewShotWithRandomSearch
draws them: half bootstrapped (training examples the zero-shot prompt already gets right, so the
demonstrations agree with what the model reads), half random; each balanced over the classes and
shuffled into a random order."""

from __future__ import annotations

import random
from collections.abc import Sequence

from promptlearning.errors import PromptLearningError


def balanced_set(indices_by_label: dict[str, list[int]], k: int, rng: random.Random) -> list[int]:
    """``k`` indices spread evenly over the labels (the remainder to random labels), shuffled."""
    labels = [label for label, idx in indices_by_label.items() if idx]
    if not labels:
        raise PromptLearningError("no examples to draw demonstrations from")
    counts = dict.fromkeys(labels, k // len(labels))
    for label in rng.sample(labels, k % len(labels)):
        counts[label] += 1
    chosen = [
        i
        for label in labels
        for i in rng.sample(indices_by_label[label], min(counts[label], len(indices_by_label[label])))
    ]
    rng.shuffle(chosen)
    return chosen


def candidate_sets(
    gold: Sequence[str], correct: Sequence[bool] | None, k: int, n: int, *, seed: int = 0
) -> list[list[int]]:
    """``n`` distinct sets of ``k`` pool indices: bootstrapped ones first (from the examples marked
    ``correct``; random ones when there are too few), then random ones."""
    if k < 1 or n < 1:
        raise PromptLearningError(f"demonstration search needs shots >= 1 and sets >= 1 (got {k}, {n})")
    rng = random.Random(seed)
    everyone: dict[str, list[int]] = {}
    right: dict[str, list[int]] = {}
    for i, label in enumerate(gold):
        everyone.setdefault(label, []).append(i)
        if correct is not None and correct[i]:
            right.setdefault(label, []).append(i)
    out: list[list[int]] = []
    enough_right = sum(map(len, right.values())) >= k
    for _ in range(n * 10):
        source = right if enough_right and len(out) < n // 2 else everyone
        candidate = balanced_set(source, k, rng)
        if candidate not in out and len(candidate) == k:
            out.append(candidate)
        if len(out) == n:
            break
    return out
