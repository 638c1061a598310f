"""The decoding engine: shared prefill, n samples per prompt, per-sample seeds, early finish."""

from __future__ import annotations

import pytest
import torch

from promptlearning.errors import PromptLearningError
from promptlearning.models import GenerationConfig
from promptlearning.models.hf.decoding import choose_tokens, common_prefix_length

EXEMPLARS = (
    "question : what is two plus three ? answer : five\n\n"
    "review : great movie !\nsentiment : positive\n\nreview : awful .\nsentiment : negative\n\n"
)
QUESTIONS = ["the cat sat on", "the capital of france is", "i loved this", "a dull , tedious"]
PROMPTS = [EXEMPLARS + q for q in QUESTIONS]
SAMPLE = GenerationConfig(max_new_tokens=10, temperature=1.2, top_p=0.95, seed=3)


def test_prompts_share_the_exemplar_prefix_and_greedy_equals_a_plain_loop(tiny_lm, reference_greedy):
    generations = tiny_lm.generate(PROMPTS, GenerationConfig(max_new_tokens=8), batch_size=3)
    stats = tiny_lm.decoder.last_stats
    assert stats.shared_prefix_tokens >= tiny_lm.count_tokens(EXEMPLARS) - 2
    for prompt, generation in zip(PROMPTS, generations, strict=True):
        expected = reference_greedy(tiny_lm, prompt, 8)
        assert generation.text == tiny_lm.tokenizer.decode(expected)


def test_first_step_logits_after_shared_prefill_equal_a_full_forward(tiny_lm):
    decoder = tiny_lm.decoder
    encoded = [tiny_lm._prefix + tiny_lm.encode(p) for p in PROMPTS]
    shared = common_prefix_length(encoded)
    with torch.inference_mode():
        _, prefix_cache = decoder._forward(
            torch.tensor([encoded[0][:shared]]),
            torch.ones(1, shared, dtype=torch.long),
            torch.arange(shared)[None],
            None,
            0,
        )
        logits, *_ = decoder._prefill([e[shared:] for e in encoded], prefix_cache, shared)
        for row, ids in enumerate(encoded):
            full = tiny_lm.model(input_ids=torch.tensor([ids])).logits[0, -1]
            assert torch.allclose(logits[row], full, atol=1e-4)


def test_samples_do_not_depend_on_batching_or_on_the_other_prompts(tiny_lm):
    together = tiny_lm.sample(PROMPTS, SAMPLE, n=3, batch_size=12)
    alone = [tiny_lm.sample([p], SAMPLE, n=3, batch_size=1)[0] for p in PROMPTS]
    assert together == alone
    assert all(len(samples) == 3 for samples in together)
    assert any(len({g.text for g in samples}) > 1 for samples in together)  # samples differ
    again = tiny_lm.sample(PROMPTS, SAMPLE, n=3)
    assert again == together


def test_sample_j_is_the_same_whatever_n(tiny_lm):
    three = tiny_lm.sample(PROMPTS[:2], SAMPLE, n=3)
    five = tiny_lm.sample(PROMPTS[:2], SAMPLE, n=5)
    assert [s[:3] for s in five] == three


def test_rows_that_stop_leave_the_batch(tiny_lm):
    [free] = tiny_lm.generate([PROMPTS[0]], GenerationConfig(max_new_tokens=12))
    stop = free.text[2:5]
    assert stop.strip()
    config = GenerationConfig(max_new_tokens=12, stop=[stop])
    generations = tiny_lm.generate(PROMPTS, config)
    assert generations[0].finish_reason == "stop" and stop not in generations[0].text
    assert tiny_lm.decoder.last_stats.generated_tokens == sum(g.num_tokens for g in generations)


def test_sampling_filters_keep_only_allowed_tokens():
    logits = torch.tensor([[5.0, 4.0, 0.0, -1.0], [0.0, 0.0, 9.0, 0.0]])
    generators = [torch.Generator().manual_seed(i) for i in range(2)]
    for _ in range(20):
        top1 = choose_tokens(logits, GenerationConfig(temperature=1.0, top_k=1), generators)
        assert top1.tolist() == [0, 2]
        top_p = choose_tokens(logits, GenerationConfig(temperature=1.0, top_p=0.5), generators)
        assert top_p.tolist() == [0, 2]
        top2 = choose_tokens(logits, GenerationConfig(temperature=1.0, top_k=2), generators)
        assert top2[0].item() in (0, 1)


def test_bad_sample_counts(tiny_lm):
    with pytest.raises(PromptLearningError, match="positive integer"):
        tiny_lm.sample(PROMPTS, SAMPLE, n=0)
    with pytest.warns(UserWarning, match="identical"):
        greedy = tiny_lm.sample(PROMPTS[:1], GenerationConfig(max_new_tokens=4), n=2)
    assert greedy[0][0] == greedy[0][1]


def test_rows_that_finish_are_replaced_by_waiting_prompts(tiny_lm, reference_greedy):
    # stop strings end the rows at different steps, so waiting prompts join a running batch
    prompts = [EXEMPLARS + q for q in (*QUESTIONS, "the dog", "question : what")]
    config = GenerationConfig(max_new_tokens=14, stop=[" of", "ck"])
    small = tiny_lm.generate(prompts, config, batch_size=2)
    assert tiny_lm.decoder.last_stats.shared_prefix_tokens > 20
    alone = [tiny_lm.generate([p], config, batch_size=1)[0] for p in prompts]
    assert small == alone
    assert len({g.num_tokens for g in small}) > 2  # rows did finish at different steps
    sampled = tiny_lm.sample(prompts[:3], SAMPLE, n=3, batch_size=4)
    assert sampled == [tiny_lm.sample([p], SAMPLE, n=3)[0] for p in prompts[:3]]


def test_cache_slots_of_finished_rows_are_dropped(tiny_lm):
    prompts = [EXEMPLARS + q for q in (*QUESTIONS, "the dog", "question : what")] * 3
    config = GenerationConfig(max_new_tokens=14, stop=[" of", "ck"])
    generations = tiny_lm.generate(prompts, config, batch_size=3)
    longest = max(tiny_lm.count_tokens(p) for p in prompts)
    assert tiny_lm.decoder.last_stats.max_cache_slots <= longest + config.max_new_tokens
    assert generations == tiny_lm.generate(prompts, config, batch_size=len(prompts))
