"""objective rationale: chain-of-thought fine-tuning end to end on a tiny model, its targets, its
bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from promptlearning.errors import PromptLearningError
from promptlearning.tasks.train.config import RationaleSection

GSM8K_ROW = {
    "question": "Natalia sold 48 clips in April and half as many in May. How many in all?",
    "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nShe sold 48+24 = <<48+24=72>>72 clips.\n#### 72",
    "final": "72",
}


def test_a_gsm8k_solution_becomes_one_line_that_ends_in_the_answer() -> None:
    from promptlearning.tasks.train.rationale import rationale_target

    assert rationale_target(GSM8K_ROW, RationaleSection()) == (
        "Natalia sold 48/2 = <<48/2=24>>24 clips in May. She sold 48+24 = <<48+24=72>>72 clips. The answer is 72."
    )
    plain = rationale_target(GSM8K_ROW, RationaleSection(calculator_calls=False, answer_field=None))
    assert plain == "Natalia sold 48/2 = 24 clips in May. She sold 48+24 = 72 clips. The answer is 72."
    own = {"q": "2+2?", "why": "Two and two make four.", "final": 4}
    assert rationale_target(own, RationaleSection(rationale_field="why")) == "Two and two make four. The answer is 4."


def _problems(count: int, offset: int = 0) -> list[dict]:
    rows = []
    for i in range(offset, offset + count):
        a, b = 2 + i % 7, 3 + i % 5
        rows.append({"question": f"Tom has {a} apples and gets {b} more. How many?",
                     "answer": f"Tom has {a}+{b} = <<{a}+{b}={a + b}>>{a + b} apples.\n#### {a + b}",
                     "final": str(a + b)})  # fmt: skip
    return rows


def _task(tmp_path: Path, model: Path, **changes) -> Path:
    for name, rows in (("train.jsonl", _problems(40)), ("test.jsonl", _problems(6, offset=100))):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = {"type": "train", "name": "tiny-rationale", "objective": "rationale", "model": str(model),
            "output_dir": str(tmp_path / "runs"),
            "data": {"root": str(tmp_path), "train": "train.jsonl", "eval": "test.jsonl", "dev_limit": 4},
            "peft": {"method": "lora", "options": {"r": 4, "lora_alpha": 8}},
            "rationale": {"max_new_tokens": 24},
            "training": {"max_steps": 12, "batch_size": 4, "learning_rate": 5e-3, "eval_every": 6, "log_with": None},
            "max_length": 96, **changes}  # fmt: skip
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(task))
    return path


def test_rationale_training_saves_a_merged_model_and_evaluates_it(tmp_path: Path, tiny_llama_dir: Path) -> None:
    from promptlearning.models import load_model
    from promptlearning.tasks import load_task, run_task

    result = run_task(load_task(_task(tmp_path, tiny_llama_dir)))
    run = result.run_dir
    assert result.kind == "train" and result.metric == "accuracy_flexible" and 0 <= result.value <= 1
    assert "calculator" in result.setting and result.metrics["train_examples"] == 36  # 4 held out for dev
    history = json.loads((run / "run.json").read_text())
    assert history["metrics"]["steps"] == 12
    assert result.metrics["best_dev_loss"] < 10
    predictions = [json.loads(line) for line in (run / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 6
    assert not (run / "model" / "adapter_config.json").exists()  # merged: a plain model directory
    lm = load_model(run / "model")
    assert lm.generate(["Q: Tom has 2 apples and gets 3 more. How many?\nA:"])[0].text is not None
    assert (run / "training").is_dir() and (run / "report.md").read_text().startswith("# tiny-rationale")


@pytest.mark.parametrize("precision", ["bf16"])  # float32: the test above
def test_rationale_loss_falls_with_training(tmp_path: Path, tiny_llama_dir: Path, precision: str) -> None:
    from promptlearning.tasks import load_task, run_task

    training = {
        "max_steps": 16,
        "batch_size": 4,
        "learning_rate": 3e-3,
        "eval_every": 8,
        "log_with": None,
        "mixed_precision": precision,
    }
    result = run_task(load_task(_task(tmp_path, tiny_llama_dir, peft=None, training=training)))
    first, best = result.metrics["first_dev_loss"], result.metrics["best_dev_loss"]
    assert best < first and best < 4.0, (first, best)  # a random tiny model starts near ln(vocab) = 6


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"few_shot": {"k": 4}}, "few_shot does not apply"),
        ({"peft": {"method": "prefix-tuning"}}, "learns a prompt"),
        ({"objective": "pet", "verbalizer": {"words": {"a": " x", "b": " y"}}}, "needs objective rationale"),
        ({"template": {"input": "{{ question }}", "mode": "chat"}}, "must be plain"),
        ({"rationale": {"rationale_field": "solution"}}, "solution"),
    ],
)
def test_bad_rationale_tasks_are_refused_before_training(tmp_path: Path, tiny_llama_dir, changes, message) -> None:
    from promptlearning.tasks import load_task, run_task
    from promptlearning.tasks.config import TaskConfigError

    with pytest.raises((PromptLearningError, TaskConfigError), match=message):
        run_task(load_task(_task(tmp_path, tiny_llama_dir, **changes)))
    assert not (tmp_path / "runs" / "tiny-rationale" / "model").exists()


def test_a_row_without_a_final_answer_is_named(tmp_path: Path, tiny_llama_dir: Path) -> None:
    from promptlearning.tasks import load_task, run_task

    path = _task(tmp_path, tiny_llama_dir, rationale={"answer_field": None})
    rows = _problems(40)
    rows[6]["answer"] = "Tom counts them."  # no '#### N' and no answer field to fall back on
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(PromptLearningError, match="train.jsonl, row 7: no final answer"):
        run_task(load_task(path))
