"""Generation task files (``type: generate``): schema, data options, runs, reports, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from promptlearning.cli import main
from promptlearning.errors import PromptLearningError
from promptlearning.tasks import TaskConfigError, TaskResult, load_task, run_task
from promptlearning.tasks.generate import GenerateTaskConfig, dialogue_examples
from promptlearning.tasks.generate.config import DialogueConfig

TRAIN = [
    {"title": "France", "question": "Where is Paris?", "answers": ["France"]},
    {"title": "Italy", "question": "Where is Rome?", "answers": ["Italy", "in Italy"]},
]
TEST = [
    {"title": "Norway", "question": "Where is Oslo?", "answers": ["Norway"]},
    {"title": "Spain", "question": "Where is Madrid?", "answers": ["Spain"]},
    {"title": "Peru", "question": "Where is Lima?", "answers": ["Peru"]},
]


def write_task(tmp_path: Path, model: Path, **changes) -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TRAIN))
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TEST))
    config = {
        "type": "generate",
        "name": "tiny-qa",
        "data": {"root": "data", "train": "train.jsonl", "eval": "test.jsonl", "target_field": "answers"},
        "model": str(model),
        "template": {"input": "Q: {{ question }}\nA:"},
        "decoding": {"max_new_tokens": 4},
        "metrics": ["squad", "rouge"],
    }
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            config[section][name] = value
        else:
            config[key] = value
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_generation_task_writes_predictions_metrics_and_a_report_of_the_worst(tmp_path, tiny_llama_dir):
    config = load_task(write_task(tmp_path, tiny_llama_dir, shots=2, selection="first", worst=2))
    assert isinstance(config, GenerateTaskConfig)
    result = run_task(config, output_dir=tmp_path / "runs")
    assert result.kind == "generate" and result.metric == "f1" and result.setting == "2-shot first"
    assert TaskResult.read(result.run_dir).value == result.value == result.metrics["f1"]
    assert {"exact_match", "f1", "rouge1", "rouge2", "rougeL"} <= set(result.metrics)
    files = {p.name for p in result.run_dir.iterdir()}
    assert {"config.yaml", "run.json", "metrics.json", "predictions.jsonl", "report.md"} <= files
    rows = [json.loads(line) for line in (result.run_dir / "predictions.jsonl").read_text().splitlines()]
    assert [r["references"] for r in rows] == [t["answers"] for t in TEST]
    assert rows[0]["prompt"].startswith("Q: Where is Paris?\nA: France\n\nQ: Where is Rome?\nA: Italy\n\n")
    report = (result.run_dir / "report.md").read_text()
    assert "The 2 lowest-scoring examples" in report and "| exact_match | f1 |" in report


def test_cli_runs_a_generation_task(tmp_path, tiny_llama_dir, capsys):
    task = write_task(tmp_path, tiny_llama_dir, metrics=["bleu", "chrf", "distinct"])
    assert main(["run", str(task), "--output-dir", str(tmp_path / "runs"), "--no-progress"]) == 0
    assert "bleu" in capsys.readouterr().out


def test_dialogues_expand_into_one_example_per_response():
    rows = [{"dialog": ["Hi .", "Hello !", "How are you ?"]}]
    examples = dialogue_examples(rows, DialogueConfig(field="dialog", context_turns=1))
    assert examples == [
        {"context": "A: Hi .", "speaker": "B", "response": "Hello !"},
        {"context": "B: Hello !", "speaker": "A", "response": "How are you ?"},
    ]
    with pytest.raises(PromptLearningError, match="must be a list of turns"):
        dialogue_examples([{"dialog": "Hi ."}], DialogueConfig())


def test_train_fields_rename_a_pool_with_other_field_names(tmp_path, tiny_llama_dir):
    task = write_task(
        tmp_path,
        tiny_llama_dir,
        shots=1,
        data__train="pairs.jsonl",
        data__train_fields={"question": "en", "answers": "de"},
    )
    (tmp_path / "data" / "pairs.jsonl").write_text(json.dumps({"en": "A dog.", "de": "Ein Hund."}) + "\n")
    result = run_task(load_task(task), write=False)
    assert result.predictions[0]["prompt"].startswith("Q: A dog.\nA: Ein Hund.\n\n")


def test_generation_task_bad_input(tmp_path, tiny_llama_dir):
    with pytest.raises(TaskConfigError, match="metrics.0: must be one of squad, rouge, bleu, chrf"):
        load_task(write_task(tmp_path, tiny_llama_dir, metrics=["bleurt"]))
    with pytest.raises(TaskConfigError, match="needs data.train"):
        load_task(write_task(tmp_path, tiny_llama_dir, shots=2, data__train=None))
    task = write_task(tmp_path, tiny_llama_dir)
    (tmp_path / "data" / "test.jsonl").write_text(json.dumps({"question": "x", "answers": [" "]}) + "\n")
    with pytest.raises(PromptLearningError, match="example 1: the reference 'answers' is empty"):
        run_task(load_task(task), write=False)
    task = write_task(tmp_path, tiny_llama_dir, shots=1, data__disjoint_on="title")
    (tmp_path / "data" / "test.jsonl").write_text(json.dumps(TRAIN[0]) + "\n")
    with pytest.raises(PromptLearningError, match="train and eval share 1 value.*'title'"):
        run_task(load_task(task), write=False)
    task = write_task(tmp_path, tiny_llama_dir, template={"input": "{{ question }}"})
    (tmp_path / "data" / "test.jsonl").write_text(json.dumps({"question": "   ", "answers": ["a"]}) + "\n")
    with pytest.raises(PromptLearningError, match="empty prompt"):
        run_task(load_task(task), write=False)


def test_fine_tuning_lowers_the_loss_of_the_targets_and_the_task_reports_it(tmp_path, tiny_llama_dir):
    from promptlearning.models import load_model
    from promptlearning.training.generation import TargetFeaturizer, finetune_for_generation
    from promptlearning.training.loop import TrainingArguments

    lm = load_model(tiny_llama_dir)
    prompts, targets = [f"Q: {r['question']}\nA:" for r in TRAIN], [r["answers"][0] for r in TRAIN]
    featurizer = TargetFeaturizer(lm, 64)
    features = [featurizer.encode(p, t) for p, t in zip(prompts, targets, strict=True)]
    assert features[0]["labels"].count(-100) == len(lm.encode_prompt(prompts[0]))  # only the target counts
    args = TrainingArguments(max_steps=12, learning_rate=1e-2, batch_size=2, eval_every=6, log_with=None)
    trained, result = finetune_for_generation(lm, prompts, targets, peft="lora", peft_options={"r": 4}, args=args,
                                              output_dir=tmp_path / "ft", dev=(prompts, targets), max_length=64,
                                              device="cpu", progress=False)  # fmt: skip
    losses = [-h["neg_loss"] for h in result.history]
    assert result.steps == 12 and losses[-1] < losses[0]
    assert trained.generate(prompts[:1])[0] is not None
    training = {"max_steps": 4, "batch_size": 2, "log_with": None}
    finetune = {"peft": {"method": "lora", "options": {"r": 4}}, "training": training, "dev_size": 0, "max_length": 64}
    task = write_task(tmp_path, tiny_llama_dir, finetune=finetune)
    result = run_task(load_task(task), output_dir=tmp_path / "runs", progress=False)
    assert result.setting == "fine-tuned (lora, 4 steps)" and result.metrics["train_steps"] == 4
