"""The schema of pretraining task files (``type: pretrain``): corpus, tokenizer, model, blocks, loop.

type: pretrain
name: shakespeare-char
corpus: {root: ../../shared/data, files: [shakespeare/input.txt], validation_fraction: 0.1}
tokenizer: {train: char}                  # or {train: bpe, vocab_size: 8000}, or {from: <model>}
objective: causal                         # causal | mlm | mlm-nsp
architecture: {preset: nano}              # leave out to continue pretraining `model`
block_size: 64
training: {max_steps: 2000, batch_size: 12, learning_rate: 0.001, scheduler: cosine}
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from promptlearning.pretraining.models import OBJECTIVES, PRESETS
from promptlearning.tasks.config import DataRoot, Dtype, StrictModel, TaskConfigBase, one_of
from promptlearning.tasks.train.config import PeftSection, TrainingSection


class CorpusSection(DataRoot):
    """Text files, JSONL files (their ``field``) or saved ``datasets`` directories, and cleaning."""

    files: list[str] = Field(min_length=1)
    field: str = Field("text", description="JSONL / datasets: the field holding a document")
    dedupe_lines: bool = False
    min_chars: int = Field(0, ge=0, description="drop lines shorter than this")
    validation_fraction: float = Field(0.1, gt=0, lt=1, description="the tail of the token stream held out")


class TokenizerSection(StrictModel):
    """Train a tokenizer on the corpus (``train``) or reuse an existing one (``from``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    train: Literal["bpe", "wordpiece", "char"] | None = None
    from_: str | None = Field(None, alias="from", description="a model or tokenizer directory, or an embedded name")
    vocab_size: int = Field(8000, ge=1)
    min_frequency: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _one_source(self) -> TokenizerSection:
        if (self.train is None) == (self.from_ is None):
            raise ValueError("give exactly one of train (bpe, wordpiece, char) or from (a tokenizer)")
        return self


class ArchitectureSection(StrictModel):
    """A new model: a size preset, dropout and any transformers config field to override."""

    preset: one_of(list(PRESETS)) = Field("nano", description=f"one of {', '.join(PRESETS)}")
    dropout: float = Field(0.0, ge=0, lt=1)
    overrides: dict[str, Any] = Field(default_factory=dict)


class SamplesSection(StrictModel):
    """Samples written at every evaluation (causal models)."""

    prompt: str = "\n"
    max_new_tokens: int = Field(200, ge=0)
    temperature: float = Field(0.8, gt=0)
    top_k: int | None = Field(50, ge=1)


class PretrainTaskConfig(TaskConfigBase):
    """A pretraining run (``type: pretrain``): a model trained from scratch (``architecture``) or the
    task's ``model`` trained further (continued pretraining, full or with ``peft``) on a corpus."""

    type: Literal["pretrain"]
    corpus: CorpusSection
    tokenizer: TokenizerSection | None = Field(None, description="default: the model's (continued pretraining)")
    objective: one_of(OBJECTIVES) = Field("causal", description=f"one of {', '.join(OBJECTIVES)}")
    architecture: ArchitectureSection | None = Field(None, description="none: continue pretraining `model`")
    peft: PeftSection | None = Field(None, description="continued pretraining: a peft method; none: full")
    dtype: Dtype = Field("float32", description="the weights being trained (mixed precision: training.mixed_precision)")
    block_size: int = Field(128, ge=4)
    stride: int | None = Field(None, ge=1, description="training windows start every stride tokens (default: block)")
    mlm_probability: float = Field(0.15, gt=0, lt=1)
    eval_blocks: int | None = Field(500, ge=1, description="validation blocks per evaluation (null: all)")
    eval_batch_size: int = Field(32, ge=1)
    samples: SamplesSection | None = Field(default_factory=SamplesSection)
    training: TrainingSection = Field(default_factory=TrainingSection)

    @model_validator(mode="after")
    def _consistent(self) -> PretrainTaskConfig:
        if self.architecture is None and self.tokenizer is not None and self.tokenizer.train is not None:
            raise ValueError(
                "continued pretraining keeps the model's tokenizer: a trained tokenizer needs architecture"
            )
        if self.architecture is not None and self.tokenizer is None:
            raise ValueError("a new model (architecture) needs a tokenizer: train one or name one with from")
        if self.architecture is not None and self.peft is not None:
            raise ValueError("peft adapts an existing model: leave out architecture, or peft")
        trained = self.tokenizer.train if self.tokenizer is not None else None
        if self.objective != "causal" and trained not in (None, "wordpiece"):
            raise ValueError(f"BERT-style objectives (mlm, mlm-nsp) need a wordpiece tokenizer, not {trained}")
        return self
