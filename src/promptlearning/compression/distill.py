"""Recovery by distillation: a pruned student trained toward the unpruned teacher's next-token
distribution (Minitron's recipe: KL on the teacher's logits), on the shared training loop."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
                      temperature: float = 1.0) -> torch.Tensor:  # fmt: skip
    """Mean over the unmasked tokens of KL(teacher || student) at ``temperature`` (scaled by T²)."""
    t = temperature
    student = F.log_softmax(student_logits.float() / t, dim=-1)
    teacher = F.log_softmax(teacher_logits.float() / t, dim=-1)
    per_token = (teacher.exp() * (teacher - student)).sum(-1)
    mask = mask.to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum().clamp(min=1) * t * t


class Distillation(nn.Module):
    """The training loop's module: ``forward(input_ids, attention_mask)`` returns the student's
    distillation loss against a frozen teacher. The teacher is held outside the module's
    parameters, so the loop neither trains nor checkpoints it."""

    def __init__(self, student: nn.Module, teacher: nn.Module, temperature: float = 1.0) -> None:
        super().__init__()
        self.student = student
        self.temperature = temperature
        teacher.eval().requires_grad_(False)
        self._teacher = (teacher,)  # a tuple: not registered as a submodule

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        teacher = self._teacher[0]
        if next(teacher.parameters()).device != input_ids.device:
            teacher.to(input_ids.device)
        with torch.no_grad():
            target = teacher(input_ids=input_ids, attention_mask=attention_mask).logits
        logits = self.student(input_ids=input_ids, attention_mask=attention_mask).logits
        return {"loss": distillation_loss(logits, target, attention_mask, self.temperature), "logits": logits}


def collate_blocks(features: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    ids = torch.stack([f["input_ids"] for f in features])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@torch.no_grad()
def mean_distillation_loss(module: Distillation, batches: Sequence[dict[str, torch.Tensor]]) -> dict[str, float]:
    """The held-out distillation loss (the recovery's dev metric) and the student's perplexity there."""
    was_training = module.training
    module.eval()
    device = next(module.student.parameters()).device
    kl = nats = 0.0
    tokens = 0
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        out = module(**batch)
        n = int(batch["attention_mask"].sum())
        kl += float(out["loss"]) * n
        logits = out["logits"][:, :-1].float()
        nats += float(F.cross_entropy(logits.transpose(1, 2), batch["input_ids"][:, 1:], reduction="sum"))
        tokens += n
    module.train(was_training)
    predicted = sum(int(b["input_ids"][:, 1:].numel()) for b in batches)
    return {"val_kl": kl / max(tokens, 1), "perplexity": math.exp(min(nats / max(predicted, 1), 50.0))}
