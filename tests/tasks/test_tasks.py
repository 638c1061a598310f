"""Task YAML files: validation with key paths, overrides, data loading, runs and comparison."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from promptlearning.cli import main
from promptlearning.loading import DataError, load_examples, task_data_root
from promptlearning.prompts.demonstrations import DemonstrationError
from promptlearning.tasks import TaskConfigError, TaskResult, load_task, run_task

ROWS = [
    {"text": "i loved this film", "label": "positive"},
    {"text": "a dull , tedious mess", "label": "negative"},
    {"text": "great movie !", "label": "positive"},
    {"text": "awful .", "label": "negative"},
]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def task_file(tmp_path, tiny_llama_dir) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "train.jsonl", ROWS)
    write_jsonl(data / "dev.jsonl", ROWS[::-1])
    config = {
        "name": "tiny-sentiment",
        "data": {"root": "data", "train": "train.jsonl", "eval": "dev.jsonl"},
        "model": str(tiny_llama_dir),
        "template": {"input": "review : {{ text }}\nsentiment :", "shorten": "text"},
        "verbalizer": {"words": {"negative": " negative", "positive": [" positive", " great"]}},
    }
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_task_runs_and_writes_a_complete_run_directory(task_file, tmp_path, monkeypatch):
    monkeypatch.delenv("PROMPTLEARNING_DATA", raising=False)
    config = load_task(task_file, ["shots=2", "method.calibrate=true", "method.selection=balanced"])
    assert config.method_name == "icl" and config.shots == 2 and config.method.calibrate
    result = run_task(config, output_dir=tmp_path / "runs", progress=False)
    files = sorted(p.name for p in result.run_dir.iterdir())
    assert files == [
        "config.yaml", "confusion_matrix.png", "metrics.json", "predictions.jsonl", "reliability.png", "report.md",
        "run.json",
    ]  # fmt: skip
    assert result.kind == "classification" and result.setting == "2-shot balanced + contextual calibration"
    assert TaskResult.read(result.run_dir).to_json() == result.to_json()
    assert result.value == result.metrics["accuracy"] == result.evaluation.metrics["accuracy"]
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["num_examples"] == 4
    predictions = [json.loads(line) for line in (result.run_dir / "predictions.jsonl").read_text().splitlines()]
    assert [p["gold"] for p in predictions] == [r["label"] for r in ROWS[::-1]]
    assert all(len(p["demonstrations"]) == 2 for p in predictions)
    assert "accuracy" in (result.run_dir / "report.md").read_text()
    assert yaml.safe_load((result.run_dir / "config.yaml").read_text())["shots"] == 2


def test_cli_run_and_compare(task_file, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["run", str(task_file), "--output-dir", str(runs)]) == 0
    assert main(["run", str(task_file), "--output-dir", str(runs), "--set", "shots=2"]) == 0
    capsys.readouterr()
    plot = tmp_path / "compare.png"
    assert main(["compare", *map(str, runs.iterdir()), "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "zero-shot" in out and "2-shot random" in out
    assert plot.stat().st_size > 1000


def test_the_data_root_variable_wins(task_file, tmp_path, monkeypatch):
    other = tmp_path / "elsewhere"
    other.mkdir()
    write_jsonl(other / "dev.jsonl", ROWS[:1])
    monkeypatch.setenv("PROMPTLEARNING_DATA", str(other))
    config = load_task(task_file)
    assert len(load_examples(config.data.eval, root=task_data_root(config.data.root))) == 1


def test_paths_outside_task_files_resolve_against_the_current_directory(tmp_path, monkeypatch):
    """The data root is for task files only: a path given on the command line is the user's own."""
    other = tmp_path / "elsewhere"
    other.mkdir()
    write_jsonl(other / "in.jsonl", ROWS[:1])
    here = tmp_path / "here"
    here.mkdir()
    write_jsonl(here / "in.jsonl", ROWS)
    monkeypatch.setenv("PROMPTLEARNING_DATA", str(other))
    monkeypatch.chdir(here)
    assert len(load_examples("in.jsonl")) == 4


def test_unknown_keys_are_reported_with_their_path(task_file):
    with pytest.raises(TaskConfigError, match=r"template\.inpt: unknown key; did you mean .input.\?"):
        load_task(task_file, ["template.inpt=x"])
    with pytest.raises(TaskConfigError, match=r"method\.name: Input should be"):
        load_task(task_file, ["method.name=magic"])
    with pytest.raises(TaskConfigError, match=r"shots: Input should be greater than or equal to 0"):
        load_task(task_file, ["shots=-1"])


def test_malformed_yaml_says_where(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntemplate: {input: [unclosed\n")
    with pytest.raises(TaskConfigError, match=r"not valid YAML \(line \d+"):
        load_task(bad)
    with pytest.raises(TaskConfigError, match="does not exist"):
        load_task(tmp_path / "missing.yaml")
    missing = tmp_path / "missing_keys.yaml"
    missing.write_text("name: x\n")
    with pytest.raises(TaskConfigError, match="data: Field required"):
        load_task(missing)


def test_cli_reports_config_errors_without_a_traceback(task_file, capsys):
    assert main(["run", str(task_file), "--set", "verbalizer.wrods=1"]) == 2
    assert "verbalizer.wrods" in capsys.readouterr().err


def test_csv_and_datasets_directories_load(tmp_path):
    csv_path = tmp_path / "d.csv"
    csv_path.write_text("text,label\nhello,positive\nbye,negative\n")
    assert load_examples(csv_path) == [{"text": "hello", "label": "positive"}, {"text": "bye", "label": "negative"}]
    from datasets import Dataset

    Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "ds"))
    assert load_examples(tmp_path / "ds", limit=2) == ROWS[:2]


def test_bad_data_files_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_examples(tmp_path / "nope.jsonl")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "ok"}\n{not json}\n')
    with pytest.raises(DataError, match=r"broken.jsonl:2: not valid JSON"):
        load_examples(broken)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match="no examples"):
        load_examples(empty)


