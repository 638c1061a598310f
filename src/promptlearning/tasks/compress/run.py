"""Running a compression task: source model -> prune -> recover -> quantize -> a model directory.

    <run>/config.yaml          the settings (``--resume`` refuses different ones)
    <run>/recover/             the recovery's atomic checkpoints (``--resume`` continues them)
    <run>/model/               the compressed model + compression.json (written atomically)
    <run>/run.json, report.md  sizes, parameters, perplexity of the source and of the result

The compressed model is measured as a user gets it: loaded back from ``<run>/model``.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from promptlearning.compression.calibration import as_batches, calibration_blocks, token_stream
from promptlearning.compression.distill import Distillation, collate_blocks, mean_distillation_loss
from promptlearning.compression.prune import (
    attention_head_importance,
    block_influence,
    decoder_layers,
    drop_layers,
    heads_to_keep,
    layers_to_drop,
    magnitude_prune,
    mlp_channel_importance,
    prune_attention_heads,
    prune_mlp_width,
    width_to_keep,
)
from promptlearning.errors import PromptLearningError
from promptlearning.io import write_json_atomically
from promptlearning.loading import task_data_root
from promptlearning.models.compressed import RECORD, compression_record, directory_bytes, save_compressed
from promptlearning.models.quantized import TORCHAO_MODES, check_quant_mode, int8_weight_only, weight_bytes
from promptlearning.runs.directory import check_run_dir, prepare_output_dir
from promptlearning.runs.result import TaskResult
from promptlearning.tasks.compress.config import CompressTaskConfig

CALIBRATION_BATCH = 4  # blocks per forward pass when measuring blocks and channels


def _files(root: str | None, files: list[str]) -> list[str]:
    base = task_data_root(root)
    return [str(Path(f) if Path(f).is_absolute() else base / f) for f in files]


def check(config: CompressTaskConfig) -> None:
    """What can be checked before the model loads: data files exist, the quantization mode runs here."""
    from promptlearning.devices import resolve_device

    for section, files in ((config.calibration, "files"), (config.evaluate, "perplexity"),
                           (config.evaluate, "program_data")):  # fmt: skip
        paths = getattr(section, files) if section is not None else None
        if not paths:
            continue
        for path in _files(section.root, paths if isinstance(paths, list) else [paths]):
            if not Path(path).exists():
                raise PromptLearningError(f"{path} does not exist (the task's {type(section).__name__})")
    if config.evaluate is not None and config.evaluate.program_data and not _is_program(config.model):
        raise PromptLearningError("evaluate.program_data measures a program: the task's model is not a program")
    if config.quantize is not None:
        check_quant_mode(config.quantize.mode, resolve_device(config.device), config.quantize.group_size)


@dataclass
class _Source:
    """What is compressed: a causal LM and its tokenizer (a program's merged into its model)."""

    model: Any
    tokenizer: Any
    path: Path
    program: Any = None  # the ProgramSpec of a program source


def _is_program(model: str) -> bool:
    return (Path(model) / "program.json").is_file()


def _load_program_source(directory: Path, device: str) -> _Source:
    """A PET program on a causal LM, its LoRA (or other mergeable method) merged into the model."""
    from promptlearning.training.peft_methods import get_method
    from promptlearning.training.program import load_program, read_program_spec

    spec = read_program_spec(directory)
    if spec.objective != "pet":
        raise PromptLearningError(f"compress takes PET programs (label words scored by a language model); "
                                  f"{directory} is a program of objective {spec.objective!r}")  # fmt: skip
    if spec.peft and get_method(spec.peft).prompt_learning:
        raise PromptLearningError(f"{directory} learned a {spec.peft} prompt: its vectors are no model weights, so "
                                  "they cannot be merged into a compressed model; use a LoRA program")  # fmt: skip
    program = load_program(directory, device=device)
    if program.featurizer.family != "causal":
        raise PromptLearningError(f"compress takes programs on causal language models; {directory}'s is "
                                  f"{program.featurizer.family}")  # fmt: skip
    model = program.inner_model
    if spec.peft:
        model = model.merge_and_unload()
    return _Source(model.float().eval(), program.tokenizer, directory, spec)


def _load_source(config: CompressTaskConfig) -> _Source:
    import transformers

    from promptlearning.models import resolve_model_dir
    from promptlearning.models.hf.loading import is_causal_lm

    if _is_program(config.model):
        return _load_program_source(Path(config.model), config.device)
    path = Path(str(resolve_model_dir(config.model, pull=True)))
    if not (path / "config.json").is_file():
        raise PromptLearningError(f"compress works on Hugging Face model directories; {config.model} is not one")
    record = compression_record(path)
    if record is not None and (record.get("quantize") or {}).get("mode") not in (None, "bf16"):
        raise PromptLearningError(f"{config.model} is already quantized ({record['quantize']['mode']}): compress its "
                                  "source model instead")  # fmt: skip
    hf_config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
    if not is_causal_lm(hf_config):
        raise PromptLearningError(f"compress works on causal language models; {config.model} is not one")
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path), dtype="float32", local_files_only=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    return _Source(model.eval(), tokenizer, path)


