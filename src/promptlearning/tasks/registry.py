"""Task kinds by their ``type:``: each is one package (``tasks/<kind>/``) with a config schema, a
run function and a report; loading and running a task file dispatch through this registry.

A new kind registers itself with :func:`register_task_kind`; the built-in ones (``classification``,
``cot``, ``generate``, ``train``) are imported when first asked for, so ``--help`` stays fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from promptlearning.runs.result import TaskResult
from promptlearning.tasks.config import (
    TaskConfigBase,
    TaskConfigError,
    apply_overrides,
    format_validation_error,
    read_task_file,
)

DEFAULT_KIND = "classification"
_BUILTIN = {
    "classification": "promptlearning.tasks.classification",
    "compress": "promptlearning.tasks.compress",
    "cot": "promptlearning.tasks.cot",
    "embed-train": "promptlearning.tasks.embed_train",
    "generate": "promptlearning.tasks.generate",
    "pretrain": "promptlearning.tasks.pretrain",
    "train": "promptlearning.tasks.train",
}


@dataclass(frozen=True)
class TaskKind:
    """A kind of task: its schema, how to check it without a model, and how to run it.

    ``run(config, *, output_dir=None, run_dir=None, resume=False, progress=None, model=None)``
    returns a :class:`TaskResult`: the run goes into a new directory under ``output_dir`` (default:
    the config's), or exactly into ``run_dir``. ``check(config)`` raises on anything wrong that can be
    found before the model loads (it runs again inside ``run``); ``check_run_dir(config, run_dir,
    resume)`` on a directory the run cannot use.
    """

    type: str
    config: type[TaskConfigBase]
    run: Callable[..., TaskResult]
    check: Callable[[Any], None]
    description: str = ""
    check_run_dir: Callable[[Any, Path, bool], None] | None = None  # can the run go into this directory?


_KINDS: dict[str, TaskKind] = {}


def register_task_kind(kind: TaskKind) -> TaskKind:
    _KINDS[kind.type] = kind
    return kind


def task_kind(type_name: str) -> TaskKind:
    """The kind a task file's ``type:`` names."""
    if type_name not in _KINDS and type_name in _BUILTIN:
        importlib.import_module(_BUILTIN[type_name])
    if type_name not in _KINDS:
        raise TaskConfigError(f"unknown task type {type_name!r}; known types: {', '.join(task_kinds())}")
    return _KINDS[type_name]


def task_kinds() -> list[str]:
    return sorted({*_BUILTIN, *_KINDS})


def validate_config(raw: Any, source: str = "config", *, task_dir: str | Path | None = None) -> Any:
    """Validate a raw task mapping with the schema of its ``type:`` (default: classification).

    Relative paths in the file (``data.root``, exemplar files) are made relative to ``task_dir``.
    """
    if not isinstance(raw, dict):
        raise TaskConfigError(f"task {source} must be a mapping of keys to values, got {type(raw).__name__}")
    raw = {"type": DEFAULT_KIND, **raw}
    if not isinstance(raw["type"], str):
        raise TaskConfigError(f"invalid task {source}: type: must be one of {', '.join(task_kinds())}")
    schema = task_kind(raw["type"]).config
    try:
        return schema.model_validate(raw, context={"task_dir": str(task_dir) if task_dir else None})
    except ValidationError as exc:
        raise TaskConfigError(format_validation_error(exc, source, schema)) from None


def load_task(path: str | Path, overrides: list[str] | None = None) -> Any:
    """Read a task YAML file, apply ``--set`` overrides and validate it with its kind's schema."""
    path = Path(path)
    raw = read_task_file(path)
    if isinstance(raw, dict):
        raw = apply_overrides(raw, overrides or [])
    return validate_config(raw, str(path), task_dir=path.parent.resolve())


def check_task(config: TaskConfigBase) -> None:
    """Everything about a task that can be checked before its model loads."""
    task_kind(config.type).check(config)


def check_run_dir(config: TaskConfigBase, run_dir: Path, resume: bool = False) -> None:
    """Whether a run of ``config`` can go exactly into ``run_dir`` (a new, or resumable, directory)."""
    kind = task_kind(config.type)
    if kind.check_run_dir is not None:
        kind.check_run_dir(config, run_dir, resume)
    elif run_dir.exists() and not run_dir.is_dir():
        raise TaskConfigError(f"the run directory {run_dir} is a file; choose another path")
    elif run_dir.is_dir() and any(run_dir.iterdir()) and not resume:
        raise TaskConfigError(f"{run_dir} already holds a run: continue with --resume, or choose another output")


def run_task(
    config: TaskConfigBase,
    *,
    output_dir: str | Path | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool | None = None,
    **options: Any,
) -> TaskResult:
    """Run a task of any kind and write its run directory (``options``: e.g. an already loaded ``model``)."""
    return task_kind(config.type).run(
        config, output_dir=output_dir, run_dir=run_dir, resume=resume, progress=progress, **options
    )
