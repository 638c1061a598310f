"""Models with sliding-window attention (Gemma 3): a shared prefix is only reused when exact."""

from __future__ import annotations

import pytest
import torch

from promptlearning.models import GenerationConfig, load_model
from promptlearning.models.hf.decoding import prefix_reuse_is_exact

EXEMPLARS = "review : great movie !\nsentiment : positive\n\nreview : awful .\nsentiment : negative\n\n"
PROMPTS = [EXEMPLARS + q for q in ("the cat sat on the mat", "i loved", "a dull , tedious mess that wasted")]


@pytest.fixture(scope="module")
def tiny_gemma(tmp_path_factory, make_bpe_tokenizer):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    directory = tmp_path_factory.mktemp("tiny-gemma")
    tokenizer = make_bpe_tokenizer(add_bos=True)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
        sliding_window=12, layer_types=["sliding_attention", "full_attention"], initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    Gemma3ForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return load_model(directory)


def test_the_window_is_detected_and_decides_prefix_reuse(tiny_gemma):
    assert tiny_gemma.sliding_window == 12
    assert prefix_reuse_is_exact(None, 10_000) and prefix_reuse_is_exact(12, 12)
    assert not prefix_reuse_is_exact(12, 13)


def test_batched_generation_equals_one_prompt_at_a_time(tiny_gemma):
    config = GenerationConfig(max_new_tokens=8)
    batched = tiny_gemma.generate(PROMPTS, config, batch_size=3)
    assert tiny_gemma.decoder.last_stats.shared_prefix_tokens == 0  # rows are longer than the window
    alone = [tiny_gemma.generate([p], config)[0] for p in PROMPTS]
    assert batched == alone


def test_batched_scores_equal_one_request_at_a_time(tiny_gemma):
    requests = [(p, " positive") for p in PROMPTS] + [(p, " negative") for p in PROMPTS]
    batched = tiny_gemma.loglikelihood(requests, batch_size=6)
    for request, result in zip(requests, batched, strict=True):
        [alone] = tiny_gemma.loglikelihood([request])
        assert result.logprob == pytest.approx(alone.logprob, abs=1e-4)
