"""One training loop for every method, on ``accelerate``; readable top to bottom.

    result = train(model, train_features, collate, evaluate, TrainingArguments(), output_dir)

``model`` is a module whose ``forward(**batch)`` returns ``{"loss": ..., "logits": ...}`` (see
:class:`~promptlearning.training.pet.PetModel` and :class:`~promptlearning.training.heads.HeadModel`);
``evaluate(model) -> {"accuracy": ...}`` scores it on the dev set. What the loop does:

* the device is ``accelerate``'s choice (a GPU when there is one; ``device="cpu"`` forces the CPU),
  with bf16 or fp16 mixed precision on GPUs (``mixed_precision="auto"``) or on request;
* AdamW with warm-up then linear or cosine decay, gradient accumulation and clipping;
* evaluation every ``eval_every`` optimizer steps, early stopping after ``patience`` evaluations
  without improvement, the best weights kept and restored at the end;
* an atomic checkpoint at every evaluation; ``resume=True`` continues from the newest valid one
  with the same data order and RNG state, so a resumed run ends where an uninterrupted one does;
* TensorBoard scalars under ``output_dir/tensorboard`` (loss, lr, tokens/s); a progress bar on a terminal,
  plain lines in logs.

Multi-process data parallelism comes from ``accelerate``: run the same script under
``accelerate launch`` (``--multi_gpu`` over GPUs, ``--config_file`` with an FSDP config to shard the
model) or ``torchrun --nproc_per_node N`` (CPU: gloo), and each process trains on its shard.
"""

from __future__ import annotations

import math
import random
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from promptlearning.errors import PromptLearningError
from promptlearning.progress import progress_bar
from promptlearning.training import checkpoints


@dataclass
class TrainingArguments:
    """Optimisation and bookkeeping settings (the ``training:`` section of a task file)."""

    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_steps: int = 200
    warmup_ratio: float = 0.06
    scheduler: str = "linear"  # linear decay to 0, or cosine decay to min_lr_ratio × learning_rate
    min_lr_ratio: float = 0.0
    adam_beta2: float = 0.999
    max_grad_norm: float = 1.0
    eval_every: int = 50
    patience: int | None = None
    metric: str = "accuracy"
    greater_is_better: bool = True  # False for a loss
    mixed_precision: str = "auto"  # auto: bf16 (or fp16) on a GPU, none on CPU; or no, bf16, fp16
    seed: int = 0
    keep_checkpoints: int = 2
    log_every: int = 10
    log_with: str | None = "tensorboard"  # an accelerate tracker name, or None for no tracking


@dataclass
class TrainResult:
    """What a run reached: the best dev metric, its step, and the evaluation history."""

    best_metric: float | None
    best_step: int | None
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int | None = None


def announce(message: str) -> None:
    """One line naming the part of a long training job that starts now (a seed, an ensemble member,
    the distillation), to stderr as the evaluation lines are; once per machine under ``accelerate``."""
    from accelerate import PartialState

    if PartialState().is_local_main_process:
        print(message, file=sys.stderr, flush=True)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def training_state(device: str = "auto") -> Any:
    """``accelerate``'s process state: this process's device and its place among several.

    ``auto`` lets ``accelerate`` choose (the process's GPU under ``accelerate launch``, else CUDA,
    MPS or CPU); ``cpu`` keeps to the CPU; ``cuda:N`` makes GPU ``N`` this process's device.
    """
    from accelerate import PartialState

    from promptlearning.devices import check_device_name, resolve_device

    name = check_device_name(device)
    if name.startswith("cuda:"):
        torch.cuda.set_device(resolve_device(name))
    wanted = resolve_device(name)
    return PartialState(cpu=wanted.type == "cpu")


def _epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


def _optimizer(params: list[nn.Parameter], args: TrainingArguments) -> torch.optim.Optimizer:
    # the fused kernel (one pass over all parameters; Trainer's default too) where torch has it
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.weight_decay,
                             betas=(0.9, args.adam_beta2), fused=fused or None)  # fmt: skip


def _scheduler(optimizer: torch.optim.Optimizer, args: TrainingArguments) -> Any:
    from transformers import get_cosine_with_min_lr_schedule_with_warmup, get_linear_schedule_with_warmup

    warmup = math.ceil(args.warmup_ratio * args.max_steps)
    if args.scheduler == "cosine":
        return get_cosine_with_min_lr_schedule_with_warmup(
            optimizer, warmup, args.max_steps, min_lr_rate=args.min_lr_ratio
        )
    if args.scheduler == "linear":
        return get_linear_schedule_with_warmup(optimizer, warmup, args.max_steps)
    raise PromptLearningError(f"unknown scheduler {args.scheduler!r}; use linear or cosine")


def _accelerator(args: TrainingArguments, output_dir: Path, device: str) -> Any:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from promptlearning.devices import mixed_precision

    state = training_state(device)
    # accelerate keeps one process-wide state and refuses a second Accelerator with another mixed
    # precision; several runs in one process (sweeps, notebooks) may differ in it, so the per-run
    # part of that state is cleared (the process group and device, in PartialState, are kept)
    AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(
        cpu=state.device.type == "cpu",
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=mixed_precision(args.mixed_precision, state.device),
        log_with=args.log_with,
        project_dir=str(output_dir),
    )


