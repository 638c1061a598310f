"""End to end on the real embedded models (pulled into the cache; `make test` pulls them first)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from promptlearning.models import GenerationConfig, load_model
from promptlearning.models.hub import pull

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smollm2():
    pull("smollm2-135m-instruct", progress=False)
    return load_model("smollm2-135m-instruct")


def test_loading_from_the_cache_is_fast():
    pull("smollm2-135m-instruct", progress=False)
    load_model("smollm2-135m-instruct")  # warm the imports
    start = time.perf_counter()
    load_model("smollm2-135m-instruct")
    assert time.perf_counter() - start < 5.0


def test_answers_the_capital_of_france(smollm2):
    prompt = smollm2.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}])
    [answer] = smollm2.generate([prompt], GenerationConfig(max_new_tokens=32))
    assert "Paris" in answer.text


def test_paris_is_more_likely_than_london(smollm2):
    paris, london = smollm2.loglikelihood([("The capital of France is", " Paris"),
                                           ("The capital of France is", " London")])  # fmt: skip
    assert paris.logprob > london.logprob
    assert paris.is_greedy


def test_tokenizer_quirks_are_handled(smollm2):
    tokenizer = smollm2.tokenizer
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # SmolLM2 pads with <|im_end|>
    assert not smollm2.add_bos
    assert smollm2.has_chat_template
    assert smollm2.max_length >= 2048


def test_batched_real_scores_equal_single(smollm2):
    pairs = [("Review: a gorgeous, moving film.\nSentiment:", " positive"),
             ("Review: dull.\nSentiment:", " negative"),
             ("The capital of France is", " Paris, a city of lights")]  # fmt: skip
    batched = smollm2.loglikelihood(pairs, batch_size=3)
    for pair, b in zip(pairs, batched, strict=True):
        [s] = smollm2.loglikelihood([pair], batch_size=1)
        assert b.token_logprobs == pytest.approx(s.token_logprobs, abs=1e-4)


def test_minilm_embeds_similar_sentences_closer():
    pull("minilm-l6", progress=False)
    encoder = load_model("minilm-l6")
    vectors = encoder.embed(["A cat sits on the mat.", "A kitten is sitting on a rug.", "Stocks fell sharply."])
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2


def test_chat_mode_scoring_equals_an_uncached_forward_pass(smollm2):
    """The chat prompt's trailing newline joins every continuation, so the requests share 20+ tokens
    that run into the scored positions: the case that crashed before the cache stopped short of them."""
    import torch

    from promptlearning.models import LoglikelihoodRequest

    context = smollm2.apply_chat_template([{"role": "user", "content": "The capital of France is "}])
    results = smollm2.loglikelihood([(context, "Paris"), (context, "London")])
    for word, result in zip(["Paris", "London"], results, strict=True):
        prefix, target = smollm2.split_request(LoglikelihoodRequest(context, word))
        with torch.no_grad():
            logits = smollm2.model(input_ids=torch.tensor([prefix + target])).logits[0].float()
        logprobs = torch.log_softmax(logits, -1)
        expected = [logprobs[len(prefix) + i - 1, t].item() for i, t in enumerate(target)]
        assert result.token_logprobs == pytest.approx(expected, abs=1e-3)
    assert results[0].logprob > results[1].logprob


def test_the_calculator_completes_a_real_models_call_batched_as_alone(smollm2):
    from promptlearning.models.interface import GenerationConfig

    config = GenerationConfig(max_new_tokens=12, calculator=True)
    prompts = ["Natalia sold 48/2 = <<48/2=", "She paid 12*7 = $<<12*7=", "What is the capital of France?"]
    together = smollm2.generate(prompts, config, batch_size=3)
    assert together[0].text.startswith("24>>") and together[1].text.startswith("84>>")
    alone = [smollm2.generate([p], config, batch_size=1)[0] for p in prompts]
    assert [g.token_ids for g in together] == [g.token_ids for g in alone]