def test_shipped_task_files_validate():
    for path in sorted(Path(__file__).resolve().parents[2].joinpath("tasks").glob("*.yaml")):
        config = load_task(path)
        if config.type == "classification":
            assert config.verbalizer.words, path
        elif config.type == "train":
            assert config.objective in {"pet", "head", "ner", "rationale"}, path
            assert config.objective != "pet" or (config.verbalizer and config.verbalizer.words), path
        elif config.type == "generate":
            assert config.metrics, path
        elif config.type == "pretrain":
            assert config.corpus.files and (config.architecture or config.model), path
        elif config.type == "embed-train":
            assert config.data.train and (config.data.test or config.data.dev), path
        elif config.type == "compress":
            assert (config.prune or config.quantize) and config.evaluate, path
        else:
            assert config.mode, path


def test_override_values_with_colons_stay_strings(task_file):
    config = load_task(task_file, ["template.instruction=Answer: yes or no", "verbalizer.words={a: [' x'], b: ' y'}"])
    assert config.template.instruction == "Answer: yes or no"
    assert config.verbalizer.words == {"a": [" x"], "b": " y"}


def test_eval_offset_selects_a_disjoint_slice(tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", ROWS)
    assert load_examples(path, offset=1, limit=2) == ROWS[1:3]


def test_train_min_words_filters_the_demonstration_pool(task_file):
    # Only "i loved this film" and "a dull , tedious mess" have >= 4 words.
    config = load_task(task_file, ["shots=2", "method.selection=first", "data.train_min_words=4"])
    run_task(config, write=False, progress=False)
    with pytest.raises(DemonstrationError, match="only 2 examples"):
        run_task(load_task(task_file, ["shots=3", "data.train_min_words=4"]), write=False, progress=False)


def test_switching_the_peft_method_drops_the_other_methods_options():
    shipped = Path(__file__).resolve().parents[2] / "tasks" / "sst2-fewshot.yaml"
    assert load_task(shipped).peft.options["r"] == 8
    assert load_task(shipped, ["peft.method=prompt-tuning"]).peft.options == {}
    switched = load_task(shipped, ["peft.method=prompt-tuning", "peft.options.num_virtual_tokens=10"])
    assert switched.peft.options == {"num_virtual_tokens": 10}
    assert load_task(shipped, ["peft.method=lora"]).peft.options["r"] == 8  # the same method keeps them


def test_keep_min_words_counts_the_items_of_a_token_list():
    from promptlearning.loading import DataError, keep_min_words

    rows = [{"tokens": ["EU", "rejects", "German", "call"]}, {"tokens": ["Peter"]}, {"text": "a short one"}]
    assert keep_min_words(rows, ["tokens"], 2) == rows[:1]
    assert keep_min_words(rows, ["text"], 3) == rows[2:]
    with pytest.raises(DataError, match="no example has 9 or more words"):
        keep_min_words(rows, ["tokens"], 9)


def test_yaml_1_1_words_stay_text_and_booleans_are_not_numbers(task_file):
    assert load_task(task_file, ["name=no"]).name == "no"
    assert load_task(task_file, ["method.calibrate=yes"]).method.calibrate is True
    with pytest.raises(TaskConfigError, match="shots: expects a number, got the boolean true"):
        load_task(task_file, ["shots=true"])
    with pytest.raises(TaskConfigError, match="name: expects text, got the boolean false.*quotes"):
        load_task(task_file, ["name=false"])


def test_overrides_need_a_key(task_file):
    with pytest.raises(TaskConfigError, match="names no key"):
        load_task(task_file, ["=5"])
    with pytest.raises(TaskConfigError, match="empty key"):
        load_task(task_file, ["method..calibrate=true"])


def test_json_files_are_read_as_json(tmp_path):
    (tmp_path / "array.json").write_text(json.dumps(ROWS, indent=2))
    (tmp_path / "one.json").write_text(json.dumps(ROWS[0], indent=2))
    (tmp_path / "lines.json").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    assert load_examples(tmp_path / "array.json") == ROWS
    assert load_examples(tmp_path / "one.json") == ROWS[:1]
    assert load_examples(tmp_path / "lines.json") == ROWS


def test_null_and_missing_fields_name_their_row(tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", [ROWS[0], {"text": None, "label": "positive"}])
    with pytest.raises(DataError, match="row 2: field 'text' is null"):
        load_examples(path, required=["text", "label"])
    missing = write_jsonl(tmp_path / "more.jsonl", [*ROWS[:2], {"text": "x"}])
    with pytest.raises(DataError, match="row 3: no field 'label'"):
        load_examples(missing, required=["label"])


def test_the_headline_metric_can_be_semeval_macro_f1(task_file):
    result = run_task(load_task(task_file, ["metric=semeval_macro_f1"]), write=False, progress=False)
    assert result.metric == "semeval_macro_f1" and 0.0 <= result.value <= 1.0
    assert result.value == pytest.approx(result.metrics["macro_f1"])  # no Other, no directions: plain macro-F1
