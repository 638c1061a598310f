"""Run directories: everything needed to read, compare and reproduce one run, written atomically.

Every run directory holds ``config.yaml`` (the resolved task), ``run.json`` (the common result:
headline metric, spread, flat metrics; see :class:`~promptlearning.runs.result.TaskResult`) and
what its task kind adds (``metrics.json``, ``predictions.jsonl``, ``report.md``, plots). It is
filled under a temporary name and renamed when complete, so a crash leaves no half run.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from pydantic import BaseModel

from promptlearning.errors import PromptLearningError, TaskConfigError


def prepare_output_dir(path: str | Path, what: str = "output directory") -> Path:
    """Create the directory runs are written to, or say why it cannot be used, before any work starts."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise PromptLearningError(f"the {what} {path} is a file, not a directory; choose another path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PromptLearningError(f"cannot create the {what} {path}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise PromptLearningError(f"the {what} {path} is not writable")
    return path


def timestamped(name: str) -> str:
    """``name`` followed by the current time, for a new run directory."""
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def write_run_dir(output_dir: Path, name: str, fill: Callable[[Path], None]) -> Path:
    """Create ``output_dir/name`` (or ``name-2``, …): filled under a temporary name, then renamed."""
    output_dir.mkdir(parents=True, exist_ok=True)
    final = output_dir / name
    suffix = 1
    while final.exists():
        suffix += 1
        final = output_dir / f"{name}-{suffix}"
    staging = Path(tempfile.mkdtemp(prefix=".tmp-run-", dir=output_dir))
    try:
        fill(staging)
        while True:
            try:
                os.rename(staging, final)
                break
            except OSError as exc:  # another run took the name meanwhile (same task, same second)
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not final.exists():
                    raise
                suffix += 1
                final = output_dir / f"{name}-{suffix}"
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final


def dump_config(config: Any, directory: Path) -> None:
    """``config.yaml``: the resolved task, enough to run it again."""
    (directory / "config.yaml").write_text(
        yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True), encoding="utf-8"
    )


def dump_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


def dump_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


# Settings that do not change what a run computes: a resumed run may differ in these.
RESUME_IGNORES = frozenset(
    {"description", "output_dir", "eval_batch_size", "training.log_every", "training.log_with",
     "training.keep_checkpoints", "pet_ensemble.evaluate_members"}
)  # fmt: skip


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``key: saved -> current`` for every setting that differs and changes the result."""
    old, new = _flatten(saved), _flatten(current)
    missing = "(unset)"
    return [
        f"{key}: {old.get(key, missing)!r} -> {new.get(key, missing)!r}"
        for key in sorted(set(old) | set(new))
        if key not in RESUME_IGNORES and old.get(key, missing) != new.get(key, missing)
    ]


def check_run_dir(config: BaseModel, run_dir: Path, resume: bool) -> None:
    """A new run needs an empty directory (one holding only the config.yaml of a start that failed
    before training is fine); a resumed run needs the same settings as the one it continues."""
    if run_dir.exists() and not run_dir.is_dir():
        raise PromptLearningError(f"the run directory {run_dir} is a file; choose another --output")
    if not run_dir.is_dir():
        return
    saved_path = run_dir / "config.yaml"
    if resume:
        if saved_path.is_file():
            saved = yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {}
            differences = config_differences(saved, config.model_dump(mode="json"))
            if differences:
                raise TaskConfigError(
                    f"cannot resume {run_dir}: its config.yaml differs in {len(differences)} setting(s) that change "
                    f"the result ({'; '.join(differences)}). Resume with the same settings, or start a new run "
                    "with another --output"
                )
        return
    started = [p.name for p in run_dir.iterdir() if p.name != "config.yaml"]
    if started:
        raise PromptLearningError(
            f"{run_dir} already holds a run: continue it with --resume, or choose another --output"
        )
