"""Choosing demonstrations (shots) for in-context learning from a training pool.

* ``random``: ``k`` examples drawn with a seed, shared by every test example;
* ``balanced``: ``k`` examples spread evenly over the classes (the remainder to randomly chosen
  classes), shuffled, shared by every test example;
* ``first``: the first ``k`` pool examples in pool order (a fixed, hand-picked set of shots);
* ``knn``: for each test example, its ``k`` nearest pool examples by sentence-embedding cosine
  similarity (Liu et al. 2022), ordered so the nearest comes last, right before the query.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from promptlearning.errors import PromptLearningError
from promptlearning.prompts.examples import Example, group_by_label

Selection = Literal["random", "balanced", "first", "knn"]
SELECTIONS: tuple[str, ...] = ("random", "balanced", "first", "knn")


class DemonstrationError(PromptLearningError):
    """More shots than the pool (or a class) can give, or an unknown selection strategy."""


def select_fixed(pool: Sequence[Example], k: int, strategy: Selection, *, label_field: str, seed: int) -> list[int]:
    """Indices of ``k`` pool examples shared by all queries (``random`` or ``balanced``)."""
    if k < 0:
        raise DemonstrationError(f"shots must be >= 0, got {k}")
    if k > len(pool):
        raise DemonstrationError(f"{k} shots asked for, but the training pool has only {len(pool)} examples")
    rng = random.Random(seed)
    if strategy == "first":
        return list(range(k))
    if strategy == "random":
        return rng.sample(range(len(pool)), k)
    if strategy != "balanced":
        raise DemonstrationError(f"unknown selection {strategy!r}; use random, balanced, first or knn")
    by_label = group_by_label(pool, label_field)
    labels = sorted(by_label)
    counts = dict.fromkeys(labels, k // len(labels))
    for label in rng.sample(labels, k % len(labels)):
        counts[label] += 1
    short = {label: (n, len(by_label[label])) for label, n in counts.items() if n > len(by_label[label])}
    if short:
        detail = ", ".join(f"{label!r}: needs {need}, has {have}" for label, (need, have) in short.items())
        raise DemonstrationError(f"balanced selection of {k} shots: too few examples of some classes ({detail})")
    chosen = [i for label in labels for i in rng.sample(by_label[label], counts[label])]
    rng.shuffle(chosen)
    return chosen


class NearestNeighbours:
    """Pool examples nearest to a query by cosine similarity of sentence embeddings."""

    def __init__(
        self, pool_texts: Sequence[str], embed: Callable[[Sequence[str]], np.ndarray], *,
        embed_pool: Callable[[Sequence[str]], np.ndarray] | None = None,
    ) -> None:  # fmt: skip
        """``embed`` embeds queries; ``embed_pool`` (default: ``embed``) the pool, e.g. through a disk cache."""
        if not pool_texts:
            raise DemonstrationError("kNN selection needs a non-empty training pool")
        self.embed = embed
        self.pool = _normalise(np.asarray((embed_pool or embed)(list(pool_texts)), dtype=np.float32))

    def select(self, query_texts: Sequence[str], k: int) -> list[list[int]]:
        """For each query, ``k`` pool indices ordered from least to most similar (nearest last)."""
        if k > len(self.pool):
            raise DemonstrationError(f"{k} shots asked for, but the training pool has only {len(self.pool)} examples")
        if k == 0:
            return [[] for _ in query_texts]
        queries = _normalise(np.asarray(self.embed(list(query_texts)), dtype=np.float32))
        similarity = queries @ self.pool.T
        top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        out = []
        for row, candidates in enumerate(top):
            ordered = candidates[np.argsort(similarity[row, candidates], kind="stable")]
            out.append([int(i) for i in ordered])
        return out


def _normalise(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
