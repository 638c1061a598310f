"""Tasks: YAML task files (schema, loading, data) and running them."""

from promptlearning.tasks.config import CoTTaskConfig, TaskConfig, TaskConfigError, TrainTaskConfig, load_task
from promptlearning.tasks.cot_runner import build_cot, run_cot_task
from promptlearning.tasks.runner import build_classifier, run_task
from promptlearning.tasks.train_runner import run_train_task

__all__ = [
    "CoTTaskConfig",
    "TaskConfig",
    "TaskConfigError",
    "TrainTaskConfig",
    "build_classifier",
    "build_cot",
    "load_task",
    "run_cot_task",
    "run_task",
    "run_train_task",
]
