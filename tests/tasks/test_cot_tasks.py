"""Chain-of-thought task files: schema, exemplars (inline, shipped, from train), runs, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from promptlearning.cli import main
from promptlearning.errors import PromptLearningError
from promptlearning.methods.cot import SelfConsistency
from promptlearning.tasks import TaskConfigError, TaskResult, load_task, run_task
from promptlearning.tasks.cot import CoTTaskConfig, build_cot, load_exemplars
from promptlearning.tasks.cot.run import exemplars_from_train

TRAIN = [
    {"question": "the cat sat on 2 mats and 3 more", "answer": "2 + 3 = <<2+3=5>>5 mats.\n#### 5"},
    {"question": "what is two plus three", "answer": "two plus three is 5\n#### 5"},
    {"question": "the dog sat on 4 logs", "answer": "4 logs\n#### 4"},
]
TEST = [
    {"question": "the dog sat on 4 logs and 1 more", "final": "5"},
    {"question": "what is two plus two", "final": "4"},
]


@pytest.fixture
def cot_task(tmp_path, tiny_llama_dir) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TRAIN))
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TEST))
    config = {
        "type": "cot",
        "name": "tiny-maths",
        "data": {"root": "data", "train": "train.jsonl", "eval": "test.jsonl"},
        "model": str(tiny_llama_dir),
        "exemplars_from_train": 2,
        "max_new_tokens": 10,
    }
    path = tmp_path / "cot.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_cot_task_runs_and_writes_rationales_votes_and_the_sample_curve(cot_task, tmp_path):
    config = load_task(cot_task, ["self_consistency=3"])
    assert isinstance(config, CoTTaskConfig)
    result = run_task(config, output_dir=tmp_path / "runs")
    assert result.kind == "cot" and result.metric == "accuracy_flexible" and result.num_examples == 2
    assert TaskResult.read(result.run_dir).value == result.value == result.metrics["accuracy_flexible"]
    files = {p.name for p in result.run_dir.iterdir()}
    assert {
        "config.yaml",
        "run.json",
        "metrics.json",
        "predictions.jsonl",
        "report.md",
        "samples.png",
        "exemplars.json",
    } <= files
    rows = [json.loads(line) for line in (result.run_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(len(r["rationales"]) == 3 for r in rows)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert set(metrics["self_consistency_curve"]["flexible"]) == {"1", "3"}
    assert metrics["decoding"]["samples"] == 6
    assert "against the number of samples" in (result.run_dir / "report.md").read_text()


def test_exemplars_from_train_strip_calculator_annotations(cot_task):
    config = load_task(cot_task)
    cot = build_cot(config, model=None)  # type: ignore[arg-type]
    assert not isinstance(cot, SelfConsistency)
    assert isinstance(build_cot(load_task(cot_task, ["self_consistency=3"]), model=None), SelfConsistency)  # type: ignore[arg-type]
    assert len(cot.exemplars) == 2
    for exemplar in cot.exemplars:
        assert "<<" not in exemplar["rationale"] and exemplar["answer"] in ("4", "5")
    with pytest.raises(PromptLearningError, match="3 solved questions"):
        exemplars_from_train(TRAIN, 5, question_field="question", seed=0)


def test_shipped_exemplars_and_errors():
    shipped = load_exemplars("gsm8k-wei2022")
    assert len(shipped) == 8 and shipped[0]["answer"] == "6"
    with pytest.raises(PromptLearningError, match="shipped: gsm8k-wei2022"):
        load_exemplars("nope")


def test_cot_schema_errors_name_the_key(cot_task):
    with pytest.raises(TaskConfigError, match="self_consistency"):
        load_task(cot_task, ["self_consistency=0"])
    with pytest.raises(TaskConfigError, match="mode"):
        load_task(cot_task, ["mode=tree"])


def test_cli_cot_answers_one_question(capsys, tiny_llama_dir):
    argv = ["cot", "what is two plus two", "--model", str(tiny_llama_dir), "--mode", "zero-shot-cot",
            "--sc", "3", "--max-new-tokens", "8", "--show-rationales"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("--- sample") == 3 and "answer:" in out and "votes:" in out


def test_cli_run_dispatches_cot_tasks(cot_task, tmp_path, capsys):
    assert main(["run", str(cot_task), "--output-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "accuracy_flexible" in out and "accuracy_strict" in out and "run written to" in out
