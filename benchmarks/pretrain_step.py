"""Pretraining throughput and peak memory: our loop vs Hugging Face ``Trainer`` on the same model and data.

The tiny-shakespeare character recipe (``tasks/shakespeare-char.yaml``: the ``nano`` Llama-style
model, block 64, batch 12, AdamW lr 1e-3 with cosine decay): the same random windows of the same
memory-mapped token file, the same initial weights. Each side runs in its own process (peak RSS is
its own) with the loop's periodic evaluation off, timing the steps after the first 10. The token cache is
built first, in a process of its own, so neither side's peak includes tokenization.

    python benchmarks/pretrain_step.py [--steps 200] [--threads 2] [--rounds 5]

Ends with ``tokens/s ratio ours / Trainer: …x`` (target >= 1.0) and the peak-RSS ratio (target <= 1.0), medians
of ``--rounds`` interleaved runs of each side.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine, peak_rss_mb

TASK = Path(__file__).resolve().parents[1] / "tasks" / "shakespeare-char.yaml"
WARMUP = 10


def worker(system: str, steps: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from promptlearning.models.hub import home
    from promptlearning.pretraining.objectives import causal_collate
    from promptlearning.pretraining.tokenizer import train_tokenizer
    from promptlearning.pretraining.tokens import TokenBlocks, build_token_cache, split_tokens
    from promptlearning.tasks import load_task
    from promptlearning.tasks.pretrain.run import _model, corpus_of
    from promptlearning.training import TrainingArguments, train

    config = load_task(TASK)
    corpus = corpus_of(config)
    tokenizer = train_tokenizer(corpus.iter_documents(), kind="char")
    cache = build_token_cache(corpus, tokenizer, home() / "tokens", progress=False)
    if system == "prepare":  # the token cache is built before either side runs, so neither pays for it
        return {"system": system, "tokens": len(cache.tokens())}
    train_tokens, _ = split_tokens(cache.tokens(), config.corpus.validation_fraction)
    blocks = TokenBlocks(train_tokens, config.block_size, overlap=1, stride=1)
    model = _model(config, tokenizer)
    t = config.training
    stamps: list[float] = []
    out_dir = tempfile.mkdtemp(prefix="pretrain-step-")
    if system == "ours":
        args = TrainingArguments(
            max_steps=steps, eval_every=10**9, batch_size=t.batch_size, learning_rate=t.learning_rate,
            weight_decay=t.weight_decay, warmup_ratio=t.warmup_ratio, scheduler="cosine", min_lr_ratio=t.min_lr_ratio,
            adam_beta2=t.adam_beta2, log_every=10**9, log_with=None, seed=config.seed, greater_is_better=False,
            metric="val_loss",
        )  # fmt: skip
        train(model, blocks, causal_collate, lambda _: {"val_loss": 0.0}, args, out_dir, progress=False,
              after_step=lambda _: stamps.append(time.perf_counter()), device="cpu")  # fmt: skip
    else:
        from transformers import Trainer, TrainerCallback
        from transformers import TrainingArguments as HFArguments

        class Stamp(TrainerCallback):
            def on_step_end(self, *_, **__):
                stamps.append(time.perf_counter())

        hf_args = HFArguments(
            output_dir=out_dir, per_device_train_batch_size=t.batch_size, max_steps=steps,
            learning_rate=t.learning_rate, weight_decay=t.weight_decay, warmup_steps=math.ceil(t.warmup_ratio * steps),
            lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": t.min_lr_ratio},
            adam_beta2=t.adam_beta2, save_strategy="no", report_to=[], logging_steps=10**9, use_cpu=True,
            disable_tqdm=True, dataloader_num_workers=0, seed=config.seed,
        )  # fmt: skip
        Trainer(model=model, args=hf_args, train_dataset=blocks, data_collator=causal_collate,
                callbacks=[Stamp()]).train()  # fmt: skip
    step_s = [b - a for a, b in itertools.pairwise(stamps)][WARMUP:]
    median = statistics.median(step_s)
    tokens_per_step = t.batch_size * (config.block_size + 1)
    peak_mb = peak_rss_mb()
    return {"system": system, "median_step_s": median, "tokens_per_s": tokens_per_step / median,
            "peak_rss_mb": peak_mb, "steps_timed": len(step_s)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.threads)))
        return
    print(f"machine: {machine()}; tiny-shakespeare char recipe, {args.steps} steps (first {WARMUP} untimed), "
          f"{args.rounds} rounds")  # fmt: skip

    def run(system: str) -> dict:
        command = [sys.executable, __file__, "--worker", system, "--steps", str(args.steps),
                   "--threads", str(args.threads)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])

    run("prepare")
    results: dict[str, list[dict]] = {"ours": [], "trainer": []}
    for round_ in range(args.rounds):  # interleaved, so a noisy minute of the shared machine hits both sides
        for system in ("ours", "trainer") if round_ % 2 == 0 else ("trainer", "ours"):
            results[system].append(row := run(system))
            print(f"round {round_ + 1} {system:8s} {row['median_step_s'] * 1000:.1f} ms/step  "
                  f"{row['tokens_per_s']:.0f} tokens/s  peak RSS {row['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
    tps = {k: statistics.median(r["tokens_per_s"] for r in rows) for k, rows in results.items()}
    rss = {k: statistics.median(r["peak_rss_mb"] for r in rows) for k, rows in results.items()}
    print(f"medians: ours {tps['ours']:.0f} tokens/s, {rss['ours']:.0f} MB; Trainer {tps['trainer']:.0f} tokens/s, "
          f"{rss['trainer']:.0f} MB")  # fmt: skip
    print(
        f"tokens/s ratio ours / Trainer: {tps['ours'] / tps['trainer']:.2f}x, "
        f"peak RSS ratio {rss['ours'] / rss['trainer']:.2f}x"
    )


if __name__ == "__main__":
    main()
