"""Sweeps: one task file (of any kind) run over a grid of overrides, compared in one table and plot.

    promptlearning sweep tasks/sst2-fewshot.yaml --grid peft.method=lora,prompt-tuning,none --grid objective=pet,head
    promptlearning sweep tasks/sst2.yaml --grid shots=0,4,16 --grid method.calibrate=false,true

``none`` as a value removes the key's section (``peft=none``: full fine-tuning). Each grid point is
an ordinary run directory, ``<output_dir>/<task name>-sweep/<point>/``; every point is checked before
the first runs, and ``--resume`` skips the points (and training seeds) already finished.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptlearning.io import write_json_atomically
from promptlearning.runs.directory import prepare_output_dir
from promptlearning.runs.plots import plot_comparison
from promptlearning.runs.report import markdown_table
from promptlearning.runs.result import RUN_FILE, TaskResult
from promptlearning.tasks.config import TaskConfigError
from promptlearning.tasks.registry import check_run_dir, check_task, load_task, run_task


@dataclass
class SweepResult:
    """A finished sweep: its directory, one row per grid point (metric, mean, std, per-seed values,
    run directory) and the markdown table of ``sweep.md``."""

    sweep_dir: Path
    rows: list[dict[str, Any]]
    table: str


def parse_grid(items: Sequence[str]) -> dict[str, list[str]]:
    """``["peft.method=lora,ia3", "objective=pet"]`` → ``{"peft.method": ["lora", "ia3"], ...}``."""
    grid: dict[str, list[str]] = {}
    for item in items:
        if "=" not in item:
            raise TaskConfigError(f"--grid expects key=value1,value2,..., got {item!r}")
        key, text = item.split("=", 1)
        key = key.strip()
        values = [v.strip() for v in text.split(",") if v.strip()]
        if not key:
            raise TaskConfigError(f"--grid {item!r} names no key; write key=value1,value2")
        if key in grid:
            raise TaskConfigError(f"--grid names {key!r} twice; give all its values in one --grid {key}=v1,v2")
        if not values:
            raise TaskConfigError(f"--grid {key}= gives no values; write {key}=value1,value2")
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise TaskConfigError(
                f"--grid {key} repeats the value(s) {', '.join(repeated)}: each point would run twice"
            )
        grid[key] = values
    if not grid:
        raise TaskConfigError("a sweep needs at least one --grid key=value1,value2")
    return grid


def grid_points(grid: Mapping[str, Sequence[str]]) -> list[dict[str, str]]:
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid[k] for k in keys))]


def _overrides(point: Mapping[str, str]) -> list[str]:
    out = []
    for key, value in point.items():
        if value == "none":  # drop the whole top-level section, e.g. peft.method=none -> peft: null
            out.append(f"{key.split('.')[0]}=null")
        else:
            out.append(f"{key}={value}")
    return out


def point_name(point: Mapping[str, str]) -> str:
    return "-".join(f"{key.split('.')[-1]}={value}" for key, value in point.items()) or "base"


def run_sweep(
    task: str | Path,
    grid: Mapping[str, Sequence[str]],
    *,
    overrides: Sequence[str] = (),
    output_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool | None = None,
) -> SweepResult:
    """Run every grid point; write ``sweep.md``, ``sweep.json`` and ``sweep.png``; return what they hold."""
    points = grid_points(grid)
    configs = [load_task(task, [*overrides, *_overrides(point)]) for point in points]
    sweep_dir = Path(output_dir) if output_dir else Path(configs[0].output_dir) / f"{configs[0].name}-sweep"
    names = [point_name(point) for point in points]
    if len(set(names)) < len(names):
        raise TaskConfigError(f"two grid keys end in the same name, so their runs would share a directory: {names}")
    for name, config in zip(names, configs, strict=True):  # every point is valid and its directory usable
        check_task(config)
        if not (resume and (sweep_dir / name / RUN_FILE).is_file()):
            check_run_dir(config, sweep_dir / name, resume)
    prepare_output_dir(sweep_dir, "sweep directory")
    rows = []
    for name, point, config in zip(names, points, configs, strict=True):
        finished = resume and (sweep_dir / name / RUN_FILE).is_file() and config.type != "train"
        if finished:
            result = TaskResult.read(sweep_dir / name)
        else:
            result = run_task(config, run_dir=sweep_dir / name, resume=resume, progress=progress)
        rows.append({"run": name, **point, "metric": result.metric, "value": result.value, "std": result.std,
                     "values": result.values, "run_dir": str(result.run_dir)})  # fmt: skip
    write_json_atomically(sweep_dir / "sweep.json", rows)
    metric = rows[0]["metric"]
    table = markdown_table(
        [*grid, "runs", f"{metric} (mean ± std)"],
        [[*(r[k] for k in grid), len(r["values"]), f"{r['value']:.4f} ± {r['std']:.4f}"] for r in rows],
    )
    (sweep_dir / "sweep.md").write_text(f"# Sweep of {Path(task).name}\n\n{table}\n\n![sweep](sweep.png)\n")
    plot_comparison(  # one dot per seed, grouped by grid point
        [{"setting": r["run"], metric: value} for r in rows for value in r["values"]],
        sweep_dir / "sweep.png",
        metric=metric,
    )
    return SweepResult(sweep_dir, rows, table)
