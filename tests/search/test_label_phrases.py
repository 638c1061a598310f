"""Label phrases for many-class tasks: names read as words, the model's continuations, the options."""

from __future__ import annotations

import json

import pytest
import yaml

from promptlearning.search.label_phrases import (
    continuation_phrases,
    label_name_phrase,
    phrase_options,
    uses_phrases,
)


@pytest.mark.parametrize(
    ("label", "phrase"),
    [
        ("card_payment_wrong_exchange_rate", " card payment wrong exchange rate"),
        ("Cause-Effect(e1,e2)", " cause effect e1 e2"),
        ("getSpareCard", " get spare card"),
        ("Sci/Tech", " sci tech"),
        ("x", " x"),
    ],
)
def test_label_names_read_as_words(label, phrase) -> None:
    assert label_name_phrase(label) == phrase


def test_which_tasks_get_phrases() -> None:
    assert not uses_phrases(["negative", "positive"], {"negative": [" bad"], "positive": [" good"]})
    assert uses_phrases([f"l{i}" for i in range(9)], {f"l{i}": [" x"] for i in range(9)})
    assert uses_phrases(["a", "b"], {"a": [" e1 causes e2"], "b": [" other"]})


def test_continuations_propose_phrases_a_class_gives_more_than_the_others(tiny_lm) -> None:
    labels = ["a", "b", "c"]
    prompts = [f"question {i} : what is {w} ?\nanswer :" for w in ("red", "blue", "green") for i in range(3)]
    gold = [label for label in labels for _ in range(3)]
    phrases = continuation_phrases(tiny_lm, prompts, gold, labels, per_class=2, max_new_tokens=4)
    assert set(phrases) == set(labels)
    for found in phrases.values():
        assert len(found) <= 2 and all(p.startswith(" ") and p == p.lower() and p.strip() for p in found)


def test_phrase_options() -> None:
    seed = {"card_arrival": [" card"], "exchange_rate": [" rate"]}
    options = phrase_options(list(seed), seed, {"card_arrival": [" where is my card"], "exchange_rate": []})
    assert {"card_arrival": [" card arrival"], "exchange_rate": [" exchange rate"]} in options
    assert {"card_arrival": [" where is my card"], "exchange_rate": [" rate"]} in options
    assert {"card_arrival": [" card", " card arrival"], "exchange_rate": [" rate", " exchange rate"]} in options
    assert seed not in options and len(options) == len({json.dumps(o, sort_keys=True) for o in options})


def test_a_many_class_search_scores_phrase_options_not_single_tokens(tmp_path, tiny_llama_dir, tiny_lm) -> None:
    from promptlearning.search import SearchSettings, search
    from promptlearning.tasks import load_task

    labels = [f"intent_{name}" for name in "abcdefghij"]  # 10 classes: more than MANY_CLASSES
    rows = [{"text": f"message {i} about {label[-1]} {label[-1]}", "label": label} for label in labels
            for i in range(8)]  # fmt: skip
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = {"name": "many", "model": str(tiny_llama_dir), "data": {"root": str(tmp_path), "train": "train.jsonl",
            "eval": "train.jsonl"}, "template": {"input": "{{ text }}\nIntent:"},
            "verbalizer": {"words": {label: f" {label[-1]}" for label in labels}, "word_score": "mean"}}  # fmt: skip
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(task))
    settings = SearchSettings(dev_size=20, confirm_size=20, stages=("words",), budget=20)
    result = search(load_task(tmp_path / "task.yaml"), tiny_lm, settings, progress=False)
    options = {json.dumps(c.words, sort_keys=True) for c in result.candidates}
    names = {label: [f" intent {label[-1]}"] for label in labels}
    assert json.dumps(names, sort_keys=True) in options  # the names, as words
    assert all(
        len(ws) >= 1 and all(w.startswith(" ") for w in ws) for c in result.candidates for ws in c.words.values()
    )
