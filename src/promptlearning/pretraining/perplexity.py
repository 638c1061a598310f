"""Perplexity of a text under a causal LM with a strided sliding window (the Hugging Face recipe), as
token perplexity, word perplexity (lm-evaluation-harness's ``word_perplexity``: nats over
whitespace-separated words) and bits per byte; masked LMs get masked-token accuracy instead.

    result = perplexity(model, tokenizer, text, max_length=1024, stride=512)

Each window feeds the model ``max_length`` tokens and scores only the (at most ``stride``) tokens no
earlier window scored, so every token is scored once, and with ``stride < max_length`` every token
after the first window sees at least ``max_length - stride`` tokens of context. With ``stride ==
max_length`` (the default) the windows are lm-evaluation-harness's rolling windows: disjoint targets,
each window's input starting with the last token of the one before. The text starts after the
beginning-of-text token (BOS, else EOS) when the tokenizer has one, so its first token is scored too,
as lm-evaluation-harness's rolling log-likelihood does. (Unlike the Hugging Face recipe's code, no
token at a window's start goes unscored.)
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import torch

from promptlearning.errors import PromptLearningError, UnsupportedOperationError
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
    _warn_unknown_tokens(tokenizer, ids)
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    prefix = [start] if start is not None else []
    sequence = torch.tensor(prefix + ids, dtype=torch.long)
    # (begin, end, new): the window sequence[begin:end] is the input plus one token (the targets are
    # sequence[begin + 1:end]); its last `new` targets are the tokens no earlier window scored.
    windows, scored_until = [], 1  # position 0 (the prefix token, or the first token) is never predicted
    while scored_until < len(sequence):
        end = min(scored_until + stride, len(sequence))
        begin = max(0, end - 1 - max_length)
        windows.append((begin, end, end - scored_until))
        scored_until = end
    nats, scored = 0.0, 0
    with progress_bar(len(windows), desc="perplexity", unit="window", enabled=progress is not False) as bar:
        # consecutive windows of one length go together (the first few, cut at the start, and the last differ)
        batches: list[list[tuple[int, int, int]]] = []
        for window in windows:
            same = batches and batches[-1][0][1] - batches[-1][0][0] == window[1] - window[0]
            if same and len(batches[-1]) < batch_size:
                batches[-1].append(window)
            else:
                batches.append([window])
        for chunk in batches:
            ids = torch.stack([sequence[begin:end] for begin, end, _ in chunk]).to(device)
            logits = model(input_ids=ids[:, :-1]).logits.float()
            for row, (_begin, _end, new) in enumerate(chunk):
                nats += float(torch.nn.functional.cross_entropy(logits[row, -new:], ids[row, 1:][-new:],
                                                                reduction="sum"))  # fmt: skip
                scored += new
            bar.update(len(chunk))
    words, size = count_words(text), len(text.encode("utf-8"))
    return PerplexityResult(
        token_perplexity=math.exp(nats / scored), word_perplexity=math.exp(nats / words),
        bits_per_byte=nats / math.log(2) / size, nats=nats, tokens=scored, words=words, bytes=size,
        max_length=max_length, stride=stride,
    )  # fmt: skip


LM_HEADS = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration", "MaskedLM", "ForPreTraining")
UNKNOWN_WARNING_SHARE = 0.2  # above this share of unknown tokens, a perplexity compares with nothing


def _warn_unknown_tokens(tokenizer: Any, ids: list[int]) -> None:
    unknown = tokenizer.unk_token_id
    if unknown is None or not ids:
        return
    share = sum(1 for i in ids if i == unknown) / len(ids)
    if share > UNKNOWN_WARNING_SHARE:
        warnings.warn(
            f"{share:.0%} of the text's tokens are unknown to the tokenizer ({tokenizer.unk_token}): the model "
            "predicts one placeholder for them, so this perplexity is not comparable with others",
            UserWarning,
            stacklevel=3,
        )


def read_text(path: str, field: str = "text") -> str:
    """A text file as it is, or a JSONL file's ``field`` values joined by blank lines."""
    from promptlearning.pretraining.corpus import read_documents

    return "\n\n".join(read_documents([path], field))


def load_language_model(name_or_path: str, device: str = "auto") -> tuple[Any, Any]:
    """A causal or masked LM and its tokenizer from an embedded name or a model directory, on ``device``."""
    import transformers

    from promptlearning.devices import resolve_device
    from promptlearning.models import check_text_model, resolve_model_dir
    from promptlearning.models.compressed import compression_record, load_compressed
    from promptlearning.pretraining.tokenizer import load_tokenizer

    check_text_model(name_or_path)  # a sentence encoder has no language-model head to score with
    path = resolve_model_dir(name_or_path, pull=True)
    config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
    architectures = config.architectures or []
    masked = any(a.endswith(("MaskedLM", "ForPreTraining")) for a in architectures)
    if architectures and not masked and not any(a.endswith(LM_HEADS) for a in architectures):
        raise UnsupportedOperationError(
            f"{name_or_path} ({', '.join(architectures)}) has no language-model head: its perplexity would come from "
            "untrained weights. Use a causal or masked language model"
        )
    auto = transformers.AutoModelForMaskedLM if masked else transformers.AutoModelForCausalLM
    record = compression_record(path)
    if record is not None:  # a compressed directory (see promptlearning.models.compressed)
        model = load_compressed(auto.__name__, path, record)
    else:
        model = auto.from_pretrained(str(path), local_files_only=True)
    model = model.to(resolve_device(device)).eval()
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
