"""Fine-tuning a causal LM to write target text after a prompt (QA answers, summaries): the
language-modelling loss on the target tokens only (the prompt is context, its labels ignored), with a
PEFT method (LoRA, prompt tuning, …) through the same training loop as the other objectives. The
trained model comes back behind the :class:`LanguageModel` interface, so it generates and is
evaluated exactly like a prompted one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from promptlearning.errors import PromptLearningError
from promptlearning.models.hf.causal import HFLanguageModel
from promptlearning.training.loop import TrainingArguments, TrainResult, train
from promptlearning.training.peft_methods import apply_peft, get_method

IGNORE = -100  # label id the loss skips (transformers' convention)


class TargetFeaturizer:
    """(prompt, target) -> input ids (BOS + prompt + target + EOS) and labels (only the target's)."""

    def __init__(self, lm: HFLanguageModel, max_length: int) -> None:
        self.lm = lm
        self.max_length = max_length
        self.pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else lm.eos_token_ids[0]

    def encode(self, prompt: str, target: str) -> dict[str, list[int]]:
        prompt_ids = self.lm.encode_prompt(prompt)
        target_ids = [*self.lm.encode_text(" " + target.strip()), self.lm.eos_token_ids[0]]
        target_ids = target_ids[: self.max_length // 2]
        keep = self.max_length - len(target_ids)
        if len(prompt_ids) > keep:  # the prompt's end (question, cue) matters most: cut its start
            prompt_ids = prompt_ids[-keep:]
        return {"input_ids": prompt_ids + target_ids, "labels": [IGNORE] * len(prompt_ids) + target_ids}

    def collate(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        ids, mask, labels = [], [], []
        for f in features:
            pad = width - len(f["input_ids"])
            ids.append(f["input_ids"] + [self.pad_id] * pad)
            mask.append([1] * len(f["input_ids"]) + [0] * pad)
            labels.append(f["labels"] + [IGNORE] * pad)
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask), "labels": torch.tensor(labels)}


class TargetLossModel(nn.Module):
    """The causal LM's own loss on the labelled (target) tokens."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> dict:
        return {"loss": self.model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss}


@torch.no_grad()
def target_loss(module: nn.Module, features: Sequence[Mapping[str, Any]], featurizer: TargetFeaturizer) -> float:
    """Mean loss over the target tokens of ``features`` (dev loss)."""
    device = next(module.parameters()).device
    total, tokens = 0.0, 0
    for start in range(0, len(features), 8):
        batch = {k: v.to(device) for k, v in featurizer.collate(features[start : start + 8]).items()}
        n = int((batch["labels"][:, 1:] != IGNORE).sum())
        total += float(module(**batch)["loss"]) * n
        tokens += n
    return total / max(tokens, 1)


def finetune_for_generation(
    lm: HFLanguageModel,
    prompts: Sequence[str],
    targets: Sequence[str],
    *,
    peft: str | None,
    peft_options: Mapping[str, Any] | None,
    args: TrainingArguments,
    output_dir: str | Path,
    dev: tuple[Sequence[str], Sequence[str]] = ((), ()),
    max_length: int = 512,
    device: str = "auto",
    progress: bool | None = None,
    resume: bool = False,
) -> tuple[HFLanguageModel, TrainResult]:
    """Train ``peft`` (``None``: every weight) on (prompt, target) pairs; the best weights by dev loss
    (negated, ``neg_loss``) are kept. Returns the trained model as a :class:`LanguageModel` and the
    loop's result; ``resume`` continues from the last checkpoint in ``output_dir``."""
    if not isinstance(lm, HFLanguageModel):
        raise PromptLearningError(f"fine-tuning needs a transformers causal LM (the hf backend), not {lm.name}")
    if not prompts:
        raise PromptLearningError("fine-tuning needs training examples; data.train gave none")
    featurizer = TargetFeaturizer(lm, max_length)
    features = [featurizer.encode(p, t) for p, t in zip(prompts, targets, strict=True)]
    dev_features = [featurizer.encode(p, t) for p, t in zip(*dev, strict=True)]
    soft_prompt = bool(peft) and get_method(peft).prompt_learning
    model = lm.model.train()
    if peft:
        model = apply_peft(
            model, peft, dict(peft_options or {}), task_type="CAUSAL_LM", init_text="Answer the question.",
            tokenizer_dir=lm.model.name_or_path, total_steps=args.max_steps,
        )  # fmt: skip
    else:
        model.requires_grad_(True)
    module = TargetLossModel(model)

    def evaluate(trained: nn.Module) -> dict[str, float]:
        if not dev_features:
            return {"neg_loss": 0.0}
        return {"neg_loss": -target_loss(trained, dev_features, featurizer)}

    args.metric = "neg_loss"
    result = train(module, features, featurizer.collate, evaluate, args, output_dir, progress=progress, device=device,
                   resume=resume)  # fmt: skip
    trained = HFLanguageModel(
        model.eval(), lm.tokenizer, name=f"{lm.name}+{peft or 'full'}", batch_size=lm.batch_size,
        max_length=lm.max_length, add_bos=lm.add_bos, soft_prompt=soft_prompt,
    )  # fmt: skip
    return trained, result
