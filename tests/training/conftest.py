"""Small labelled data sets with a learnable signal, and training task files over the tiny models."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

GOOD = ["great", "wonderful", "good", "loved"]
BAD = ["awful", "dull", "bad", "tedious"]
FILLER = ["the film", "this movie", "the story", "the acting", "it"]


def sentiment_rows(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        word = rng.choice(GOOD if label == "positive" else BAD)
        rows.append({"text": f"{rng.choice(FILLER)} was {word}", "label": label})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def make_rows():
    """``make_rows(n, seed)``: sentiment rows whose label is told by one word."""
    return sentiment_rows


@pytest.fixture
def sentiment_data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    write_jsonl(root / "train.jsonl", sentiment_rows(48, 0))
    write_jsonl(root / "test.jsonl", sentiment_rows(16, 1))
    return root


@pytest.fixture
def write_task(tmp_path: Path, sentiment_data: Path, tiny_llama_dir: Path):
    """Write a PET training task over the tiny llama; keyword arguments update the YAML mapping."""

    def write(name: str = "tiny", **updates) -> Path:
        task = {
            "type": "train",
            "name": name,
            "data": {"root": str(sentiment_data), "train": "train.jsonl", "eval": "test.jsonl"},
            "model": str(tiny_llama_dir),
            "objective": "pet",
            "template": {"input": "review : {{ text }}\nsentiment :"},
            "verbalizer": {"words": {"negative": " negative", "positive": " positive"}},
            "peft": {"method": "lora", "options": {"r": 4}},
            "few_shot": {"k": 8, "seeds": [1]},
            "training": {"max_steps": 12, "eval_every": 4, "batch_size": 4, "learning_rate": 0.01, "log_every": 4},
            "output_dir": str(tmp_path / "runs"),
        }
        for key, value in updates.items():
            task[key] = value
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(task))
        return path

    return write
