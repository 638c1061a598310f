"""Head fine-tuning (sequence and token classification), the few-shot protocol, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptlearning.cli import main
from promptlearning.training import ProgramSpec, TrainingArguments, build_program, load_program, train
from promptlearning.training.fewshot import FewShotError, sample_per_class
from promptlearning.training.heads import NerDataError

NER_ROWS = [
    {"tokens": ["paris", "is", "in", "france"], "ner_tags": ["B-LOC", "O", "O", "B-LOC"]},
    {"tokens": ["the", "cat", "sat"], "ner_tags": ["O", "O", "O"]},
    {"tokens": ["london", "and", "paris"], "ner_tags": ["B-LOC", "O", "B-LOC"]},
    {"tokens": ["the", "dog", "is", "in", "london"], "ner_tags": ["O", "O", "O", "O", "B-LOC"]},
]


def test_few_shot_sampling_is_per_class_disjoint_and_seeded(make_rows) -> None:
    pool = make_rows(40, 0)
    train, dev = sample_per_class(pool, 4, seed=13)
    assert sorted(r["label"] for r in train) == ["negative"] * 4 + ["positive"] * 4
    assert len(dev) == 8 and not {id(r) for r in train} & {id(r) for r in dev}
    assert sample_per_class(pool, 4, seed=13) == (train, dev)
    assert sample_per_class(pool, 4, seed=21)[0] != train
    with pytest.raises(FewShotError, match=r"k=11 per class \(plus k for dev\) needs 22.*'negative' has 20"):
        sample_per_class(pool, 11, seed=13)


def test_ner_tags_and_tokens_of_different_length_are_refused(tiny_bert_dir: Path) -> None:
    program = build_program(ProgramSpec(objective="ner", model=str(tiny_bert_dir), labels=["O", "B-LOC", "I-LOC"]))
    with pytest.raises(NerDataError, match="4 tokens but 3 tags"):
        program.encode([{"tokens": ["a", "b", "c", "d"], "ner_tags": ["O", "O", "O"]}])
    with pytest.raises(NerDataError, match=r"\['B-PER'\] are not in the label set"):
        program.encode([{"tokens": ["bob"], "ner_tags": ["B-PER"]}])


def test_ner_labels_the_first_sub_token_of_each_word(tiny_bert_dir: Path) -> None:
    program = build_program(ProgramSpec(objective="ner", model=str(tiny_bert_dir), labels=["O", "B-LOC"]))
    [feature] = program.encode([{"tokens": ["wonderfulness", "paris"], "ner_tags": ["O", "B-LOC"]}])
    ids, labels, starts = feature["input_ids"], feature["labels"], feature["word_starts"]
    assert ids[0] == program.tokenizer.cls_token_id and ids[-1] == program.tokenizer.sep_token_id
    assert [labels[i] for i in starts] == [0, 1]
    assert sum(label != -100 for label in labels) == 2


@pytest.mark.parametrize("model", ["tiny_bert_dir", "tiny_llama_dir"])
def test_token_classification_learns_and_round_trips(model: str, request, tmp_path: Path) -> None:
    directory = request.getfixturevalue(model)
    program = build_program(ProgramSpec(objective="ner", model=str(directory), labels=["O", "B-LOC"]), seed=0)
    data = NER_ROWS * 4
    args = TrainingArguments(max_steps=30, eval_every=10, batch_size=4, learning_rate=5e-3, metric="f1")
    result = train(program.module, program.encode(data), program.featurizer.collate,
                   lambda _: program.evaluate(NER_ROWS), args, tmp_path / "run", progress=False)  # fmt: skip
    assert result.best_metric == 1.0
    program.save(tmp_path / "program")
    restored = load_program(tmp_path / "program")
    assert [p["tags"] for p in restored.predict(NER_ROWS)] == [r["ner_tags"] for r in NER_ROWS]


def test_sequence_classification_head_with_lora(tiny_llama_dir: Path, tmp_path: Path, make_rows) -> None:
    spec = ProgramSpec(objective="head", model=str(tiny_llama_dir), labels=["negative", "positive"], peft="lora")
    program = build_program(spec, seed=0)
    data = make_rows(32, 0)
    args = TrainingArguments(max_steps=40, eval_every=20, batch_size=8, learning_rate=2e-2)
    evaluate = lambda _: {"accuracy": program.evaluate(data)["accuracy"]}  # noqa: E731
    result = train(program.module, program.encode(data), program.featurizer.collate, evaluate, args, tmp_path / "run",
                   progress=False)  # fmt: skip
    assert result.best_metric >= 0.9
    program.save(tmp_path / "program")
    restored = load_program(tmp_path / "program")
    assert [p.label for p in restored.predict(data)] == [p.label for p in program.predict(data)]


def test_cli_train_then_predict(write_task, sentiment_data: Path, tmp_path: Path, capsys) -> None:
    task = write_task("cli")
    assert main(["train", str(task), "--output", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "accuracy 0." in out and "per seed on the eval split: 1: " in out and "seed-*/program" in out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["peft"] == "lora" and summary["k"] == 8
    assert (tmp_path / "run" / "report.md").is_file() and (tmp_path / "run" / "dev_curves.png").is_file()
    program_dir = tmp_path / "run" / "seed-1" / "program"
    predictions = tmp_path / "predictions.jsonl"
    assert main(["predict", str(program_dir), str(sentiment_data / "test.jsonl"), "-o", str(predictions)]) == 0
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert len(rows) == 16 and set(rows[0]) == {"input", "label", "probabilities"}
    metrics = json.loads((tmp_path / "run" / "seed-1" / "metrics.json").read_text())
    accuracy = sum(r["label"] == r["input"]["label"] for r in rows) / len(rows)
    assert accuracy == pytest.approx(metrics["eval"]["accuracy"])
    # the run keeps the eval predictions of each seed, as classification runs do (the UI shows them)
    kept = [json.loads(line) for line in (tmp_path / "run" / "seed-1" / "predictions.jsonl").read_text().splitlines()]
    assert [r["predicted"] for r in kept] == [r["label"] for r in rows]
    assert sum(r["correct"] for r in kept) / len(kept) == pytest.approx(metrics["eval"]["accuracy"])


def test_cli_reports_bad_training_input(write_task, tmp_path: Path, capsys) -> None:
    task = write_task("bad", peft={"method": "lora", "options": {"rank": 4}})
    assert main(["train", str(task), "--output", str(tmp_path / "bad")]) == 2
    assert "unknown option(s) ['rank']" in capsys.readouterr().err
    task = write_task("bigk", few_shot={"k": 30, "seeds": [1]})
    assert main(["train", str(task), "--output", str(tmp_path / "bigk")]) == 2
    assert "k=30 per class" in capsys.readouterr().err
    task = write_task("noverb", verbalizer=None)
    assert main(["train", str(task)]) == 2
    assert "needs a verbalizer" in capsys.readouterr().err


def test_sweep_writes_one_table_and_plot(write_task, tmp_path: Path, capsys) -> None:
    task = write_task("sweep", training={"max_steps": 4, "eval_every": 4, "batch_size": 4, "learning_rate": 0.01})
    command = ["sweep", str(task), "--grid", "peft.method=lora,none", "--k", "4", "--seeds", "5,6"]
    assert main([*command, "--output", str(tmp_path / "sweep")]) == 0
    table = (tmp_path / "sweep" / "sweep.md").read_text()
    assert "| lora | 2 |" in table and "| none | 2 |" in table
    assert (tmp_path / "sweep" / "sweep.png").is_file()
    summary = json.loads((tmp_path / "sweep" / "method=none" / "summary.json").read_text())
    assert summary["peft"] == "full" and summary["k"] == 4 and sorted(summary["per_seed"]) == ["5", "6"]


def test_train_min_words_keeps_sentences_before_the_limit(write_task, sentiment_data: Path, tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (sentiment_data / "train.jsonl").read_text().splitlines()]
    short = [{"text": "good", "label": "positive"}, {"text": "bad", "label": "negative"}] * 10
    (sentiment_data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in short + rows))
    for limit, expected in ((None, len(rows)), (40, 40)):  # the limit counts kept sentences only
        data = {"root": str(sentiment_data), "train": "train.jsonl", "eval": "test.jsonl", "train_min_words": 3,
                "train_limit": limit}  # fmt: skip
        task = write_task("words", data=data, few_shot=None, training={"max_steps": 1, "eval_every": 1})
        assert main(["train", str(task), "--output", str(tmp_path / f"words-{limit}")]) == 0
        metrics = json.loads((tmp_path / f"words-{limit}" / "seed-0" / "metrics.json").read_text())
        assert metrics["train_examples"] + metrics["dev_examples"] == expected


def test_lm_bff_demonstrations_are_fixed_per_seed_and_saved(write_task, tmp_path: Path) -> None:
    task = write_task("demos", demonstrations=1, training={"max_steps": 2, "eval_every": 2, "batch_size": 4})
    assert main(["train", str(task), "--output", str(tmp_path / "demos")]) == 0
    program = load_program(tmp_path / "demos" / "seed-1" / "program")
    demos = program.spec.demonstrations
    assert sorted(d["answer"] for d in demos) == [" negative", " positive"]
    prompt = program.featurizer.prompt({"text": "it was fine"})
    assert prompt.startswith("review : ") and prompt.count("sentiment :") == 3
    assert all(d["example"]["text"] in prompt for d in demos)


def test_bf16_autocast_trains(tiny_llama_dir: Path, tmp_path: Path, make_rows) -> None:
    spec = ProgramSpec(
        objective="pet", model=str(tiny_llama_dir), template={"input": "review : {{ text }}\nsentiment :"},
        verbalizer={"label_words": {"negative": " negative", "positive": " positive"}}, peft="lora",
    )  # fmt: skip
    program = build_program(spec, seed=0)
    data = make_rows(16, 0)
    args = TrainingArguments(
        max_steps=8, eval_every=8, batch_size=8, learning_rate=2e-2, mixed_precision="bf16", log_with=None
    )
    evaluate = lambda _: {"accuracy": program.evaluate(data)["accuracy"]}  # noqa: E731
    result = train(program.module, program.encode(data), program.featurizer.collate, evaluate, args, tmp_path,
                   progress=False)  # fmt: skip
    assert result.steps == 8 and result.best_metric is not None