def _fresh_state() -> dict[str, Any]:
    return {"step": 0, "epoch": 0, "batch": 0, "best_metric": None, "best_step": None, "bad_evals": 0,
            "history": []}  # fmt: skip


class _Checkpoints:
    """Saves and restores the loop's checkpoints: trainable weights, optimizer, scheduler, RNG states
    and the loop state, atomically (see :mod:`~promptlearning.training.checkpoints`)."""

    def __init__(self, accelerator: Any, model: nn.Module, optimizer: Any, scheduler: Any,
                 output_dir: Path, keep: int) -> None:  # fmt: skip
        from accelerate.utils import DistributedType

        self.accelerator, self.model, self.optimizer, self.scheduler = accelerator, model, optimizer, scheduler
        self.raw = accelerator.unwrap_model(model)
        self.output_dir, self.directory, self.keep = output_dir, output_dir / "checkpoints", keep
        self.sharded = accelerator.distributed_type == DistributedType.FSDP
        self.trainable = {name for name, p in self.raw.named_parameters() if p.requires_grad}

    def restore(self) -> tuple[dict[str, Any], int | None]:
        """The loop state of the newest valid checkpoint, everything else loaded in place; or a fresh state."""
        found = checkpoints.load_latest(self.directory)
        if found is None:
            return _fresh_state(), None
        path, weights, saved, state = found
        unexpected = self.raw.load_state_dict(weights, strict=False).unexpected_keys
        if unexpected:
            raise PromptLearningError(f"checkpoint {path} holds weights this model does not have: {unexpected[:3]}")
        if saved["optimizer"]:
            self.optimizer.load_state_dict(saved["optimizer"])
        else:
            warnings.warn(f"{path} holds no optimizer state (an FSDP run): AdamW's moments start again", stacklevel=3)
        self.scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"])
        if saved.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        random.setstate((saved["python_rng"][0], tuple(saved["python_rng"][1]), saved["python_rng"][2]))
        self.accelerator.print(f"resumed from {path} (step {state['step']})")
        return state, state["step"]

    def save(self, state: dict[str, Any], best_changed: bool) -> None:
        accelerator = self.accelerator
        accelerator.wait_for_everyone()
        if self.sharded:  # FSDP: every process takes part in gathering the full weights onto the main one
            full = accelerator.get_state_dict(self.model)
            weights = {k: v for k, v in full.items() if k in self.trainable}
        if not accelerator.is_main_process:
            return
        if not self.sharded:
            weights = trainable_state(self.raw)
        step = state["step"]
        if best_changed:
            # the new best is complete on disk before the previous one is pruned
            checkpoints.save_checkpoint(self.output_dir / "best", step, weights, {}, {"step": step}, keep=1)
        version, internal, gauss = random.getstate()
        saved = {
            # FSDP shards the optimizer state over the processes: a resumed FSDP run restarts its moments
            "optimizer": {} if self.sharded else self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python_rng": [version, list(internal), gauss],
        }
        checkpoints.save_checkpoint(self.directory, step, weights, saved, state, keep=self.keep)

    def load_best(self) -> None:
        """Puts the best weights saved on dev back into the model (after every process has written)."""
        self.accelerator.wait_for_everyone()
        if (found := checkpoints.load_latest(self.output_dir / "best")) is not None:
            self.raw.load_state_dict(found[1], strict=False)


class _TrainLog:
    """Running training loss and tokens/s between log lines, sent to the trackers and the progress bar."""

    def __init__(self, accelerator: Any, bar: Any) -> None:
        self.accelerator, self.bar = accelerator, bar
        self._restart()

    def _restart(self) -> None:
        self.loss, self.batches = 0.0, 0
        self.tokens, self.clock = 0, time.perf_counter()  # input tokens since the last line (for tokens/s)

    def add(self, loss: float, batch: Mapping[str, Any]) -> None:
        self.loss, self.batches = self.loss + loss, self.batches + 1
        if "input_ids" in batch:
            self.tokens += batch["input_ids"].numel() * self.accelerator.num_processes

    def write(self, step: int, lr: float) -> None:
        mean = self.loss / self.batches
        logged = {"train/loss": mean, "train/lr": lr}
        postfix = {"loss": f"{mean:.4f}"}
        if self.tokens:
            logged["train/tokens_per_second"] = self.tokens / (time.perf_counter() - self.clock)
            postfix["tok/s"] = f"{logged['train/tokens_per_second']:.0f}"
        self.accelerator.log(logged, step=step)
        self.bar.set_postfix(**postfix)
        self._restart()


def _record_evaluation(state: dict[str, Any], metrics: dict[str, float], args: TrainingArguments) -> bool:
    """Adds one dev evaluation to the loop state; True when it is the best so far."""
    value, best = metrics[args.metric], state["best_metric"]
    improved = best is None or (value > best if args.greater_is_better else value < best)
    if improved:
        state["best_metric"], state["best_step"], state["bad_evals"] = value, state["step"], 0
    else:
        state["bad_evals"] += 1
    state["history"].append({"step": state["step"], **metrics})
    return improved


