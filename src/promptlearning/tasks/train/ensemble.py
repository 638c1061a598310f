"""``pet_ensemble``: PET's ensemble of patterns distilled into one program (Schick & Schütze 2021).

Per seed::

    <seed>/member-1/ … member-M/   each pattern trained on the labelled examples (its checkpoints)
    <seed>/generation-2/member-1/  iPET (``generations: 2`` or more): each member retrained on the
                                   labelled examples plus the pool rows the other members label
                                   most confidently, the set growing ``growth`` times per generation
    <seed>/soft_labels.jsonl       the unlabelled pool with the (last generation's) ensemble's label distribution
    <seed>/ensemble/               the (last generation's) members as one program: the undistilled
                                   ensemble, each member also a program of its own (``ensemble/member-N``)
    <seed>/distill/                the final program trained on those soft labels (its checkpoints)

Every member's logits are softened by ``temperature`` and the members are averaged weighted by
their dev accuracy (PET weighs by accuracy too, measured before training; here after, on dev, the
held-out examples each member was selected on). The final program learns the distributions with a
soft cross-entropy, and is what the seed's ``program/`` holds: one program, served like any other.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from promptlearning.errors import PromptLearningError
from promptlearning.io import write_atomically
from promptlearning.loading import load_examples, task_data_root
from promptlearning.tasks.train.config import EnsembleMember, TrainTaskConfig
from promptlearning.training.ensemble_program import EnsembleProgram, member_distributions, weighted_mean
from promptlearning.training.loop import announce


def member_config(config: TrainTaskConfig, member: EnsembleMember) -> TrainTaskConfig:
    """The task as one member trains it: its template, label words, PEFT method and learning rate in
    place of the task's."""
    changes: dict[str, Any] = {"pet_ensemble": None}
    for field in ("template", "verbalizer", "peft"):
        if getattr(member, field) is not None:
            changes[field] = getattr(member, field)
    if member.learning_rate is not None:
        changes["training"] = config.training.model_copy(update={"learning_rate": member.learning_rate})
    return config.model_copy(update=changes)


def check_ensemble(config: TrainTaskConfig) -> None:
    """Every member (and the final pattern) passes the task's own checks (template, label words, PEFT
    options) and names the same labels as the task, before anything trains."""
    from promptlearning.tasks.train.run import check_train_task

    section = config.pet_ensemble
    assert section is not None and config.verbalizer is not None
    labels = set(config.verbalizer.words)
    for name, member in [*((f"member {i}", m) for i, m in enumerate(section.members, 1)), ("final", section.final)]:
        if member is None:
            continue
        check_train_task(member_config(config, member))
        if member.verbalizer is not None and set(member.verbalizer.words) != labels:
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


def accuracy(distribution: torch.Tensor, rows: Sequence[Mapping[str, Any]], labels: list[str],
             label_field: str) -> float:  # fmt: skip
    """Share of ``rows`` whose gold label is the distribution's most likely one (0 for no rows; a
    gold label outside ``labels`` counts as wrong)."""
    if not rows:
        return 0.0
    index = {label: i for i, label in enumerate(labels)}
    gold = torch.tensor([index.get(str(row[label_field]), -1) for row in rows])
    return float((distribution.argmax(-1) == gold).float().mean())


def scores_on_eval(members: Sequence[tuple[Any, float]], eval_set: Sequence[Mapping[str, Any]], labels: list[str],
                   label_field: str, batch_size: int) -> dict[str, Any]:  # fmt: skip
    """Each member's accuracy on the eval split and the undistilled ensemble's: what distillation keeps."""
    distributions = member_distributions(members, eval_set, labels, 1.0, batch_size)
    mean = weighted_mean(distributions, [weight for _, weight in members])
    return {
        "members_eval": [accuracy(d, eval_set, labels, label_field) for d in distributions],
        "ensemble_eval": accuracy(mean, eval_set, labels, label_field),
    }


def one_hot(labels: Sequence[str], label: str) -> tuple[float, ...]:
    """A gold label as a distribution over ``labels``."""
    return tuple(1.0 if name == label else 0.0 for name in labels)


def pseudo_labelled(rows: Sequence[Mapping[str, Any]], distribution: torch.Tensor, labels: list[str],
                    counts: Mapping[str, int], label_field: str) -> list[dict[str, Any]]:  # fmt: skip
    """iPET's new training rows: for each label, the ``counts[label]`` rows the distribution gives that
    label most confidently (the paper samples by confidence; the most confident is the deterministic
    version), each with that label."""
    chosen = []
    winners = distribution.argmax(-1)
    for column, label in enumerate(labels):
        candidates = (winners == column).nonzero().flatten().tolist()
        candidates.sort(key=lambda i: -float(distribution[i, column]))
        chosen += [{**rows[i], label_field: label} for i in candidates[: counts.get(label, 0)]]
    return chosen


def generation_counts(train_set: Sequence[Mapping[str, Any]], label_field: str, growth: float,
                      generation: int) -> dict[str, int]:  # fmt: skip
    """Pseudo-labelled rows per label for ``generation`` (2, 3, ...): the training set grows ``growth``
    times per generation, keeping the labelled examples' label proportions."""
    shares = Counter(str(row[label_field]) for row in train_set)
    return {label: round(n * (growth ** (generation - 1) - 1)) for label, n in shares.items()}


