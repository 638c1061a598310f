"""The corpus as one memory-mapped token file, built once and reused, cut into training blocks.

    cache = build_token_cache(corpus, tokenizer, cache_root)       # seconds on the second run
    tokens = cache.tokens()                                         # numpy memmap, uint16 or uint32
    train, validation = split_tokens(tokens, 0.1)
    blocks = TokenBlocks(train, block_size=64, overlap=1)           # a Sequence of {"input_ids": ...}

The cache directory is keyed by the corpus fingerprint and the tokenizer's own serialisation. It is
written into a staging folder and renamed into place only when complete, so an interrupted build
leaves nothing that a later run could half-use: the next run finds no finished cache and rebuilds.
Documents are tokenized in batches and appended to the file, so the corpus never sits in memory.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from promptlearning.errors import EmptyDataError, PromptLearningError
from promptlearning.pretraining.corpus import batched
from promptlearning.progress import progress_bar

CACHE_FORMAT = 1


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of the tokenizer's full serialisation (vocabulary, merges, normalisers, specials)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def separator_id(tokenizer: Any) -> int | None:
    """The token put between documents: end-of-text for causal tokenizers, [SEP] for BERT-style ones."""
    for name in ("eos_token_id", "sep_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return None


@dataclass
class TokenCache:
    """A finished cache directory: ``tokens.bin`` (the token stream) and ``meta.json``."""

    directory: Path
    meta: dict[str, Any]

    def tokens(self) -> np.ndarray:
        return np.memmap(self.directory / "tokens.bin", dtype=self.meta["dtype"], mode="r",
                         shape=(self.meta["tokens"],))  # fmt: skip


def _finished(directory: Path) -> TokenCache | None:
    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError:
        return None
    tokens = directory / "tokens.bin"
    item = np.dtype(meta.get("dtype", "uint16")).itemsize
    if meta.get("format") != CACHE_FORMAT or not tokens.is_file() or tokens.stat().st_size != meta["tokens"] * item:
        return None
    return TokenCache(directory, meta)


def build_token_cache(
    corpus: Any, tokenizer: Any, cache_root: str | Path, *, batch_size: int = 512, progress: bool | None = None
) -> TokenCache:
    """The corpus tokenized (documents joined by the separator token), from the cache when it is there."""
    key = f"{corpus.fingerprint()}-{tokenizer_fingerprint(tokenizer)}"
    root = Path(cache_root)
    directory = root / key
    if (found := _finished(directory)) is not None:
        return found
    if directory.exists():  # something unfinished or damaged under the final name: never used, rebuilt
        shutil.rmtree(directory)
    for stale in root.glob(f".staging-{key}-*"):  # a build that was killed
        shutil.rmtree(stale, ignore_errors=True)
    staging = root / f".staging-{key}-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    dtype = np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max + 1 else np.uint32
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # documents longer than a model's context are fine here: blocks cut them
    try:
        count, documents = _write_tokens(corpus, tokenizer, staging / "tokens.bin", dtype, batch_size, progress)
    finally:
        hf_logging.set_verbosity(verbosity)
    if count == 0:
        shutil.rmtree(staging)
        raise EmptyDataError("the corpus tokenizes to no tokens")
    meta = {"format": CACHE_FORMAT, "dtype": np.dtype(dtype).name, "tokens": count, "documents": documents,
            "vocabulary": len(tokenizer), "corpus": list(corpus.paths)}  # fmt: skip
    (staging / "meta.json").write_text(json.dumps(meta, indent=2))
    staging.rename(directory)  # the finished cache appears at once, or not at all
    return TokenCache(directory, meta)


def _write_tokens(
    corpus: Any, tokenizer: Any, path: Path, dtype: Any, batch_size: int, progress: bool | None
) -> tuple[int, int]:
    separator = separator_id(tokenizer)
    count = documents = 0
    with path.open("wb") as out, progress_bar(desc="tokenize", unit="doc", enabled=progress is not False) as bar:
        for batch in batched(corpus.iter_documents(), batch_size):
            for row in tokenizer(batch, add_special_tokens=False)["input_ids"]:
                if documents and separator is not None:
                    row = [separator, *row]
                np.asarray(row, dtype=dtype).tofile(out)
                count += len(row)
                documents += 1
            bar.update(len(batch))
    return count, documents


def split_tokens(tokens: np.ndarray, validation_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """The head for training, the tail (a contiguous ``validation_fraction``) held out."""
    if not 0 < validation_fraction < 1:
        raise PromptLearningError(f"validation_fraction must be between 0 and 1, got {validation_fraction}")
    cut = int(len(tokens) * (1 - validation_fraction))
    return tokens[:cut], tokens[cut:]


class TokenBlocks(Sequence):
    """Blocks of ``block_size`` tokens (plus ``overlap`` tokens of the next block, so a causal model
    predicts ``block_size`` tokens per block) as ``{"input_ids": LongTensor}``, starting every
    ``stride`` tokens: ``stride=block_size`` (the default) cuts consecutive blocks; ``stride=1`` makes
    every position a start, so a shuffled pass draws random windows as nanoGPT's sampler does."""

    def __init__(
        self, tokens: np.ndarray, block_size: int, *, overlap: int = 0, stride: int | None = None,
        what: str = "training",
    ) -> None:  # fmt: skip
        if block_size < 2:
            raise PromptLearningError(f"block_size must be at least 2, got {block_size}")
        self.tokens, self.block_size, self.overlap = tokens, block_size, overlap
        self.stride = stride or block_size
        if self.stride < 1:
            raise PromptLearningError(f"stride must be at least 1, got {stride}")
        span = block_size + overlap
        self.count = (len(tokens) - span) // self.stride + 1 if len(tokens) >= span else 0
        if self.count < 1:
            raise PromptLearningError(
                f"the {what} text has {len(tokens)} tokens: fewer than one block of {span}; "
                "give a larger corpus or a smaller block_size"
            )

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:  # type: ignore[override]
        if not -self.count <= index < self.count:
            raise IndexError(index)
        start = (index % self.count) * self.stride
        window = np.asarray(self.tokens[start : start + self.block_size + self.overlap], dtype=np.int64)
        return {"input_ids": torch.from_numpy(window)}
