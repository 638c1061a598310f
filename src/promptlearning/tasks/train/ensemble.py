"""``pet_ensemble``: PET's ensemble of patterns distilled into one program (Schick & Schütze 2021).

Per seed::

    <seed>/member-1/ … member-M/   each pattern trained on the labelled examples (checkpoints, program)
    <seed>/soft_labels.jsonl       the unlabelled pool with the ensemble's label distribution
    <seed>/distill/                the final program trained on those soft labels (its checkpoints)

Every member's logits are softened by ``temperature`` and the members are averaged weighted by
their dev accuracy (PET weighs by accuracy too, measured before training; here after, on dev, the
held-out examples each member was selected on). The final program learns the distributions with a
soft cross-entropy, and is what the seed's ``program/`` holds: one program, served like any other.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from promptlearning.errors import PromptLearningError
from promptlearning.io import write_atomically
from promptlearning.loading import load_examples, task_data_root
from promptlearning.tasks.train.config import EnsembleMember, TrainTaskConfig


def member_config(config: TrainTaskConfig, member: EnsembleMember) -> TrainTaskConfig:
    """The task as one member trains it: its template and label words in place of the task's."""
    changes: dict[str, Any] = {"pet_ensemble": None}
    if member.template is not None:
        changes["template"] = member.template
    if member.verbalizer is not None:
        changes["verbalizer"] = member.verbalizer
    return config.model_copy(update=changes)


def check_ensemble(config: TrainTaskConfig) -> None:
    """Every member (and the final pattern) names the same labels as the task."""
    from promptlearning.prompts.template import PromptTemplate
    from promptlearning.prompts.verbalizer import Verbalizer

    section = config.pet_ensemble
    assert section is not None and config.verbalizer is not None
    labels = set(config.verbalizer.words)
    for name, member in [*((f"member {i}", m) for i, m in enumerate(section.members, 1)), ("final", section.final)]:
        if member is None:
            continue
        if member.template is not None:
            PromptTemplate(**member.template.model_dump())
        if member.verbalizer is not None:
            Verbalizer(member.verbalizer.words)
            if set(member.verbalizer.words) != labels:
                raise PromptLearningError(f"pet_ensemble {name}'s label words name {sorted(member.verbalizer.words)}; "
                                          f"the task's labels are {sorted(labels)}")  # fmt: skip


def unlabeled_pool(config: TrainTaskConfig, pool: Sequence[Mapping[str, Any]], used: Sequence[Mapping[str, Any]],
                   seed: int) -> list[dict[str, Any]]:  # fmt: skip
    """The rows the ensemble labels: the section's file, or the pool rows no member trained or chose on."""
    section = config.pet_ensemble
    assert section is not None
    if section.unlabeled:
        rows = load_examples(section.unlabeled, root=task_data_root(config.data.root))
    else:
        taken = {id(row) for row in used}
        rows = [dict(row) for row in pool if id(row) not in taken]
    if not rows:
        raise PromptLearningError("pet_ensemble has no unlabelled rows to label: give pet_ensemble.unlabeled")
    if section.unlabeled_limit and len(rows) > section.unlabeled_limit:
        rows = random.Random(seed).sample(rows, section.unlabeled_limit)
    return [{k: v for k, v in row.items() if k != config.data.label_field} for row in rows]


def ensemble_distribution(members: Sequence[tuple[Any, float]], rows: Sequence[Mapping[str, Any]], labels: list[str],
                          temperature: float, batch_size: int) -> torch.Tensor:  # fmt: skip
    """The weighted mean of the members' softened label distributions, columns in ``labels`` order."""
    total = torch.zeros(len(rows), len(labels))
    weights = [max(weight, 1e-6) for _, weight in members]
    for (program, _), weight in zip(members, weights, strict=True):
        logits = torch.stack(program.logits(program.encode(rows, with_label=False), batch_size=batch_size))
        order = [program.labels.index(label) for label in labels]
        total += weight * (logits[:, order] / temperature).softmax(-1)
    return total / sum(weights)


def train_pet_ensemble(
    config: TrainTaskConfig,
    pool: Sequence[Mapping[str, Any]],
    train_set: Sequence[Mapping[str, Any]],
    dev_set: Sequence[Mapping[str, Any]],
    directory: Path,
    *,
    seed: int,
    resume: bool = False,
    progress: bool | None = None,
) -> tuple[Any, Any, dict[str, Any]]:
    """Train the members, label the unlabelled pool, distil: the final program, its loop's result and
    what the ensemble did (members' dev accuracy, pool size, the ensemble's own dev accuracy)."""
    from promptlearning.tasks.train.run import _scalars, program_spec, train_program, training_arguments
    from promptlearning.training.loop import train, training_state
    from promptlearning.training.program import build_program

    section = config.pet_ensemble
    assert section is not None
    members = []
    for index, member in enumerate(section.members, 1):
        where = directory / f"member-{index}"
        program, result = train_program(member_config(config, member), train_set, dev_set, where, seed=seed,
                                        resume=resume, progress=progress)  # fmt: skip
        members.append((program, float(result.best_metric or 0.0)))
    unlabeled = unlabeled_pool(config, pool, [*train_set, *dev_set], seed)
    final_config = member_config(config, section.final or section.members[0])
    spec = program_spec(final_config, train_set, seed)
    soft = ensemble_distribution(members, unlabeled, spec.labels, section.temperature, config.eval_batch_size)
    dev_soft = ensemble_distribution(members, dev_set, spec.labels, 1.0, config.eval_batch_size)
    gold = [spec.labels.index(str(row[config.data.label_field])) for row in dev_set]
    ensemble_dev = float((dev_soft.argmax(-1) == torch.tensor(gold)).float().mean()) if gold else 0.0
    lines = [json.dumps({**row, "soft_labels": dict(zip(spec.labels, p.tolist(), strict=True))}, ensure_ascii=False)
             for row, p in zip(unlabeled, soft, strict=True)]  # fmt: skip
    write_atomically(directory / "soft_labels.jsonl", "".join(line + "\n" for line in lines))
    notes = {
        "members_dev": [weight for _, weight in members],
        "ensemble_dev": ensemble_dev,
        "unlabeled": len(unlabeled),
    }
    del members
    args = training_arguments(final_config, seed)
    if section.distill_steps:
        args.max_steps = section.distill_steps
    final = build_program(spec, total_steps=args.max_steps, seed=seed, device=training_state(config.device).device)
    features = [{**f, "soft_labels": tuple(p.tolist())}
                for f, p in zip(final.encode(unlabeled, with_label=False), soft, strict=True)]  # fmt: skip
    result = train(
        final.module, features, final.featurizer.collate,
        lambda _: _scalars(final.evaluate(dev_set, batch_size=config.eval_batch_size)), args, directory / "distill",
        resume=resume, progress=progress, after_step=final.after_step, device=config.device,
    )  # fmt: skip
    return final, result, notes
