"""PET / LM-BFF prompt-based fine-tuning: classification as predicting a label word.

An example is rendered with the task's template (optionally after fixed demonstrations, LM-BFF's
"prompt + demonstrations"); the model's vocabulary logits at the **answer position** are reduced to
the verbalizer's label words, and the loss is cross-entropy over those label logits:

* causal LMs: the answer position is the last prompt token (the label word would come next);
* masked LMs: the position of the mask token (cloze). The template may place it with
  ``{{ mask }}``; otherwise it is appended where the answer would go.

A label with several words scores their logsumexp. Only the first token of each word is used (as
in LM-BFF), so the first tokens of different labels must differ.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from promptlearning.errors import PromptLearningError, PromptTooLongError
from promptlearning.models.hf.tokens import prepare_tokenizer, tokenizer_adds_bos
from promptlearning.prompts.examples import Example
from promptlearning.prompts.template import BLANK_MARK, Demonstration, PromptTemplate, split_at_blank
from promptlearning.prompts.verbalizer import Verbalizer


class LabelWordError(PromptLearningError):
    """Label words that cannot be told apart by their first token."""


class PetFeaturizer:
    """Turns examples into token ids, answer positions and label indices for PET training."""

    def __init__(
        self,
        tokenizer: Any,
        template: PromptTemplate,
        verbalizer: Verbalizer,
        *,
        masked: bool = False,
        model_type: str = "",
        demonstrations: Sequence[Demonstration] = (),
        max_length: int = 256,
        label_field: str = "label",
        chat: Any = None,
    ) -> None:
        prepare_tokenizer(tokenizer)
        self.tokenizer = tokenizer
        self.template = template
        self.verbalizer = verbalizer
        self.masked = masked
        self.demonstrations = list(demonstrations)
        self.max_length = max_length
        self.label_field = label_field
        self.chat = chat
        self.add_bos = not masked and tokenizer_adds_bos(tokenizer, model_type)
        if masked and tokenizer.mask_token_id is None:
            raise PromptLearningError("a masked-LM PET model needs a tokenizer with a mask token")
        self.label_token_ids = self._label_token_ids()

    @property
    def labels(self) -> list[str]:
        return self.verbalizer.labels

    def _word_token(self, word: str) -> int:
        text = self.template.answer_text(word)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise LabelWordError(f"label word {word!r} encodes to no tokens")
        return int(ids[0])

    def _label_token_ids(self) -> list[list[int]]:
        ids = [[self._word_token(w) for w in self.verbalizer.label_words[label]] for label in self.labels]
        owner: dict[int, str] = {}
        for label, tokens in zip(self.labels, ids, strict=True):
            for token in tokens:
                if owner.setdefault(token, label) != label:
                    piece = self.tokenizer.convert_ids_to_tokens(token)
                    raise LabelWordError(
                        f"labels {owner[token]!r} and {label!r} have words starting with the same token "
                        f"{piece!r}; PET scores the first token of each word, so choose distinct words"
                    )
        return ids

    # ------------------------------------------------------------------ encoding

    def _count(self, text: str) -> int:
        return len(self._ids(text))

    def _ids(self, text: str) -> list[int]:
        if self.masked:
            return list(self.tokenizer(text)["input_ids"])
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return [self.tokenizer.bos_token_id, *ids] if self.add_bos else ids

    def _truncate(self, text: str, max_tokens: int) -> str:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][: max(max_tokens, 0)]
        return self.tokenizer.decode(ids)

    def prompt(self, example: Example) -> str:
        """The prompt text of ``example`` (with the mask token in place for masked LMs)."""
        appended = self.masked and not self.template.has_blank  # the mask goes after the prompt
        text = self.template.render_to_fit(
            example,
            self.demonstrations,
            budget=self.max_length - int(appended),
            count_tokens=self._count,
            truncate=self._truncate,
            chat=self.chat,
            blank=self.tokenizer.mask_token if self.masked else BLANK_MARK,
        )
        if appended:
            text += (" " if self.template.mode == "plain" else "") + self.tokenizer.mask_token
        if not self.masked:
            text, after = split_at_blank(text)
            if after.strip():
                raise PromptLearningError(
                    "a causal LM predicts the answer at the end of the prompt: put {{ mask }} last, or use a masked LM"
                )
        return text

    def encode(self, example: Example, *, with_label: bool = True) -> dict[str, Any]:
        """``input_ids``, ``answer_index`` and (if ``with_label``) the label's index."""
        ids = self._ids(self.prompt(example))
        if len(ids) > self.max_length:
            raise PromptTooLongError(f"the prompt takes {len(ids)} tokens, more than max_length={self.max_length}")
        if self.masked:
            positions = [i for i, t in enumerate(ids) if t == self.tokenizer.mask_token_id]
            if len(positions) != 1:
                raise PromptLearningError(f"a cloze prompt needs exactly one mask token, found {len(positions)}")
            answer_index = positions[0]
        else:
            answer_index = len(ids) - 1
        feature: dict[str, Any] = {"input_ids": ids, "answer_index": answer_index}
        if with_label:
            label = str(example[self.label_field])
            self.verbalizer.check_labels([label])
            feature["labels"] = self.labels.index(label)
        return feature

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        return right_pad_batch(features, self.tokenizer.pad_token_id)


def right_pad_batch(features: Sequence[Mapping[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad ``input_ids`` (and ``labels`` lists, with -100); other fields become tensors.

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


class PetModel(nn.Module):
    """A (PEFT-wrapped or plain) LM whose output is one logit per label, read at the answer position.

    ``virtual_tokens`` is the number of soft-prompt tokens peft prepends to the input (prompt tuning,
    P-tuning): the answer position moves right by that many in the output. ``regulariser`` (AdaLoRA's
    orthogonality penalty) is added to the training loss.
    """

    def __init__(
        self,
        model: nn.Module,
        label_token_ids: Sequence[Sequence[int]],
        *,
        masked: bool = False,
        virtual_tokens: int = 0,
        regulariser: Callable[[nn.Module], torch.Tensor | None] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.masked = masked
        self.virtual_tokens = virtual_tokens
        self.regulariser = regulariser
        width = max(len(ids) for ids in label_token_ids)
        table = torch.tensor([list(ids) + [ids[0]] * (width - len(ids)) for ids in label_token_ids])
        valid = torch.tensor([[True] * len(ids) + [False] * (width - len(ids)) for ids in label_token_ids])
        self.register_buffer("label_token_ids", table, persistent=False)
        self.register_buffer("label_token_valid", valid, persistent=False)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        answer_index: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        positions = answer_index + self.virtual_tokens
        if self.masked:
            vocab_logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
            rows = vocab_logits[torch.arange(len(positions)), positions]
        else:
            # only the answer positions go through the vocabulary projection
            keep, where = torch.unique(positions, return_inverse=True)
            vocab_logits = self.model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep).logits
            rows = vocab_logits[torch.arange(len(positions)), where]
        word_logits = rows.float()[:, self.label_token_ids]  # (batch, labels, words per label)
        word_logits = word_logits.masked_fill(~self.label_token_valid, float("-inf"))
        logits = torch.logsumexp(word_logits, dim=-1)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
            penalty = self.regulariser(self.model) if self.regulariser and self.training else None
            if penalty is not None:
                out["loss"] = out["loss"] + penalty
        return out
