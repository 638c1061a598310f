"""Tasks: YAML task files, one kind per folder, registered by their ``type:``.

* ``classification`` (the default): prompt-based zero-shot and in-context classification;
* ``cot``: chain-of-thought reasoning with answer extraction and self-consistency;
* ``train``: PET, PEFT methods and head fine-tuning.

``load_task`` reads a file with its kind's schema; ``run_task`` runs it and returns a
:class:`TaskResult`, the one shape every kind's result has (``compare``, ``sweep`` and reports read
it); ``run.json`` in every run directory holds it.
"""

from promptlearning.runs.result import TaskResult
from promptlearning.tasks.config import TaskConfigBase, TaskConfigError
from promptlearning.tasks.registry import (
    TaskKind,
    check_run_dir,
    check_task,
    load_task,
    register_task_kind,
    run_task,
    task_kind,
    task_kinds,
    validate_config,
)

__all__ = [
    "TaskConfigBase",
    "TaskConfigError",
    "TaskKind",
    "TaskResult",
    "check_run_dir",
    "check_task",
    "load_task",
    "register_task_kind",
    "run_task",
    "task_kind",
    "task_kinds",
    "validate_config",
]
