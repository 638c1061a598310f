"""PET ensembles distilled into one program: members trained, a pool soft-labelled, the final program
learns the soft labels and serves like any program; bad ensembles are refused before training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from promptlearning.errors import PromptLearningError

MEMBERS = [
    {"template": {"input": "review : {{ text }}\nsentiment :"}},
    {"template": {"input": "{{ text }} . it was"}, "verbalizer": {"words": {"negative": " bad", "positive": " good"}}},
]


def test_an_ensemble_is_trained_labels_a_pool_and_is_distilled(write_task, tmp_path: Path) -> None:
    from promptlearning.tasks import load_task, run_task
    from promptlearning.training.program import load_program

    task = write_task("ens", pet_ensemble={"members": MEMBERS, "temperature": 2.0, "distill_steps": 8})
    result = run_task(load_task(task))
    seed_dir = result.run_dir / "seed-1"
    assert (seed_dir / "member-1" / "checkpoints").exists() or any((seed_dir / "member-1").iterdir())
    assert (seed_dir / "member-2").is_dir() and (seed_dir / "distill").is_dir()
    rows = [json.loads(line) for line in (seed_dir / "soft_labels.jsonl").read_text().splitlines()]
    assert len(rows) == 48 - 2 * 8 * 2  # the pool rows no member trained or was selected on
    assert all("label" not in row and sum(row["soft_labels"].values()) == pytest.approx(1, abs=1e-5) for row in rows)
    metrics = json.loads((seed_dir / "metrics.json").read_text())
    assert len(metrics["ensemble"]["members_dev"]) == 2 and metrics["ensemble"]["unlabeled"] == len(rows)
    assert metrics["steps"] == 8  # the distillation's
    program = load_program(seed_dir / "program")  # one program, like any other
    assert program.spec.template["input"] == MEMBERS[0]["template"]["input"]
    assert {p.label for p in program.predict([{"text": "the film was great"}])} <= {"negative", "positive"}


def test_soft_labels_are_learned_as_a_distribution(tiny_llama_dir: Path) -> None:
    from promptlearning.training.pet import PetModel

    torch.manual_seed(0)
    from transformers import AutoModelForCausalLM

    model = PetModel(AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir)), [[5], [9]])
    ids = torch.randint(10, 300, (4, 6))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "answer_index": torch.full((4,), 5)}
    soft = torch.tensor([[0.7, 0.3]] * 4)
    out = model(**batch, soft_labels=soft)
    expected = -(soft * out["logits"].log_softmax(-1)).sum(-1).mean()
    assert torch.allclose(out["loss"], expected)
    hard = model(**batch, labels=torch.zeros(4, dtype=torch.long))["loss"]
    assert not torch.allclose(out["loss"], hard)


@pytest.mark.parametrize(
    ("ensemble", "message"),
    [
        ({"members": MEMBERS[:1]}, "one member is not an ensemble"),
        ({"members": []}, "at least 1"),
        ({"members": [*MEMBERS, {"verbalizer": {"words": {"neg": " bad", "pos": " good"}}}]}, "member 3's label words"),
        ({"members": MEMBERS, "temperature": 0}, "temperature"),
    ],
)
def test_bad_ensembles_are_refused_before_training(write_task, tmp_path: Path, ensemble, message) -> None:
    from promptlearning.tasks import load_task, run_task
    from promptlearning.tasks.config import TaskConfigError

    with pytest.raises((PromptLearningError, TaskConfigError), match=message):
        run_task(load_task(write_task("bad", pet_ensemble=ensemble)))
    assert not (tmp_path / "runs" / "bad" / "seed-1").exists()


def test_an_ensemble_needs_the_pet_objective(write_task) -> None:
    from promptlearning.tasks import load_task
    from promptlearning.tasks.config import TaskConfigError

    with pytest.raises(TaskConfigError, match="pet_ensemble needs objective pet"):
        load_task(write_task("head", objective="head", verbalizer=None, pet_ensemble={"members": MEMBERS}))
