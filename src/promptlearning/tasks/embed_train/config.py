"""The schema of sentence-embedding training files (``type: embed-train``): SimCSE on any HF model.

type: embed-train
name: simcse-smollm2
model: smollm2-135m-instruct
objective: unsupervised          # unsupervised: (s, s) with dropout noise | supervised: columns below
pooling: mean
dropout: 0.1                     # set on the model's config (SmolLM2 ships with none)
temperature: 0.05
data:
  root: ../../shared/data
  train: [stsb/train.jsonl]
  fields: [sentence1, sentence2] # unsupervised: every sentence of these fields (a .txt file: its lines)
  dev: stsb/dev.jsonl            # STS pairs (sentence1, sentence2, score): picks the best checkpoint
  test: stsb/test.jsonl          # reported once, before and after training
training: {max_steps: 250, batch_size: 64, learning_rate: 3.0e-5}
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from promptlearning.pretraining.simcse import POOLINGS
from promptlearning.tasks.config import DataRoot, Dtype, StrictModel, TaskConfigBase, one_of

ROLES = ("anchor", "positive", "negative")


class EmbedDataSection(DataRoot):
    """Training sentences (or supervised pairs / triples) and the STS sets that evaluate them."""

    train: list[str] = Field(min_length=1, description="JSONL / JSON / CSV files, datasets directories or .txt files")
    fields: list[str] = Field(default_factory=lambda: ["text"], description="unsupervised: the fields holding text")
    columns: dict[one_of(list(ROLES)), str] = Field(
        default_factory=dict, description="supervised: anchor, positive and (optional) negative -> field"
    )
    max_sentences: int | None = Field(None, ge=1, description="unsupervised: keep this many (shuffled, unique)")
    dev: str | None = Field(None, description="STS pairs for choosing the best checkpoint")
    test: str | None = Field(None, description="STS pairs reported before and after training")
    sts_limit: int | None = Field(None, ge=2, description="score only the first pairs of dev and test")
    sts_fields: list[str] = Field(default_factory=lambda: ["sentence1", "sentence2", "score"], min_length=3,
                                  max_length=3)  # fmt: skip


class EmbedTrainingSection(StrictModel):
    """sentence-transformers trainer settings. Gradient accumulation is left out on purpose: it would
    not add in-batch negatives, which is what a contrastive batch size is for."""

    learning_rate: float = Field(3e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(64, ge=2, description="sentences per batch (each sees batch_size - 1 negatives)")
    max_steps: int = Field(250, ge=1)
    warmup_ratio: float = Field(0.0, ge=0, le=1)
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    max_grad_norm: float = Field(1.0, ge=0)
    eval_every: int = Field(125, ge=1, description="steps between dev evaluations (and checkpoints)")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field("auto", description="auto: bf16 on a GPU")
    keep_checkpoints: int = Field(1, ge=1)
    log_with: Literal["tensorboard"] | None = None


class EmbedTrainTaskConfig(TaskConfigBase):
    """Contrastive sentence-embedding training (``type: embed-train``): unsupervised SimCSE (dropout as
    augmentation, in-batch negatives) or supervised SimCSE (pairs or triples with hard negatives)."""

    type: Literal["embed-train"]
    objective: Literal["unsupervised", "supervised"] = "unsupervised"
    pooling: one_of(list(POOLINGS)) = Field("mean", description=f"one of {', '.join(POOLINGS)}")
    max_seq_length: int = Field(32, ge=4, description="tokens per sentence (longer ones are cut)")
    dropout: float | None = Field(0.1, ge=0, lt=1, description="set on the model's config; null: keep the model's")
    train_layers: int | None = Field(None, ge=1, description="train only the top layers (faster); null: all")
    temperature: float = Field(0.05, gt=0, description="softmax temperature (the loss scale is 1 / temperature)")
    dtype: Dtype = Field("float32", description="the weights being trained (mixed precision: training.mixed_precision)")
    seeds: list[int] | None = Field(None, min_length=1, description="one run per seed (default: the task's seed)")
    eval_batch_size: int = Field(64, ge=1)
    data: EmbedDataSection
    training: EmbedTrainingSection = Field(default_factory=EmbedTrainingSection)

    @model_validator(mode="after")
    def _objective_needs(self) -> EmbedTrainTaskConfig:
        if self.objective == "supervised" and not {"anchor", "positive"} <= set(self.data.columns):
            raise ValueError("supervised SimCSE needs data.columns with anchor and positive (negative optional)")
        if self.objective == "unsupervised" and self.data.columns:
            raise ValueError("data.columns is for supervised SimCSE; unsupervised training reads data.fields")
        return self
