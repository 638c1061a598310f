"""Head fine-tuning baselines: a new classification layer on top of the model, no verbalizer.

* sequence classification (``AutoModelForSequenceClassification``): the text goes in as is, one
  label per example;
* token classification for NER (``AutoModelForTokenClassification``): words in, one BIO tag per
  word; the tag is predicted on the first sub-token of each word, scored with seqeval span F1.

Words are tokenised one by one (with a leading space after the first, as in running text), so the
word alignment works for any tokenizer, byte-level BPE included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from promptlearning.errors import PromptLearningError
from promptlearning.models.hf.tokens import prepare_tokenizer, right_pad, special_tokens_around
from promptlearning.prompts.examples import Example


class NerDataError(PromptLearningError):
    """NER examples whose tokens and tags do not line up, or tags outside the label set."""


class SequenceFeaturizer:
    """Text → token ids and a label index, for a sequence-classification head."""

    def __init__(
        self, tokenizer: Any, labels: Sequence[str], render: Any, *, max_length: int = 256, label_field: str = "label"
    ) -> None:
        prepare_tokenizer(tokenizer)
        self.tokenizer = tokenizer
        self.labels = [str(label) for label in labels]
        self.render = render
        self.max_length = max_length
        self.label_field = label_field

    def encode(self, example: Example, *, with_label: bool = True) -> dict[str, Any]:
        ids = self.tokenizer(self.render(example), truncation=True, max_length=self.max_length)["input_ids"]
        feature: dict[str, Any] = {"input_ids": list(ids)}
        if with_label:
            label = str(example[self.label_field])
            if label not in self.labels:
                raise PromptLearningError(f"label {label!r} is not one of the task's labels {self.labels}")
            feature["labels"] = self.labels.index(label)
        return feature

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        return right_pad(list(features), self.tokenizer.pad_token_id)


class TokenFeaturizer:
    """Words and BIO tags → sub-token ids and per-sub-token labels (-100 except on first sub-tokens)."""

    def __init__(
        self,
        tokenizer: Any,
        labels: Sequence[str],
        *,
        max_length: int = 256,
        tokens_field: str = "tokens",
        tags_field: str = "ner_tags",
    ) -> None:
        prepare_tokenizer(tokenizer)
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.max_length = max_length
        self.tokens_field = tokens_field
        self.tags_field = tags_field
        self.before, self.after = special_tokens_around(tokenizer)

    def word_pieces(self, words: Sequence[str]) -> list[list[int]]:
        pieces = []
        for i, word in enumerate(words):
            ids = self.tokenizer(word if i == 0 else " " + word, add_special_tokens=False)["input_ids"]
            pieces.append(list(ids) or [self.tokenizer.unk_token_id or 0])
        return pieces

    def encode(self, example: Example, *, with_label: bool = True) -> dict[str, Any]:
        words = list(example[self.tokens_field])
        tags = list(example.get(self.tags_field, [])) if with_label else []
        if with_label and len(tags) != len(words):
            raise NerDataError(
                f"an example has {len(words)} tokens but {len(tags)} tags: {' '.join(map(str, words))[:80]!r}"
            )
        unknown = sorted(set(map(str, tags)) - set(self.labels))
        if unknown:
            raise NerDataError(f"tag(s) {unknown} are not in the label set {self.labels}")
        ids, labels, first = list(self.before), [-100] * len(self.before), []
        budget = self.max_length - len(self.before) - len(self.after)
        for i, piece in enumerate(self.word_pieces(words)):
            if len(ids) - len(self.before) + len(piece) > budget:
                break  # words past max_length are not predicted (counted as "O" by predict)
            first.append(len(ids))
            labels += [self.labels.index(str(tags[i])) if with_label else -100] + [-100] * (len(piece) - 1)
            ids += piece
        ids += self.after
        labels += [-100] * len(self.after)
        feature: dict[str, Any] = {"input_ids": ids, "word_starts": first + [-1] * (len(words) - len(first))}
        if with_label:
            feature["labels"] = labels
        return feature

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        batch = right_pad([{k: v for k, v in f.items() if k != "word_starts"} for f in features], self.pad_id)
        return batch

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id


class HeadModel(nn.Module):
    """A ``...ForSequenceClassification`` / ``...ForTokenClassification`` model with our batch keys."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return out
