"""Whether a searched prompt is shown to be better than the task's own: a paired test of the task's
metric on the confirmation sample (both prompts predict the same examples), one-sided. For accuracy
that is McNemar's exact test (a sign test on the examples one prompt gets right and the other
wrong); for other metrics (macro-F1) a paired bootstrap. The interval is the bootstrap's.

Picking the best of many prompts on a small sample mostly picks the luckiest (Perez et al. 2021,
"True Few-Shot Learning"); a fresh sample and a test against "no gain" keep a search from replacing
a prompt with one that only looked better. A bootstrap is optimistic on tiny samples, so the test
also asks for enough examples on which the two prompts disagree that an exact sign test could reject
"no gain" at the level: at 95 %, at least five.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from promptlearning.errors import PromptLearningError

ADOPT_CHOICES = ("test", "always")
RESAMPLES = 2000


@dataclass
class AdoptionTest:
    """The searched configuration against the task's own prompt on the same ``n`` examples."""

    difference: float  # metric(searched) - metric(own), a fraction
    low: float  # the two-sided interval of the difference at ``level``
    high: float
    p_value: float  # one-sided: the bootstrap's chance of no gain (times the options compared)
    disagreements: int  # examples the two prompts label differently
    n: int
    level: float
    adopted: bool
    rule: str = "test"  # test: adopted when the test says so; always: when it scores higher (--adopt always)

    def describe(self, metric: str) -> str:
        """One sentence for search.md and the terminal."""
        verdict = "adopted" if self.adopted else "not adopted: the task's own prompt is kept"
        if self.rule == "always":
            verdict += " (--adopt always: the higher score wins)"
        return (
            f"{metric} difference {100 * self.difference:+.1f} points on {self.n} fresh examples "
            f"({100 * self.level:.0f} % interval {100 * self.low:+.1f} to {100 * self.high:+.1f}; one-sided "
            f"p = {self.p_value:.3f}; the prompts disagree on {self.disagreements}): {verdict}"
        )


def minimum_disagreements(level: float) -> int:
    """Disagreeing examples an exact sign test needs, all in one direction, to reject "no gain" at
    ``level``: the smallest k with 0.5**k <= 1 - level."""
    return math.ceil(math.log(1 - level) / math.log(0.5))


def index_metric(name: str, labels: Sequence[str]) -> Callable[[np.ndarray, np.ndarray], float]:
    """The task's metric of gold and predicted label indices: accuracy and macro-F1 in NumPy (a
    bootstrap computes it thousands of times), others through the evaluation's implementation."""
    k = len(labels)
    if name == "accuracy":
        return lambda gold, predicted: float((gold == predicted).mean())
    if name == "macro_f1":

        def macro_f1(gold: np.ndarray, predicted: np.ndarray) -> float:
            # as scikit-learn with labels= and zero_division=0: a class never seen nor predicted counts 0
            hits = np.bincount(gold[gold == predicted], minlength=k)
            denominator = np.bincount(gold, minlength=k) + np.bincount(predicted, minlength=k)
            f1 = np.divide(2 * hits, denominator, out=np.zeros(k), where=denominator > 0)
            return float(f1.mean())

        return macro_f1
    from promptlearning.evaluation.metrics import headline_metric

    metric, names = headline_metric(name, labels), np.asarray(list(labels), dtype=object)
    return lambda gold, predicted: metric(names[gold].tolist(), names[predicted].tolist())


def paired_test(
    metric: Callable[[np.ndarray, np.ndarray], float],
    gold: np.ndarray,
    searched: np.ndarray,
    own: np.ndarray,
    *,
    level: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = 0,
    comparisons: int = 1,
    exact: bool = False,
) -> AdoptionTest:
    """Paired bootstrap of ``metric(searched) - metric(own)`` over the examples (the same resample
    for both); adopted when the one-sided p-value, times ``comparisons`` (Bonferroni: ``searched``
    was the best of that many options on these same examples), is at most ``1 - level`` and the
    prompts disagree on at least :func:`minimum_disagreements` examples. ``exact`` (for accuracy):
    the p-value is McNemar's exact one-sided test instead of the bootstrap's."""
    if not 0.5 <= level < 1:
        raise PromptLearningError(f"the adoption level must be in [0.5, 1), got {level}")
    gold, searched, own = (np.asarray(a, dtype=int) for a in (gold, searched, own))
    n = len(gold)
    if n == 0:
        return AdoptionTest(0.0, 0.0, 0.0, 1.0, 0, 0, level, False)
    difference = metric(gold, searched) - metric(gold, own)
    rng = np.random.default_rng(seed)
    samples = np.empty(resamples)
    for b in range(resamples):
        idx = rng.integers(0, n, n)
        samples[b] = metric(gold[idx], searched[idx]) - metric(gold[idx], own[idx])
    p_value = float((1 + np.count_nonzero(samples <= 0)) / (resamples + 1))
    if exact:
        wins = int(np.count_nonzero((searched == gold) & (own != gold)))
        losses = int(np.count_nonzero((searched != gold) & (own == gold)))
        p_value = sign_test(wins, losses)
    p_value = min(1.0, comparisons * p_value)
    low, high = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2])
    disagreements = int(np.count_nonzero(searched != own))
    adopted = p_value <= 1 - level and disagreements >= minimum_disagreements(level) and difference > 0
    return AdoptionTest(float(difference), float(low), float(high), p_value, disagreements, n, level, adopted)


def sign_test(wins: int, losses: int) -> float:
    """One-sided exact p-value of ``wins`` or more successes in ``wins + losses`` fair coin flips
    (McNemar's exact test on the discordant pairs)."""
    n = wins + losses
    if n == 0:
        return 1.0
    return float(sum(math.comb(n, k) for k in range(wins, n + 1)) / 2**n)
