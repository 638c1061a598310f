"""The training task kind (``type: train``): PET, PEFT methods and head fine-tuning, per few-shot seed,
saved as prompt programs; ``--resume`` continues an interrupted run."""

from promptlearning.runs.directory import check_run_dir
from promptlearning.tasks.registry import TaskKind, register_task_kind
from promptlearning.tasks.train.config import (
    FewShotConfig,
    PeftSection,
    TrainDataConfig,
    TrainingSection,
    TrainTaskConfig,
)
from promptlearning.tasks.train.report import TrainEvaluation
from promptlearning.tasks.train.run import check, check_train_task, run_train_task, train_program

KIND = register_task_kind(
    TaskKind(
        type="train",
        config=TrainTaskConfig,
        run=run_train_task,
        check=check,
        description="training: PET, LoRA and the other peft methods, head fine-tuning, NER",
        check_run_dir=check_run_dir,
    )
)

__all__ = [
    "KIND",
    "FewShotConfig",
    "PeftSection",
    "TrainDataConfig",
    "TrainEvaluation",
    "TrainTaskConfig",
    "TrainingSection",
    "check_run_dir",
    "check_train_task",
    "run_train_task",
    "train_program",
]
