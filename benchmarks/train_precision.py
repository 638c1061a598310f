"""What a full fine-tuning step of SmolLM2-135M-Instruct costs on this machine, float32 against bf16
autocast (the ``training.mixed_precision: bf16`` of a task file), in one process: causal LM loss on
random token blocks, AdamW, the median of ``--steps`` steps after one warm-up step each.

    python benchmarks/train_precision.py [--batch 8] [--tokens 200] [--steps 3]

Ends with ``bf16 autocast over float32: …x per step``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from common import machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM

    from promptlearning.models import resolve_model_dir

    print(f"machine: {machine()}; full fine-tuning, {args.batch} x {args.tokens} tokens per step")
    model = AutoModelForCausalLM.from_pretrained(str(resolve_model_dir("smollm2-135m-instruct", pull=True)),
                                                 dtype=torch.float32).train()  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.randint(100, 40_000, (args.batch, args.tokens), generator=torch.Generator().manual_seed(0))
    medians = {}
    for name in ("float32", "bf16 autocast"):
        seconds = []
        for _ in range(args.steps + 1):
            started = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=name != "float32"):
                loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            seconds.append(time.perf_counter() - started)
        medians[name] = statistics.median(seconds[1:])
        print(f"{name}: {medians[name]:.1f} s per step ({args.batch * args.tokens / medians[name]:.0f} tokens/s)")
    print(f"bf16 autocast over float32: {medians['float32'] / medians['bf16 autocast']:.2f}x per step")


if __name__ == "__main__":
    main()
