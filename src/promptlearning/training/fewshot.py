"""LM-BFF's few-shot protocol: k examples per class for training and k more for dev, per seed."""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence

from promptlearning.errors import PromptLearningError
from promptlearning.prompts.examples import Example, group_by_label


class FewShotError(PromptLearningError):
    """A class with fewer examples than the protocol needs."""


def sample_per_class(
    pool: Sequence[Example], k: int, *, label_field: str = "label", seed: int, dev: bool = True
) -> tuple[list[Example], list[Example]]:
    """``k`` training examples per class and, if ``dev``, ``k`` other ones per class for dev."""
    by_label = group_by_label(pool, label_field)
    need = 2 * k if dev else k
    short = {label: len(ids) for label, ids in by_label.items() if len(ids) < need}
    if short:
        detail = ", ".join(f"{label!r} has {n}" for label, n in sorted(short.items()))
        raise FewShotError(
            f"k={k} per class{' (plus k for dev)' if dev else ''} needs {need} examples of every class: {detail}"
        )
    rng = random.Random(seed)
    train, dev_set = [], []
    for label in sorted(by_label):
        chosen = rng.sample(by_label[label], need)
        train += [pool[i] for i in chosen[:k]]
        dev_set += [pool[i] for i in chosen[k:]]
    rng.shuffle(train)
    return train, dev_set


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and (sample) standard deviation; the deviation of one value is 0."""
    values = list(values)
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0
