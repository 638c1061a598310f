"""Task kinds through one registry and one result shape: a new kind plugs in without touching the
CLI, ``compare`` or ``sweep``; runs of different kinds compare in one table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from promptlearning.cli import main
from promptlearning.runs.compare import comparison_table, read_runs
from promptlearning.runs.directory import dump_config, write_run_dir
from promptlearning.tasks import (
    TaskConfigBase,
    TaskConfigError,
    TaskKind,
    TaskResult,
    check_task,
    load_task,
    register_task_kind,
    run_task,
    task_kinds,
)
from promptlearning.tasks.registry import _KINDS
from promptlearning.tasks.sweep import parse_grid, run_sweep

ROWS = [
    {"text": "i loved this film", "label": "positive"},
    {"text": "a dull , tedious mess", "label": "negative"},
    {"text": "great movie !", "label": "positive"},
    {"text": "awful .", "label": "negative"},
]


class CountConfig(TaskConfigBase):
    """A toy kind: 'scores' how many words of ``text`` are longer than ``min_length``."""

    type: Literal["count-words"] = "count-words"
    text: str
    min_length: int = 3


def run_count(config: CountConfig, *, output_dir=None, run_dir=None, **_: Any) -> TaskResult:
    words = config.text.split()
    share = sum(len(w) > config.min_length for w in words) / len(words)
    result = TaskResult(kind=config.type, name=config.name, setting=f"min_length {config.min_length}",
                        model="none", metric="share", value=share, values=[share], metrics={"share": share},
                        num_examples=len(words), config=config)  # fmt: skip
    root = Path(run_dir).parent if run_dir else Path(output_dir or config.output_dir)

    def fill(staging: Path) -> None:
        dump_config(config, staging)
        result.write(staging)

    result.run_dir = write_run_dir(root, Path(run_dir).name if run_dir else config.name, fill)
    return result


def check_count(config: CountConfig) -> None:
    if not config.text.split():
        raise TaskConfigError("text has no words")


@pytest.fixture(scope="module", autouse=True)
def count_kind():
    kind = register_task_kind(TaskKind("count-words", CountConfig, run_count, check_count, "a test kind"))
    yield kind
    _KINDS.pop(kind.type)  # other tests see the built-in kinds only


@pytest.fixture
def count_task(tmp_path) -> Path:
    path = tmp_path / "count.yaml"
    path.write_text(yaml.safe_dump({"type": "count-words", "name": "count", "text": "a short sentence of words",
                                    "output_dir": str(tmp_path / "runs")}))  # fmt: skip
    return path


@pytest.fixture
def classification_task(tmp_path, tiny_llama_dir) -> Path:
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    task = {
        "name": "tiny-sentiment", "model": str(tiny_llama_dir), "output_dir": str(tmp_path / "runs"),
        "data": {"root": str(tmp_path), "train": "dev.jsonl", "eval": "dev.jsonl"},
        "template": {"input": "review : {{ text }}\nsentiment :"},
        "verbalizer": {"words": {"negative": " negative", "positive": " positive"}},
    }  # fmt: skip
    path = tmp_path / "sentiment.yaml"
    path.write_text(yaml.safe_dump(task))
    return path


def test_a_registered_kind_loads_runs_and_compares_like_the_built_in_ones(count_task, capsys):
    assert "count-words" in task_kinds() and {"classification", "cot", "train"} <= set(task_kinds())
    config = load_task(count_task, ["min_length=5"])
    assert isinstance(config, CountConfig) and config.device == "auto"  # the shared header
    result = run_task(config)
    assert result.value == pytest.approx(1 / 5) and TaskResult.read(result.run_dir).value == result.value
    assert main(["run", str(count_task), "--set", "min_length=2"]) == 0  # the CLI does not know the kind
    out = capsys.readouterr().out
    assert "share 0.6000" in out and "run written to" in out
    with pytest.raises(TaskConfigError, match="text has no words"):
        check_task(load_task(count_task, ["text=' '"]))


def test_unknown_types_and_keys_are_clear_errors(count_task):
    known = "known types: classification, compress, cot, count-words, embed-train, generate, pretrain, train"
    with pytest.raises(TaskConfigError, match=f"unknown task type 'nope'; {known}"):
        load_task(count_task, ["type=nope"])
    with pytest.raises(TaskConfigError, match="min_lenght: unknown key; did you mean 'min_length'"):
        load_task(count_task, ["min_lenght=2"])


def test_compare_reads_runs_of_every_kind_in_one_table(count_task, classification_task, tmp_path, capsys):
    counted = run_task(load_task(count_task)).run_dir
    classified = run_task(load_task(classification_task), output_dir=tmp_path / "runs", progress=False).run_dir
    rows = read_runs([counted, classified, tmp_path / "not-a-run"])
    assert [r["kind"] for r in rows] == ["count-words", "classification"]
    table = comparison_table(rows)
    assert "| kind |" in table and "share 0.6000" in table and "accuracy 0." in table
    assert main(["compare", str(counted), str(classified), "--sort", "value"]) == 0
    assert main(["compare", str(counted), str(classified), "--plot", str(tmp_path / "p.png")]) == 2
    assert "different metrics (accuracy, share)" in capsys.readouterr().err


def test_a_classification_sweep_runs_every_point_and_resumes(classification_task, tmp_path):
    grid = parse_grid(["shots=0,2"])
    result = run_sweep(classification_task, grid, output_dir=tmp_path / "sweep", progress=False)
    assert [r["shots"] for r in result.rows] == ["0", "2"] and all(r["metric"] == "accuracy" for r in result.rows)
    assert "| shots | runs | accuracy (mean ± std) |" in result.table
    assert (tmp_path / "sweep" / "sweep.png").is_file()
    again = run_sweep(classification_task, grid, output_dir=tmp_path / "sweep", resume=True, progress=False)
    assert [r["value"] for r in again.rows] == [r["value"] for r in result.rows]
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir()) == ["shots=0", "shots=2"]


def test_a_run_directory_taken_meanwhile_gets_the_next_name(tmp_path: Path) -> None:
    """Two runs of one task in the same second: the second finishes under ``name-2``, not an error."""
    from promptlearning.runs.directory import write_run_dir

    def fill_while_another_run_finishes(staging: Path) -> None:
        (staging / "result.txt").write_text("mine")
        (tmp_path / "task-1").mkdir()
        (tmp_path / "task-1" / "result.txt").write_text("theirs")

    final = write_run_dir(tmp_path, "task-1", fill_while_another_run_finishes)
    assert final.name == "task-1-2" and (final / "result.txt").read_text() == "mine"
    assert (tmp_path / "task-1" / "result.txt").read_text() == "theirs"
    assert not list(tmp_path.glob(".tmp-run-*"))
