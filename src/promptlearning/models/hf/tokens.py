"""Tokenization as a model sees prompts, shared by the backend and the training code.

:class:`PromptTokens` knows whether a model needs BOS, how many tokens a prompt takes, how to cut a
text to a number of tokens and how to render chat messages, so that scoring, generation, PET
featurization and head fine-tuning all count and cut the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from promptlearning.errors import PromptLearningError, UnsupportedOperationError


def prepare_tokenizer(tokenizer: Any) -> None:
    """Make a tokenizer usable for batched work: it must have a pad token.

    We never derive attention masks from the pad id (SmolLM2 pads with its EOS token), so reusing
    EOS or UNK as padding is safe here.
    """
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token or tokenizer.bos_token


def tokenizer_adds_bos(tokenizer: Any, model_type: str = "") -> bool:
    """Whether prompts must start with BOS: the tokenizer adds it by itself, or the model needs it.

    Gemma models degrade badly without ``<bos>``, so it is forced for them.
    """
    if tokenizer.bos_token_id is None:
        return False
    if model_type.startswith("gemma"):
        return True
    with_special = tokenizer("x")["input_ids"]
    return bool(with_special) and with_special[0] == tokenizer.bos_token_id


def special_tokens_around(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special tokens a tokenizer puts before and after a text (e.g. ``[CLS]`` / ``[SEP]``)."""
    plain = list(tokenizer("word", add_special_tokens=False)["input_ids"])
    full = list(tokenizer("word")["input_ids"])
    for at in range(len(full) - len(plain) + 1):
        if full[at : at + len(plain)] == plain:
            return full[:at], full[at + len(plain) :]
    return [], []


class PromptTokens:
    """A tokenizer as a model sees prompts: BOS when it needs one (decoders), or the tokenizer's own
    special tokens around the text (encoders such as BERT, ``encoder=True``)."""

    def __init__(self, tokenizer: Any, *, model_type: str = "", add_bos: bool | None = None, encoder: bool = False):
        prepare_tokenizer(tokenizer)
        self.tokenizer = tokenizer
        self.encoder = encoder
        self.add_bos = False if encoder else (tokenizer_adds_bos(tokenizer, model_type) if add_bos is None else add_bos)
        self.before, self.after = special_tokens_around(tokenizer) if encoder else (self.prefix, [])
        self._special_strings: list[str] | None = None

    @property
    def prefix(self) -> list[int]:
        """The tokens every decoder prompt starts with (BOS, or nothing)."""
        return [self.tokenizer.bos_token_id] if self.add_bos else []

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without any special token."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_keeping_text(self, text: str, literals: Sequence[str]) -> list[int]:
        """Token ids of ``text`` (no special token added) where each of ``literals``, found in order,
        is read as plain text: a special token's string inside it (``<|im_start|>`` in a user's
        message) stays text instead of becoming the control token. Spans are only split where a
        literal holds such a string, so other text tokenizes exactly as :meth:`encode` does."""
        literals = [s for s in literals if s and self.holds_special_text(s)]
        if not literals:
            return self.encode(text)
        ids: list[int] = []
        cursor = 0
        for literal in literals:
            at = text.find(literal, cursor)
            if at < 0:
                raise PromptLearningError(
                    "a message holds the model's special tokens as text and the chat template changed it, "
                    "so it cannot be kept as plain text; remove the special tokens from the message"
                )
            ids += self.encode(text[cursor:at])
            ids += self.tokenizer(literal, add_special_tokens=False, split_special_tokens=True)["input_ids"]
            cursor = at + len(literal)
        return ids + self.encode(text[cursor:])

    def holds_special_text(self, text: str) -> bool:
        """``text`` contains the string of one of the tokenizer's special (added) tokens."""
        if self._special_strings is None:
            decoder = self.tokenizer.added_tokens_decoder.values()
            self._special_strings = [t.content for t in decoder if t.special and t.content]
        return any(token in text for token in self._special_strings)

    def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        return [list(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def prompt_ids(self, text: str) -> list[int]:
        """The ids a model reads for prompt ``text``, special tokens included."""
        return [*self.before, *self.encode(text), *self.after]

    def count(self, text: str) -> int:
        return len(self.before) + len(self.encode(text)) + len(self.after)

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest start of ``text`` that takes at most ``max_tokens`` tokens (special ones not counted)."""
        ids = self.encode(text)
        if len(ids) <= max_tokens:
            return text
        return self.tokenizer.decode(ids[: max(max_tokens, 0)], skip_special_tokens=True)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def apply_chat_template(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        if not self.has_chat_template:
            raise UnsupportedOperationError("the model has no chat template (a base model?); use plain prompts")
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def left_pad(
    sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-pad token lists; return ``input_ids``, ``attention_mask`` and ``position_ids`` on ``device``."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)


def right_pad(features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad ``input_ids`` (and per-token ``labels`` lists, with -100); other fields become tensors.

    Right padding keeps every token at its natural position, which soft prompts and prefixes
    (added by ``peft`` in front) rely on.
    """
    width = max(len(f["input_ids"]) for f in features)
    batch: dict[str, torch.Tensor] = {
        "input_ids": torch.full((len(features), width), pad_id, dtype=torch.long),
        "attention_mask": torch.zeros((len(features), width), dtype=torch.long),
    }
    for row, f in enumerate(features):
        batch["input_ids"][row, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
        batch["attention_mask"][row, : len(f["input_ids"])] = 1
    for key in features[0]:
        if key == "input_ids":
            continue
        values = [f[key] for f in features]
        if isinstance(values[0], list):
            padded = torch.full((len(features), width), -100, dtype=torch.long)
            for row, v in enumerate(values):
                padded[row, : len(v)] = torch.tensor(v)
            batch[key] = padded
        else:
            batch[key] = torch.tensor(values)
    return batch
