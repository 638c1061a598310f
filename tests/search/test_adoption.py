"""The adoption test: a searched prompt replaces the task's own only when it is shown to be better."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from promptlearning.errors import PromptLearningError
from promptlearning.search.adoption import index_metric, minimum_disagreements, paired_test

ACCURACY = index_metric("accuracy", ["a", "b", "c"])


def _predictions(n: int, correct_own: int, correct_searched: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gold all 0; ``own`` right on its first ``correct_own``, ``searched`` on its first ``correct_searched``."""
    gold = np.zeros(n, dtype=int)
    own, searched = np.ones(n, dtype=int), np.ones(n, dtype=int)
    own[:correct_own], searched[:correct_searched] = 0, 0
    return gold, searched, own


def test_a_clear_gain_is_adopted() -> None:
    gold, searched, own = _predictions(200, 140, 170)
    test = paired_test(ACCURACY, gold, searched, own)
    assert test.adopted and test.difference == pytest.approx(0.15) and test.p_value < 0.01
    assert 0.08 < test.low < 0.15 < test.high < 0.22 and test.disagreements == 30
    assert "+15.0 points" in test.describe("accuracy") and "adopted" in test.describe("accuracy")


def _discordant(n: int, wins: int, losses: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both right on half; the searched prompt alone right on ``wins`` examples, the task's alone on ``losses``."""
    gold = np.zeros(n, dtype=int)
    own, searched = np.ones(n, dtype=int), np.ones(n, dtype=int)
    own[: n // 2], searched[: n // 2] = 0, 0
    searched[n // 2 : n // 2 + wins] = 0
    own[n // 2 + wins : n // 2 + wins + losses] = 0
    return gold, searched, own


@pytest.mark.parametrize(("wins", "losses"), [(0, 0), (3, 7), (10, 6), (3, 0)])
@pytest.mark.parametrize("exact", [False, True])
def test_no_gain_a_loss_or_a_gain_within_noise_keeps_the_task_prompt(wins, losses, exact) -> None:
    gold, searched, own = _discordant(200, wins, losses)
    test = paired_test(ACCURACY, gold, searched, own, exact=exact)
    assert not test.adopted and test.disagreements == wins + losses
    assert "the task's own prompt is kept" in test.describe("accuracy")
    if exact:
        assert test.p_value > 0.05


def test_mcnemars_exact_test_counts_the_discordant_examples() -> None:
    from promptlearning.search.adoption import sign_test

    assert sign_test(5, 0) == pytest.approx(1 / 32) and sign_test(0, 0) == 1.0
    assert sign_test(3, 3) == pytest.approx(42 / 64)
    gold, searched, own = _discordant(100, 12, 2)
    test = paired_test(ACCURACY, gold, searched, own, exact=True)
    assert test.p_value == pytest.approx(sign_test(12, 2)) and test.adopted


def test_a_tiny_sample_never_adopts_even_when_every_difference_favours_the_search() -> None:
    assert minimum_disagreements(0.95) == 5 and minimum_disagreements(0.99) == 7
    gold, searched, own = _predictions(4, 0, 4)
    test = paired_test(ACCURACY, gold, searched, own)
    assert test.difference == 1.0 and test.disagreements == 4 and not test.adopted


def test_comparing_several_options_raises_the_bar() -> None:
    gold, searched, own = _discordant(200, 14, 4)
    one = paired_test(ACCURACY, gold, searched, own, exact=True)
    six = paired_test(ACCURACY, gold, searched, own, comparisons=6, exact=True)
    assert six.p_value == pytest.approx(min(1.0, 6 * one.p_value))
    assert one.adopted and not six.adopted


def test_the_vectorised_macro_f1_is_scikit_learns() -> None:
    rng = np.random.default_rng(0)
    labels = [f"l{i}" for i in range(7)]
    metric = index_metric("macro_f1", labels)
    for _ in range(20):
        gold, predicted = rng.integers(0, 7, 50), rng.integers(0, 5, 50)  # some labels never predicted
        expected = f1_score(gold, predicted, labels=list(range(7)), average="macro", zero_division=0)
        assert metric(gold, predicted) == pytest.approx(expected)


def test_other_metrics_go_through_the_evaluation() -> None:
    labels = ["Other", "Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)"]
    metric = index_metric("semeval_macro_f1", labels)
    gold = np.array([1, 2, 0, 1])
    assert metric(gold, gold) == pytest.approx(1.0)


def test_bad_levels_are_refused() -> None:
    gold, searched, own = _predictions(10, 5, 6)
    for level in (0.2, 1.0):
        with pytest.raises(PromptLearningError, match="adoption level"):
            paired_test(ACCURACY, gold, searched, own, level=level)
