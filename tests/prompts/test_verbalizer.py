"""Verbalizers: word scores, aggregation over words, missing labels."""

from __future__ import annotations

import math

import pytest

from promptlearning.models import LoglikelihoodResult
from promptlearning.prompts import Verbalizer, VerbalizerError


def result(*logprobs: float) -> LoglikelihoodResult:
    return LoglikelihoodResult(token_logprobs=tuple(logprobs), is_greedy=False)


WORD_RESULTS = {
    "positive": [result(-1.0), result(-0.5, -1.5)],  # " good" (1 token), " very good" (2 tokens)
    "negative": [result(-3.0), result(-4.0)],
}
WORDS = {"positive": [" good", " very good"], "negative": [" bad", " awful"]}


def test_logsumexp_of_summed_word_logprobs_is_the_default():
    scores = Verbalizer(WORDS).label_scores(WORD_RESULTS)
    assert scores["positive"] == pytest.approx(math.log(math.exp(-1.0) + math.exp(-2.0)))
    assert scores["negative"] == pytest.approx(math.log(math.exp(-3.0) + math.exp(-4.0)))


@pytest.mark.parametrize(
    "options, positive",
    [
        ({"aggregate": "max"}, -1.0),
        ({"aggregate": "mean"}, -1.5),
        ({"word_score": "mean", "aggregate": "max"}, -1.0),  # per token: -1.0 and -1.0
        ({"word_score": "mean", "aggregate": "mean"}, -1.0),
        ({"word_score": "chars", "aggregate": "max"}, max(-1.0 / 4, -2.0 / 9)),
    ],
)
def test_other_word_scores_and_aggregations(options, positive):
    assert Verbalizer(WORDS, **options).label_scores(WORD_RESULTS)["positive"] == pytest.approx(positive)


def test_missing_labels_are_listed():
    verbalizer = Verbalizer({"positive": "good", "negative": "bad"})
    verbalizer.check_labels(["positive", "negative"])
    with pytest.raises(VerbalizerError, match=r"\['neutral', 'other'\].*positive"):
        verbalizer.check_labels(["positive", "neutral", "other"])


@pytest.mark.parametrize(
    "words, options", [({}, {}), ({"a": []}, {}), ({"a": [" "]}, {}), ({"a": "x"}, {"aggregate": "median"})]
)
def test_invalid_verbalizers_are_rejected(words, options):
    with pytest.raises(VerbalizerError):
        Verbalizer(words, **options)


def test_answer_is_the_first_word_and_labels_are_strings():
    verbalizer = Verbalizer({1: [" yes", " sure"], 0: " no"})
    assert verbalizer.labels == ["1", "0"]
    assert verbalizer.answer("1") == " yes"


def test_the_same_word_for_two_labels_is_refused():
    with pytest.raises(VerbalizerError, match="'good' is given for both 'positive' and 'negative'"):
        Verbalizer({"positive": [" good", " great"], "negative": [" bad", "good"]})


def test_label_words_must_be_a_mapping():
    with pytest.raises(VerbalizerError, match="must map each label"):
        Verbalizer([" good", " bad"])  # type: ignore[arg-type]
