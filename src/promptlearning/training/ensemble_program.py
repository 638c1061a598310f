"""An ensemble of trained prompt programs that predicts as one: PET's undistilled ensemble.

Each member's label logits are softened by a temperature, turned into a distribution and averaged,
weighted by the member's dev accuracy. ``pet_ensemble`` labels its pool this way (at temperature 2)
and saves the members as one of these (at temperature 1, the ensemble it scores on the eval split),
so the ensemble can be served instead of the program distilled from it: better on some tasks, at
the cost of one forward pass per member. The directory is self-contained::

    program.json     objective "ensemble", labels, and per member its directory, weight, input fields
    member-1/ …      each a program of its own (loads, predicts and serves alone too)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from promptlearning.errors import CorruptModelError
from promptlearning.io import write_json_atomically
from promptlearning.methods.classifier import Prediction
from promptlearning.prompts.examples import as_examples


def member_distributions(members: Sequence[tuple[Any, float]], rows: Sequence[Mapping[str, Any]], labels: list[str],
                         temperature: float, batch_size: int) -> list[torch.Tensor]:  # fmt: skip
    """Each member's softened label distribution over ``rows``, columns in ``labels`` order."""
    distributions = []
    for program, _ in members:
        logits = torch.stack(program.logits(program.encode(rows, with_label=False), batch_size=batch_size))
        order = [program.labels.index(label) for label in labels]
        distributions.append((logits[:, order] / temperature).softmax(-1))
    return distributions


