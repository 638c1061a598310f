"""Demonstration selection: random, balanced, kNN, and their errors."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from promptlearning.prompts import NearestNeighbours, select_fixed
from promptlearning.prompts.demonstrations import DemonstrationError

POOL = [{"text": f"t{i}", "label": "a" if i < 6 else ("b" if i < 8 else "c")} for i in range(10)]


def test_random_selection_is_seeded():
    first = select_fixed(POOL, 4, "random", label_field="label", seed=1)
    assert first == select_fixed(POOL, 4, "random", label_field="label", seed=1)
    assert first != select_fixed(POOL, 4, "random", label_field="label", seed=2)
    assert len(set(first)) == 4


def test_balanced_selection_spreads_over_classes():
    chosen = select_fixed(POOL, 6, "balanced", label_field="label", seed=0)
    assert Counter(POOL[i]["label"] for i in chosen) == {"a": 2, "b": 2, "c": 2}


def test_balanced_selection_with_a_remainder():
    counts = Counter(POOL[i]["label"] for i in select_fixed(POOL, 4, "balanced", label_field="label", seed=3))
    assert sorted(counts.values()) == [1, 1, 2]


def test_too_many_shots_are_clear_errors():
    with pytest.raises(DemonstrationError, match="only 10 examples"):
        select_fixed(POOL, 11, "random", label_field="label", seed=0)
    with pytest.raises(DemonstrationError, match="'b': needs 3, has 2"):
        select_fixed(POOL, 9, "balanced", label_field="label", seed=0)


def fake_embed(texts):
    """Deterministic 2-d embeddings: the number in the text gives the angle."""
    angles = [int(t.lstrip("tq")) * 0.15 for t in texts]
    return np.array([[np.cos(a), np.sin(a)] for a in angles])


def test_knn_returns_nearest_last():
    neighbours = NearestNeighbours([ex["text"] for ex in POOL], fake_embed)
    [selected] = neighbours.select(["q4"], 3)
    assert selected[-1] == 4
    assert set(selected) == {3, 4, 5}
    with pytest.raises(DemonstrationError):
        neighbours.select(["q1"], 11)


def test_first_selection_keeps_pool_order():
    assert select_fixed(POOL, 3, "first", label_field="label", seed=5) == [0, 1, 2]
