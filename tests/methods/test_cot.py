"""Chain-of-thought methods on a tiny real model: prompts, self-consistency votes, extraction, errors."""

from __future__ import annotations

import pytest

from promptlearning.errors import PromptLearningError, PromptTooLongError
from promptlearning.methods import Method
from promptlearning.methods.cot import (
    ChainOfThought,
    CoTEvaluation,
    SelfConsistency,
    Solution,
    gsm8k_rationale,
    majority,
)

EXEMPLARS = [
    {"question": "the cat sat on 2 mats and 3 more", "rationale": "2 + 3 = 5 .", "answer": "5"},
    {"question": "what is two plus three", "rationale": "two plus three is 5 .", "answer": "5"},
]
QUESTIONS = [
    {"question": "the dog sat on 4 logs and 1 more", "final": "5"},
    {"question": "what is two plus two", "final": "4"},
    {"question": "the capital of france is", "final": "1"},
]


def test_gsm8k_solutions_become_rationales():
    rationale, final = gsm8k_rationale("He buys 3 * 2 = <<3*2=6>>6 eggs.\nThen 6 + 1 = <<6+1=7>>7.\n#### 7")
    assert rationale == "He buys 3 * 2 = 6 eggs. Then 6 + 1 = 7."
    assert final == "7"


def test_few_shot_cot_prompt_shows_rationales_then_the_question(tiny_lm):
    cot = ChainOfThought(tiny_lm, exemplars=EXEMPLARS)
    prompt = cot.prompt(QUESTIONS[0])
    assert prompt == (
        "Q: the cat sat on 2 mats and 3 more\nA: 2 + 3 = 5 . The answer is 5.\n\n"
        "Q: what is two plus three\nA: two plus three is 5 . The answer is 5.\n\n"
        "Q: the dog sat on 4 logs and 1 more\nA:"
    )
    direct = ChainOfThought(tiny_lm, mode="direct", exemplars=EXEMPLARS)
    assert "The answer is 5.\n\nQ: what" in direct.prompt(QUESTIONS[0]) and "2 + 3" not in direct.prompt(QUESTIONS[0])
    zero = ChainOfThought(tiny_lm, mode="zero-shot-cot")
    assert zero.prompt(QUESTIONS[1]) == "Q: what is two plus two\nA: Let's think step by step."


def test_greedy_solve_extracts_from_the_generated_rationale(tiny_lm):
    cot = ChainOfThought(tiny_lm, exemplars=EXEMPLARS, max_new_tokens=12)
    evaluation = cot.evaluate(QUESTIONS)
    generations = tiny_lm.generate([cot.prompt(q) for q in QUESTIONS], cot.generation_config())
    for solution, generation in zip(evaluation.solutions, generations, strict=True):
        assert solution.rationales == [generation.text]
        assert solution.answers["flexible"] == cot.extractors["flexible"](generation.text)
    metrics = evaluation.metrics
    for name in ("strict", "flexible"):
        correct = [s.answers[name] == q["final"] for s, q in zip(evaluation.solutions, QUESTIONS, strict=True)]
        assert metrics[f"accuracy_{name}"] == sum(correct) / len(QUESTIONS)
    assert metrics["generated_tokens"] == sum(g.num_tokens for g in generations)


def test_self_consistency_votes_over_n_samples_from_one_prefill_per_question(tiny_lm):
    cot = SelfConsistency(ChainOfThought(tiny_lm, exemplars=EXEMPLARS, max_new_tokens=10, seed=1), 5)
    assert isinstance(cot, Method) and cot.exemplars == EXEMPLARS  # the wrapped method shows through
    solutions = cot.predict(QUESTIONS)
    stats = tiny_lm.decoder.last_stats
    assert stats.samples == 15 and stats.shared_prefix_tokens > 20
    for solution in solutions:
        assert len(solution.rationales) == 5
        winner, votes = majority(solution.sample_answers["flexible"])
        assert solution.answers["flexible"] == winner and solution.votes["flexible"] == votes
        assert sum(votes.values()) == sum(a is not None for a in solution.sample_answers["flexible"])
    assert cot.temperature == 0.7
    assert solutions == cot.solve(QUESTIONS)  # seeded: reproducible
    assert cot.cot.temperature == 0.0  # the wrapped method stays greedy on its own
    evaluation = cot.evaluate(QUESTIONS)
    assert evaluation.metrics["samples"] == 5 and set(evaluation.curves["flexible"]) == {1, 3, 5}


def test_zero_shot_cot_runs_a_second_answer_extraction_prompt(tiny_lm):
    cot = ChainOfThought(tiny_lm, mode="zero-shot-cot", max_new_tokens=8)
    [solution] = cot.solve(QUESTIONS[:1])
    assert "Therefore, the answer (arabic numerals) is" in solution.rationales[0]


def test_majority_ties_go_to_the_first_answer_and_no_answer_is_wrong():
    assert majority(["3", "4", "4", "3"]) == ("3", {"3": 2, "4": 2})
    assert majority([None, None]) == (None, {})
    solutions = [
        Solution("q1", ["no idea", "none"], {"strict": [None, None], "flexible": [None, None]},
                 {"strict": None, "flexible": None}, {"strict": {}, "flexible": {}}, 4),
        Solution("q2", ["7", "7"], {"strict": [None, None], "flexible": ["7", "7"]},
                 {"strict": None, "flexible": "7"}, {"strict": {}, "flexible": {"7": 2}}, 2),
    ]  # fmt: skip
    evaluation = CoTEvaluation.build(solutions, [None, "7"], 1.0, ["strict", "flexible"])
    assert evaluation.metrics["accuracy_flexible"] == 0.5
    assert evaluation.metrics["accuracy_strict"] == 0.0
    assert evaluation.metrics["no_answer_strict"] == 1.0
    assert evaluation.curves["flexible"] == {1: 0.5, 2: 0.5}


def test_bad_input(tiny_lm):
    with pytest.raises(PromptLearningError, match="empty question"):
        ChainOfThought(tiny_lm, mode="zero-shot-cot").solve([{"question": "  "}])
    with pytest.raises(PromptLearningError, match="n >= 1"):
        SelfConsistency(ChainOfThought(tiny_lm, mode="zero-shot-cot"), 0)
    with pytest.raises(PromptLearningError, match="unknown chain-of-thought mode"):
        ChainOfThought(tiny_lm, mode="tree-of-thought")
    with pytest.raises(PromptLearningError, match="needs exemplars"):
        ChainOfThought(tiny_lm)
    with pytest.raises(PromptLearningError, match="lacks rationale"):
        ChainOfThought(tiny_lm, exemplars=[{"question": "q", "answer": "1"}])
    with pytest.raises(PromptTooLongError, match="fewer exemplars"):
        ChainOfThought(tiny_lm, mode="zero-shot-cot", max_new_tokens=8).solve([{"question": "the cat sat " * 60}])
    with pytest.raises(PromptLearningError, match="empty"):
        ChainOfThought(tiny_lm, mode="zero-shot-cot").solve([])
    with pytest.warns(UserWarning, match="identical"):
        greedy = ChainOfThought(tiny_lm, mode="zero-shot-cot", max_new_tokens=4)
        SelfConsistency(greedy, 2, temperature=0.0).solve(QUESTIONS[:1])
