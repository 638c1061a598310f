"""Making the pretrained model itself: a corpus, a tokenizer trained on it, a memory-mapped token cache,
models at preset sizes (causal, MLM, MLM+NSP), and perplexity.

Training runs through the ``type: pretrain`` task kind (``promptlearning pretrain TASK.yaml``), which
puts these pieces on the shared training loop and writes a Hugging Face model directory.
"""

from promptlearning.pretraining.corpus import Corpus
from promptlearning.pretraining.models import OBJECTIVES, PRESETS, build_model, model_config, parameter_count
from promptlearning.pretraining.perplexity import PerplexityResult, load_language_model, perplexity
from promptlearning.pretraining.tokenizer import load_tokenizer, train_tokenizer
from promptlearning.pretraining.tokens import TokenBlocks, build_token_cache, split_tokens

__all__ = [
    "OBJECTIVES",
    "PRESETS",
    "Corpus",
    "PerplexityResult",
    "TokenBlocks",
    "build_model",
    "build_token_cache",
    "load_language_model",
    "load_tokenizer",
    "model_config",
    "parameter_count",
    "perplexity",
    "split_tokens",
    "train_tokenizer",
]