def _patience_spent(state: dict[str, Any], args: TrainingArguments) -> bool:
    """Early stopping: ``patience`` evaluations in a row without improvement."""
    return args.patience is not None and state["bad_evals"] >= args.patience


def train(
    model: nn.Module,
    train_features: Sequence[Mapping[str, Any]],
    collate: Callable[[Sequence[Mapping[str, Any]]], dict[str, torch.Tensor]],
    evaluate: Callable[[nn.Module], dict[str, float]],
    args: TrainingArguments,
    output_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool | None = None,
    after_step: Callable[[int], None] | None = None,
    device: str = "auto",
) -> TrainResult:
    """Train ``model`` in place on ``device`` (see :func:`training_state`); at the end it holds the best
    weights seen on dev."""
    # One piece on purpose, as nanoGPT's loop is: the order of its steps (data order, accumulation,
    # RNG draws, evaluation, checkpoint) is what makes a resumed run end where an uninterrupted one
    # does, and it is easier to check read top to bottom. Set-up, checkpoints and logging are helpers.
    from accelerate.utils import set_seed

    output_dir = Path(output_dir)
    accelerator = _accelerator(args, output_dir, device)
    set_seed(args.seed)
    if accelerator.num_processes > 1:
        accelerator.print(
            f"data parallel: {accelerator.num_processes} processes ({accelerator.distributed_type.value})"
        )
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise PromptLearningError("the model has no trainable parameters")
    optimizer = _optimizer(params, args)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, _scheduler(optimizer, args))
    saver = _Checkpoints(accelerator, model, optimizer, scheduler, output_dir, args.keep_checkpoints)
    state, resumed_from = saver.restore() if resume else (_fresh_state(), None)
    if accelerator.is_main_process and args.log_with:
        accelerator.init_trackers("tensorboard", config={k: v for k, v in asdict(args).items() if v is not None})

    bar = progress_bar(args.max_steps, initial=state["step"], desc="train",
                       enabled=progress is not False and accelerator.is_local_main_process)  # fmt: skip
    log = _TrainLog(accelerator, bar)
    stop = state["step"] >= args.max_steps or _patience_spent(state, args)  # a finished run resumed trains no more
    while not stop:
        order = _epoch_order(len(train_features), args.seed, state["epoch"])
        # its own generator: creating an iterator must not draw from the global RNG (dropout's), or
        # a resumed run, which creates one more iterator, would diverge from an uninterrupted one
        loader = DataLoader(
            Subset(train_features, order), batch_size=args.batch_size, collate_fn=collate,
            generator=torch.Generator().manual_seed(args.seed),
        )  # fmt: skip
        loader = accelerator.prepare_data_loader(loader)
        skip = state["batch"]
        model.train()
        for batch in accelerator.skip_first_batches(loader, skip) if skip else loader:
            with accelerator.accumulate(model):
                loss = model(**batch)["loss"]
                accelerator.backward(loss)
                if accelerator.sync_gradients and args.max_grad_norm:
                    accelerator.clip_grad_norm_(params, args.max_grad_norm)
                optimizer.step()
                if accelerator.sync_gradients:
                    scheduler.step()
                    if after_step is not None:
                        after_step(state["step"])
                optimizer.zero_grad()
            state["batch"] += 1
            log.add(loss.item(), batch)
            # dropped now, not when the next batch replaces them: a step's tensors still referenced
            # during the next forward pass keep glibc's heap fragmented, ~450 MB more peak RSS
            # (SmolLM2 + LoRA, batch 8 x 128; see benchmarks/RESULTS.md)
            del loss, batch
            if not accelerator.sync_gradients:
                continue
            state["step"] += 1
            bar.update(1)
            last = state["step"] >= args.max_steps
            if state["step"] % args.log_every == 0 or last:
                log.write(state["step"], scheduler.get_last_lr()[0])
            if state["step"] % args.eval_every == 0 or last:
                if state["batch"] >= len(loader):  # the epoch ended with this step
                    state["epoch"], state["batch"] = state["epoch"] + 1, 0
                model.eval()
                metrics = evaluate(saver.raw)
                model.train()
                improved = _record_evaluation(state, metrics, args)
                accelerator.log({f"dev/{k}": v for k, v in metrics.items()}, step=state["step"])
                bar.write(f"step {state['step']}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
                saver.save(state, improved)
                if _patience_spent(state, args):
                    bar.write(f"early stop: no improvement in {args.patience} evaluations")
                    stop = True
            stop = stop or last
            if stop or state["batch"] == 0:
                break
        else:
            state["epoch"], state["batch"] = state["epoch"] + 1, 0
    bar.close()
    for tracker in accelerator.trackers:  # not end_training(): it would end the process group, and a
        tracker.finish()  # few-shot run trains the next seed in the same processes
    saver.load_best()
    return TrainResult(state["best_metric"], state["best_step"], state["step"], state["history"], resumed_from)
