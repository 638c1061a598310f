"""Running a pretraining task: corpus -> tokenizer -> cached tokens -> blocks -> the shared training loop
-> a Hugging Face model directory (``<run>/model``) that ``load_model`` and every prompt method use.

    <run>/config.yaml        the settings (``--resume`` refuses different ones)
    <run>/tokenizer/         the tokenizer (trained once; a resumed run reuses it)
    <run>/checkpoints/ best/ the loop's atomic checkpoints
    <run>/samples.txt        samples from a causal model at every evaluation
    <run>/model/             the best weights + tokenizer, written atomically
    <run>/metrics.json, run.json, report.md, corpus.json
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from promptlearning.errors import PromptLearningError
from promptlearning.io import write_directory_atomically, write_json_atomically
from promptlearning.loading import task_data_root
from promptlearning.models.hub import home
from promptlearning.pretraining.corpus import Corpus
from promptlearning.pretraining.models import build_model, parameter_count
from promptlearning.pretraining.objectives import (
    SentencePairs,
    WrappedBlocks,
    causal_collate,
    evaluate_causal,
    evaluate_masked,
    mlm_collate,
    sample_text,
)
from promptlearning.pretraining.tokenizer import load_tokenizer, train_tokenizer
from promptlearning.pretraining.tokens import TokenBlocks, build_token_cache, split_tokens
from promptlearning.runs.directory import check_run_dir, prepare_output_dir
from promptlearning.runs.result import TaskResult
from promptlearning.tasks.config import TaskConfigError
from promptlearning.tasks.pretrain.config import PretrainTaskConfig
from promptlearning.training.loop import TrainingArguments, train, training_state


def corpus_of(config: PretrainTaskConfig) -> Corpus:
    root = task_data_root(config.corpus.root)
    files = [str(Path(f) if Path(f).is_absolute() else root / f) for f in config.corpus.files]
    return Corpus(files, field=config.corpus.field, dedupe_lines=config.corpus.dedupe_lines,
                  min_chars=config.corpus.min_chars)  # fmt: skip


CORPUS_STAMP = "trained-on.json"  # in <run>/tokenizer/: the fingerprint of the corpus it was trained on


def _tokenizer(config: PretrainTaskConfig, corpus: Corpus, run_dir: Path) -> Any:
    """The run's tokenizer: the one saved by an earlier start of this run (if trained, only on this
    very corpus), else trained or loaded."""
    saved = run_dir / "tokenizer"
    section = config.tokenizer
    trained = section is not None and section.train is not None
    if (saved / "tokenizer.json").is_file():
        if trained:
            stamp = saved / CORPUS_STAMP
            was = json.loads(stamp.read_text()).get("corpus") if stamp.is_file() else None
            if was != corpus.fingerprint():
                raise PromptLearningError(
                    f"{saved} was trained on another corpus (the corpus files changed since, or it is not known "
                    "which): resuming would train on a tokenizer that does not fit the text. Start a new run "
                    "(another --output)"
                )
        return load_tokenizer(str(saved))
    if trained:
        tokenizer = train_tokenizer(corpus.iter_documents(), kind=section.train, vocab_size=section.vocab_size,
                                    min_frequency=section.min_frequency)  # fmt: skip
    else:
        tokenizer = load_tokenizer(section.from_ if section is not None else config.model)
    staging = run_dir / f".tokenizer-{uuid.uuid4().hex[:8]}"
    tokenizer.save_pretrained(str(staging))
    if trained:
        (staging / CORPUS_STAMP).write_text(json.dumps({"corpus": corpus.fingerprint()}))
    staging.rename(saved)
    return tokenizer


def _clear_failed_start(run_dir: Path) -> None:
    """A plain rerun after a start that failed before training (nothing but its config, tokenizer and
    corpus statistics there) starts afresh: those leftovers are removed instead of blocking it."""
    if not run_dir.is_dir():
        return
    entries = list(run_dir.iterdir())
    leftovers = {"config.yaml", "tokenizer", "corpus.json"}
    if entries and all(e.name in leftovers or e.name.startswith(".tokenizer-") for e in entries):
        for entry in entries:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def _model(config: PretrainTaskConfig, tokenizer: Any) -> Any:
    """A new model at a preset size, or the task's model (with a peft method) to pretrain further."""
    if config.architecture is not None:
        arch = config.architecture
        return build_model(
            config.objective, arch.preset, vocab_size=len(tokenizer), block_size=config.block_size,
            tokenizer=tokenizer, dropout=arch.dropout, overrides=arch.overrides, seed=config.seed,
        )  # fmt: skip
    import transformers

    from promptlearning.devices import resolve_device, resolve_dtype
    from promptlearning.models import resolve_model_dir
    from promptlearning.training.peft_methods import apply_peft

    path = resolve_model_dir(config.model, pull=True)
    auto = {"causal": transformers.AutoModelForCausalLM, "mlm": transformers.AutoModelForMaskedLM,
            "mlm-nsp": transformers.AutoModelForPreTraining}[config.objective]  # fmt: skip
    dtype = resolve_dtype(config.dtype, resolve_device(config.device), cpu_bf16=False)  # weights being trained
    model = auto.from_pretrained(str(path), dtype=dtype, local_files_only=True)
    embeddings = model.get_input_embeddings().weight.shape[0]
    own = load_tokenizer(str(path))
    if len(tokenizer) > embeddings or (tokenizer is not own and tokenizer.get_vocab() != own.get_vocab()):
        raise PromptLearningError(
            f"tokenizer/model vocabulary mismatch: the tokenizer has {len(tokenizer)} tokens, {config.model} has "
            f"embeddings for {embeddings} learned with its own {len(own)}-token vocabulary; use the model's own "
            "tokenizer (leave out tokenizer:) or one with the same vocabulary"
        )
    if config.peft is not None:
        model = apply_peft(model, config.peft.method, config.peft.options)
    return model