def _calibration(config: CompressTaskConfig, tokenizer: Any) -> tuple[list[Any], list[Any]]:
    """(blocks to measure and train on, held-out blocks to pick the recovery's best step)."""
    from promptlearning.pretraining.corpus import Corpus

    section = config.calibration
    assert section is not None
    held_out = config.recover.held_out if config.recover else 0
    wanted_tokens = (section.samples + held_out) * (section.block_size + 1)
    if config.recover is not None and config.recover.tokens:
        wanted_tokens = max(wanted_tokens, config.recover.tokens + held_out * (section.block_size + 1))
    corpus = Corpus(_files(section.root, section.files), field=section.field)
    tokens = token_stream(corpus.iter_documents(), tokenizer, wanted_tokens)
    blocks = calibration_blocks(tokens, section.block_size)
    if len(blocks) <= held_out:
        raise PromptLearningError(f"the calibration text makes {len(blocks)} blocks of {section.block_size} tokens: "
                                  f"too few to hold out {held_out} and train on the rest")  # fmt: skip
    return (blocks[:-held_out], blocks[-held_out:]) if held_out else (blocks, [])


def _head_counts(model: Any) -> tuple[int, int]:
    text_config = model.config.get_text_config()
    return text_config.num_attention_heads, getattr(text_config, "num_key_value_heads", None) or \
        text_config.num_attention_heads  # fmt: skip


def _check_prune_fits(model: Any, config: CompressTaskConfig) -> None:
    """Refuse, before any measuring, pruning that would leave no layer or no attention head."""
    prune = config.prune
    if prune is None or not (prune.depth or prune.heads):
        return
    layers = decoder_layers(model)
    if prune.depth:
        layers_to_drop([0.0] * len(layers), prune.depth)
    if prune.heads:
        heads_to_keep(*_head_counts(model), prune.heads)


def _prune(model: Any, config: CompressTaskConfig, blocks: list[Any], notes: dict[str, Any]) -> None:
    prune = config.prune
    assert prune is not None
    measure = as_batches(blocks[: config.calibration.samples], CALIBRATION_BATCH) if config.calibration else []
    if prune.depth:
        influence = block_influence(model, measure)
        dropped = layers_to_drop(influence, prune.depth)
        drop_layers(model, dropped)
        notes["depth"] = {"dropped": dropped, "influence": [round(x, 5) for x in influence]}
    if prune.width:
        width = decoder_layers(model)[0].mlp.down_proj.in_features
        keep = width_to_keep(width, prune.width)
        prune_mlp_width(model, mlp_channel_importance(model, measure), keep)
        notes["width"] = {"from": width, "to": keep}
    if prune.heads:
        heads, kv_heads = _head_counts(model)
        prune_attention_heads(model, attention_head_importance(model, measure), heads_to_keep(heads, kv_heads,
                                                                                             prune.heads))  # fmt: skip
        notes["heads"] = {"from": heads, "to": _head_counts(model)[0]}
    if prune.magnitude:
        notes["magnitude"] = {"sparsity": round(magnitude_prune(model, prune.magnitude), 4)}


