"""Training: PEFT methods, PET-style prompt-based fine-tuning and head fine-tuning on one loop."""

from promptlearning.training.loop import TrainingArguments, TrainResult, train
from promptlearning.training.peft_methods import METHODS, PeftMethodError, peft_config
from promptlearning.training.program import ProgramSpec, PromptProgram, build_program, load_program

__all__ = [
    "METHODS",
    "PeftMethodError",
    "ProgramSpec",
    "PromptProgram",
    "TrainResult",
    "TrainingArguments",
    "build_program",
    "load_program",
    "peft_config",
    "train",
]