def _arguments(config: PretrainTaskConfig) -> TrainingArguments:
    return TrainingArguments(**config.training.model_dump(), metric="val_loss", greater_is_better=False,
                             seed=config.seed)  # fmt: skip


def _save_model(model: Any, tokenizer: Any, directory: Path) -> None:
    """The model as a Hugging Face directory (safetensors), merged if it carries an adapter; atomic."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()

    def write(staging: Path) -> None:
        model.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))

    write_directory_atomically(directory, write)


def run_pretrain_task(
    config: PretrainTaskConfig,
    *,
    output_dir: str | Path | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool | None = None,
    **_: Any,
) -> TaskResult:
    """Pretrain, keep the weights with the lowest validation loss, write ``<run>/model`` and the reports."""
    state = training_state(config.device)
    run_dir = Path(run_dir) if run_dir else Path(output_dir or config.output_dir) / config.name
    if not resume and state.is_main_process:
        _clear_failed_start(run_dir)
    check_run_dir(config, run_dir, resume)
    corpus = corpus_of(config)
    if state.is_main_process:
        prepare_output_dir(run_dir, "run directory")
        if not (resume and (run_dir / "config.yaml").is_file()):
            (run_dir / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    # the main process trains and saves the tokenizer and builds the token cache; the others then load both
    with state.main_process_first():
        tokenizer = _tokenizer(config, corpus, run_dir)
        cache = build_token_cache(corpus, tokenizer, home() / "tokens", progress=progress)
    train_tokens, val_tokens = split_tokens(cache.tokens(), config.corpus.validation_fraction)
    causal = config.objective == "causal"
    inner = config.block_size if causal else config.block_size - 3  # room for [CLS] and [SEP]s
    train_blocks = TokenBlocks(train_tokens, inner, overlap=int(causal), stride=config.stride)
    val_blocks = TokenBlocks(val_tokens, inner, overlap=int(causal), what="validation")
    model = _model(config, tokenizer)
    stats = {**corpus.stats(tokenizer, tokens=int(cache.meta["tokens"])), "train_tokens": len(train_tokens),
             "validation_tokens": len(val_tokens), "parameters": parameter_count(model)}  # fmt: skip
    if state.is_main_process:
        write_json_atomically(run_dir / "corpus.json", stats)
    if causal:
        train_set, val_set, collate = train_blocks, val_blocks, causal_collate
    else:
        if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None or tokenizer.mask_token_id is None:
            raise PromptLearningError(f"objective {config.objective} needs a tokenizer with [CLS], [SEP] and [MASK]")
        wrap = SentencePairs if config.objective == "mlm-nsp" else WrappedBlocks
        kwargs = {"seed": config.seed} if wrap is SentencePairs else {}
        train_set = wrap(train_blocks, tokenizer.cls_token_id, tokenizer.sep_token_id, **kwargs)
        val_set = wrap(val_blocks, tokenizer.cls_token_id, tokenizer.sep_token_id, **kwargs)
        collate = mlm_collate(tokenizer, config.mlm_probability)

    def evaluate(module: Any, limit: int | None = config.eval_blocks) -> dict[str, float]:
        if not causal:
            return evaluate_masked(module, val_set, collate, batch_size=config.eval_batch_size, limit=limit,
                                   seed=config.seed)  # fmt: skip
        return evaluate_causal(module, val_blocks, tokenizer, batch_size=config.eval_batch_size, limit=limit)

    result = train(model, train_set, collate, _with_samples(evaluate, config, tokenizer, run_dir, causal, state),
                   _arguments(config), run_dir, resume=resume, progress=progress, device=config.device)  # fmt: skip
    final = evaluate(model, None)  # every validation block, with the best weights
    metrics = {**final, "best_step": result.best_step, "steps": result.steps, "history": result.history,
               "parameters": stats["parameters"]}  # fmt: skip
    if state.is_main_process:
        _save_model(model, tokenizer, run_dir / "model")
        write_json_atomically(run_dir / "metrics.json", metrics)
    headline = "bits_per_character" if causal else "mlm_accuracy"
    out = TaskResult(
        kind="pretrain", name=config.name, setting=_setting(config), model=str(run_dir / "model"), metric=headline,
        value=final[headline], values=[final[headline]], metrics={k: float(v) for k, v in final.items()},
        num_examples=len(val_set), seed=config.seed, run_dir=run_dir, evaluation=metrics, config=config,
    )  # fmt: skip
    if state.is_main_process:
        out.write(run_dir)
        _write_report(run_dir / "report.md", config, stats, metrics)
    return out


def _with_samples(evaluate: Any, config: PretrainTaskConfig, tokenizer: Any, run_dir: Path, causal: bool,
                  state: Any) -> Any:  # fmt: skip
    """The evaluation callback, which also appends a sample to ``samples.txt`` for causal models."""
    samples = config.samples

    def run(module: Any) -> dict[str, float]:
        metrics = evaluate(module)
        if causal and samples is not None and samples.max_new_tokens and state.is_main_process:
            text = sample_text(module, tokenizer, samples.prompt, max_new_tokens=samples.max_new_tokens,
                               temperature=samples.temperature, top_k=samples.top_k, seed=config.seed)  # fmt: skip
            with (run_dir / "samples.txt").open("a", encoding="utf-8") as f:
                f.write(f"--- val_loss {metrics['val_loss']:.4f}\n{text}\n")
        return metrics

    return run


def _setting(config: PretrainTaskConfig) -> str:
    if config.architecture is not None:
        return f"{config.objective}, {config.architecture.preset} from scratch, block {config.block_size}"
    method = config.peft.method if config.peft else "full"
    return f"{config.objective}, continued pretraining of {config.model} ({method}), block {config.block_size}"


def _write_report(path: Path, config: PretrainTaskConfig, stats: Mapping[str, Any], metrics: Mapping[str, Any]) -> None:
    lines = [f"# {config.name}: pretraining", "", _setting(config), "", "## Corpus", ""]
    lines += [f"- {k.replace('_', ' ')}: {v}" for k, v in stats.items()]
    lines += ["", "## Validation (best weights, every validation block)", ""]
    lines += [f"- {k.replace('_', ' ')}: {v:.4f}" for k, v in metrics.items() if isinstance(v, float)]
    lines += [
        "",
        f"best step {metrics['best_step']} of {metrics['steps']}",
        "",
        "| step | val loss |",
        "| ---: | ---: |",
    ]
    lines += [f"| {h['step']} | {h['val_loss']:.4f} |" for h in metrics["history"]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def check(config: PretrainTaskConfig) -> None:
    """What can be checked before anything loads: the corpus files exist."""
    corpus_of(config)
    if config.stride is not None and config.stride > config.block_size:
        raise TaskConfigError(f"stride {config.stride} skips text: make it at most block_size {config.block_size}")