def _recover(student: Any, teacher: Any, config: CompressTaskConfig, blocks: list[Any], held_out: list[Any],
             run_dir: Path, resume: bool, progress: bool | None) -> dict[str, Any]:  # fmt: skip
    """Distil ``student`` toward ``teacher`` on the calibration blocks; the best weights on held-out."""
    from promptlearning.training.loop import TrainingArguments, train

    recover = config.recover
    assert recover is not None
    options = recover.training.model_dump()
    if recover.tokens:
        per_step = options["batch_size"] * options["gradient_accumulation_steps"] * len(blocks[0])
        options["max_steps"] = max(1, math.ceil(recover.tokens / per_step))
    target = student
    if recover.peft is not None:
        from promptlearning.training.peft_methods import apply_peft

        target = apply_peft(student, recover.peft.method, recover.peft.options)
    module = Distillation(target, teacher, recover.temperature)
    validation = as_batches(held_out, CALIBRATION_BATCH)
    before = mean_distillation_loss(module, validation)
    arguments = TrainingArguments(**options, metric="val_kl", greater_is_better=False, seed=config.seed)
    features = [{"input_ids": b} for b in blocks]
    result = train(module, features, collate_blocks, lambda m: mean_distillation_loss(m, validation), arguments,
                   run_dir / "recover", resume=resume, progress=progress, device=config.device)  # fmt: skip
    after = mean_distillation_loss(module, validation)
    if recover.peft is not None:
        student = target.merge_and_unload()
    return {"student": student, "steps": result.steps, "best_step": result.best_step,
            "resumed_from": result.resumed_from, "tokens": result.steps *
            options["batch_size"] * options["gradient_accumulation_steps"] * len(blocks[0]),
            "val_kl_before": round(before["val_kl"], 5), "val_kl_after": round(after["val_kl"], 5)}  # fmt: skip


def _quantize(model: Any, config: CompressTaskConfig) -> tuple[Any, dict[str, Any]]:
    """The quantized model and the record of how (an int8 model's layout: what loading rebuilds)."""
    import torch

    quantize = config.quantize
    assert quantize is not None
    record: dict[str, Any] = {"mode": quantize.mode}
    if quantize.mode == "bf16":
        model = model.to(torch.bfloat16)
    elif quantize.mode == "int8-weight":
        record["layout"] = int8_weight_only(model, embeddings=quantize.embeddings)
        record["embeddings"] = quantize.embeddings
    elif quantize.mode in TORCHAO_MODES:
        record["group_size"] = quantize.group_size  # applied by torchao when the directory is loaded
    return model, record


def _perplexity(config: CompressTaskConfig, model: Any, tokenizer: Any, progress: bool | None) -> dict[str, float]:
    from promptlearning.pretraining.perplexity import perplexity, read_text

    section = config.evaluate
    assert section is not None
    text = read_text(_files(section.root, [section.perplexity])[0], section.field)
    text = text[: section.max_chars] if section.max_chars else text
    started = time.perf_counter()
    import torch

    with torch.inference_mode():
        result = perplexity(model, tokenizer, text, max_length=section.max_length, progress=progress)
    return {"word_perplexity": result.word_perplexity, "token_perplexity": result.token_perplexity,
            "seconds": time.perf_counter() - started}  # fmt: skip


