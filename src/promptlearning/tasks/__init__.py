"""Tasks: YAML task files (schema, loading, data) and running them."""

from promptlearning.tasks.config import TaskConfig, TaskConfigError, load_task
from promptlearning.tasks.runner import build_classifier, run_task

__all__ = ["TaskConfig", "TaskConfigError", "build_classifier", "load_task", "run_task"]
