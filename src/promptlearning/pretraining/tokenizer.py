"""Tokenizers trained on a corpus with Hugging Face ``tokenizers``, saved as ``PreTrainedTokenizerFast``.

    tokenizer = train_tokenizer(corpus.iter_documents(), kind="bpe", vocab_size=8000)
    tokenizer.save_pretrained("runs/my-lm")

Kinds: ``bpe`` (byte-level BPE, GPT-2/Llama style, for causal models), ``wordpiece`` (BERT style,
lower-cased, with ``[CLS] … [SEP]`` pairs, for masked models) and ``char`` (one token per character
seen in the corpus, for tiny experiments: ``vocab_size`` is what the corpus has).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from promptlearning.errors import PromptLearningError
from promptlearning.pretraining.corpus import batched

TokenizerKind = Literal["bpe", "wordpiece", "char"]

# the special tokens of each kind, in id order, and the roles PreTrainedTokenizerFast gives them
SPECIAL_TOKENS: dict[str, dict[str, str]] = {
    "bpe": {"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
            "pad_token": "<|pad|>"},
    "char": {"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>", "unk_token": "<|unk|>",
             "pad_token": "<|pad|>"},
    "wordpiece": {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                  "mask_token": "[MASK]"},
}  # fmt: skip


def special_tokens(kind: str) -> list[str]:
    return list(dict.fromkeys(SPECIAL_TOKENS[kind].values()))


def train_tokenizer(
    documents: Iterable[str], *, kind: TokenizerKind = "bpe", vocab_size: int = 8000, min_frequency: int = 2
) -> Any:
    """A ``PreTrainedTokenizerFast`` trained on ``documents`` (streamed in batches)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if kind not in SPECIAL_TOKENS:
        raise PromptLearningError(f"unknown tokenizer kind {kind!r}; kinds: {', '.join(SPECIAL_TOKENS)}")
    specials = special_tokens(kind)
    if kind != "char" and vocab_size <= len(specials):
        raise PromptLearningError(
            f"vocab_size {vocab_size} leaves no room beside the {len(specials)} special tokens {specials}"
        )
    if kind == "bpe":
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
        )  # fmt: skip
        if vocab_size < len(specials) + 256:
            raise PromptLearningError(f"a byte-level BPE vocabulary needs at least {len(specials) + 256} tokens "
                                      f"(256 bytes + specials); vocab_size is {vocab_size}")  # fmt: skip
        tokenizer.train_from_iterator(batched(documents, 1000), trainer=trainer)
    elif kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials, show_progress=False
        )
        tokenizer.train_from_iterator(batched(documents, 1000), trainer=trainer)
        cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
        )  # fmt: skip
    else:  # char: the corpus's alphabet, in order of first appearance sorted for stability
        alphabet: set[str] = set()
        for doc in documents:
            alphabet.update(doc)
        vocab = {token: i for i, token in enumerate(specials)}
        for char in sorted(alphabet):
            vocab.setdefault(char, len(vocab))
        tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL_TOKENS["char"]["unk_token"]))
        tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        tokenizer.decoder = decoders.Fuse()
    if kind == "bpe" and tokenizer.get_vocab_size() < len(specials) + 256:
        raise PromptLearningError("the BPE tokenizer learned no merges: the corpus is too small")
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS[kind])
    fast.model_max_length = 2**62  # the model's context, not the tokenizer, limits a block
    return fast


def load_tokenizer(name_or_path: str) -> Any:
    """An existing tokenizer: an embedded model's name, a model directory or a tokenizer directory."""
    from transformers import AutoTokenizer

    from promptlearning.models import resolve_model_dir

    given = Path(name_or_path).expanduser()
    if given.is_dir() and ((given / "tokenizer.json").is_file() or (given / "tokenizer_config.json").is_file()):
        directory = given  # a tokenizer directory (no model config needed)
    else:
        directory = resolve_model_dir(name_or_path, pull=True)
    try:
        return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise PromptLearningError(f"could not load a tokenizer from {name_or_path}: {exc}") from None
