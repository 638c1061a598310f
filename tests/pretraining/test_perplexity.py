"""Strided perplexity against the model's own loss, computed window by window here."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from promptlearning.errors import PromptLearningError
from promptlearning.pretraining.perplexity import count_words, load_language_model, perplexity

TEXT = "the cat sat on the mat . a dog ran in the park and the sun was warm . " * 3


@pytest.fixture(scope="module")
def lm(tiny_llama_dir: Path):
    return load_language_model(str(tiny_llama_dir), "cpu")


def _sequence(tokenizer) -> torch.Tensor:
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    return torch.tensor(([start] if start is not None else []) + ids)


def test_one_window_equals_the_models_mean_loss(lm) -> None:
    model, tokenizer = lm
    sequence = _sequence(tokenizer)
    result = perplexity(model, tokenizer, TEXT, max_length=len(sequence), progress=False)
    with torch.no_grad():
        loss = model(input_ids=sequence[None], labels=sequence[None]).loss.item()
    assert result.tokens == len(sequence) - 1
    assert result.token_perplexity == pytest.approx(math.exp(loss), rel=1e-5)
    assert result.word_perplexity == pytest.approx(math.exp(loss * result.tokens / count_words(TEXT)), rel=1e-5)
    assert result.bits_per_byte == pytest.approx(loss * result.tokens / math.log(2) / len(TEXT.encode()), rel=1e-5)


def test_disjoint_and_strided_windows(lm) -> None:
    model, tokenizer = lm
    sequence = _sequence(tokenizer)
    window = 16
    nats = 0.0
    with torch.no_grad():  # disjoint targets, each token scored once with the context inside its window
        for begin in range(0, len(sequence) - 1, window):
            end = min(begin + window + 1, len(sequence))
            new = end - begin - 1  # the last window is shorter, but still takes `window` tokens of input
            chunk = sequence[max(0, end - window - 1) : end][None]
            logits = model(input_ids=chunk[:, :-1]).logits[0, -new:]
            nats += torch.nn.functional.cross_entropy(logits, chunk[0, -new:], reduction="sum").item()
    # inputs of `window` tokens, each predicting `window` new tokens: lm-evaluation-harness's rolling windows
    disjoint = perplexity(model, tokenizer, TEXT, max_length=window, stride=window, progress=False)
    assert disjoint.tokens == len(sequence) - 1
    assert disjoint.nats == pytest.approx(nats, rel=1e-4)
    strided = perplexity(model, tokenizer, TEXT, max_length=window, stride=4, progress=False)
    assert strided.tokens == len(sequence) - 1  # overlapping windows still score every token once
    assert strided.nats != pytest.approx(disjoint.nats, rel=1e-6)  # but with more context


def test_windows_are_lm_evaluation_harness_rolling_windows(lm) -> None:
    """With stride == max_length, the nats equal those of lm-eval's own rolling windows (its
    ``get_rolling_token_windows`` with context 1, as its ``loglikelihood_rolling`` uses them)."""
    lm_eval_utils = pytest.importorskip("lm_eval.utils", reason="needs the [bench] extra")
    model, tokenizer = lm
    sequence = _sequence(tokenizer).tolist()
    nats = 0.0
    with torch.no_grad():
        windows = lm_eval_utils.get_rolling_token_windows(sequence[1:], sequence[0], max_seq_len=12, context_len=1)
        for context, targets in map(lm_eval_utils.make_disjoint_window, windows):
            ids = torch.tensor(context + targets)[None]
            logits = model(input_ids=ids[:, :-1]).logits[0, -len(targets) :]
            nats += torch.nn.functional.cross_entropy(logits, torch.tensor(targets), reduction="sum").item()
    ours = perplexity(model, tokenizer, TEXT, max_length=12, batch_size=3, progress=False)
    assert ours.tokens == len(sequence) - 1
    assert ours.nats == pytest.approx(nats, rel=1e-5)


def test_bad_arguments(lm) -> None:
    model, tokenizer = lm
    with pytest.raises(PromptLearningError, match="empty"):
        perplexity(model, tokenizer, "  \n", progress=False)
    with pytest.raises(PromptLearningError, match="stride must be between 1 and max_length 8"):
        perplexity(model, tokenizer, TEXT, max_length=8, stride=9, progress=False)


def test_cli(tiny_llama_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text(TEXT)
    out = subprocess.run([sys.executable, "-m", "promptlearning.cli", "perplexity", str(tiny_llama_dir),
                          str(tmp_path / "t.txt"), "--max-length", "32", "--json", "--device", "cpu"],
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    values = json.loads(out.stdout.strip().splitlines()[-1])
    assert values["words"] == count_words(TEXT) and values["token_perplexity"] > 1


def test_a_text_mostly_unknown_to_the_tokenizer_warns() -> None:
    from promptlearning.pretraining.models import build_model
    from promptlearning.pretraining.tokenizer import train_tokenizer

    tokenizer = train_tokenizer([TEXT * 5], kind="wordpiece", vocab_size=120)
    model = build_model("causal", "nano", vocab_size=len(tokenizer), block_size=64, tokenizer=tokenizer,
                        overrides={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                                   "intermediate_size": 32})  # fmt: skip
    with pytest.warns(UserWarning, match="unknown to the tokenizer"):
        perplexity(model, tokenizer, "日本語 の 文章 です 。 " * 5, max_length=64, progress=False)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        perplexity(model, tokenizer, TEXT, max_length=64, progress=False)  # its own language: no warning
