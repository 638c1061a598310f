"""The llama.cpp backend on the real embedded SmolLM2 GGUF file (needs the `llamacpp` extra,
which `make test` installs)."""

from __future__ import annotations

import pytest

from promptlearning.models import GenerationConfig, load_model
from promptlearning.models.hub import pull

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.integration

REQUESTS = [
    ("The capital of France is", " Paris"),
    ("The capital of France is", " London"),
    ("Review: a gorgeous, witty, seductive movie.\nSentiment:", " positive"),
    ("Review: a gorgeous, witty, seductive movie.\nSentiment:", " negative"),
    ("Review: a gorgeous, witty, seductive movie.\nSentiment:", " very good indeed"),
]


@pytest.fixture(scope="module")
def llama():
    pull("smollm2-135m-instruct", progress=False)
    return load_model("smollm2-135m-instruct", backend="llamacpp")


def test_generates_greedily_with_stop_strings(llama):
    # (The chat prompt's first token is a near-tie between "The" and "L" that Q4 matmuls flip, so
    # a plain prompt is used here.)
    prompt = "Q: What is the capital of France?\nA:"
    [answer] = llama.generate([prompt], GenerationConfig(max_new_tokens=16))
    assert "Paris" in answer.text and answer.num_tokens == 16 and answer.finish_reason == "length"
    [stopped] = llama.generate([prompt], GenerationConfig(max_new_tokens=32, stop=["Paris"]))
    assert stopped.finish_reason == "stop" and "Paris" not in stopped.text
    assert llama.apply_chat_template([{"role": "user", "content": "hi"}]).endswith("<|im_start|>assistant\n")


def test_seeded_samples_are_reproducible(llama):
    config = GenerationConfig(max_new_tokens=16, temperature=1.0, seed=5)
    first = llama.sample(["Once upon a time"], config, n=3)
    assert first == llama.sample(["Once upon a time"], config, n=3)
    assert len({g.text for g in first[0]}) > 1


def test_scores_agree_with_the_transformers_backend_on_the_same_weights(llama):
    hf = load_model("smollm2-135m-instruct")
    ours, theirs = llama.loglikelihood(REQUESTS), hf.loglikelihood(REQUESTS)
    for a, b in zip(ours, theirs, strict=True):
        assert len(a.token_logprobs) == len(b.token_logprobs)
        assert a.logprob == pytest.approx(b.logprob, abs=0.35 * len(a.token_logprobs))  # Q4 matmuls vs fp32
    assert ours[0].logprob > ours[1].logprob and ours[2].logprob > ours[3].logprob


def test_prefix_reuse_gives_the_same_scores(llama):
    forward = llama.loglikelihood(REQUESTS)
    backward = llama.loglikelihood(REQUESTS[::-1])[::-1]
    for a, b in zip(forward, backward, strict=True):
        assert a.token_logprobs == pytest.approx(b.token_logprobs, abs=1e-4)


def test_the_cli_selects_the_backend_by_name(capsys):
    from promptlearning.cli import main

    argv = ["cot", "What is 2 + 3?", "--backend", "llamacpp", "--mode", "direct", "--max-new-tokens", "12"]
    assert main(argv) == 0
    assert "answer:" in capsys.readouterr().out


CALL_PROMPT = ("Q: Tom has 3 boxes of 12 pens. How many pens?\nA: 3*12 = <<3*12=36>>36 pens.\n"
               "Q: Ann has 7 bags of 9 apples and eats 5. How many apples are left?\nA:")  # fmt: skip


def test_the_calculator_writes_the_results_of_the_models_calls(llama):
    import re

    from promptlearning.models.calculator import evaluate, format_number

    config = GenerationConfig(max_new_tokens=40, stop=["\nQ:"], calculator=True)
    [calculated] = llama.generate([CALL_PROMPT], config)
    calls = re.findall(r"<<([^<>=]+)=([^<>]*)>>", calculated.text)
    assert calls and all(format_number(evaluate(expression)) == value for expression, value in calls)
    assert calculated.finish_reason == "stop" and "Q:" not in calculated.text
    [opened] = llama.generate(["Natalia sold 48/2 = <<48/2="], GenerationConfig(max_new_tokens=6, calculator=True))
    assert opened.text.startswith("24>>") and opened.num_tokens == 6
    sampled = GenerationConfig(max_new_tokens=30, stop=["\nQ:"], calculator=True, temperature=0.8, seed=3)
    assert llama.sample([CALL_PROMPT], sampled, n=3) == llama.sample([CALL_PROMPT], sampled, n=3)
