"""Prompt programs: a trained method as one directory that can be loaded and run.

A program directory holds::

    program.json        what to rebuild: objective, base model reference, PEFT method and options,
                        template, verbalizer, chosen demonstrations, labels, max_length, metrics
    adapter/            PEFT weights (``save_pretrained``, safetensors)      -- with a PEFT method
    weights.safetensors all trained weights                                   -- full fine-tuning

The base model itself is referenced (embedded name, directory or hub id), not copied.

    program = build_program(ProgramSpec(objective="pet", model="smollm2-135m-instruct", ...))
    ...train...
    program.save("runs/sst2-pet")
    program = load_program("runs/sst2-pet")
    program.predict([{"text": "a gorgeous film"}])
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors
from torch import nn

from promptlearning.errors import CorruptModelError, PromptLearningError, UnsupportedOperationError
from promptlearning.io import write_atomically, write_json_atomically
from promptlearning.methods.classifier import Prediction, PromptClassifier
from promptlearning.methods.spec import ClassifierSpec, build_classifier
from promptlearning.models import resolve_model_dir
from promptlearning.models.hf import HFLanguageModel, PromptTokens, model_family
from promptlearning.models.hf.masked import HFMaskedLM
from promptlearning.models.hf.seq2seq import HFSeq2SeqLM
from promptlearning.models.interface import LanguageModel
from promptlearning.progress import progress_bar, quiet_third_party
from promptlearning.prompts.examples import as_examples
from promptlearning.prompts.template import Demonstration, PromptTemplate
from promptlearning.prompts.verbalizer import Verbalizer, label_distribution
from promptlearning.training.heads import HeadModel, SequenceFeaturizer, TokenFeaturizer
from promptlearning.training.peft_methods import adalora_orthogonality_penalty, apply_peft, get_method, quiet_peft
from promptlearning.training.pet import PetFeaturizer, PetModel

if TYPE_CHECKING:
    from promptlearning.training.ensemble_program import EnsembleProgram
    from promptlearning.training.prompted import PromptedProgram

# prompt: no weights (training/prompted.py); ensemble: member programs voting (training/ensemble_program.py)
Objective = Literal["pet", "head", "ner", "prompt", "ensemble"]
FORMAT_VERSION = 1


@dataclass
class ProgramSpec:
    """Everything needed to rebuild a program's model and inputs (saved as ``program.json``)."""

    objective: Objective
    model: str
    labels: list[str] = field(default_factory=list)
    template: dict[str, Any] = field(default_factory=lambda: {"input": "{{ text }}"})
    verbalizer: dict[str, Any] | None = None
    peft: str | None = None  # None: full fine-tuning
    peft_options: dict[str, Any] = field(default_factory=dict)
    demonstrations: list[dict[str, Any]] = field(default_factory=list)  # {"example": {...}, "answer": str}
    max_length: int = 256
    label_field: str = "label"
    tokens_field: str = "tokens"
    tags_field: str = "ner_tags"
    dtype: str = "float32"
    metrics: dict[str, Any] = field(default_factory=dict)
    bias: dict[str, float] | None = None  # prompt programs: the frozen calibration distribution
    classifier: dict[str, Any] | None = None  # prompt programs: the whole ClassifierSpec (demonstrations: the pool)
    members: list[dict[str, Any]] = field(default_factory=list)  # ensembles: {"path", "weight", "inputs"} each
    format_version: int = FORMAT_VERSION

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProgramSpec:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise CorruptModelError(f"program.json has unknown keys {unknown}; was it written by a newer version?")
        return cls(**data)


def pet_family(config: Any) -> str:
    """The family a PET program trains: causal, seq2seq, or masked (a bare encoder gets an MLM head)."""
    family = model_family(config)
    return "masked" if family == "encoder" else family


