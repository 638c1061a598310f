"""The calculator in the decoding loop: a hostile-input-proof arithmetic evaluator, and forced
results that are the same whatever the batch."""

from __future__ import annotations

import re
import time
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from promptlearning.errors import PromptLearningError
from promptlearning.models.calculator import CalculatorError, calculator_completion, evaluate, format_number
from promptlearning.models.interface import GenerationConfig


@pytest.mark.parametrize(
    ("expression", "value"),
    [("48/2", "24"), ("12/60", "0.2"), ("0.2*50", "10"), ("(3+4)*2", "14"), ("2*-3", "-6"), ("1/3", "0.3333"),
     ("$1,000 / 4", "250"), ("007+1", "8"), ("10.05*2", "20.1"), ("3 × 4 ÷ 6", "2"), (".5+.25", "0.75")],
)  # fmt: skip
def test_arithmetic_is_exact_and_written_as_gsm8k_writes_it(expression: str, value: str) -> None:
    assert format_number(evaluate(expression)) == value


@pytest.mark.parametrize(
    "expression",
    ["__import__('os').system('true')", "9**9**9", "2**10", "1/0", "9" * 10_000, "1" + "0" * 30, "(1+2", "1+2)",
     "open('x')", "1e5", "7//2", "8%3", "", "()", "1 if 1 else 2", "[1]*9", "(" * 60 + "1" + ")" * 59,
     "99999999999*99999999999", "1/7/7/7/7/7/7/7/7/7/7/7/7/7/7/7"],
)  # fmt: skip
def test_hostile_or_absurd_expressions_are_refused_quickly(expression: str) -> None:
    started = time.perf_counter()
    with pytest.raises(CalculatorError):
        evaluate(expression)
    assert time.perf_counter() - started < 0.1


def test_a_completion_only_answers_an_open_call() -> None:
    assert calculator_completion("so 48/2 = <<48/2=") == "24>>"
    assert calculator_completion("<<48/2=24>> and 3 = ") is None  # an equals sign outside a call
    assert calculator_completion("<<1/0=") is None  # refused: the model writes on by itself
    assert calculator_completion("<<2+2=4>> then <<5-7=") == "-2>>"
    assert evaluate("0.1+0.2") == Fraction(3, 10)


TEXT = "go:<<3*4=99>> then <<5+6=99>> done"


@pytest.fixture(scope="module")
def calculating_lm(tmp_path_factory: pytest.TempPathFactory, tiny_llama_builder):
    """A tiny model that learned to write TEXT after ``go:`` (calls with wrong results)."""
    from promptlearning.models import load_model

    path = tiny_llama_builder(tmp_path_factory.mktemp("calc"), seed=11)
    lm = load_model(path, batch_size=4)
    ids = torch.tensor([[*lm.encode_prompt(TEXT), lm.eos_token_ids[0]]])
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(lm.model.parameters(), lr=1e-2)
    lm.model.train()
    for _ in range(80):
        loss = lm.model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    lm.model.eval()
    return lm


def test_the_calculator_writes_every_result_the_model_asks_for(calculating_lm) -> None:
    config = GenerationConfig(max_new_tokens=40)
    plain = calculating_lm.generate(["go:"], config)[0].text
    assert plain.startswith("<<3*4=99>>")  # what it learned
    calculated = calculating_lm.generate(["go:"], GenerationConfig(max_new_tokens=40, calculator=True))[0].text
    assert calculated.startswith("<<3*4=12>>")
    calls = re.findall(r"<<([^<>=]+)=([^<>]*)>>", calculated)
    assert calls and all(format_number(evaluate(expression)) == value for expression, value in calls)
    opened = calculating_lm.generate(["go:<<2+2="], GenerationConfig(max_new_tokens=8, calculator=True))[0]
    assert opened.text.startswith("4>>")  # a prompt that ends in an open call


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_forced_results_are_identical_batched_and_unbatched(calculating_lm, temperature: float) -> None:
    config = GenerationConfig(max_new_tokens=30, temperature=temperature, seed=3, calculator=True)
    prompts = ["go:", "go:<<7*8=", "the cat", "go:<<5+6="]
    alone = [calculating_lm.generate([p], config, batch_size=1)[0] for p in prompts]
    together = calculating_lm.generate(prompts, config, batch_size=4)
    assert [g.token_ids for g in together] == [g.token_ids for g in alone]
    assert together[1].text.startswith("56>>")
    if temperature:
        samples = calculating_lm.sample(prompts[:2], config, n=3, batch_size=6)
        assert all(s.text.startswith("56>>") for s in samples[1])
        assert [s.token_ids for s in samples[0]] == [
            s.token_ids for s in calculating_lm.sample(prompts[:1], config, n=3, batch_size=1)[0]
        ]


def test_backends_that_cannot_force_tokens_say_so(tiny_t5_dir: Path) -> None:
    from promptlearning.models import load_model

    with pytest.raises(PromptLearningError, match="calculator decoding"):
        load_model(tiny_t5_dir).generate(["x"], GenerationConfig(calculator=True))


def _metaspace_tokenizer():
    """A SentencePiece-style BPE like Llama-2's: ``▁`` marks a word start (one prepended to every text),
    digits and punctuation stand alone."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(prepend_scheme="always"),
                                                       pre_tokenizers.Punctuation(),
                                                       pre_tokenizers.Digits(individual_digits=True)])  # fmt: skip
    tokenizer.decoder = decoders.Metaspace(prepend_scheme="always")
    trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>"], show_progress=False)
    tokenizer.train_from_iterator(["so <<48/2=24>> and <<3*4=12>> so 24 + 12 = 36"] * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>")


@pytest.mark.parametrize("kind", ["byte-level", "metaspace"])
def test_forced_results_continue_the_call_without_a_word_break(kind: str, request: pytest.FixtureRequest) -> None:
    from transformers import AutoTokenizer

    from promptlearning.models.calculator import continuation_ids

    if kind == "byte-level":  # SmolLM2's kind
        tokenizer = AutoTokenizer.from_pretrained(str(request.getfixturevalue("tiny_llama_dir")))
    else:
        tokenizer = _metaspace_tokenizer()
    call = tokenizer.encode("so <<48/2=", add_special_tokens=False)
    forced = continuation_ids(lambda t: tokenizer.encode(t, add_special_tokens=False), tokenizer.decode, call, "24>>")
    assert tokenizer.decode(call + forced).endswith("<<48/2=24>>")
    if kind == "metaspace":  # encoded alone, the result would start a new word: "= 24>>"
        assert tokenizer.decode(call + tokenizer.encode("24>>", add_special_tokens=False)).endswith("= 24>>")
