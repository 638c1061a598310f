"""Fuzzing the command line with task-file overrides and data rows (hypothesis).

Whatever ``--set`` overrides or JSONL rows a user gives, ``promptlearning run`` either succeeds
(exit 0) or prints one clean error (exit 2); exit 1 (a bug caught by the error boundary) or a
traceback fails the test. Runs in-process on the tiny model, so each example costs a fraction of a
second.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promptlearning.cli import main

ROWS = [
    {"text": "i loved this film", "label": "positive"},
    {"text": "a dull , tedious mess", "label": "negative"},
    {"text": "great movie !", "label": "positive"},
    {"text": "awful .", "label": "negative"},
]

KEYS = [
    "name", "model", "dtype", "batch_size", "shots", "seed", "output_dir", "type",
    "template.input", "template.mode", "template.shorten", "template.instruction", "template.separator",
    "verbalizer.words", "verbalizer.words.positive", "verbalizer.word_score", "verbalizer.aggregate",
    "method.name", "method.selection", "method.calibrate", "method.calibration", "method.orderings",
    "method.content_free", "data.eval", "data.train", "data.label_field", "data.eval_limit", "data.eval_offset",
    "data.train_limit", "data.train_min_words", "data", "method", "template", "nonsense", "method.nonsense",
]  # fmt: skip
VALUES = st.one_of(
    st.integers(-3, 20).map(str),
    st.sampled_from(["true", "false", "yes", "no", "on", "off", "null", "~", "", "1e-4", "0.5", "-1", "[]", "{}"]),
    st.sampled_from(["icl", "zero-shot", "auto", "knn", "balanced", "batch", "contextual", "domain", "chat", "plain"]),
    st.sampled_from(
        [
            "{{ text }}",
            "{{ text",
            "{{ missing }}",
            "{% for x in range(3) %}{{ text }}{% endfor %}",
            "[' good', ' bad']",
            "{positive: ' good', negative: ' bad'}",
            "{a: [1, 2]}",
            "dev.jsonl",
            "missing.jsonl",
            "train.jsonl",
            "label",
            "text",
        ]
    ),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12),
)
# values a user would plausibly give each key, so that many runs get past validation into the model
PLAUSIBLE = {
    "shots": ["0", "1", "2", "4", "9"], "seed": ["0", "7"], "batch_size": ["1", "3"],
    "method.selection": ["random", "balanced", "first", "knn"], "method.calibrate": ["true", "false"],
    "method.calibration": ["contextual", "domain", "batch"], "method.orderings": ["1", "2", "3"],
    "method.name": ["auto", "zero-shot", "icl"], "template.mode": ["plain", "chat"],
    "template.input": ["{{ text }}", "{{ text|upper }} is", "{{ label }} {{ text }}",
                       "{% if text %}{{ text }}{% endif %}"],
    "verbalizer.word_score": ["sum", "mean", "chars"], "verbalizer.aggregate": ["logsumexp", "mean", "max"],
    "verbalizer.words.positive": ["' good'", "[' good', ' great']", "' negative'"],
    "data.eval_limit": ["1", "2", "40"], "data.eval_offset": ["0", "3", "4"], "data.train_limit": ["1", "2", "8"],
    "data.train_min_words": ["1", "3", "30"], "method.content_free": ["[]", "['N/A']"],
}  # fmt: skip
plausible = st.sampled_from(sorted(PLAUSIBLE)).flatmap(
    lambda key: st.sampled_from(PLAUSIBLE[key]).map(lambda value: f"{key}={value}")
)
overrides = st.lists(
    st.one_of(plausible, st.tuples(st.sampled_from(KEYS), VALUES).map("=".join)), min_size=1, max_size=4
)

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=True) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
rows = st.lists(
    st.one_of(
        st.fixed_dictionaries({"text": JSON, "label": st.sampled_from(["positive", "negative"]) | JSON}),
        st.fixed_dictionaries({"text": st.text(max_size=40), "label": st.sampled_from(["positive", "negative"])}),
        JSON,
    ),
    min_size=0,
    max_size=5,
)


@pytest.fixture(autouse=True)
def _in_a_scratch_directory(tmp_path_factory, monkeypatch):
    """Overrides may name relative output directories: they land in a scratch folder, not the checkout."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(scope="module")
def task_file(tmp_path_factory, tiny_llama_dir) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS * 2))
    (root / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    task = {
        "name": "fuzz", "model": str(tiny_llama_dir), "output_dir": str(root / "runs"),
        "data": {"root": str(root), "train": "train.jsonl", "eval": "dev.jsonl"},
        "template": {"input": "review : {{ text }}\nsentiment :", "shorten": "text"},
        "verbalizer": {"words": {"negative": [" negative"], "positive": [" positive"]}},
    }  # fmt: skip
    path = root / "task.yaml"
    path.write_text(yaml.safe_dump(task))
    return path


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    code = main([*argv, "--no-progress"])
    err = capsys.readouterr().err
    return code, err


def assert_clean(code: int, err: str) -> None:
    assert code in (0, 2), f"exit {code}:\n{err}"
    assert "Traceback" not in err, err
    if code == 2:
        assert err.count("error: ") >= 1, err


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(overrides=overrides)
def test_any_overrides_give_success_or_one_clean_error(task_file, overrides, capsys, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    code, err = run_cli(["run", str(task_file), "--output-dir", str(out), *[f"--set={o}" for o in overrides]], capsys)
    assert_clean(code, err)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=rows)
def test_any_jsonl_rows_give_success_or_one_clean_error(task_file, data, capsys, tmp_path_factory):
    folder = tmp_path_factory.mktemp("rows")
    path = folder / "eval.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in data))
    code, err = run_cli(["run", str(task_file), "--set", f"data.eval={path}", "--output-dir", str(folder)], capsys)
    assert_clean(code, err)