class PromptProgram:
    """A model (with its PEFT method) plus the featurizer that turns examples into its inputs."""

    def __init__(self, spec: ProgramSpec, module: nn.Module, featurizer: Any, tokenizer: Any) -> None:
        self.spec = spec
        self.module = module
        self.featurizer = featurizer
        self.tokenizer = tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def labels(self) -> list[str]:
        return list(self.spec.labels)

    @property
    def inner_model(self) -> nn.Module:
        """The transformers (or PEFT-wrapped) model inside the objective wrapper."""
        return self.module.model

    @property
    def after_step(self) -> Any:
        """Called by the loop after each optimizer step: AdaLoRA reallocates its ranks there."""
        if self.spec.peft != "adalora":
            return None
        return lambda step: self.inner_model.base_model.update_and_allocate(step)

    def encode(self, examples: Iterable[Mapping[str, Any]], *, with_label: bool = True) -> list[dict[str, Any]]:
        return [self.featurizer.encode(e, with_label=with_label) for e in examples]

    # ------------------------------------------------------------------ prediction

    @torch.no_grad()
    def logits(self, features: Sequence[Mapping[str, Any]], *, batch_size: int = 16, progress: bool = False):
        """Label logits per example (per token for NER), in input order. Batches are made of examples
        of similar length (longest first), so little of each batch is padding: on SST-2's test rows
        input-order batches of 32 were 1.8x the real tokens (benchmarks/pet_predict_order.py)."""
        self.module.eval()
        order = sorted(range(len(features)), key=lambda i: -len(features[i]["input_ids"]))
        out: list[torch.Tensor | None] = [None] * len(features)
        with progress_bar(len(features), desc="predict", enabled=progress) as bar:
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                batch = self.featurizer.collate(
                    [{k: v for k, v in features[i].items() if k != "labels"} for i in chunk]
                )
                batch = {key: value.to(self.device) for key, value in batch.items()}
                for i, row in zip(chunk, self.module(**batch)["logits"].float().cpu().unbind(0), strict=True):
                    out[i] = row
                bar.update(len(chunk))
        return out

    def predict(
        self, examples: Iterable[Mapping[str, Any]], *, batch_size: int = 16, progress: bool = False
    ) -> list[Any]:
        """A :class:`Prediction` per example; for NER ``{"tags": [...]}``, one tag per word."""
        examples = as_examples(examples, "predict")
        if not examples:
            return []
        features = self.encode(examples, with_label=False)
        logits = self.logits(features, batch_size=batch_size, progress=progress)
        if self.spec.objective == "ner":
            out = []
            for f, row in zip(features, logits, strict=True):
                best = row.argmax(-1).tolist()
                out.append({"tags": [self.labels[best[i]] if i >= 0 else "O" for i in f["word_starts"]]})
            return out
        results = []
        for row in logits:
            scores = dict(zip(self.labels, row.tolist(), strict=True))
            probabilities = label_distribution(scores)
            results.append(Prediction(max(probabilities, key=probabilities.__getitem__), probabilities, scores))
        return results

    def evaluate(
        self, examples: Sequence[Mapping[str, Any]], *, batch_size: int = 16, progress: bool = False
    ) -> dict[str, float]:
        """Accuracy and macro-F1 (classification) or seqeval span F1 (NER) on labelled examples."""
        return self.evaluate_predictions(examples, self.predict_all(examples, batch_size=batch_size, progress=progress))

    def evaluate_predictions(
        self, examples: Sequence[Mapping[str, Any]], predictions: Sequence[Any]
    ) -> dict[str, float]:
        """:meth:`evaluate` of predictions already made (by :meth:`predict_all`)."""
        from promptlearning.evaluation.metrics import classification_metrics

        if self.spec.objective == "ner":
            from seqeval.metrics import f1_score, precision_score, recall_score

            gold = [list(map(str, e[self.spec.tags_field])) for e in examples]
            pred = [p["tags"] for p in predictions]
            return {"f1": f1_score(gold, pred), "precision": precision_score(gold, pred),
                    "recall": recall_score(gold, pred)}  # fmt: skip
        gold = [str(e[self.spec.label_field]) for e in examples]
        return classification_metrics(gold, predictions, self.labels)

    def predict_all(
        self, examples: Sequence[Mapping[str, Any]], *, batch_size: int = 16, progress: bool = False
    ) -> list[Any]:
        """``predict``, shared out under ``accelerate launch``: each process predicts a contiguous
        shard and every process gets the whole list back, in order."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return self.predict(examples, batch_size=batch_size, progress=progress)
        from accelerate import PartialState
        from accelerate.utils import gather_object

        state = PartialState()
        with state.split_between_processes(list(examples)) as shard:
            mine = self.predict(shard, batch_size=batch_size, progress=progress and state.is_main_process)
        return gather_object(mine)

    def language_model(self) -> LanguageModel:
        """The trained model behind the :class:`LanguageModel` interface (PET programs), so it scores,
        generates, is evaluated and served exactly like an untrained one."""
        if self.spec.objective != "pet":
            raise UnsupportedOperationError(f"a {self.spec.objective!r} program has a classification head, not an LM")
        self.module.eval()
        name = f"program:{self.spec.model}"
        family = self.featurizer.family
        if family == "masked":
            return HFMaskedLM(self.inner_model, self.tokenizer, name=name)
        if family == "seq2seq":
            return HFSeq2SeqLM(self.inner_model, self.tokenizer, name=name)
        soft = bool(self.spec.peft) and get_method(self.spec.peft).prompt_learning
        return HFLanguageModel(self.inner_model, self.tokenizer, name=name, add_bos=self.featurizer.tokens.add_bos,
                               soft_prompt=soft)  # fmt: skip

    def as_classifier(self) -> PromptClassifier:
        """A :class:`PromptClassifier` over :meth:`language_model` with the program's template, label
        words (scored by their first token, as PET trains them) and demonstrations: its predictions
        are the program's own."""
        if self.spec.verbalizer is None:
            raise UnsupportedOperationError("only PET programs (label words) read as prompt classifiers")
        demos = [{**d["example"], self.spec.label_field: self._label_of(d["answer"])} for d in self.spec.demonstrations]
        spec = ClassifierSpec(
            template=self.spec.template, shots=len(demos), selection="first", label_field=self.spec.label_field,
            verbalizer={"words": self.spec.verbalizer["label_words"], "word_score": "first", "aggregate": "logsumexp"},
        )  # fmt: skip
        return build_classifier(spec, self.language_model()).fit(demos)

    def _label_of(self, answer: str) -> str:
        for label, words in self.featurizer.verbalizer.label_words.items():
            if answer in words:
                return label
        raise CorruptModelError(f"the demonstration answer {answer!r} is no label's word")

    def generate(self, prompts: Sequence[str], *, max_new_tokens: int = 32) -> list[str]:
        """Greedy continuations from the trained model (adapter or soft prompt), through the model layer."""
        from promptlearning.models import GenerationConfig

        generations = self.language_model().generate(list(prompts), GenerationConfig(max_new_tokens=max_new_tokens))
        return [g.text for g in generations]

    # ------------------------------------------------------------------ saving

    def save(self, directory: str | Path, *, metrics: Mapping[str, Any] | None = None) -> Path:
        """Write the program directory (weights in safetensors, then ``program.json`` last)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if metrics is not None:
            self.spec.metrics = dict(metrics)
        if self.spec.peft:
            with quiet_third_party():
                self.inner_model.save_pretrained(str(directory / "adapter"), safe_serialization=True)
        else:
            weights = {k: v.detach().contiguous().cpu() for k, v in self.module.state_dict().items()}
            write_atomically(directory / "weights.safetensors", save_safetensors(_untie(weights)))
        write_json_atomically(directory / "program.json", asdict(self.spec))
        return directory


def _untie(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors sharing memory (tied embeddings): store each once, as its own copy."""
    seen: dict[int, str] = {}
    out = {}
    for name, tensor in weights.items():
        pointer = tensor.data_ptr()
        out[name] = tensor.clone() if pointer in seen else tensor
        seen.setdefault(pointer, name)
    return out


