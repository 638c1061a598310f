"""generate on tiny real transformers models: batching, sampling, stop strings, errors."""

from __future__ import annotations

import pytest
import torch

from promptlearning.errors import PromptLearningError, PromptTooLongError, UnsupportedOperationError
from promptlearning.models import GenerationConfig

PROMPTS = [
    "the cat",
    "the capital of france is paris and the capital of",
    "review : great movie !\nsentiment :",
    "i loved",
    "a dull , tedious mess that wasted",
]


def test_greedy_matches_a_plain_decoding_loop(tiny_lm, reference_greedy):
    config = GenerationConfig(max_new_tokens=8)
    [generation] = tiny_lm.generate(["the capital of"], config)
    expected = reference_greedy(tiny_lm, "the capital of", 8)
    assert generation.text == tiny_lm.tokenizer.decode(expected)
    assert generation.num_tokens == len(expected)


@pytest.mark.parametrize("fixture", ["tiny_lm", "tiny_lm_bos"])
def test_left_padded_batched_greedy_equals_unbatched(request, fixture):
    lm = request.getfixturevalue(fixture)
    config = GenerationConfig(max_new_tokens=12)
    batched = lm.generate(PROMPTS, config, batch_size=len(PROMPTS))
    single = [lm.generate([p], config, batch_size=1)[0] for p in PROMPTS]
    assert batched == single


def test_results_come_back_in_prompt_order(tiny_lm):
    config = GenerationConfig(max_new_tokens=6)
    forward = tiny_lm.generate(PROMPTS, config, batch_size=2)
    backward = tiny_lm.generate(PROMPTS[::-1], config, batch_size=2)
    assert forward == backward[::-1]


def test_seeded_sampling_is_reproducible_and_differs_from_greedy(tiny_lm):
    sample = GenerationConfig(max_new_tokens=16, temperature=1.5, top_p=0.95, top_k=50, seed=7)
    first = tiny_lm.generate(PROMPTS, sample)
    second = tiny_lm.generate(PROMPTS, sample)
    assert first == second
    other_seed = tiny_lm.generate(PROMPTS, GenerationConfig(max_new_tokens=16, temperature=1.5, seed=8))
    greedy = tiny_lm.generate(PROMPTS, GenerationConfig(max_new_tokens=16))
    assert first != other_seed
    assert first != greedy


def test_seeded_generation_leaves_the_global_rng_alone(tiny_lm):
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    tiny_lm.generate(["the cat"], GenerationConfig(max_new_tokens=4, temperature=1.0, seed=1))
    assert torch.equal(torch.rand(1), expected)


def test_stop_string_cuts_the_text_and_ends_early(tiny_lm):
    config = GenerationConfig(max_new_tokens=24)
    [free] = tiny_lm.generate(["the cat"], config)
    assert len(free.text) > 3, "needs a few characters of output to pick a stop string from"
    stop = free.text[2:4]
    [stopped] = tiny_lm.generate(["the cat"], GenerationConfig(max_new_tokens=24, stop=[stop]))
    assert stopped.finish_reason == "stop"
    assert stop not in stopped.text
    assert free.text.startswith(stopped.text)
    assert stopped.num_tokens <= free.num_tokens


def test_stop_string_that_never_appears_ends_at_max_tokens(tiny_lm):
    [generation] = tiny_lm.generate(["the cat"], GenerationConfig(max_new_tokens=5, stop=["@@@never@@@"]))
    assert generation.num_tokens <= 5
    if generation.finish_reason == "length":
        assert generation.num_tokens == 5


def test_empty_prompt_generates(tiny_lm):
    [generation] = tiny_lm.generate([""], GenerationConfig(max_new_tokens=3))
    assert generation.num_tokens <= 3


def test_bad_prompt_lists_are_clear_errors(tiny_lm):
    with pytest.raises(PromptLearningError, match="at least one prompt"):
        tiny_lm.generate([])
    with pytest.raises(PromptLearningError, match="list of prompts"):
        tiny_lm.generate("the cat")


def test_prompt_too_long_is_a_clear_error(tiny_lm):
    with pytest.raises(PromptTooLongError, match="max_new_tokens=64"):
        tiny_lm.generate([" ".join(["the cat sat"] * 30)], GenerationConfig(max_new_tokens=64))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"temperature": -1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_k": -2}, "top_k"),
        ({"stop": [""]}, "stop strings"),
    ],
)
def test_generation_config_is_validated(options, message):
    with pytest.raises(PromptLearningError, match=message):
        GenerationConfig(**options)


def test_chat_template_renders_and_opens_the_assistant_turn(tiny_lm):
    text = tiny_lm.apply_chat_template([{"role": "user", "content": "hi"}])
    assert text == "<|user|>\nhi</s>\n<|assistant|>\n"


def test_model_without_chat_template_says_so(tiny_lm_bos, monkeypatch):
    monkeypatch.setattr(tiny_lm_bos.tokenizer, "chat_template", None)
    assert not tiny_lm_bos.has_chat_template
    with pytest.raises(UnsupportedOperationError, match="no chat template"):
        tiny_lm_bos.apply_chat_template([{"role": "user", "content": "hi"}])


def test_causal_model_does_not_embed(tiny_lm):
    with pytest.raises(UnsupportedOperationError, match="minilm-l6"):
        tiny_lm.embed(["x"])
