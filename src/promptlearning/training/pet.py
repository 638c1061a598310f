"""PET / LM-BFF prompt-based fine-tuning: classification as predicting a label word.

An example is rendered with the task's template (optionally after fixed demonstrations, LM-BFF's
"prompt + demonstrations"); the model's vocabulary logits at the **answer position** are reduced to
the verbalizer's label words, and the loss is cross-entropy over those label logits:

* causal LMs: the answer position is the last prompt token (the label word would come next);
* masked LMs: the position of the mask token (cloze). The template may place it with
  ``{{ mask }}``; otherwise it is appended where the answer would go;
* encoder-decoders (T5, BART): the prompt goes to the encoder and the answer is the decoder's
  first token.

A label with several words scores their logsumexp. Only the first token of each word is used (as
in LM-BFF), so the first tokens of different labels must differ. Token ids, BOS, counting,
truncation and chat templates are the model layer's (:class:`~promptlearning.models.hf.tokens.PromptTokens`),
so a prompt is tokenized here exactly as the backend tokenizes it for scoring.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from promptlearning.errors import PromptLearningError, PromptTooLongError
from promptlearning.models.hf.tokens import PromptTokens, right_pad
from promptlearning.prompts.examples import Example
from promptlearning.prompts.template import BLANK_MARK, Demonstration, PromptTemplate, split_at_blank
from promptlearning.prompts.verbalizer import Verbalizer

Family = Literal["causal", "masked", "seq2seq"]


class LabelWordError(PromptLearningError):
    """Label words that cannot be told apart by their first token."""


class PetFeaturizer:
    """Turns examples into token ids, answer positions and label indices for PET training."""

    def __init__(
        self,
        tokens: PromptTokens,
        template: PromptTemplate,
        verbalizer: Verbalizer,
        *,
        family: Family = "causal",
        demonstrations: Sequence[Demonstration] = (),
        max_length: int = 256,
        label_field: str = "label",
    ) -> None:
        if family == "masked" and tokens.tokenizer.mask_token_id is None:
            raise PromptLearningError("a masked-LM PET model needs a tokenizer with a mask token")
        self.tokens = tokens
        self.tokenizer = tokens.tokenizer
        self.template = template
        self.verbalizer = verbalizer
        self.family = family
        self.demonstrations = list(demonstrations)
        self.max_length = max_length
        self.label_field = label_field
        self.label_token_ids = self._label_token_ids()

    @property
    def masked(self) -> bool:
        return self.family == "masked"

    @property
    def labels(self) -> list[str]:
        return self.verbalizer.labels

    def _word_token(self, word: str) -> int:
        text = self.template.answer_text(word)
        ids = self.tokens.encode(text.lstrip() if self.family == "seq2seq" else text)
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

    def prompt(self, example: Example) -> str:
        """The prompt text of ``example`` (with the mask token in place for masked LMs)."""
        mask = self.tokenizer.mask_token
        appended = self.masked and not self.template.has_blank  # the mask goes after the prompt
        chat = self.tokens.apply_chat_template if self.template.mode == "chat" else None
        text = self.template.render_to_fit(
            example,
            self.demonstrations,
            budget=self.max_length - int(appended),
            count_tokens=self.tokens.count,
            truncate=self.tokens.truncate,
            chat=chat,
            blank=mask if self.masked else BLANK_MARK,
        )
        if appended:
            text += (" " if self.template.mode == "plain" else "") + mask
        if not self.masked:
            text, after = split_at_blank(text)
            if after.strip():
                raise PromptLearningError(
                    f"a {self.family} model predicts the answer after the prompt: put {{{{ mask }}}} last, or use a "
                    "masked LM"
                )
        return text

    def encode(self, example: Example, *, with_label: bool = True) -> dict[str, Any]:
        """``input_ids``, ``answer_index`` and (if ``with_label``) the label's index."""
        ids = self.tokens.prompt_ids(self.prompt(example))
        if len(ids) > self.max_length:
            raise PromptTooLongError(f"the prompt takes {len(ids)} tokens, more than max_length={self.max_length}")
        if self.masked:
            positions = [i for i, t in enumerate(ids) if t == self.tokenizer.mask_token_id]
            if len(positions) != 1:
                raise PromptLearningError(f"a cloze prompt needs exactly one mask token, found {len(positions)}")
            answer_index = positions[0]
        else:
            answer_index = 0 if self.family == "seq2seq" else len(ids) - 1  # seq2seq: the decoder's first step
        feature: dict[str, Any] = {"input_ids": ids, "answer_index": answer_index}
        if with_label:
            label = str(example[self.label_field])
            self.verbalizer.check_labels([label])
            feature["labels"] = self.labels.index(label)
        return feature

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        return right_pad(list(features), self.tokens.pad_id)


