"""Runs side by side, example by example: which run gets which example right, and whether the
difference between two runs is more than luck.

The significance test is the one prompt search uses to adopt a prompt (``search/adoption.py``):
McNemar's exact test on the examples one run gets right and the other wrong (here two-sided: the UI
asks "do they differ", not "is the new one better"), with a paired bootstrap's interval of the
difference. Runs without right and wrong (free generation) are compared by their per-example
scores the same way: the sign test on the examples one scores higher, the bootstrap on the mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from promptlearning.errors import PromptLearningError
from promptlearning.search.adoption import RESAMPLES, sign_test
from promptlearning.ui.examples import Example

MAX_COMPARED = 8


@dataclass
class PairedDifference:
    """A run against the first (the baseline) on the same examples."""

    run: str
    accuracy: float  # the share of examples right (the mean score for free generation)
    difference: float  # accuracy(run) - accuracy(baseline)
    low: float  # 95 % paired-bootstrap interval of the difference
    high: float
    p_value: float  # McNemar's exact test (a sign test on the discordant examples), two-sided
    wins: int  # examples this run gets right (scores higher) and the baseline wrong (lower)
    losses: int


@dataclass
class Comparison:
    """The example × run matrix of two or more runs of the same examples."""

    runs: list[str]
    rows: list[tuple[Example, list[Example]]]  # the first run's example, then each run's
    differences: list[PairedDifference]

    def disagreements(self) -> list[tuple[Example, list[Example]]]:
        """Rows where the runs do not all predict the same (or are not all right or all wrong)."""
        return [row for row in self.rows if len({(e.predicted, e.correct) for e in row[1]}) > 1]


def check_run_count(count: int) -> None:
    """Two to :data:`MAX_COMPARED` runs are compared at once."""
    if not 2 <= count <= MAX_COMPARED:
        raise PromptLearningError(f"pick between 2 and {MAX_COMPARED} runs to compare, not {count}")


def compare_examples(runs: Sequence[str], examples: Sequence[list[Example]]) -> Comparison:
    """Align the runs' examples by position, after checking that they predicted the same inputs."""
    check_run_count(len(runs))
    first = examples[0]
    for name, other in zip(runs[1:], examples[1:], strict=True):
        if len(other) != len(first):
            raise PromptLearningError(
                f"{runs[0]} has {len(first)} predictions and {name} {len(other)}: compare runs of the same eval data"
            )
        if any(a.input != b.input or a.gold != b.gold for a, b in zip(first, other, strict=True)):
            raise PromptLearningError(
                f"{runs[0]} and {name} predicted different examples: compare runs of one eval set"
            )
    rows = [(first[i], [run[i] for run in examples]) for i in range(len(first))]
    differences = [_paired(runs[0], first, name, run) for name, run in zip(runs, examples, strict=True)]
    return Comparison(list(runs), rows, differences)


def example_values(examples: Sequence[Example]) -> np.ndarray:
    """Per example 1 (right) or 0 (wrong); a free generation's score where there is no right answer."""
    return np.array([float(e.correct) if e.correct is not None else (e.score or 0.0) for e in examples])


def _paired(base_name: str, base: list[Example], name: str, run: list[Example]) -> PairedDifference:
    values, base_values = example_values(run), example_values(base)
    accuracy = float(values.mean()) if len(values) else 0.0
    if name == base_name or not len(values):
        return PairedDifference(name, accuracy, 0.0, 0.0, 0.0, 1.0, 0, 0)
    wins, losses = int(np.count_nonzero(values > base_values)), int(np.count_nonzero(values < base_values))
    differences = values - base_values
    # the paired bootstrap of search/adoption.py, on a mean: the same resample of examples for both runs
    resamples = np.random.default_rng(0).integers(0, len(values), (RESAMPLES, len(values)))
    low, high = np.quantile(differences[resamples].mean(axis=1), [0.025, 0.975])
    p_value = min(1.0, 2 * min(sign_test(wins, losses), sign_test(losses, wins)))
    return PairedDifference(name, accuracy, float(differences.mean()), float(low), float(high), p_value, wins, losses)