def weighted_mean(distributions: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """The members' distributions averaged, weighted by their dev accuracy (never by zero)."""
    weights = [max(weight, 1e-6) for weight in weights]
    return sum(w * d for w, d in zip(weights, distributions, strict=True)) / sum(weights)


class EnsembleProgram:
    """Trained programs voting with weights: ``predict`` gives the weighted mean of their label
    distributions (softmax of each member's logits at temperature 1)."""

    def __init__(self, spec: Any, members: Sequence[tuple[Any, float]]) -> None:
        self.spec = spec
        self.members = list(members)

    @classmethod
    def of(cls, members: Sequence[tuple[Any, float]], labels: Sequence[str]) -> EnsembleProgram:
        """The ensemble of ``members`` (each a program and its dev accuracy), its classes ``labels``."""
        from promptlearning.training.program import ProgramSpec, input_fields

        first = members[0][0].spec
        entries = [{"path": f"member-{i}", "weight": weight, "inputs": input_fields(program.spec)}
                   for i, (program, weight) in enumerate(members, 1)]  # fmt: skip
        spec = ProgramSpec(
            objective="ensemble", model=first.model, labels=list(labels), template=first.template,
            label_field=first.label_field, max_length=max(p.spec.max_length for p, _ in members), members=entries,
        )  # fmt: skip
        return cls(spec, members)

    @property
    def labels(self) -> list[str]:
        return list(self.spec.labels)

    @property
    def tokenizer(self) -> Any:
        """Member 1's tokenizer (the server counts an input's tokens with it)."""
        return getattr(self.members[0][0], "tokenizer", None)

    def distribution(
        self, examples: Sequence[Mapping[str, Any]], *, temperature: float = 1.0, batch_size: int = 16
    ) -> torch.Tensor:
        """The ensemble's label distribution per example, columns in :attr:`labels` order (the members'
        logits softened by ``temperature``: 1 predicts, ``pet_ensemble`` labels its pool at 2)."""
        distributions = member_distributions(self.members, examples, self.labels, temperature, batch_size)
        return weighted_mean(distributions, [weight for _, weight in self.members])

    def predict(
        self, examples: Iterable[Mapping[str, Any]], *, batch_size: int = 16, progress: bool = False
    ) -> list[Prediction]:
        """A :class:`Prediction` per example; its scores are the log of the ensemble's probabilities."""
        examples = as_examples(examples, "predict")
        if not examples:
            return []
        results = []
        for row in self.distribution(examples, batch_size=batch_size).tolist():
            probabilities = dict(zip(self.labels, row, strict=True))
            scores = {label: math.log(max(p, 1e-45)) for label, p in probabilities.items()}
            results.append(Prediction(max(probabilities, key=probabilities.__getitem__), probabilities, scores))
        return results

    def predict_all(
        self, examples: Sequence[Mapping[str, Any]], *, batch_size: int = 16, progress: bool = False
    ) -> list[Prediction]:
        return self.predict(examples, batch_size=batch_size, progress=progress)

    def evaluate(
        self, examples: Sequence[Mapping[str, Any]], *, batch_size: int = 16, progress: bool = False
    ) -> dict[str, float]:
        """Accuracy, macro-F1 and calibration on labelled examples."""
        return self.evaluate_predictions(examples, self.predict(examples, batch_size=batch_size))

    def evaluate_predictions(self, examples: Sequence[Mapping[str, Any]], predictions: Sequence[Any]) -> dict[str, Any]:
        from promptlearning.evaluation.metrics import classification_metrics

        gold = [str(e[self.spec.label_field]) for e in examples]
        return classification_metrics(gold, predictions, self.labels)

    def save(self, directory: str | Path, *, metrics: Mapping[str, Any] | None = None) -> Path:
        """Write each member's program, then ``program.json`` last."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for entry, (program, _) in zip(self.spec.members, self.members, strict=True):
            program.save(directory / entry["path"])
        if metrics is not None:
            self.spec.metrics = dict(metrics)
        write_json_atomically(directory / "program.json", asdict(self.spec))
        return directory


def check_members(spec: Any, directory: Path) -> None:
    """An ensemble's ``program.json`` names member directories inside its own, each a trained
    classifier over the ensemble's labels, with a finite weight and its input fields."""
    from promptlearning.training.program import read_program_spec

    spec_path = directory / "program.json"
    if not isinstance(spec.members, list) or len(spec.members) < 2:
        raise CorruptModelError(f"{spec_path}: an ensemble program needs at least two members")
    for entry in spec.members:
        member_dir = directory / _member_path(entry, spec_path)
        if _objective_of(member_dir) == "ensemble":  # refused before reading it: no ensemble inside itself
            raise CorruptModelError(f"{member_dir}: an ensemble's member cannot be an ensemble")
        member = read_program_spec(member_dir)
        if member.objective not in ("pet", "head"):
            raise CorruptModelError(f"{member_dir}: an ensemble's members are trained classifiers (pet or head), "
                                    f"not {member.objective!r} programs")  # fmt: skip
        if set(member.labels) != set(spec.labels):
            raise CorruptModelError(f"{member_dir}: its labels {member.labels} are not the ensemble's {spec.labels}")


def _member_path(entry: Any, spec_path: Path) -> str:
    path = entry.get("path") if isinstance(entry, dict) else None
    parts = Path(path).parts if isinstance(path, str) else ()
    if not parts or Path(path).is_absolute() or any(part in (".", "..") for part in parts):
        raise CorruptModelError(f"{spec_path}: a member's path must be a directory inside the program, got {path!r}")
    weight, inputs = entry.get("weight"), entry.get("inputs")
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight < math.inf:
        raise CorruptModelError(f"{spec_path}: member {path!r} needs a weight of 0 or more, got {weight!r}")
    if not isinstance(inputs, list) or not all(isinstance(name, str) for name in inputs):
        raise CorruptModelError(f"{spec_path}: member {path!r} needs its input fields (a list of names)")
    return path


def _objective_of(directory: Path) -> Any:
    try:
        return json.loads((directory / "program.json").read_text()).get("objective")
    except (OSError, ValueError, AttributeError):  # read_program_spec says what is wrong with it
        return None


def load_ensemble_program(spec: Any, directory: Path, *, device: Any = "auto") -> EnsembleProgram:
    """Load every member (each checked already by :func:`check_members`); members over the same base
    model keep one copy of its weights (:func:`share_identical_weights`), shared as each loads."""
    from promptlearning.training.program import load_program

    members, loaded_weights = [], {}
    for entry in spec.members:
        program = load_program(directory / entry["path"], device=device)
        share_identical_weights(program.module, loaded_weights)
        members.append((program, float(entry["weight"])))
    return EnsembleProgram(spec, members)


def share_identical_weights(module: torch.nn.Module, loaded: dict[tuple[Any, ...], list[torch.nn.Parameter]]) -> None:
    """Point ``module``'s parameters at equal tensors already ``loaded`` (an index this fills in with
    the tensors ``module`` keeps), so its own copies are freed. For inference only: shared tensors
    must not be trained or moved apart.

    Each member of an ensemble is usually the same base model with its own adapter, loaded again
    (3 x 540 MB for SmolLM2's members). Tensors are matched by value (a key of shape, dtype, device
    and first values, then ``torch.equal``), not by name: a LoRA member's ``q_proj.base_layer.weight``
    is a prompt-tuned member's ``q_proj.weight``, and members over different base models share
    nothing. Hand-written: peft shares one base only between adapters loaded into one model."""
    replacement: dict[int, torch.nn.Parameter] = {}
    for parameter in module.parameters():  # each tensor once, however many modules hold it
        same = loaded.setdefault(_tensor_key(parameter), [])
        match = next((candidate for candidate in same if torch.equal(candidate, parameter)), None)
        if match is None:
            same.append(parameter)
        else:
            replacement[id(parameter)] = match
    for submodule in module.modules():  # every holder, so tied weights (lm_head = embed_tokens) follow too
        for name, parameter in list(submodule._parameters.items()):
            if parameter is not None and id(parameter) in replacement:
                submodule._parameters[name] = replacement[id(parameter)]


def _tensor_key(tensor: torch.Tensor) -> tuple[Any, ...]:
    """Shape, dtype, device and the first values: equal tensors have equal keys, most others do not."""
    return tuple(tensor.shape), tensor.dtype, tensor.device, tuple(tensor.detach().flatten()[:8].tolist())
