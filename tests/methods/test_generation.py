"""Prompted generation on a tiny random model: prompts, demonstrations, post-processing, metrics."""

from __future__ import annotations

import pytest

from promptlearning.errors import PromptLearningError
from promptlearning.methods.generation import PromptGenerator, postprocess, select_by_length
from promptlearning.models.interface import GenerationConfig

ROWS = [
    {"question": "Where is Paris?", "answer": "France"},
    {"question": "Where is Rome?", "answer": ["Italy", "in Italy"]},
    {"question": "Where is Bern?", "answer": "Switzerland"},
]


def test_postprocessing_chain() -> None:
    assert postprocess("  Paris, France.\nMore text", ["first_line"]) == "Paris, France."
    assert postprocess("The answer is 42 apples", ["strip"], regex=r"answer is (\d+)") == "42"
    assert postprocess("One. Two.", ["first_sentence", "lower"]) == "one."
    with pytest.raises(PromptLearningError, match="unknown post-processing"):
        PromptGenerator(None, "{{ question }}", target_field="answer", steps=["upper"])  # type: ignore[arg-type]


def test_few_shot_prompts_and_evaluation_on_a_tiny_model(tiny_lm) -> None:
    config = GenerationConfig(max_new_tokens=4, stop=["\n"])
    generator = PromptGenerator(tiny_lm, "Q: {{ question }}\nA:", target_field="answer", shots=2, selection="first",
                                config=config).fit(ROWS)  # fmt: skip
    prompt = generator.prompt({"question": "Where is Oslo?"})
    assert prompt == "Q: Where is Paris?\nA: France\n\nQ: Where is Rome?\nA: Italy\n\nQ: Where is Oslo?\nA:"
    evaluation = generator.evaluate(ROWS, ["squad", "rouge"])
    direct = [g.text.strip() for g in tiny_lm.generate(evaluation.prompts, config)]
    assert evaluation.answers == direct  # greedy: the same text as the model's own generate
    assert evaluation.references[1] == ["Italy", "in Italy"]
    assert set(evaluation.metrics) == {"exact_match", "f1", "rouge1", "rouge2", "rougeL"}
    assert len(evaluation.scores) == 3 and sorted(evaluation.worst(3)) == [0, 1, 2]


def test_bad_generation_inputs(tiny_lm) -> None:
    generator = PromptGenerator(tiny_lm, "{{ question }}", target_field="answer")
    with pytest.raises(PromptLearningError, match="empty prompt"):
        generator.fit().prompt({"question": "  "})
    with pytest.raises(PromptLearningError, match="unknown metric 'bleurt'"):
        generator.evaluate(ROWS, ["bleurt"])
    with pytest.raises(PromptLearningError, match="example 0 has no reference text"):
        generator.evaluate([{"question": "x", "answer": ""}], ["rouge"])
    with pytest.raises(PromptLearningError, match="3 demonstrations asked for, but the pool has 1"):
        PromptGenerator(tiny_lm, "{{ question }}", target_field="answer", shots=3).fit(ROWS[:1])


def test_length_selection_spreads_demonstrations_over_answer_lengths() -> None:
    lengths = list(range(100))
    chosen = select_by_length(lengths, 4, seed=3)
    assert sorted(lengths[i] // 25 for i in chosen) == [0, 1, 2, 3]  # one per quarter of the distribution
    assert chosen == select_by_length(lengths, 4, seed=3)


def test_knn_demonstrations_are_the_nearest_pool_examples(tiny_lm, tiny_bert_dir) -> None:
    from promptlearning.models import load_model

    generator = PromptGenerator(tiny_lm, "Q: {{ question }}\nA:", target_field="answer", shots=1, selection="knn",
                                embedder=load_model(tiny_bert_dir)).fit(ROWS)  # fmt: skip
    demos = generator.demonstrations_for([ROWS[2], ROWS[0]])
    assert [d[0].example for d in demos] == [ROWS[2], ROWS[0]]  # an example identical to a pool item is nearest
    assert generator.prompt(ROWS[2]).startswith("Q: Where is Bern?\nA: Switzerland\n\n")


def test_perplexity_of_the_reference_is_the_models_own_loglikelihood(tiny_lm) -> None:
    import math

    generator = PromptGenerator(tiny_lm, "Q: {{ question }}\nA:", target_field="answer").fit()
    evaluation = generator.evaluate(ROWS, ["distinct", "perplexity"])
    results = tiny_lm.loglikelihood(
        [(p, " " + refs[0]) for p, refs in zip(evaluation.prompts, evaluation.references, strict=True)]
    )
    expected = math.exp(-sum(r.logprob for r in results) / sum(r.num_tokens for r in results))
    assert evaluation.metrics["perplexity"] == pytest.approx(expected, rel=1e-5)
    assert evaluation.metrics["perplexity"] > 1.0 and "distinct_2" in evaluation.metrics