def _init_text(template: PromptTemplate) -> str:
    """Words to initialise a soft prompt from: the instruction, else the template's own words."""
    return template.instruction or template.render_input(dict.fromkeys(template.input_fields, "")).strip() or "Answer:"


def build_program(
    spec: ProgramSpec,
    *,
    total_steps: int | None = None,
    seed: int = 0,
    adapter_dir: Path | None = None,
    device: str | torch.device = "cpu",
) -> PromptProgram:
    """Load the base model and wrap it for ``spec.objective`` with ``spec.peft``, on ``device``.

    The PEFT weights are fresh, or loaded from ``adapter_dir`` (a saved program's ``adapter/``).
    The training loop moves the model itself (``accelerate``), so training builds on the CPU.
    """
    import transformers

    from promptlearning.devices import resolve_device

    target = resolve_device(device)
    torch.manual_seed(seed)  # new heads, LoRA matrices and soft prompts start the same for a seed
    path = resolve_model_dir(spec.model, pull=True)
    local = {"local_files_only": True} if isinstance(path, Path) else {}  # a local model never goes online
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), **local)
        config = transformers.AutoConfig.from_pretrained(str(path), **local)
    except (OSError, ValueError) as exc:
        raise CorruptModelError(f"could not read the tokenizer and config of {spec.model} ({path}): {exc}") from exc
    loading = _Loading(spec, path, local, tokenizer, config, total_steps, adapter_dir)
    program = _pet_program(loading) if spec.objective == "pet" else _head_program(loading)
    program.module.to(target)
    return program