class PetModel(nn.Module):
    """A (PEFT-wrapped or plain) LM whose output is one logit per label, read at the answer position.

    ``virtual_tokens`` is the number of soft-prompt tokens peft prepends to a decoder's input (prompt
    tuning, P-tuning): the answer position moves right by that many in the output. An encoder-decoder
    reads the answer from its decoder's first step after ``decoder_prefix`` (the start token, and BART's
    ``<s>``). ``regulariser`` (AdaLoRA's orthogonality penalty) is added to the training loss.
    """

    def __init__(
        self,
        model: nn.Module,
        label_token_ids: Sequence[Sequence[int]],
        *,
        family: Family = "causal",
        virtual_tokens: int = 0,
        decoder_prefix: Sequence[int] = (),
        regulariser: Callable[[nn.Module], torch.Tensor | None] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.family = family
        self.virtual_tokens = virtual_tokens
        self.regulariser = regulariser
        width = max(len(ids) for ids in label_token_ids)
        table = torch.tensor([list(ids) + [ids[0]] * (width - len(ids)) for ids in label_token_ids])
        valid = torch.tensor([[True] * len(ids) + [False] * (width - len(ids)) for ids in label_token_ids])
        self.register_buffer("label_token_ids", table, persistent=False)
        self.register_buffer("label_token_valid", valid, persistent=False)
        self.register_buffer("decoder_prefix", torch.tensor(list(decoder_prefix), dtype=torch.long), persistent=False)

    @property
    def masked(self) -> bool:
        return self.family == "masked"

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        answer_index: torch.Tensor,
        labels: torch.Tensor | None = None,
        soft_labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Label logits; with ``labels`` (indices) the cross-entropy, with ``soft_labels`` (a distribution
        per row, PET's distillation) the cross-entropy against them."""
        rows_index = torch.arange(len(answer_index), device=answer_index.device)
        if self.family == "seq2seq":
            decoder = self.decoder_prefix.expand(len(input_ids), -1)
            rows = self.model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder).logits[
                :, -1
            ]
        elif self.family == "masked":
            vocab_logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
            rows = vocab_logits[rows_index, answer_index + self.virtual_tokens]
        else:
            # only the answer positions go through the vocabulary projection
            keep, where = torch.unique(answer_index + self.virtual_tokens, return_inverse=True)
            vocab_logits = self.model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep).logits
            rows = vocab_logits[rows_index, where]
        word_logits = rows.float()[:, self.label_token_ids]  # (batch, labels, words per label)
        word_logits = word_logits.masked_fill(~self.label_token_valid, float("-inf"))
        logits = torch.logsumexp(word_logits, dim=-1)
        out = {"logits": logits}
        if soft_labels is not None:
            out["loss"] = -(soft_labels.to(logits.dtype) * logits.log_softmax(-1)).sum(-1).mean()
        elif labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        if "loss" in out:
            penalty = self.regulariser(self.model) if self.regulariser and self.training else None
            if penalty is not None:
                out["loss"] = out["loss"] + penalty
        return out
