"""Perplexity of a text under a causal LM with a strided sliding window (the Hugging Face recipe), as
token perplexity, word perplexity (lm-evaluation-harness's ``word_perplexity``: nats over
whitespace-separated words) and bits per byte; masked LMs get masked-token accuracy instead.

    result = perplexity(model, tokenizer, text, max_length=1024, stride=512)

Each window holds ``max_length`` tokens and scores only the tokens no earlier window scored, so with
``stride < max_length`` every token after the first window sees ``max_length - stride`` tokens of
context. The text starts after the beginning-of-text token (BOS, else EOS) when the tokenizer has one,
so its first token is scored too, as lm-evaluation-harness's rolling log-likelihood does.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

import torch

from promptlearning.errors import PromptLearningError
from promptlearning.progress import progress_bar


@dataclass
class PerplexityResult:
    """Perplexity of one text: per token, per word and per byte, with the counts behind them."""

    token_perplexity: float
    word_perplexity: float
    bits_per_byte: float
    nats: float
    tokens: int
    words: int
    bytes: int
    max_length: int
    stride: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_words(text: str) -> int:
    """Whitespace-separated words, as lm-evaluation-harness counts them for ``word_perplexity``."""
    return len(re.split(r"\s+", text))


@torch.no_grad()
def perplexity(
    model: Any,
    tokenizer: Any,
    text: str,
    *,
    max_length: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
    progress: bool | None = None,
) -> PerplexityResult:
    """Perplexity of ``text`` under a causal ``model`` (on the model's device), ``batch_size`` windows
    per forward pass."""
    if not text.strip():
        raise PromptLearningError("the text is empty: nothing to score")
    context = getattr(model.config, "max_position_embeddings", None) or 1024
    max_length = min(max_length or 1024, context)
    stride = stride or max_length
    if not 0 < stride <= max_length:
        raise PromptLearningError(f"stride must be between 1 and max_length {max_length}, got {stride}")
    device = next(model.parameters()).device
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    prefix = [start] if start is not None else []
    sequence = torch.tensor(prefix + ids, dtype=torch.long)
    # (begin, end, new): each window, and how many of its last tokens no earlier window scored
    windows, previous_end = [], 1  # position 0 (the prefix token, or the first token) is never predicted
    for begin in range(0, max(len(sequence) - 1, 1), stride):
        end = min(begin + max_length, len(sequence))
        if end - max(previous_end, begin + 1) > 0:
            windows.append((begin, end, end - max(previous_end, begin + 1)))
            previous_end = end
        if end == len(sequence):
            break
    nats, scored = 0.0, 0
    with progress_bar(len(windows), desc="perplexity", unit="window", enabled=progress is not False) as bar:
        for start in range(0, len(windows), batch_size):
            group = windows[start : start + batch_size]
            if len({end - begin for begin, end, _ in group}) > 1:  # the short last window goes alone
                group, last = group[:-1], group[-1:]
            else:
                last = []
            for chunk in (group, last):
                if not chunk:
                    continue
                ids = torch.stack([sequence[begin:end] for begin, end, _ in chunk]).to(device)
                logits = model(input_ids=ids).logits[:, :-1].float()
                for row, (_begin, _end, new) in enumerate(chunk):
                    nats += float(torch.nn.functional.cross_entropy(logits[row, -new:], ids[row, 1:][-new:],
                                                                    reduction="sum"))  # fmt: skip
                    scored += new
            bar.update(len(group) + len(last))
    words, size = count_words(text), len(text.encode("utf-8"))
    return PerplexityResult(
        token_perplexity=math.exp(nats / scored), word_perplexity=math.exp(nats / words),
        bits_per_byte=nats / math.log(2) / size, nats=nats, tokens=scored, words=words, bytes=size,
        max_length=max_length, stride=stride,
    )  # fmt: skip


def read_text(path: str, field: str = "text") -> str:
    """A text file as it is, or a JSONL file's ``field`` values joined by blank lines."""
    from promptlearning.pretraining.corpus import read_documents

    return "\n\n".join(read_documents([path], field))


def load_language_model(name_or_path: str, device: str = "auto") -> tuple[Any, Any]:
    """A causal or masked LM and its tokenizer from an embedded name or a model directory, on ``device``."""
    import transformers

    from promptlearning.devices import resolve_device
    from promptlearning.models import resolve_model_dir
    from promptlearning.pretraining.tokenizer import load_tokenizer

    path = resolve_model_dir(name_or_path, pull=True)
    config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
    masked = any(a.endswith(("MaskedLM", "ForPreTraining")) for a in config.architectures or [])
    auto = transformers.AutoModelForMaskedLM if masked else transformers.AutoModelForCausalLM
    model = auto.from_pretrained(str(path), local_files_only=True).to(resolve_device(device)).eval()
    return model, load_tokenizer(str(path))


def masked_accuracy(model: Any, tokenizer: Any, text: str, *, block_size: int = 128, seed: int = 0) -> dict[str, float]:
    """Masked-token loss and accuracy of a masked LM on ``text`` (15 % of the tokens, fixed masks)."""
    import numpy as np

    from promptlearning.pretraining.objectives import WrappedBlocks, evaluate_masked, mlm_collate
    from promptlearning.pretraining.tokens import TokenBlocks

    block_size = min(block_size, model.config.max_position_embeddings) - 2
    ids = np.asarray(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=np.int64)
    blocks = WrappedBlocks(TokenBlocks(ids, block_size, what="evaluation"), tokenizer.cls_token_id,
                           tokenizer.sep_token_id)  # fmt: skip
    return evaluate_masked(model, blocks, mlm_collate(tokenizer), seed=seed)