@dataclass
class _Loading:
    """What :func:`build_program` resolved before building the model for its objective."""

    spec: ProgramSpec
    path: Any
    local: dict[str, bool]
    tokenizer: Any
    config: Any
    total_steps: int | None
    adapter_dir: Path | None

    @property
    def dtype(self) -> torch.dtype:
        return getattr(torch, self.spec.dtype)

    @property
    def template(self) -> PromptTemplate:
        return PromptTemplate(**self.spec.template)

    def peft(self, model: Any, task_type: str | None) -> Any:
        return _apply(model, self.spec, task_type, self.path, self.template, self.total_steps, self.adapter_dir)


def _pet_program(loading: _Loading) -> PromptProgram:
    """A masked, causal or seq2seq LM scoring label words (PET), with or without a PEFT method."""
    import transformers

    spec, config = loading.spec, loading.config
    if spec.verbalizer is None:
        raise PromptLearningError("a PET program needs a verbalizer")
    verbalizer = Verbalizer(**spec.verbalizer)
    spec.labels = spec.labels or verbalizer.labels
    family = pet_family(config)
    auto = {"causal": transformers.AutoModelForCausalLM, "masked": transformers.AutoModelForMaskedLM,
            "seq2seq": transformers.AutoModelForSeq2SeqLM}[family]  # fmt: skip
    with quiet_third_party():
        model = auto.from_pretrained(str(loading.path), dtype=loading.dtype, **loading.local)
    tokens = PromptTokens(loading.tokenizer, model_type=config.model_type, encoder=family != "causal")
    demos = [Demonstration(d["example"], d["answer"]) for d in spec.demonstrations]
    featurizer = PetFeaturizer(
        tokens, loading.template, verbalizer, family=family, demonstrations=demos, max_length=spec.max_length,
        label_field=spec.label_field,
    )  # fmt: skip
    task_type = {"causal": "CAUSAL_LM", "masked": None, "seq2seq": "SEQ_2_SEQ_LM"}[family]
    virtual, regulariser = 0, None
    if spec.peft:
        model = loading.peft(model, task_type)
        method = get_method(spec.peft)
        if method.prompt_learning and spec.peft != "prefix-tuning" and family != "seq2seq":
            virtual = model.peft_config["default"].num_virtual_tokens
        if spec.peft == "adalora":
            regulariser = adalora_orthogonality_penalty
    start = config.decoder_start_token_id if family == "seq2seq" else None
    prefix = [start if start is not None else tokens.pad_id, *tokens.before] if family == "seq2seq" else []
    module = PetModel(
        model, featurizer.label_token_ids, family=family, virtual_tokens=virtual, decoder_prefix=prefix,
        regulariser=regulariser,
    )  # fmt: skip
    return PromptProgram(spec, module, featurizer, loading.tokenizer)


def _head_program(loading: _Loading) -> PromptProgram:
    """A sequence or token classification head on the encoder/decoder, with or without a PEFT method."""
    import transformers

    spec, tokenizer = loading.spec, loading.tokenizer
    if not spec.labels:
        raise PromptLearningError(f"a {spec.objective!r} program needs its labels")
    label_maps = {
        "id2label": dict(enumerate(spec.labels)),
        "label2id": {label: i for i, label in enumerate(spec.labels)},
    }
    ner = spec.objective == "ner"
    featurizer = (
        TokenFeaturizer(tokenizer, spec.labels, max_length=spec.max_length, tokens_field=spec.tokens_field,
                        tags_field=spec.tags_field)
        if ner
        else SequenceFeaturizer(tokenizer, spec.labels, loading.template.render_input, max_length=spec.max_length,
                                label_field=spec.label_field)
    )  # fmt: skip
    auto = transformers.AutoModelForTokenClassification if ner else transformers.AutoModelForSequenceClassification
    with quiet_third_party():
        model = auto.from_pretrained(
            str(loading.path), num_labels=len(spec.labels), pad_token_id=tokenizer.pad_token_id, dtype=loading.dtype,
            **label_maps, **loading.local,
        )  # fmt: skip
    if spec.peft:
        model = loading.peft(model, "TOKEN_CLS" if ner else "SEQ_CLS")
    return PromptProgram(spec, HeadModel(model), featurizer, tokenizer)


