"""Generation metrics against published values: the libraries' own documented examples and the
SQuAD v1.1 definitions."""

from __future__ import annotations

import pytest

from promptlearning.errors import PromptLearningError
from promptlearning.evaluation.text_metrics import example_score, text_metrics


def test_squad_exact_match_and_f1_use_the_official_normalisation() -> None:
    # Articles, case and punctuation do not count; F1 is the token overlap with the best answer:
    # "cat sat" vs "cat sat on": precision 1, recall 2/3, F1 0.8.
    scores = text_metrics(["squad"], ["The Denver Broncos!", "the cat sat"],
                          [["Denver Broncos", "Broncos"], ["a cat sat on"]])  # fmt: skip
    assert scores["exact_match"] == pytest.approx(50.0)
    assert scores["f1"] == pytest.approx((100 + 80) / 2)


def test_rouge_matches_the_rouge_score_readme() -> None:
    # rouge-score's README: rouge1 F 0.7058..., rougeL F 0.5882... for this pair (no stemming
    # changes it); ROUGE-2: 2 shared bigrams ("the quick", "quick brown") of 8 and 7.
    scores = text_metrics(["rouge"], ["The quick brown dog jumps on the log."],
                          [["The quick brown fox jumps over the lazy dog"]])  # fmt: skip
    assert scores["rouge1"] == pytest.approx(100 * 12 / 17, abs=1e-3)
    assert scores["rougeL"] == pytest.approx(100 * 10 / 17, abs=1e-3)
    assert scores["rouge2"] == pytest.approx(100 * 2 * (2 / 7) * (2 / 8) / (2 / 7 + 2 / 8), abs=1e-3)
    best = text_metrics(["rouge"], ["a b c"], [["x y z", "a b c"]])
    assert best["rougeL"] == pytest.approx(100.0)  # several references: the best one counts


SACREBLEU_HYPS = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
SACREBLEU_REFS = [
    ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
    ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
]


def test_bleu_and_chrf_match_the_sacrebleu_readme() -> None:
    # sacrebleu's README: BLEU = 48.53, chrF2 = 59.73 on this two-reference example.
    references = [list(pair) for pair in zip(*SACREBLEU_REFS, strict=True)]
    scores = text_metrics(["bleu", "chrf"], SACREBLEU_HYPS, references)
    assert scores["bleu"] == pytest.approx(48.53, abs=0.01)
    assert scores["chrf"] == pytest.approx(59.73, abs=0.01)


def test_distinct_n_counts_unique_ngrams() -> None:
    scores = text_metrics(["distinct"], ["a a b", "a b"], [["x"], ["y"]])
    assert scores["distinct_1"] == pytest.approx(100 * 2 / 5)  # {a, b} of 5 tokens
    assert scores["distinct_2"] == pytest.approx(100 * 2 / 3)  # {(a, a), (a, b)} of 3 bigrams


def test_example_score_ranks_by_the_task_metric() -> None:
    assert example_score(["squad"], "Denver", ["Denver Broncos"]) == pytest.approx(100 * 2 / 3)
    assert example_score(["rouge"], "a b", ["a b"]) == pytest.approx(100.0)
    assert example_score(["bleu"], "totally different", ["The dog bit the man."]) < 20


def test_unknown_metric_lists_the_available_ones() -> None:
    with pytest.raises(PromptLearningError, match=r"unknown metric 'blue'; available: bleu, chrf, distinct"):
        text_metrics(["blue"], ["x"], [["x"]])


@pytest.mark.parametrize("references", [[[]], [[""]], [["  "]], ["a plain string"]])
def test_an_example_without_reference_text_is_an_error(references) -> None:
    with pytest.raises(PromptLearningError, match="example 0 has no reference text"):
        text_metrics(["rouge"], ["x"], references)


def test_semeval_macro_f1_counts_a_wrong_direction_as_an_error_of_its_type() -> None:
    from promptlearning.evaluation.metrics import semeval2010_macro_f1

    gold = ["Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)", "Message-Topic(e1,e2)", "Other", "Other"]
    predicted = ["Cause-Effect(e1,e2)", "Cause-Effect(e1,e2)", "Other", "Message-Topic(e1,e2)", "Other"]
    # Cause-Effect: 1 correct of 2 predicted, 2 gold -> P = R = F1 = 0.5; Message-Topic: 0 correct -> 0.
    # Other is left out of the average.
    scores = semeval2010_macro_f1(gold, predicted)
    assert scores["semeval_macro_f1"] == pytest.approx(25.0)
    assert scores["per_relation"]["Cause-Effect"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert set(scores["per_relation"]) == {"Cause-Effect", "Message-Topic"}
    generated = text_metrics(["relation"], [f" {p} " for p in predicted], [[g] for g in gold])
    assert generated == {"semeval_macro_f1": pytest.approx(25.0), "accuracy": pytest.approx(40.0)}
