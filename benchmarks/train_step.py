"""Training step time and peak memory: our accelerate loop vs peft + Hugging Face ``Trainer``.

The same SmolLM2 model, PEFT config (LoRA r=8 on q,v; prompt tuning with 20 virtual tokens), batch 8
and sequence length 128, fp32, AdamW. Each (system, method) runs in its own process so peak RSS is its
own. Three systems:

* ``ours``: ``promptlearning.training.train`` on the PET module (label-word loss at the answer position);
* ``trainer-same``: ``transformers.Trainer`` on that very module and data (identical work per step);
* ``trainer-clm``: ``Trainer`` with the usual causal-LM loss over all 128 positions (what a plain
  peft + Trainer script does).

    python benchmarks/train_step.py [--steps 12] [--methods lora,prompt-tuning]

Ends with ``step-time ratio ours / Trainer: …`` (target <= 1.0) for each method.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time

from common import machine, peak_rss_mb

SEQ, BATCH = 128, 8


def _features(tokenizer, n: int, seed: int = 0) -> list[dict]:
    import torch

    generator = torch.Generator().manual_seed(seed)
    low = max(10, len(tokenizer) // 100)
    ids = torch.randint(low, len(tokenizer) // 2, (n, SEQ), generator=generator).tolist()
    return [{"input_ids": row, "answer_index": SEQ - 1, "labels": i % 2} for i, row in enumerate(ids)]


def worker(system: str, method: str, steps: int) -> dict:
    import torch

    from promptlearning.training import ProgramSpec, TrainingArguments, build_program, train

    torch.manual_seed(0)
    spec = ProgramSpec(
        objective="pet", model="smollm2-135m-instruct", template={"input": "{{ text }}"}, max_length=SEQ,
        verbalizer={"label_words": {"negative": " negative", "positive": " positive"}}, peft=method,
        peft_options={"target_modules": ["q_proj", "v_proj"]} if method == "lora" else {},
    )  # fmt: skip
    program = build_program(spec, seed=0)
    features = _features(program.tokenizer, BATCH * steps)
    stamps: list[float] = []
    out_dir = tempfile.mkdtemp(prefix="train-step-")
    if system == "ours":
        args = TrainingArguments(max_steps=steps, eval_every=10**9, batch_size=BATCH, learning_rate=1e-4,
                                 warmup_ratio=0.0, log_every=10**9, log_with=None)  # fmt: skip
        train(program.module, features, program.featurizer.collate, lambda _: {"accuracy": 0.0}, args, out_dir,
              progress=False, after_step=lambda _: stamps.append(time.perf_counter()))  # fmt: skip
    else:
        from transformers import Trainer, TrainerCallback
        from transformers import TrainingArguments as HFArguments

        class Stamp(TrainerCallback):
            def on_step_end(self, *_, **__):
                stamps.append(time.perf_counter())

        if system == "trainer-same":
            model, collate = program.module, program.featurizer.collate
        else:  # causal-LM loss over every position, the usual peft + Trainer recipe
            model = program.inner_model

            def collate(batch):
                ids = torch.tensor([f["input_ids"] for f in batch])
                return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}

        hf_args = HFArguments(
            output_dir=out_dir, per_device_train_batch_size=BATCH, max_steps=steps, learning_rate=1e-4,
            save_strategy="no", report_to=[], logging_steps=10**9, use_cpu=True, remove_unused_columns=False,
            disable_tqdm=True, dataloader_num_workers=0, seed=0,
        )  # fmt: skip
        Trainer(model=model, args=hf_args, train_dataset=features, data_collator=collate,
                callbacks=[Stamp()]).train()  # fmt: skip
    steps_s = [b - a for a, b in itertools.pairwise(stamps)][2:]  # drop the warm-up steps
    peak_mb = peak_rss_mb()
    return {"system": system, "method": method, "median_step_s": statistics.median(steps_s), "peak_rss_mb": peak_mb,
            "steps_timed": len(steps_s)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--methods", default="lora,prompt-tuning")
    parser.add_argument("--systems", default="ours,trainer-same,trainer-clm")
    parser.add_argument("--worker", nargs=2, metavar=("SYSTEM", "METHOD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.steps)))
        return
    print(f"machine: {machine()}; batch {BATCH} x {SEQ} tokens, fp32, {args.steps} steps (first 3 untimed)")
    results = {}
    for method in args.methods.split(","):
        for system in args.systems.split(","):
            command = [sys.executable, __file__, "--worker", system, method, "--steps", str(args.steps)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            results[system, method] = row
            print(f"{method:14s} {system:13s} {row['median_step_s']:.3f} s/step  peak RSS {row['peak_rss_mb']:.0f} MB",
                  flush=True)  # fmt: skip
    for method in args.methods.split(","):
        ours = results.get(("ours", method))
        for peer in ("trainer-same", "trainer-clm"):
            if ours and (peer, method) in results:
                other = results[peer, method]
                print(f"{method} vs {peer}: step-time ratio ours / Trainer: "
                      f"{ours['median_step_s'] / other['median_step_s']:.2f}x, peak RSS ratio "
                      f"{ours['peak_rss_mb'] / other['peak_rss_mb']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
