"""The schema of compression task files (``type: compress``): prune, recover, quantize, in that order.

type: compress
name: smollm2-drop8-int8
model: smollm2-135m-instruct
calibration: {root: ../../shared/data, files: [wikitext2/test.txt], samples: 64, block_size: 256}
prune: {depth: 8}                       # and/or width: 0.25 (MLP channels cut), heads: 0.33 (query heads)
recover: {tokens: 200000}               # distillation from the unpruned model
quantize: {mode: int8-weight}           # bf16 | int8-weight | int8-dynamic | int4-weight
evaluate: {perplexity: wikitext2/test.txt, max_chars: 100000}
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from promptlearning.models.quantized import QUANT_MODES
from promptlearning.tasks.config import DataRoot, StrictModel, TaskConfigBase, one_of
from promptlearning.tasks.train.config import PeftSection, TrainingSection


class CalibrationSection(DataRoot):
    """The text pruning measures on and recovery distils on: text or JSONL files (their ``field``)."""

    files: list[str] = Field(min_length=1)
    field: str = Field("text", description="JSONL: the field holding the text")
    samples: int = Field(64, ge=1, description="blocks measured when pruning")
    block_size: int = Field(256, ge=8)


class PruneSection(StrictModel):
    """Structured pruning (a smaller dense model) and the unstructured reference."""

    depth: int | None = Field(None, ge=1, description="decoder layers dropped (least block influence)")
    width: float | None = Field(None, gt=0, lt=1, description="share of every MLP's channels cut")
    heads: float | None = Field(None, gt=0, lt=1, description="share of every attention's query heads cut")
    magnitude: float | None = Field(None, gt=0, lt=1, description="reference: share of linear weights zeroed")

    @model_validator(mode="after")
    def _something(self) -> PruneSection:
        if self.depth is None and self.width is None and self.heads is None and self.magnitude is None:
            raise ValueError(
                "prune needs depth (layers to drop), width (share of MLP channels), heads (share of attention heads) "
                "or magnitude"
            )
        return self


def _recovery_training() -> TrainingSection:
    return TrainingSection(learning_rate=1e-4, batch_size=4, max_steps=100, eval_every=25, warmup_ratio=0.05)


class RecoverSection(StrictModel):
    """Distillation of the pruned model toward the unpruned one on the calibration text."""

    tokens: int | None = Field(None, ge=1, description="training tokens (sets training.max_steps)")
    temperature: float = Field(1.0, gt=0)
    held_out: int = Field(8, ge=1, description="calibration blocks kept out of training, to pick the best step")
    peft: PeftSection | None = Field(None, description="a peft method (merged after); none: all weights")
    training: TrainingSection = Field(default_factory=_recovery_training)


class QuantizeSection(StrictModel):
    """Weights in fewer bits (see :mod:`promptlearning.models.quantized`)."""

    mode: one_of(list(QUANT_MODES)) = Field(description=f"one of {', '.join(QUANT_MODES)}")
    embeddings: bool = Field(True, description="int8-weight: also the input embedding and LM head (untied)")
    group_size: int = Field(32, description="int4-weight: weights per scale (32, 64, 128 or 256)")


class EvaluateSection(DataRoot):
    """Perplexity of the source and the compressed model on a text, and (a program) the accuracy of
    the source and the compressed program on labelled examples."""

    perplexity: str | None = Field(None, description="a text or JSONL file, e.g. wikitext2/test.txt")
    field: str = "text"
    max_chars: int | None = Field(100_000, ge=1, description="the text's first characters (null: all)")
    max_length: int = Field(512, ge=8, description="tokens per window")
    program_data: str | None = Field(None, description="a program: labelled examples, e.g. sst2/test.jsonl")
    program_limit: int | None = Field(500, ge=1, description="the first examples of program_data (null: all)")

    @model_validator(mode="after")
    def _something(self) -> EvaluateSection:
        if self.perplexity is None and self.program_data is None:
            raise ValueError("evaluate needs perplexity (a text file) or program_data (labelled examples)")
        return self


class CompressTaskConfig(TaskConfigBase):
    """A model made smaller and faster: pruned (measured on ``calibration``), recovered by
    distillation, quantized; written as a model directory every command loads. ``model`` may also be
    a PET program on a causal LM (its LoRA merged first): the result is then a program too."""

    type: Literal["compress"]
    calibration: CalibrationSection | None = None
    prune: PruneSection | None = None
    recover: RecoverSection | None = None
    quantize: QuantizeSection | None = None
    evaluate: EvaluateSection | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CompressTaskConfig:
        if self.prune is None and self.quantize is None:
            raise ValueError("a compress task needs at least one step: prune or quantize")
        structured = self.prune is not None and (self.prune.depth or self.prune.width or self.prune.heads)
        if structured and self.calibration is None:
            raise ValueError("structured pruning measures the model on calibration text: add calibration")
        if self.recover is not None:
            if self.prune is None:
                raise ValueError("recover distils a pruned model toward the original: add prune")
            if self.calibration is None:
                raise ValueError("recover trains on the calibration text: add calibration")
        return self