def _apply(
    model: Any, spec: ProgramSpec, task_type: str | None, path: Any, template: Any, total_steps: Any, adapter_dir: Any
) -> Any:
    if adapter_dir is not None:
        import peft

        check_adapter_dir(Path(adapter_dir))
        try:
            with quiet_peft(), quiet_third_party():
                return peft.PeftModel.from_pretrained(model, str(adapter_dir), local_files_only=True)
        except Exception as exc:  # safetensors, json and peft each raise their own error types
            raise CorruptModelError(f"could not load the adapter in {adapter_dir}: {exc}") from exc
    return apply_peft(
        model, spec.peft, spec.peft_options, task_type=task_type, init_text=_init_text(template),
        tokenizer_dir=str(path), total_steps=total_steps,
    )  # fmt: skip


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def check_adapter_dir(adapter_dir: Path) -> None:
    """A saved program's adapter must be complete on disk: given a folder name that does not exist
    locally, peft would look it up on the model hub instead."""
    missing = [name for name in ADAPTER_FILES if not (adapter_dir / name).is_file()]
    if missing:
        raise CorruptModelError(
            f"the program's adapter in {adapter_dir} is incomplete (missing {', '.join(missing)}); "
            "save the program again or copy the whole program directory"
        )


def read_program_spec(directory: str | Path) -> ProgramSpec:
    """Read and check a program directory's ``program.json`` (and that its weights are there),
    without loading any model."""
    directory = Path(directory)
    spec_path = directory / "program.json"
    if not spec_path.is_file():
        raise PromptLearningError(f"{directory} is not a prompt program directory (no program.json)")
    try:
        spec = ProgramSpec.from_json(json.loads(spec_path.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, AttributeError) as exc:
        raise CorruptModelError(f"{spec_path} is not a valid program description: {exc}") from None
    try:
        PromptTemplate(**spec.template)
        if spec.verbalizer is not None:
            Verbalizer(**spec.verbalizer)
    except TypeError as exc:
        raise CorruptModelError(f"{spec_path}: the template or verbalizer is not valid: {exc}") from None
    if spec.objective == "ensemble":
        from promptlearning.training.ensemble_program import check_members

        check_members(spec, directory)
    elif spec.objective == "prompt":
        if spec.verbalizer is None or not spec.labels:
            raise CorruptModelError(f"{spec_path}: a prompt program needs labels and a verbalizer")
    elif spec.peft:
        check_adapter_dir(directory / "adapter")
    elif not (directory / "weights.safetensors").is_file():
        raise CorruptModelError(f"{directory} has no weights.safetensors: the program was not saved completely")
    return spec


def input_fields(spec: ProgramSpec) -> list[str]:
    """The fields every input of a program must have."""
    if spec.objective == "ner":
        return [spec.tokens_field]
    if spec.objective == "ensemble":
        return list(dict.fromkeys(name for member in spec.members for name in member["inputs"]))
    return PromptTemplate(**spec.template).input_fields


def load_program(
    directory: str | Path, *, device: str | torch.device = "auto"
) -> PromptProgram | PromptedProgram | EnsembleProgram:
    """Restore a saved program for prediction on ``device`` (everything but the weights is checked first);
    a prompt program (``objective: prompt``, no weights) loads the base model it names, an ensemble
    its members."""
    directory = Path(directory)
    spec = read_program_spec(directory)
    if spec.objective == "ensemble":
        from promptlearning.training.ensemble_program import load_ensemble_program

        return load_ensemble_program(spec, directory, device=device)
    if spec.objective == "prompt":
        from promptlearning.training.prompted import load_prompted_program

        return load_prompted_program(spec, device=str(device))
    if spec.peft:
        return build_program(spec, adapter_dir=directory / "adapter", device=device)
    weights_path = directory / "weights.safetensors"
    program = build_program(spec, device=device)
    try:
        weights = load_file(str(weights_path), device=str(program.device))
    except Exception as exc:
        raise CorruptModelError(f"could not read {weights_path}: {exc}") from exc
    missing, unexpected = program.module.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise CorruptModelError(
            f"{weights_path} does not fit {spec.model} ({len(missing)} weights missing, e.g. {missing[:2]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:2]})"
        )
    return program
