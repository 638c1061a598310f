"""Models to pretrain: transformers configs at preset sizes, built with random weights.

    model = build_model("causal", "nano", vocab_size=len(tokenizer), block_size=64, tokenizer=tokenizer)

``causal`` is a Llama-style decoder (RoPE, RMSNorm, SwiGLU; ``LlamaForCausalLM``), ``mlm`` a BERT
encoder with the masked-LM head (``BertForMaskedLM``), ``mlm-nsp`` BERT with both pretraining heads
(``BertForPreTraining``). Presets span ~1M to ~50M parameters with a 8k vocabulary; any config field
can be overridden (``overrides={"num_hidden_layers": 2}``).
"""

from __future__ import annotations

from typing import Any

from promptlearning.errors import PromptLearningError

OBJECTIVES = ("causal", "mlm", "mlm-nsp")

# hidden size, layers, heads; the feed-forward width is 4x hidden (BERT) or ~8/3x (SwiGLU, Llama)
PRESETS: dict[str, tuple[int, int, int]] = {
    "nano": (128, 4, 4),  # ~0.8M without embeddings: the tiny-shakespeare CPU recipe
    "micro": (256, 4, 4),  # ~3M
    "mini": (384, 6, 6),  # ~11M
    "small": (512, 8, 8),  # ~25M
    "base": (640, 10, 10),  # ~50M
}


def _llama_config(hidden: int, layers: int, heads: int, vocab: int, block: int, tokenizer: Any, dropout: float) -> Any:
    from transformers import LlamaConfig

    ffn = 64 * round(hidden * 8 / 3 / 64) or hidden * 2
    return LlamaConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=block,
        attention_dropout=dropout, tie_word_embeddings=True,
        bos_token_id=getattr(tokenizer, "bos_token_id", None), eos_token_id=getattr(tokenizer, "eos_token_id", None),
        pad_token_id=getattr(tokenizer, "pad_token_id", None),
    )  # fmt: skip


def _bert_config(hidden: int, layers: int, heads: int, vocab: int, block: int, tokenizer: Any, dropout: float) -> Any:
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=4 * hidden, max_position_embeddings=block, hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout, pad_token_id=getattr(tokenizer, "pad_token_id", None) or 0,
    )  # fmt: skip


def model_config(
    objective: str,
    preset: str,
    *,
    vocab_size: int,
    block_size: int,
    tokenizer: Any = None,
    dropout: float = 0.0,
    overrides: dict[str, Any] | None = None,
) -> Any:
    """The transformers config of a preset (with ``overrides`` applied), checked for consistency."""
    if objective not in OBJECTIVES:
        raise PromptLearningError(f"unknown objective {objective!r}; objectives: {', '.join(OBJECTIVES)}")
    if preset not in PRESETS:
        raise PromptLearningError(f"unknown model preset {preset!r}; presets: {', '.join(PRESETS)}")
    build = _llama_config if objective == "causal" else _bert_config
    config = build(*PRESETS[preset], vocab_size, block_size, tokenizer, dropout)
    for key, value in (overrides or {}).items():
        if not hasattr(config, key):
            raise PromptLearningError(f"model override {key!r} is not a field of {type(config).__name__}")
        setattr(config, key, value)
    overrides = overrides or {}
    if objective == "causal" and "num_attention_heads" in overrides and "num_key_value_heads" not in overrides:
        config.num_key_value_heads = config.num_attention_heads  # plain multi-head attention, as in the presets
    if config.hidden_size % config.num_attention_heads:
        raise PromptLearningError(
            f"hidden_size {config.hidden_size} is not divisible by num_attention_heads {config.num_attention_heads}"
        )
    if objective == "causal" and getattr(config, "head_dim", None) != config.hidden_size // config.num_attention_heads:
        config.head_dim = config.hidden_size // config.num_attention_heads
    return config


def build_model(objective: str, preset: str, *, seed: int = 0, **options: Any) -> Any:
    """A randomly initialised model for ``objective`` (the same weights for the same ``seed``);
    ``options`` are :func:`model_config`'s (``vocab_size``, ``block_size``, ``tokenizer``, ``dropout``,
    ``overrides``)."""
    import torch
    from transformers import BertForMaskedLM, BertForPreTraining, LlamaForCausalLM

    config = model_config(objective, preset, **options)
    cls = {"causal": LlamaForCausalLM, "mlm": BertForMaskedLM, "mlm-nsp": BertForPreTraining}[objective]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return cls(config)


def parameter_count(model: Any, *, embeddings: bool = True) -> int:
    """Parameters (tied weights counted once); without the token embeddings when ``embeddings=False``."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    if not embeddings:
        total -= model.get_input_embeddings().weight.numel()
    return total