def train_members(config: TrainTaskConfig, train_sets: Sequence[Sequence[Mapping[str, Any]]],
                  dev_set: Sequence[Mapping[str, Any]], directory: Path, *, seed: int, resume: bool,
                  progress: bool | None, generation: int = 1) -> list[tuple[Any, float]]:  # fmt: skip
    """One generation: member ``i`` trained on ``train_sets[i]``; each with its dev accuracy."""
    from promptlearning.tasks.train.run import train_program

    section = config.pet_ensemble
    assert section is not None
    members = []
    which = f", iPET generation {generation}" if generation > 1 else ""
    for index, (member, train_set) in enumerate(zip(section.members, train_sets, strict=True), 1):
        announce(f"member {index} of {len(section.members)}{which} ({len(train_set)} training examples)")
        program, result = train_program(member_config(config, member), train_set, dev_set,
                                        directory / f"member-{index}", seed=seed, resume=resume,
                                        progress=progress)  # fmt: skip
        members.append((program, float(result.best_metric or 0.0)))
    return members


def train_pet_ensemble(
    config: TrainTaskConfig,
    pool: Sequence[Mapping[str, Any]],
    train_set: Sequence[Mapping[str, Any]],
    dev_set: Sequence[Mapping[str, Any]],
    directory: Path,
    *,
    seed: int,
    eval_set: Sequence[Mapping[str, Any]] = (),
    resume: bool = False,
    progress: bool | None = None,
) -> tuple[Any, Any, dict[str, Any]]:
    """Train the members (over iPET's generations), label the unlabelled pool, distil: the final
    program, its loop's result and what the ensemble did (members' dev accuracy per generation, pool
    size, the ensemble's own dev accuracy; with ``evaluate_members``, the members' and the undistilled
    ensemble's accuracy on ``eval_set``)."""
    from promptlearning.tasks.train.run import _scalars, program_spec, training_arguments
    from promptlearning.training.loop import train, training_state
    from promptlearning.training.program import build_program

    section = config.pet_ensemble
    assert section is not None
    unlabeled = unlabeled_pool(config, pool, [*train_set, *dev_set], seed)
    final_config = member_config(config, section.final or section.members[0])
    spec = program_spec(final_config, train_set, seed)
    label_field, size = config.data.label_field, len(section.members)
    where = {"seed": seed, "resume": resume, "progress": progress}
    members = train_members(config, [train_set] * size, dev_set, directory, **where)
    history, sizes = [[weight for _, weight in members]], [[len(train_set)] * size]
    for generation in range(2, section.generations + 1):
        # iPET: member i learns from the labelled rows plus the pool as the other members label it
        distributions = member_distributions(members, unlabeled, spec.labels, section.temperature,
                                             config.eval_batch_size)  # fmt: skip
        weights = [weight for _, weight in members]
        counts = generation_counts(train_set, label_field, section.growth, generation)
        others = [weighted_mean([d for j, d in enumerate(distributions) if j != i], [w for j, w in enumerate(weights)
                                if j != i]) for i in range(size)]  # fmt: skip
        train_sets = [[*train_set, *pseudo_labelled(unlabeled, mean, spec.labels, counts, label_field)]
                      for mean in others]  # fmt: skip
        del members, distributions
        members = train_members(config, train_sets, dev_set, directory / f"generation-{generation}", **where,
                                generation=generation)  # fmt: skip
        history.append([weight for _, weight in members])
        sizes.append([len(rows) for rows in train_sets])
    announce(f"labelling {len(unlabeled):,} unlabelled rows with the {len(members)} members")
    ensemble = EnsembleProgram.of(members, spec.labels)
    soft = ensemble.distribution(unlabeled, temperature=section.temperature, batch_size=config.eval_batch_size)
    ensemble_dev = accuracy(ensemble.distribution(dev_set, batch_size=config.eval_batch_size), dev_set, spec.labels,
                            label_field)  # fmt: skip
    lines = [json.dumps({**row, "soft_labels": dict(zip(spec.labels, p.tolist(), strict=True))}, ensure_ascii=False)
             for row, p in zip(unlabeled, soft, strict=True)]  # fmt: skip
    write_atomically(directory / "soft_labels.jsonl", "".join(line + "\n" for line in lines))
    notes: dict[str, Any] = {"members_dev": history[-1], "ensemble_dev": ensemble_dev, "unlabeled": len(unlabeled)}
    if section.generations > 1:
        notes["generations_dev"], notes["generations_train_examples"] = history, sizes
    if section.evaluate_members and eval_set:
        announce(f"scoring the members and their ensemble on the eval split ({len(eval_set):,} rows)")
        notes.update(scores_on_eval(members, eval_set, spec.labels, label_field, config.eval_batch_size))
    if training_state(config.device).is_main_process:  # the undistilled ensemble, served as one program
        scores = {
            "dev_accuracy": ensemble_dev,
            **({"accuracy": notes["ensemble_eval"]} if "ensemble_eval" in notes else {}),
        }
        ensemble.save(directory / "ensemble", metrics=scores)
    del members, ensemble
    args = training_arguments(final_config, seed)
    if section.distill_steps:
        args.max_steps = section.distill_steps
    final = build_program(spec, total_steps=args.max_steps, seed=seed, device=training_state(config.device).device)
    features = [{**f, "soft_labels": tuple(p.tolist())}
                for f, p in zip(final.encode(unlabeled, with_label=False), soft, strict=True)]  # fmt: skip
    if section.distill_labelled:
        features += [{**f, "soft_labels": one_hot(spec.labels, str(row[label_field]))}
                     for f, row in zip(final.encode(train_set, with_label=False), train_set, strict=True)]  # fmt: skip
    notes["distill_examples"] = len(features)
    announce(f"distilling the ensemble into one program ({len(features):,} examples)")
    result = train(
        final.module, features, final.featurizer.collate,
        lambda _: _scalars(final.evaluate(dev_set, batch_size=config.eval_batch_size)), args, directory / "distill",
        resume=resume, progress=progress, after_step=final.after_step, device=config.device,
    )  # fmt: skip
    return final, result, notes
