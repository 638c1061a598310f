"""The Hugging Face ``transformers`` backend: one module per model family, plus the tokenization
and decoding engine they (and the training code) share."""

from promptlearning.models.hf.causal import HFLanguageModel
from promptlearning.models.hf.encoder import HFEncoderModel
from promptlearning.models.hf.loading import is_causal_lm, load_hf, model_family
from promptlearning.models.hf.tokens import PromptTokens, left_pad, prepare_tokenizer, right_pad, tokenizer_adds_bos

__all__ = [
    "HFEncoderModel",
    "HFLanguageModel",
    "PromptTokens",
    "is_causal_lm",
    "left_pad",
    "load_hf",
    "model_family",
    "prepare_tokenizer",
    "right_pad",
    "tokenizer_adds_bos",
]