def run_compress_task(
    config: CompressTaskConfig,
    *,
    output_dir: str | Path | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool | None = None,
    **_: Any,
) -> TaskResult:
    """Compress ``config.model`` into ``<run>/model`` and measure it against the source."""
    from promptlearning.models.compressed import load_compressed
    from promptlearning.pretraining.models import parameter_count

    check(config)
    run_dir = Path(run_dir) if run_dir else Path(output_dir or config.output_dir) / config.name
    check_run_dir(config, run_dir, resume)
    prepare_output_dir(run_dir, "run directory")
    if not (resume and (run_dir / "config.yaml").is_file()):
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    loaded_source = _load_source(config)
    model, tokenizer = loaded_source.model, loaded_source.tokenizer
    _check_prune_fits(model, config)
    source = {"path": str(loaded_source.path), "parameters": parameter_count(model), "bytes": weight_bytes(model),
              "layers": len(decoder_layers(model)) if config.prune else None}  # fmt: skip
    quality: dict[str, Any] = {}
    if config.evaluate is not None and config.evaluate.perplexity:
        quality["source"] = _perplexity(config, model, tokenizer, progress)
    model, steps = _compress(model, config, tokenizer, run_dir, resume, progress)
    quantized = next((s for s in steps if s["step"] == "quantize"), None)
    record = {
        "source": source, "steps": [{k: v for k, v in s.items() if k != "layout"} for s in steps],
        "quantize": {k: v for k, v in quantized.items() if k != "step"} if quantized else None,
        "dtype": str(next(p for p in model.state_dict().values() if p.is_floating_point()).dtype).removeprefix(
            "torch."),
        "parameters": parameter_count(model), "bytes": weight_bytes(model),
    }  # fmt: skip
    save_compressed(model, tokenizer, run_dir / "model", record)
    del model
    record["bytes_on_disk"] = directory_bytes(run_dir / "model")
    if "source" in quality:
        loaded = load_compressed("AutoModelForCausalLM", run_dir / "model", compression_record(run_dir / "model") or {})
        quality["compressed"] = _perplexity(config, loaded, tokenizer, progress)
        del loaded
    if loaded_source.program is not None:
        _write_program(loaded_source.program, run_dir)
        if config.evaluate is not None and config.evaluate.program_data:
            quality["program"] = _program_agreement(config, loaded_source.path, run_dir / "program")
    if quality:
        record["quality"] = quality
    write_json_atomically(run_dir / "model" / RECORD, {"format": 1, **record})
    return _result(config, run_dir, record)


def _compress(model: Any, config: CompressTaskConfig, tokenizer: Any, run_dir: Path, resume: bool,
              progress: bool | None) -> tuple[Any, list[dict[str, Any]]]:  # fmt: skip
    """Prune, recover, quantize (each when asked): the model and what each step did."""
    steps: list[dict[str, Any]] = []
    blocks, held_out = _calibration(config, tokenizer) if config.calibration is not None else ([], [])
    teacher = copy.deepcopy(model) if config.recover is not None else None
    if config.prune is not None:
        notes: dict[str, Any] = {}
        _prune(model, config, blocks, notes)
        steps.append({"step": "prune", **notes})
    if config.recover is not None:
        outcome = _recover(model, teacher, config, blocks, held_out, run_dir, resume, progress)
        model = outcome.pop("student")
        steps.append({"step": "recover", **outcome})
        del teacher
    if config.quantize is not None:
        model, quantized = _quantize(model, config)
        steps.append({"step": "quantize", **quantized})
    return model, steps


def _write_program(spec: Any, run_dir: Path) -> None:
    """``<run>/program``: the source program's prompt on the compressed model. PET scores the first
    token of each label word, so the classifier does too (``word_score: first``), uncalibrated."""
    from dataclasses import replace

    from promptlearning.methods.spec import ClassifierSpec
    from promptlearning.training.prompted import save_prompted_program

    words = dict(spec.verbalizer or {})
    label_words = words.pop("label_words", None) or words.pop("words", {})
    verbalizer = {**{k: v for k, v in words.items() if k in ("aggregate",)}, "words": label_words,
                  "word_score": "first"}  # fmt: skip
    classifier = ClassifierSpec(template=spec.template, verbalizer=verbalizer, label_field=spec.label_field,
                                max_length=spec.max_length, shots=len(spec.demonstrations),
                                selection="first" if spec.demonstrations else "random")  # fmt: skip
    program = replace(spec, objective="prompt", model=str((run_dir / "model").resolve()), peft=None, peft_options={},
                      dtype="auto", classifier=classifier.model_dump(mode="json"), metrics={})  # fmt: skip
    save_prompted_program(program, run_dir / "program")


