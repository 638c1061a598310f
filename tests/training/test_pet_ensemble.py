"""PET ensembles distilled into one program: members trained, a pool soft-labelled, the final program
learns the soft labels and serves like any program; bad ensembles are refused before training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from promptlearning.errors import PromptLearningError

MEMBERS = [
    {"template": {"input": "review : {{ text }}\nsentiment :"}},
    {"template": {"input": "{{ text }} . it was"}, "verbalizer": {"words": {"negative": " bad", "positive": " good"}}},
]


def test_an_ensemble_is_trained_labels_a_pool_and_is_distilled(write_task, tmp_path: Path, capsys) -> None:
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
    stages = [line for line in capsys.readouterr().err.splitlines() if not line.startswith(("step", "early"))]
    assert stages[:2] == ["member 1 of 2 (16 training examples)", "member 2 of 2 (16 training examples)"]
    assert stages[2:] == ["labelling 16 unlabelled rows with the 2 members",
                          "distilling the ensemble into one program (16 examples)"]  # fmt: skip
    report = (result.run_dir / "report.md").read_text()  # the ensemble's table, without eval columns unless asked
    assert "## Ensemble" in report and "members' dev" in report and "members' eval" not in report
    assert "`ensemble/` is the undistilled ensemble as one program" in report
    assert (seed_dir / "ensemble" / "program.json").is_file()
    program = load_program(seed_dir / "program")  # one program, like any other
    assert program.spec.template["input"] == MEMBERS[0]["template"]["input"]
    member = load_program(seed_dir / "ensemble" / "member-2")  # each member is one too
    assert member.spec.template["input"] == MEMBERS[1]["template"]["input"] and member.labels == program.labels
    assert {p.label for p in program.predict([{"text": "the film was great"}])} <= {"negative", "positive"}


def test_members_and_the_undistilled_ensemble_are_scored_on_the_eval_split(write_task, sentiment_data: Path) -> None:
    from promptlearning.runs.directory import config_differences
    from promptlearning.tasks import load_task, run_task
    from promptlearning.training.program import load_program

    ensemble = {"members": [{}, MEMBERS[1]], "distill_steps": 4, "evaluate_members": True}
    run_dir = run_task(load_task(write_task("scored", pet_ensemble=ensemble))).run_dir
    scores = json.loads((run_dir / "seed-1" / "metrics.json").read_text())["ensemble"]
    assert len(scores["members_eval"]) == 2 and 0 <= scores["ensemble_eval"] <= 1
    summary = json.loads((run_dir / "summary.json").read_text())["ensemble"]  # over seeds, in percent
    assert summary["ensemble_eval"]["mean"] == pytest.approx(100 * scores["ensemble_eval"])
    assert [m["mean"] for m in summary["members_eval"]] == pytest.approx([100 * v for v in scores["members_eval"]])
    report = (run_dir / "report.md").read_text()
    assert "## Ensemble" in report and "members' eval" in report and f"{100 * scores['ensemble_eval']:.2f}" in report
    # the undistilled ensemble saved as one program predicts what was scored
    ensemble_program = load_program(run_dir / "seed-1" / "ensemble")
    eval_rows = [json.loads(line) for line in (sentiment_data / "test.jsonl").read_text().splitlines()]
    assert ensemble_program.evaluate(eval_rows)["accuracy"] == pytest.approx(scores["ensemble_eval"])
    assert ensemble_program.spec.metrics["accuracy"] == pytest.approx(scores["ensemble_eval"])
    # member 1 is the task's own pattern: the same program a run without the ensemble trains and scores
    alone = json.loads((run_task(load_task(write_task("alone"))).run_dir / "seed-1" / "metrics.json").read_text())
    assert scores["members_eval"][0] == pytest.approx(alone["eval"]["accuracy"])
    # scoring them changes nothing trained: a run may be resumed with it switched on
    assert (
        config_differences({"pet_ensemble": {"evaluate_members": False}}, {"pet_ensemble": {"evaluate_members": True}})
        == []
    )


def test_ipet_retrains_each_member_on_what_the_others_label(write_task, capsys) -> None:
    from promptlearning.tasks import load_task, run_task

    ensemble = {"members": MEMBERS, "distill_steps": 4, "generations": 2, "growth": 2.0}
    seed_dir = run_task(load_task(write_task("ipet", pet_ensemble=ensemble))).run_dir / "seed-1"
    for index in (1, 2):
        assert (seed_dir / "member-1").is_dir() and (seed_dir / "generation-2" / f"member-{index}").is_dir()
    metrics = json.loads((seed_dir / "metrics.json").read_text())
    generations = metrics["ensemble"]["generations_dev"]
    assert len(generations) == 2 and all(len(dev) == 2 for dev in generations)
    assert metrics["ensemble"]["members_dev"] == generations[-1]
    # 16 labelled rows (8 per label), grown 2x: up to 8 more of each label per member, from the other
    # member's labels (fewer where it gives a label to fewer pool rows)
    first, second = metrics["ensemble"]["generations_train_examples"]
    assert first == [16, 16] and all(16 < n <= 32 for n in second)
    logged = capsys.readouterr().err
    assert all(f"member {i} of 2, iPET generation 2 ({n} training examples)" in logged for i, n in enumerate(second, 1))


def test_members_bring_their_own_peft_method_and_learning_rate(write_task) -> None:
    from promptlearning.tasks import load_task, run_task
    from promptlearning.tasks.train.ensemble import member_config

    prompt_tuning = {"method": "prompt-tuning", "options": {"num_virtual_tokens": 4}}
    members = [MEMBERS[0], {**MEMBERS[1], "peft": prompt_tuning, "learning_rate": 0.03}]
    ensemble = {"members": members, "distill_steps": 4, "distill_labelled": True}
    config = load_task(write_task("own", pet_ensemble=ensemble))
    second = member_config(config, config.pet_ensemble.members[1])
    assert second.peft.method == "prompt-tuning" and second.training.learning_rate == 0.03
    first = member_config(config, config.pet_ensemble.members[0])
    assert first.peft == config.peft and first.training == config.training
    seed_dir = run_task(config).run_dir / "seed-1"
    for member, kind in (("member-1", "lora_"), ("member-2", "prompt_encoder")):
        with safe_open(next((seed_dir / member).rglob("trainable.safetensors")), "pt") as weights:
            assert all(kind in name for name in weights.keys()), member  # noqa: SIM118 (safe_open has no __iter__)
    metrics = json.loads((seed_dir / "metrics.json").read_text())
    # the 16 labelled rows join the pool rows in the distillation set, with their gold labels
    assert metrics["ensemble"]["distill_examples"] == metrics["ensemble"]["unlabeled"] + 16


def test_ipet_takes_the_most_confident_rows_of_each_label_in_the_labelled_proportions() -> None:
    from promptlearning.tasks.train.ensemble import generation_counts, pseudo_labelled

    labelled = [{"label": "a"}] * 3 + [{"label": "b"}]
    assert generation_counts(labelled, "label", 5.0, 2) == {"a": 12, "b": 4}
    assert generation_counts(labelled, "label", 5.0, 3) == {"a": 72, "b": 24}
    rows = [{"text": str(i)} for i in range(5)]
    distribution = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.95, 0.05], [0.45, 0.55]])
    chosen = pseudo_labelled(rows, distribution, ["a", "b"], {"a": 2, "b": 5}, "label")
    assert chosen == [{"text": "3", "label": "a"}, {"text": "0", "label": "a"},
                      {"text": "2", "label": "b"}, {"text": "4", "label": "b"}]  # fmt: skip


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


def test_an_ensemble_program_cannot_hold_itself(tiny_llama_dir: Path, tmp_path: Path) -> None:
    from promptlearning.errors import CorruptModelError
    from promptlearning.training import ProgramSpec, build_program, load_program

    spec = ProgramSpec(objective="pet", model=str(tiny_llama_dir), labels=["negative", "positive"],
                       template={"input": "review : {{ text }}\nsentiment :"},
                       verbalizer={"label_words": {"negative": " negative", "positive": " positive"}},
                       peft="lora", peft_options={"r": 2})  # fmt: skip
    ensemble = tmp_path / "ens"
    build_program(spec).save(ensemble / "member-1")
    (ensemble / "loop").symlink_to(ensemble, target_is_directory=True)  # a member that is the ensemble again
    members = [{"path": path, "weight": 1.0, "inputs": ["text"]} for path in ("member-1", "loop")]
    member_spec = json.loads((ensemble / "member-1" / "program.json").read_text())
    ensemble_spec = {**member_spec, "objective": "ensemble", "peft": None, "members": members}
    (ensemble / "program.json").write_text(json.dumps(ensemble_spec))
    with pytest.raises(CorruptModelError, match="an ensemble's member cannot be an ensemble"):
        load_program(ensemble)


def _saved_member(model_dir: Path, directory: Path, peft: str, seed: int) -> Path:
    """A PET member over ``model_dir`` with a random (non-zero) adapter, saved to ``directory``."""
    from promptlearning.training import ProgramSpec, build_program

    spec = ProgramSpec(objective="pet", model=str(model_dir), labels=["negative", "positive"],
                       template={"input": "review : {{ text }}\nsentiment :"},
                       verbalizer={"label_words": {"negative": " negative", "positive": " positive"}},
                       peft=peft, peft_options={"r": 2} if peft == "lora" else {"num_virtual_tokens": 3})  # fmt: skip
    program = build_program(spec, seed=seed)
    with torch.no_grad():
        for name, parameter in program.module.named_parameters():
            if "lora_B" in name or "prompt_encoder" in name:  # lora_B starts at zero: give members their own say
                parameter.normal_(0, 0.5)
    program.save(directory)
    return directory


def _adapter(name: str) -> bool:
    return "lora_" in name or "prompt_encoder" in name


def test_members_over_one_base_model_share_its_weights_and_predict_the_same(
    tiny_llama_dir: Path, tiny_llama_builder, tmp_path: Path
) -> None:
    from promptlearning.training import load_program
    from promptlearning.training.ensemble_program import EnsembleProgram

    other_base = tiny_llama_builder(tmp_path / "other-base", seed=7)  # same tokenizer, other weights
    bases = [tiny_llama_dir, tiny_llama_dir, tiny_llama_dir, other_base]
    methods = ["lora", "lora", "prompt-tuning", "lora"]
    paths = [_saved_member(base, tmp_path / f"m{i}", peft, seed=i)
             for i, (base, peft) in enumerate(zip(bases, methods, strict=True))]  # fmt: skip
    alone = [(load_program(path), 0.5 + i) for i, path in enumerate(paths)]  # each with its own copy
    EnsembleProgram.of(alone, ["negative", "positive"]).save(tmp_path / "ens")

    ensemble = load_program(tmp_path / "ens")
    storages = [{p.data_ptr() for p in member.module.parameters()} for member, _ in ensemble.members]
    base = [{p.data_ptr() for name, p in member.module.named_parameters() if p.dim() > 1 and not _adapter(name)}
            for member, _ in ensemble.members]  # fmt: skip
    assert base[1] <= storages[0] and base[2] <= storages[0]  # a LoRA and a prompt-tuned member: one base
    assert not base[3] & storages[0]  # another base model's matrices are its own
    own = {p.data_ptr() for p in alone[1][0].module.parameters()}
    assert not own & storages[1]  # loading the ensemble never touched the programs loaded alone
    rows = [{"text": t} for t in ("a fine film", "dull and long", "the actors shine", "no")]
    expected = EnsembleProgram(ensemble.spec, alone).distribution(rows)
    assert torch.allclose(ensemble.distribution(rows), expected, atol=1e-6)
    assert len({tuple(p.probabilities.values()) for p in ensemble.predict(rows)}) > 1  # the members do differ
