"""The runs the web UI shows: every run directory under one root, read-only, and nothing outside it.

A run is a directory holding ``run.json`` (any task kind), ``search.json`` (a prompt search) or, for
a training run still going, a ``config.yaml`` next to the checkpoints its training writes (per seed,
per ensemble member, the distillation, a rationale or pretraining run's own). Paths
come from the browser, so :meth:`RunsRoot.resolve` accepts only plain relative names below the root:
no ``..``, no absolute paths, no symbolic links anywhere on the way.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2
import jinja2.meta
import yaml

from promptlearning.errors import PromptLearningError
from promptlearning.runs.result import RUN_FILE

SEARCH_FILE = "search.json"
PREDICTION_FILES = ("predictions.jsonl", "eval/predictions.jsonl")
PLOT_SUFFIXES = (".png", ".svg", ".jpg", ".jpeg")
MAX_DEPTH = 6  # how deep below the root runs are looked for
MAX_RUNS = 5000  # a root with more is cut there
STALE_SECONDS = 1800  # a training run that wrote no checkpoint for this long is shown as stopped


class RunPathError(PromptLearningError):
    """A path the browser asked for that is not a run (or file) under the root: ``status`` is the HTTP code."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Progress:
    """A training run not finished: each part's latest checkpoint (step, dev history), where a part is
    what trains on its own: a seed, an ensemble member of a seed (``seed-13/member-2``), a distillation."""

    step: int  # of the part training now
    max_steps: int | None
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)  # part -> {step, history}
    current: str = ""  # the part written to last
    state: str = "running"  # or "stopped": nothing written for STALE_SECONDS
    updated: float = 0.0  # when the current part's checkpoint was written


@dataclass
class RunSummary:
    """One row of the runs list."""

    id: str  # the path below the root, with '/'
    kind: str
    task: str
    setting: str
    model: str
    metric: str
    value: float | None
    std: float
    seeds: int
    num_examples: int
    date: str  # when the run was last written, local time
    timestamp: float
    status: str = "finished"  # or "running", or "stopped" (a training run that no longer writes)
    has_predictions: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)  # run.json's scalar metrics
    progress: Progress | None = None  # a training run not finished