def _program_agreement(config: CompressTaskConfig, source: Path, compressed: Path) -> dict[str, float]:
    """Accuracy of the source and the compressed program on the evaluation examples, and how often
    they predict the same label."""
    from promptlearning.loading import load_examples
    from promptlearning.training.program import load_program, read_program_spec

    section = config.evaluate
    assert section is not None and section.program_data
    examples = load_examples(section.program_data, root=task_data_root(section.root), limit=section.program_limit)
    gold = [str(e[read_program_spec(source).label_field]) for e in examples]
    answers = {}
    for name, directory in (("source", source), ("compressed", compressed)):
        answers[name] = [p.label for p in load_program(directory, device=config.device).predict(examples)]

    def share(a: list[str], b: list[str]) -> float:
        return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)

    return {
        "examples": len(examples),
        "agreement": share(answers["source"], answers["compressed"]),
        "source_accuracy": share(answers["source"], gold),
        "compressed_accuracy": share(answers["compressed"], gold),
    }


def _result(config: CompressTaskConfig, run_dir: Path, record: dict[str, Any]) -> TaskResult:
    quality = record.get("quality") or {}
    size_ratio = record["bytes"] / record["source"]["bytes"]
    metrics = {"size_ratio": size_ratio, "parameters": float(record["parameters"])}
    if "compressed" in quality:
        metrics["word_perplexity"] = quality["compressed"]["word_perplexity"]
        metrics["source_word_perplexity"] = quality["source"]["word_perplexity"]
    if "program" in quality:
        metrics.update({f"program_{k}": float(v) for k, v in quality["program"].items()})
    headline = (
        "program_accuracy" if "program" in quality else "word_perplexity" if "compressed" in quality else "size_ratio"
    )
    if headline == "program_accuracy":
        metrics["program_accuracy"] = metrics["program_compressed_accuracy"]
    setting = ", ".join(s["step"] for s in record["steps"])
    result = TaskResult(kind="compress", name=config.name, setting=setting, model=str(run_dir / "model"),
                        metric=headline, value=metrics[headline], values=[metrics[headline]], metrics=metrics,
                        seed=config.seed, run_dir=run_dir, evaluation=record, config=config)  # fmt: skip
    result.write(run_dir)
    _write_report(run_dir / "report.md", config, record)
    return result


def _write_report(path: Path, config: CompressTaskConfig, record: dict[str, Any]) -> None:
    source = record["source"]
    lines = [f"# {config.name}: compression of {config.model}", "", "| | source | compressed |",
             "| --- | ---: | ---: |",
             f"| parameters | {source['parameters']:,} | {record['parameters']:,} |",
             f"| weights (bytes in memory) | {source['bytes']:,} | {record['bytes']:,} |",
             f"| weights on disk | | {record.get('bytes_on_disk', 0):,} |"]  # fmt: skip
    quality = record.get("quality") or {}
    if "compressed" in quality:
        lines.append(f"| word perplexity ({config.evaluate.perplexity}) | {quality['source']['word_perplexity']:.3f} "
                     f"| {quality['compressed']['word_perplexity']:.3f} |")  # fmt: skip
    if "program" in quality:
        program = quality["program"]
        lines.append(
            f"| program accuracy ({program['examples']} of {config.evaluate.program_data}) "
            f"| {100 * program['source_accuracy']:.2f} | {100 * program['compressed_accuracy']:.2f} |"
        )
        lines.append(f"| same prediction as the source | | {100 * program['agreement']:.1f} % |")
    lines += ["", "## Steps", ""]
    for step in record["steps"]:
        details = ", ".join(f"{k} {v}" for k, v in step.items() if k not in ("step", "influence"))
        lines.append(f"- {step['step']}: {details}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
