"""PET with LoRA on the real SmolLM2: a few steps train, the program saves, reloads and predicts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import promptlearning
from promptlearning.models.hub import pull
from promptlearning.training import ProgramSpec, TrainingArguments, build_program, train

pytestmark = pytest.mark.integration


def test_pet_lora_trains_and_round_trips(tmp_path: Path, reviews: list[dict[str, str]]) -> None:
    pull("smollm2-135m-instruct", progress=False)
    spec = ProgramSpec(
        objective="pet", model="smollm2-135m-instruct", template={"input": "Review: {{ text }}\nSentiment:"},
        verbalizer={"label_words": {"negative": " negative", "positive": " positive"}}, peft="lora",
    )  # fmt: skip
    program = build_program(spec, seed=0)
    features = program.encode(reviews)
    batch = program.featurizer.collate(features)
    with torch.no_grad():
        before = program.module(**batch)["loss"].item()
    args = TrainingArguments(max_steps=4, eval_every=4, batch_size=8, learning_rate=1e-3)
    evaluate = lambda _: {"accuracy": program.evaluate(reviews)["accuracy"]}  # noqa: E731
    train(program.module, features, program.featurizer.collate, evaluate, args, tmp_path / "run", progress=False)
    with torch.no_grad():
        after = program.module(**batch)["loss"].item()
    assert after < before
    assert program.evaluate(reviews)["accuracy"] == 1.0
    program.save(tmp_path / "program")
    restored = promptlearning.load_program(tmp_path / "program")
    assert [p.label for p in restored.predict(reviews)] == [r["label"] for r in reviews]
    assert restored.generate(["Review: a fine film.\nSentiment:"], max_new_tokens=2)[0].strip()