class RunsRoot:
    """Every run directory below ``root``; paths from outside are checked by :meth:`resolve`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()

    def resolve(self, relative: str) -> Path:
        """``root/relative`` when it is a plain relative path below the root with no link on the way;
        otherwise :class:`RunPathError` (400 for a refused path, 404 for a missing one)."""
        if not relative or "\x00" in relative or "\\" in relative:
            raise RunPathError("not a path below the runs root")
        parts = PurePosixPath(relative).parts
        if not parts or PurePosixPath(relative).is_absolute() or any(part in ("..", ".") for part in parts):
            raise RunPathError(f"{relative!r} is not a relative path below the runs root")
        path = self.root
        for part in parts:
            path = path / part
            if path.is_symlink():
                raise RunPathError(f"{relative!r} goes through a symbolic link, which the UI does not follow")
        if not path.is_dir():
            raise RunPathError(f"no run {relative!r} under the runs root", status=404)
        return path

    def run_id(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def runs(self) -> list[RunSummary]:
        """Every run below the root, newest first."""
        found: list[RunSummary] = []
        if not self.root.is_dir():
            return found
        for directory, subdirs, files in os.walk(self.root, followlinks=False):
            path = Path(directory)
            depth = len(path.relative_to(self.root).parts)
            subdirs[:] = sorted(d for d in subdirs if not d.startswith(".") and not (path / d).is_symlink())
            own = {f for f in files if not (path / f).is_symlink()}
            summary = self.summary(path, own) if path != self.root else None
            if summary is not None:
                found.append(summary)
                # a run's own folders (seeds, members, checkpoints) are parts of it; a search's runs/
                # holds the ordinary runs of its output and of the task's own prompt on the eval split
                subdirs[:] = ["runs"] if summary.kind == "search" and "runs" in subdirs else []
            if depth >= MAX_DEPTH or len(found) >= MAX_RUNS:
                subdirs[:] = []
        return sorted(found, key=lambda s: -s.timestamp)

    def summary(self, path: Path, files: set[str] | None = None) -> RunSummary | None:
        """The list row of ``path``, or None when it is not a run directory."""
        files = files if files is not None else {p.name for p in path.iterdir() if own_file(p)}
        try:
            if RUN_FILE in files:
                return self._finished(path)
            if SEARCH_FILE in files:
                return self._search(path)
            if "config.yaml" in files:
                progress = self.progress(path)
                return self._running(path, progress) if progress is not None else None
        except (OSError, ValueError, TypeError, KeyError, AttributeError, yaml.YAMLError):
            return self._damaged(path)
        return None

    def progress(self, path: Path) -> Progress | None:
        """The progress of a training run not finished (None when it has finished or is not one): the
        seed written to last, its step, every seed's dev history; "stopped" when nothing was written
        for :data:`STALE_SECONDS` (a run that crashed or was killed: ``--resume`` continues it)."""
        if own_file(path / RUN_FILE):
            return None
        parts: dict[str, dict[str, Any]] = {}
        updated: dict[str, float] = {}
        for name, state_file in self.checkpoint_states(path).items():
            try:  # a state file being replaced, or damaged, is left out until it reads
                state = _read_json(state_file)
                parts[name] = {"step": int(state.get("step", 0)), "history": list(state.get("history", []))}
                updated[name] = state_file.stat().st_mtime
            except (OSError, ValueError, TypeError):
                continue
        if not parts:
            return None
        try:
            config = _read_yaml(path / "config.yaml")
        except (OSError, ValueError, yaml.YAMLError):
            config = {}
        max_steps = (config.get("training") or {}).get("max_steps") if isinstance(config, dict) else None
        current = max(updated, key=updated.__getitem__)
        state = "running" if time.time() - updated[current] < STALE_SECONDS else "stopped"
        return Progress(step=parts[current]["step"], max_steps=max_steps if isinstance(max_steps, int) else None,
                        parts=parts, current=current, state=state, updated=updated[current])  # fmt: skip

    @staticmethod
    def checkpoint_states(path: Path) -> dict[str, Path]:
        """The latest ``trainer_state.json`` of each part of a run that trains, by part (its folder
        below the run: ``seed-13``, ``seed-13/member-2``, ``training``; ``run`` for the run's own)."""
        found: dict[str, Path] = {}
        for pattern in ("checkpoints", "*/checkpoints", "*/*/checkpoints"):
            for checkpoints in sorted(path.glob(pattern), key=lambda p: (len(p.as_posix()), p.as_posix())):
                if _through_link(checkpoints, path):
                    continue
                states = sorted(checkpoints.glob("step-*/trainer_state.json"))
                if states and own_file(states[-1]):
                    part = checkpoints.parent.relative_to(path).as_posix()
                    found["run" if part == "." else part] = states[-1]
        return found

    def prediction_parts(self, path: Path) -> dict[str, Path]:
        """The run's prediction files: ``{"": file}`` for a run's own, or one per seed of a training run."""
        for name in PREDICTION_FILES:
            candidate = path / name
            if own_file(candidate):
                return {"": candidate}
        parts = {}
        for seed_dir in sorted(path.glob("seed-*"), key=lambda p: (len(p.name), p.name)):  # seed-13 before seed-100
            candidate = seed_dir / "predictions.jsonl"
            if not seed_dir.is_symlink() and own_file(candidate):
                parts[seed_dir.name] = candidate
        return parts

    def predictions_file(self, path: Path, part: str = "") -> Path | None:
        """The predictions of ``part`` (default: the run's own, or its first seed's)."""
        return choose_part(self.prediction_parts(path), part)

    def input_fields(self, path: Path) -> tuple[str, ...]:
        """The example fields the run's template reads (from its config.yaml), to show as its input."""
        try:
            config = _read_yaml(path / "config.yaml")
            template = config.get("template") or {}
            source = template.get("input") if isinstance(template, dict) else template
            if not isinstance(source, str):
                return ()
            parsed = jinja2.Environment().parse(source)
            return tuple(sorted(jinja2.meta.find_undeclared_variables(parsed) - {"mask"}))
        except (OSError, ValueError, AttributeError, jinja2.TemplateError, yaml.YAMLError):
            return ()

    def plots(self, path: Path) -> list[str]:
        """The run's plot files (its own folder only), by name."""
        return sorted(p.name for p in path.iterdir() if p.suffix.lower() in PLOT_SUFFIXES and own_file(p))

    def _row(self, path: Path, stamp: float, **fields: Any) -> RunSummary:
        return RunSummary(
            id=self.run_id(path), date=time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)), timestamp=stamp,
            has_predictions=self.predictions_file(path) is not None, **fields,
        )  # fmt: skip

    def _finished(self, path: Path) -> RunSummary:
        data = _read_json(path / RUN_FILE)
        values = data.get("values") or []
        return self._row(
            path, (path / RUN_FILE).stat().st_mtime, kind=str(data["kind"]), task=str(data["name"]),
            setting=str(data.get("setting", "")), model=str(data.get("model", "")), metric=str(data["metric"]),
            value=_number(data.get("value")), std=_number(data.get("std")) or 0.0, seeds=max(1, len(values)),
            num_examples=int(data.get("num_examples", 0)),
            metrics={k: v for k, v in (data.get("metrics") or {}).items() if isinstance(v, int | float | str)},
        )  # fmt: skip

    def _search(self, path: Path) -> RunSummary:
        data = _read_json(path / SEARCH_FILE)
        best = data.get("best") or {}
        task = _read_yaml(path / "task.yaml") if own_file(path / "task.yaml") else {}
        adoption = data.get("adoption") or {}
        verdict = "adopted" if adoption.get("adopted") else "own prompt kept" if adoption else data.get("output", "")
        return self._row(
            path, (path / SEARCH_FILE).stat().st_mtime, kind="search", task=str((task or {}).get("name", path.name)),
            setting=f"{len(data.get('candidates', []))} candidates, {verdict}",
            model=str((task or {}).get("model", "")),
            metric="dev score", value=_number(best.get("dev_score")), std=0.0, seeds=1,
            num_examples=int(data.get("dev_size", 0)),
        )  # fmt: skip

    def _running(self, path: Path, progress: Progress) -> RunSummary:
        """A training run not finished: its headline is the current part's last dev metric."""
        config = _read_yaml(path / "config.yaml")
        history = progress.parts[progress.current]["history"]
        last = history[-1] if history else {}
        metric = next((k for k in ("accuracy", "macro_f1", "loss", "perplexity") if k in last), "")
        return self._row(
            path, progress.updated, kind=str(config.get("type", "train")), task=str(config.get("name", path.name)),
            setting="in progress" if progress.state == "running" else "stopped before the end",
            model=str(config.get("model", "")), metric=f"dev {metric}".strip(), value=_number(last.get(metric)),
            std=0.0, seeds=0, num_examples=0, status=progress.state, progress=progress,
        )  # fmt: skip

    def _damaged(self, path: Path) -> RunSummary:
        return self._row(path, path.stat().st_mtime, kind="damaged", task=path.name,
                         setting="its run files cannot be read", model="", metric="", value=None, std=0.0, seeds=0,
                         num_examples=0)  # fmt: skip


def choose_part(parts: dict[str, Path], part: str = "") -> Path | None:
    """``part``'s file among a run's prediction parts (default: the first); a missing part is a 404."""
    if part and part not in parts:
        raise RunPathError(f"this run has no predictions {part!r}; it has {', '.join(parts) or 'none'}", 404)
    return parts[part] if part else next(iter(parts.values()), None)


def _through_link(path: Path, root: Path) -> bool:
    """Whether ``path``, or a folder between ``root`` and it, is a symbolic link."""
    return any(p.is_symlink() for p in (path, *path.parents) if root in p.parents)


def own_file(path: Path) -> bool:
    """A regular file of the run itself: a symbolic link could point anywhere, so it is not read."""
    return path.is_file() and not path.is_symlink()


def _read_json(path: Path) -> dict[str, Any]:
    if path.is_symlink():
        raise ValueError(f"{path.name} is a symbolic link")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} is not a JSON object")
    return data


def _read_yaml(path: Path) -> dict[str, Any]:
    if path.is_symlink():
        raise ValueError(f"{path.name} is a symbolic link")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
